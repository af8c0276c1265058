"""Sign-up, sign-in and reset flows: email and phone, codes, enumeration, abuse limits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts import sms
from accounts.access import can_chat

pytestmark = pytest.mark.django_db

PW = "a-Long-pass-phrase-42"
PHONE = "+8613800138000"
PHONE_WAYS = ["+86 138 0013 8000", "13800138000", "+8613800138000"]


@pytest.fixture
def sms_outbox() -> Any:
    sms.outbox.clear()
    yield sms.outbox
    sms.outbox.clear()


@pytest.fixture(autouse=True)
def _no_resend_delay(settings: Any) -> None:
    settings.R1CHAT_CODE_RESEND_SECONDS = 0


def code_in(text: str) -> str:
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)


def mail_code(mailoutbox: list[Any]) -> str:
    return code_in(mailoutbox[-1].body)


def sms_code(outbox: list[dict[str, Any]]) -> str:
    return code_in(outbox[-1]["message"])


def session_user(client: Client) -> Any:
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id) if user_id else None


def make_user(email: str | None = None, phone: str | None = None, verified: bool = True) -> Any:
    User = get_user_model()
    username = (email or phone or "u").replace("@", "_").replace("+", "p")[:30]
    user = User.objects.create_user(
        username=username,
        password=PW,
        email=email,
        phone=phone,
        phone_verified=bool(phone and verified),
    )
    if email:
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=verified)
    return user


def signup_email(client: Client, email: str) -> Any:
    return client.post(
        reverse("account_signup"),
        {"method": "email", "email": email, "password1": PW, "password2": PW},
    )


def signup_phone(client: Client, phone: str) -> Any:
    return client.post(
        reverse("account_signup"),
        {"method": "phone", "phone": phone, "password1": PW, "password2": PW},
    )


# --- sign-up ---------------------------------------------------------------------------------
def test_email_signup_code_then_chat(client: Client, mailoutbox: list[Any]) -> None:
    response = signup_email(client, "Ann@Example.com")
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:verify")
    user = get_user_model().objects.get(email="ann@example.com")
    assert not can_chat(user)
    assert "_auth_user_id" not in client.session  # not in before the code
    assert len(mailoutbox) == 1  # one code, no confirmation link
    assert "/confirm-email/" not in mailoutbox[0].body
    page = client.get(reverse("accounts:verify"))
    assert page.status_code == 200
    assert b'id="resend-code"' in page.content
    response = client.post(reverse("accounts:verify"), {"code": mail_code(mailoutbox)})
    assert response.status_code == 302
    user = session_user(client)
    assert user is not None and user.email == "ann@example.com"
    assert can_chat(user)
    assert EmailAddress.objects.get(user=user).verified


def test_phone_signup_sms_code_then_chat(client: Client, sms_outbox: list[Any]) -> None:
    response = signup_phone(client, "138 0013 8000")
    assert response["Location"] == reverse("accounts:verify")
    user = get_user_model().objects.get(phone=PHONE)
    assert not user.phone_verified and not can_chat(user)
    assert sms_outbox[-1]["phone"] == PHONE
    assert sms_outbox[-1]["params"] == {"code": sms_code(sms_outbox)}
    response = client.post(reverse("accounts:verify"), {"code": sms_code(sms_outbox)})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.phone_verified
    assert session_user(client) == user
    assert can_chat(user)


def test_unconfirmed_account_cannot_chat_and_sign_in_asks_for_code(
    client: Client, mailoutbox: list[Any]
) -> None:
    signup_email(Client(), "bob@example.com")
    user = get_user_model().objects.get(email="bob@example.com")
    user.backend = "django.contrib.auth.backends.ModelBackend"
    assert not can_chat(user)
    response = client.post(reverse("account_login"), {"login": "bob@example.com", "password": PW})
    assert response["Location"] == reverse("accounts:verify")
    assert "_auth_user_id" not in client.session
    client.post(reverse("accounts:verify"), {"code": mail_code(mailoutbox)})
    assert can_chat(session_user(client))


def test_resend_offers_new_code_after_delay(
    client: Client, settings: Any, sms_outbox: list[Any]
) -> None:
    settings.R1CHAT_CODE_RESEND_SECONDS = 60
    signup_phone(client, PHONE)
    first = sms_code(sms_outbox)
    page = client.get(reverse("accounts:verify"))
    assert re.search(rb'data-countdown="(5\d|60)"', page.content)
    client.post(reverse("accounts:verify"), {"action": "resend"}, follow=True)
    assert len(sms_outbox) == 1  # too early: refused server-side
    settings.R1CHAT_CODE_RESEND_SECONDS = 0
    client.post(reverse("accounts:verify"), {"action": "resend"})
    assert len(sms_outbox) == 2
    assert client.post(
        reverse("accounts:verify"), {"code": first}
    ).status_code == 400 or first == sms_code(sms_outbox)
    client.post(reverse("accounts:verify"), {"code": sms_code(sms_outbox)})
    assert session_user(client) is not None


def test_code_dies_after_three_wrong_tries(client: Client, mailoutbox: list[Any]) -> None:
    signup_email(client, "cat@example.com")
    good = mail_code(mailoutbox)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(2):
        assert client.post(reverse("accounts:verify"), {"code": wrong}).status_code == 400
    response = client.post(reverse("accounts:verify"), {"code": wrong})
    assert response["Location"] == reverse("account_login")
    response = client.post(reverse("accounts:verify"), {"code": good})
    assert response["Location"] == reverse("account_login")
    assert "_auth_user_id" not in client.session
    assert not can_chat(get_user_model().objects.get(email="cat@example.com"))


# --- sign-in -----------------------------------------------------------------------------------
def test_password_sign_in_with_email(client: Client) -> None:
    make_user(email="dan@example.com")
    response = client.post(reverse("account_login"), {"login": "DAN@example.com", "password": PW})
    assert response.status_code == 302
    assert session_user(client).email == "dan@example.com"


@pytest.mark.parametrize("written", PHONE_WAYS)
def test_password_sign_in_with_phone_three_ways(written: str) -> None:
    user = make_user(phone=PHONE)
    client = Client()
    response = client.post(reverse("account_login"), {"login": written, "password": PW})
    assert response.status_code == 302, response.content[:500]
    assert session_user(client) == user


def test_code_sign_in_by_email(client: Client, mailoutbox: list[Any]) -> None:
    user = make_user(email="eve@example.com")
    response = client.post(
        reverse("account_request_login_code"), {"method": "email", "email": "eve@example.com"}
    )
    assert response["Location"] == reverse("account_confirm_login_code")
    response = client.post(reverse("account_confirm_login_code"), {"code": mail_code(mailoutbox)})
    assert response.status_code == 302
    assert session_user(client) == user


def test_code_sign_in_by_phone(client: Client, sms_outbox: list[Any]) -> None:
    user = make_user(phone=PHONE)
    response = client.post(
        reverse("account_request_login_code"),
        {"method": "phone", "phone": "138-0013-8000", "email": "x@y.z"},
    )
    assert response["Location"] == reverse("account_confirm_login_code")
    client.post(reverse("account_confirm_login_code"), {"code": sms_code(sms_outbox)})
    assert session_user(client) == user


def test_login_code_dies_after_three_wrong_tries(client: Client, sms_outbox: list[Any]) -> None:
    make_user(phone=PHONE)
    client.post(reverse("account_request_login_code"), {"method": "phone", "phone": PHONE})
    good = sms_code(sms_outbox)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(3):
        response = client.post(reverse("account_confirm_login_code"), {"code": wrong})
    assert response.status_code == 302
    client.post(reverse("account_confirm_login_code"), {"code": good})
    assert "_auth_user_id" not in client.session


# --- reset ---------------------------------------------------------------------------------------
def test_reset_by_email_code(client: Client, mailoutbox: list[Any]) -> None:
    user = make_user(email="fay@example.com")
    response = client.post(reverse("account_reset_password"), {"email": "fay@example.com"})
    assert response["Location"] == reverse("account_confirm_password_reset_code")
    response = client.post(
        reverse("account_confirm_password_reset_code"), {"code": mail_code(mailoutbox)}
    )
    assert response["Location"] == reverse("account_complete_password_reset")
    new = "an0ther-Long-phrase"
    response = client.post(
        reverse("account_complete_password_reset"), {"password1": new, "password2": new}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)


def test_reset_by_sms_code(client: Client, sms_outbox: list[Any]) -> None:
    user = make_user(phone=PHONE)
    response = client.post(reverse("account_reset_password"), {"email": "+86 138 0013 8000"})
    assert response["Location"] == reverse("account_confirm_password_reset_code")
    assert sms_outbox[-1]["phone"] == PHONE
    client.post(reverse("account_confirm_password_reset_code"), {"code": sms_code(sms_outbox)})
    new = "an0ther-Long-phrase"
    client.post(reverse("account_complete_password_reset"), {"password1": new, "password2": new})
    user.refresh_from_db()
    assert user.check_password(new)


def test_reset_code_dies_after_three_wrong_tries(client: Client, mailoutbox: list[Any]) -> None:
    make_user(email="gus@example.com")
    client.post(reverse("account_reset_password"), {"email": "gus@example.com"})
    good = mail_code(mailoutbox)
    wrong = "000000" if good != "000000" else "111111"
    for _ in range(3):
        client.post(reverse("account_confirm_password_reset_code"), {"code": wrong})
    response = client.post(reverse("account_confirm_password_reset_code"), {"code": good})
    assert response["Location"] == reverse("account_login")


# --- no enumeration --------------------------------------------------------------------------
def _shape(response: Any) -> tuple[int, str]:
    return response.status_code, response.get("Location", "")


def test_same_response_for_existing_and_new_identifiers(
    mailoutbox: list[Any], sms_outbox: list[Any]
) -> None:
    make_user(email="old@example.com")
    make_user(phone=PHONE)
    new_phone = "+8613900139000"
    pairs = [
        (
            lambda c: signup_email(c, "old@example.com"),
            lambda c: signup_email(c, "new@example.com"),
        ),
        (lambda c: signup_phone(c, PHONE), lambda c: signup_phone(c, new_phone)),
        (
            lambda c: c.post(
                reverse("account_login"), {"login": "old@example.com", "password": "wrong-pass-1"}
            ),
            lambda c: c.post(
                reverse("account_login"),
                {"login": "nobody@example.com", "password": "wrong-pass-1"},
            ),
        ),
        (
            lambda c: c.post(
                reverse("account_request_login_code"),
                {"method": "email", "email": "old@example.com"},
            ),
            lambda c: c.post(
                reverse("account_request_login_code"),
                {"method": "email", "email": "nobody@example.com"},
            ),
        ),
        (
            lambda c: c.post(
                reverse("account_request_login_code"), {"method": "phone", "phone": PHONE}
            ),
            lambda c: c.post(
                reverse("account_request_login_code"),
                {"method": "phone", "phone": "+8613700137000"},
            ),
        ),
        (
            lambda c: c.post(reverse("account_reset_password"), {"email": "old@example.com"}),
            lambda c: c.post(reverse("account_reset_password"), {"email": "nobody@example.com"}),
        ),
        (
            lambda c: c.post(reverse("account_reset_password"), {"email": PHONE}),
            lambda c: c.post(reverse("account_reset_password"), {"email": "+8613600136000"}),
        ),
    ]
    for existing, new in pairs:
        a, b = Client(), Client()
        ra, rb = existing(a), new(b)
        assert _shape(ra) == _shape(rb)
        if ra.status_code == 200:
            assert ra.content.replace(b"old@example.com", b"X").count(
                b"auth-error"
            ) == rb.content.count(b"auth-error")
        if ra.get("Location"):
            pa, pb = a.get(ra["Location"]), b.get(rb["Location"])
            assert pa.status_code == pb.status_code
    # a sign-up with a taken address created nothing and leads to a code page that never works
    assert get_user_model().objects.filter(email="old@example.com").count() == 1


def test_taken_email_signup_sends_notice_not_code(client: Client, mailoutbox: list[Any]) -> None:
    make_user(email="old@example.com")
    signup_email(client, "old@example.com")
    assert len(mailoutbox) == 1
    assert not re.search(r"\b\d{6}\b", mailoutbox[0].body)
    response = client.post(reverse("accounts:verify"), {"code": "123456"})
    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


# --- abuse limits --------------------------------------------------------------------------------
def test_login_code_rate_limit(client: Client, sms_outbox: list[Any]) -> None:
    make_user(phone=PHONE)
    statuses = []
    for _ in range(4):
        response = Client().post(
            reverse("account_request_login_code"), {"method": "phone", "phone": PHONE}
        )
        statuses.append(response.status_code)
    assert statuses[:3] == [302, 302, 302]
    assert statuses[3] != 302  # 3/m per number


def test_resend_delay_is_per_purpose_and_answered_on_the_form(
    client: Client, settings: Any, sms_outbox: list[Any]
) -> None:
    settings.R1CHAT_CODE_RESEND_SECONDS = 60
    make_user(phone=PHONE)
    assert (
        client.post(
            reverse("account_request_login_code"), {"method": "phone", "phone": PHONE}
        ).status_code
        == 302
    )
    # the same purpose again: the form answers with a countdown, nothing is sent
    again = Client().post(reverse("account_request_login_code"), {"login": PHONE})
    assert again.status_code == 200
    assert re.search(rb'id="request-code-submit" data-countdown="(5\d|60)"', again.content)
    assert len(sms_outbox) == 1
    # another purpose (a reset) has its own delay
    response = Client().post(reverse("account_reset_password"), {"email": PHONE})
    assert response.status_code == 302
    assert len(sms_outbox) == 2


def test_sms_budget_per_number(settings: Any, sms_outbox: list[Any]) -> None:
    settings.SMS_DAILY_PER_NUMBER = 2
    settings.ACCOUNT_RATE_LIMITS = False
    make_user(phone=PHONE)
    for _ in range(2):
        r = Client().post(reverse("account_reset_password"), {"email": PHONE})
        assert r.status_code == 302
    r = Client().post(reverse("account_reset_password"), {"email": PHONE})
    assert r.status_code == 200  # refused in the form, nothing sent
    assert b"daily limit" in r.content
    assert len(sms_outbox) == 2
    # another number still works
    assert (
        Client().post(reverse("account_reset_password"), {"email": "+8613900139000"}).status_code
        == 302
    )


def test_sms_budget_overall(settings: Any, sms_outbox: list[Any]) -> None:
    settings.SMS_DAILY_BUDGET = 1
    settings.ACCOUNT_RATE_LIMITS = False
    assert signup_phone(Client(), "+8613900139000").status_code == 302
    response = signup_phone(Client(), "+8613700137000")
    assert response.status_code == 200
    assert b"daily limit" in response.content
    assert not get_user_model().objects.filter(phone="+8613700137000").exists()
    assert len(sms_outbox) == 1


def test_country_allowlist(settings: Any, sms_outbox: list[Any]) -> None:
    settings.SMS_ALLOWED_COUNTRIES = ["CN"]
    response = signup_phone(Client(), "+1 202 555 0143")
    assert response.status_code == 200
    assert not get_user_model().objects.filter(phone="+12025550143").exists()
    settings.SMS_ALLOWED_COUNTRIES = ["CN", "+1"]
    assert signup_phone(Client(), "+1 202 555 0143").status_code == 302
    assert sms_outbox[-1]["phone"] == "+12025550143"
