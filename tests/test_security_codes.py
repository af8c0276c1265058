"""One-time codes cannot be guessed in parallel: tries are counted in one shared, atomic place.

Each flow (sign-in by code, password reset by code, the sign-up confirmation) gets 50 wrong
guesses sent at the same moment from 50 threads sharing the session, through the real views
and the test database (SQLite here, PostgreSQL with DATABASE_URL); then the right code is sent.
It must be refused: at most 3 tries of a code are ever compared, whatever the session says.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse

from accounts.access import can_chat
from accounts.models import IssuedCode

pytestmark = pytest.mark.django_db(transaction=True)

PW = "a-Long-pass-phrase-42"
GUESSES = 50


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.R1CHAT_CODE_RESEND_SECONDS = 0
    # The address and recipient limits are tested on their own below; here only the count of
    # tries per code stands between the guesses and the account.
    settings.R1CHAT_CODE_TRIES_PER_IP = (10_000, 300)
    settings.R1CHAT_CODE_TRIES_PER_RECIPIENT = (10_000, 300)


def make_user(email: str) -> Any:
    user = get_user_model().objects.create_user(
        username=email.split("@")[0], password=PW, email=email
    )
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    return user


def last_code(mailoutbox: list[Any]) -> str:
    match = re.search(r"\b(\d{6})\b", mailoutbox[-1].body)
    assert match, mailoutbox[-1].body
    return match.group(1)


def wrong_codes(good: str, count: int) -> list[str]:
    codes = [f"{n:06d}" for n in range(1, count + 2)]
    return [c for c in codes if c != good][:count]


def guess_at_once(client: Client, url: str, guesses: list[str]) -> list[int]:
    """POST every guess at the same moment, each from its own thread and client, one session."""
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    barrier = threading.Barrier(len(guesses))
    statuses: list[int] = []
    errors: list[BaseException] = []

    def guess(code: str) -> None:
        try:
            other = Client()
            other.cookies[django_settings.SESSION_COOKIE_NAME] = cookie
            if connection.vendor == "sqlite":
                # Connected before the start, so all run at once. (PostgreSQL's pool hands out
                # a connection at once, to at most its size; the others queue for one.)
                connection.ensure_connection()
            barrier.wait(timeout=30)
            statuses.append(other.post(url, {"code": code}).status_code)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=guess, args=(code,)) for code in guesses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(statuses) == len(guesses)
    return statuses


def _login_code(client: Client, mailoutbox: list[Any]) -> tuple[str, str, Callable[[], bool]]:
    user = make_user("ann@example.com")
    response = client.post(
        reverse("account_request_login_code"), {"method": "email", "email": user.email}
    )
    assert response["Location"] == reverse("account_confirm_login_code")
    return (
        reverse("account_confirm_login_code"),
        last_code(mailoutbox),
        lambda: client.session.get("_auth_user_id") == str(user.pk),
    )


def _reset_code(client: Client, mailoutbox: list[Any]) -> tuple[str, str, Callable[[], bool]]:
    user = make_user("bob@example.com")
    response = client.post(reverse("account_reset_password"), {"email": user.email})
    assert response["Location"] == reverse("account_confirm_password_reset_code")
    url = reverse("account_confirm_password_reset_code")

    def reset_possible() -> bool:
        new = "an0ther-Long-phrase"
        client.post(
            reverse("account_complete_password_reset"), {"password1": new, "password2": new}
        )
        user.refresh_from_db()
        return user.check_password(new)

    return url, last_code(mailoutbox), reset_possible


def _signup_code(client: Client, mailoutbox: list[Any]) -> tuple[str, str, Callable[[], bool]]:
    response = client.post(
        reverse("account_signup"),
        {"method": "email", "email": "cat@example.com", "password1": PW, "password2": PW},
    )
    assert response["Location"] == reverse("accounts:verify")
    return (
        reverse("accounts:verify"),
        last_code(mailoutbox),
        lambda: can_chat(get_user_model().objects.get(email="cat@example.com")),
    )


FLOWS = {"login_code": _login_code, "reset_code": _reset_code, "signup_code": _signup_code}


@pytest.mark.parametrize("flow", FLOWS)
def test_parallel_guesses_then_the_right_code_are_all_refused(
    flow: str, mailoutbox: list[Any]
) -> None:
    client = Client()
    url, good, succeeded = FLOWS[flow](client, mailoutbox)
    statuses = guess_at_once(client, url, wrong_codes(good, GUESSES))
    assert all(status in {200, 302, 400} for status in statuses), statuses
    assert not succeeded()
    # The right code, sent after the guesses: refused too (the code is dead for everyone).
    client.post(url, {"code": good})
    assert not succeeded()
    # However many requests came at once, the code was compared at most three times.
    assert IssuedCode.objects.get().attempts <= 3


@pytest.mark.parametrize("flow", FLOWS)
def test_three_guesses_at_once_use_up_the_code(flow: str, mailoutbox: list[Any]) -> None:
    """The race itself: three wrong guesses at once each read "no wrong tries yet" from the
    session and write back "one"; counted in the session only, the code had tries left."""
    client = Client()
    url, good, succeeded = FLOWS[flow](client, mailoutbox)
    guess_at_once(client, url, wrong_codes(good, 3))
    client.post(url, {"code": good})
    assert not succeeded()


@pytest.mark.parametrize("flow", FLOWS)
def test_the_right_code_still_works_after_two_wrong_ones(flow: str, mailoutbox: list[Any]) -> None:
    client = Client()
    url, good, succeeded = FLOWS[flow](client, mailoutbox)
    for wrong in wrong_codes(good, 2):
        client.post(url, {"code": wrong})
    client.post(url, {"code": good})
    assert succeeded()


def test_a_code_is_used_once(mailoutbox: list[Any]) -> None:
    """Two requests with the right code at once: the code is spent by the first."""
    client = Client()
    url, good, _succeeded = _reset_code(client, mailoutbox)
    guess_at_once(client, url, [good, good])
    assert IssuedCode.objects.get().attempts > 3  # spent


def test_tries_are_limited_per_client_address(settings: Any, mailoutbox: list[Any]) -> None:
    settings.R1CHAT_CODE_TRIES_PER_IP = (4, 300)
    first, second = Client(), Client()
    url, good, _ = _login_code(first, mailoutbox)
    for wrong in wrong_codes(good, 3):
        assert first.post(url, {"code": wrong}).status_code in {200, 302}
    second.post(reverse("account_request_login_code"), {"method": "email", "email": "ann@x.io"})
    assert second.post(url, {"code": "123456"}).status_code == 200  # the fourth try
    response = second.post(url, {"code": "123456"})  # the fifth, from the same address
    assert response.status_code == 429


def test_tries_are_limited_per_recipient(settings: Any, mailoutbox: list[Any]) -> None:
    settings.R1CHAT_CODE_TRIES_PER_RECIPIENT = (4, 300)
    client = Client()
    url, good, succeeded = _login_code(client, mailoutbox)
    for wrong in wrong_codes(good, 3):  # the first code dies
        client.post(url, {"code": wrong})
    client.post(
        reverse("account_request_login_code"), {"method": "email", "email": "ann@example.com"}
    )
    good = last_code(mailoutbox)
    client.post(url, {"code": wrong_codes(good, 1)[0]})  # the fourth try at this address
    client.post(url, {"code": good})  # the fifth: refused, right or not
    assert not succeeded()
