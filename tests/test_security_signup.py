"""Sign-up does not tell whether an email address or phone number already has an account.

Taken or new, the answer is the same (status, redirect, the code page), one message goes out
(a code, or a notice to the owner), it goes out from the background sender (accounts.outbox),
not from the request, and the request does the same work, so it takes about as long.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts import outbox, sms

pytestmark = pytest.mark.django_db

PW = "a-Long-pass-phrase-42"
TAKEN_PHONE = "+8613800138000"

#: Threads the test SMS backend below ran in.
sent_from: list[str] = []


class RecordingSmsBackend(sms.LocmemSmsBackend):
    """The in-memory outbox, noting which thread sent each message."""

    def send(
        self, phone: str, message: str, *, template_params: dict[str, str] | None = None
    ) -> None:
        sent_from.append(threading.current_thread().name)
        super().send(phone, message, template_params=template_params)


@pytest.fixture(autouse=True)
def _background_sending(settings: Any) -> Any:
    settings.R1CHAT_SEND_IN_BACKGROUND = True
    settings.R1CHAT_CODE_RESEND_SECONDS = 0
    settings.SMS_BACKEND = {"BACKEND": f"{__name__}.RecordingSmsBackend"}
    sms.outbox.clear()
    sent_from.clear()
    yield
    outbox.drain()
    sms.outbox.clear()


def _taken(email: str | None = None, phone: str | None = None) -> None:
    user = get_user_model().objects.create_user(
        username=(email or phone or "x").replace("@", "_").replace("+", "p"),
        password=PW,
        email=email,
        phone=phone,
        phone_verified=bool(phone),
    )
    if email:
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)


def _signup(client: Client, method: str, value: str) -> Any:
    data = {"method": method, method: value, "password1": PW, "password2": PW}
    return client.post(reverse("account_signup"), data)


CASES = [
    ("email", "taken@example.com", "fresh@example.com"),
    ("phone", TAKEN_PHONE, "+8613900139000"),
]


@pytest.mark.parametrize(("method", "taken", "fresh"), CASES)
def test_taken_and_new_addresses_get_the_same_answer(
    method: str, taken: str, fresh: str, mailoutbox: list[Any]
) -> None:
    _taken(**{method: taken})
    pages = []
    for value in (taken, fresh):
        mailoutbox.clear()
        sms.outbox.clear()
        sent_from.clear()
        client = Client()
        response = _signup(client, method, value)
        assert response.status_code == 302
        assert response["Location"] == reverse("accounts:verify")
        page = client.get(response["Location"])
        assert page.status_code == 200
        digits = value.removeprefix("+86")
        shown = page.content.decode()
        for form in (value, digits, f"{digits[:3]} {digits[3:7]} {digits[7:]}"):
            shown = shown.replace(form, "ADDRESS")
        pages.append(shown)
        # Exactly one message, sent by the background sender, never by the request itself.
        outbox.drain()
        if method == "email":
            assert len(mailoutbox) == 1
            assert mailoutbox[0].to == [value]
        else:
            assert len(sms.outbox) == 1
            assert sms.outbox[0]["phone"] == value
            assert sent_from and all(name.startswith("r1chat-send") for name in sent_from)

    def without_tokens(html: str) -> str:
        return re.sub(r'value="[^"]{20,}"', 'value="TOKEN"', html)

    assert without_tokens(pages[0]) == without_tokens(pages[1])
    # The taken address created nothing.
    assert get_user_model().objects.filter(**{method: taken}).count() == 1


def test_taken_and_new_emails_take_about_as_long(mailoutbox: list[Any]) -> None:
    """Medians over several sign-ups: hashing the password dominates both (0.2–1 s); before,
    a taken address answered without it, in a fraction of the time."""
    tries = 5
    for n in range(tries):
        _taken(email=f"taken{n}@example.com")

    def timed(email: str) -> float:
        start = time.perf_counter()
        response = _signup(Client(), "email", email)
        elapsed = time.perf_counter() - start
        assert response.status_code == 302
        return elapsed

    taken, fresh = [], []
    for n in range(tries):  # interleaved, so a slow moment of the machine hits both
        taken.append(timed(f"taken{n}@example.com"))
        fresh.append(timed(f"fresh{n}@example.com"))
    taken_median, fresh_median = statistics.median(taken), statistics.median(fresh)
    assert abs(taken_median - fresh_median) < 0.35 * max(taken_median, fresh_median) + 0.03, (
        taken,
        fresh,
    )
