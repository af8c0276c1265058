"""Sign-in and sign-up friction: one field for a code, per-purpose resend delays answered on
the form, no stale banner, the site name in mails, code inputs, invitations and approvals."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts import sms
from accounts.models import Invitation

pytestmark = pytest.mark.django_db

PW = "a-Long-pass-phrase-42"
PHONE = "+8613800138000"


@pytest.fixture
def sms_outbox() -> Any:
    sms.outbox.clear()
    yield sms.outbox
    sms.outbox.clear()


@pytest.fixture(autouse=True)
def _resend_delay(settings: Any) -> None:
    settings.R1CHAT_CODE_RESEND_SECONDS = 60


def code_in(text: str) -> str:
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)


def make_user(email: str | None = None, phone: str | None = None, **extra: Any) -> Any:
    username = (email or phone or "u").replace("@", "_").replace("+", "p")[:30]
    user = get_user_model().objects.create_user(
        username=username, password=PW, email=email, phone=phone, phone_verified=bool(phone),
        **extra,
    )  # fmt: skip
    if email:
        EmailAddress.objects.create(user=user, email=email, primary=True, verified=True)
    return user


def session_user(client: Client) -> Any:
    user_id = client.session.get("_auth_user_id")
    return get_user_model().objects.get(pk=user_id) if user_id else None


# --- one field for a sign-in code ----------------------------------------------------------
def test_the_code_form_has_one_field_for_an_email_or_a_phone(client: Client) -> None:
    html = client.get(reverse("account_request_login_code")).content.decode()
    assert 'name="login"' in html
    assert 'name="method"' not in html and 'name="phone"' not in html
    assert 'name="email"' not in html
    field = re.search(r"<input[^>]*name=\"login\"[^>]*>", html).group(0)
    assert "autofocus" in field


def test_an_email_address_in_the_one_field_gets_a_code_by_mail(
    client: Client, mailoutbox: list[Any]
) -> None:
    user = make_user(email="eve@example.com")
    response = client.post(reverse("account_request_login_code"), {"login": "Eve@Example.com"})
    assert response["Location"] == reverse("account_confirm_login_code")
    assert mailoutbox[-1].to == ["eve@example.com"]
    client.post(reverse("account_confirm_login_code"), {"code": code_in(mailoutbox[-1].body)})
    assert session_user(client) == user


def test_a_phone_number_in_the_one_field_gets_a_code_by_sms(
    client: Client, sms_outbox: list[Any]
) -> None:
    user = make_user(phone=PHONE)
    response = client.post(reverse("account_request_login_code"), {"login": "138 0013 8000"})
    assert response["Location"] == reverse("account_confirm_login_code")
    assert sms_outbox[-1]["phone"] == PHONE
    client.post(reverse("account_confirm_login_code"), {"code": code_in(sms_outbox[-1]["message"])})
    assert session_user(client) == user


def test_the_one_field_says_what_is_wrong(client: Client) -> None:
    empty = client.post(reverse("account_request_login_code"), {"login": ""})
    assert empty.status_code == 200
    assert b"Enter your email address or phone number." in empty.content
    bad = client.post(reverse("account_request_login_code"), {"login": "not a number"})
    assert bad.status_code == 200 and b'class="auth-error"' in bad.content


# --- resend delays per purpose, answered on the form ----------------------------------------
def test_signing_in_by_code_right_after_signing_up_sends_the_code(
    client: Client, mailoutbox: list[Any]
) -> None:
    client.post(
        reverse("account_signup"),
        {"method": "email", "email": "new@example.com", "password1": PW, "password2": PW},
    )
    client.post(reverse("accounts:verify"), {"code": code_in(mailoutbox[-1].body)})
    assert session_user(client) is not None
    client.post(reverse("account_logout"))
    response = client.post(
        reverse("account_request_login_code"), {"method": "email", "email": "new@example.com"}
    )
    assert response.status_code == 302, response.content[:300]
    assert response["Location"] == reverse("account_confirm_login_code")
    assert len(mailoutbox) == 2
    client.post(reverse("account_confirm_login_code"), {"code": code_in(mailoutbox[-1].body)})
    assert session_user(client).email == "new@example.com"


def test_asking_twice_shows_a_countdown_on_the_form(client: Client, mailoutbox: list[Any]) -> None:
    make_user(email="ann@example.com")
    client.post(reverse("account_request_login_code"), {"login": "ann@example.com"})
    again = Client().post(reverse("account_request_login_code"), {"login": "ann@example.com"})
    assert again.status_code == 200
    html = again.content.decode()
    button = re.search(r'<button[^>]*id="request-code-submit"[^>]*>', html).group(0)
    seconds = int(re.search(r'data-countdown="(\d+)"', button).group(1))
    assert 55 <= seconds <= 60
    assert 'data-wait-label="Resend code in %s s"' in button
    assert "You can ask for another in" in html
    assert len(mailoutbox) == 1
    # the same for a reset
    Client().post(reverse("account_reset_password"), {"email": "ann@example.com"})
    reset = Client().post(reverse("account_reset_password"), {"email": "ann@example.com"})
    assert reset.status_code == 200
    assert re.search(rb'id="reset-submit" data-countdown="(5\d|60)"', reset.content)
    assert len(mailoutbox) == 2


def test_the_code_page_counts_down_the_sign_in_code_only(
    client: Client, mailoutbox: list[Any]
) -> None:
    make_user(email="bea@example.com")
    Client().post(reverse("account_reset_password"), {"email": "bea@example.com"})
    client.post(reverse("account_request_login_code"), {"login": "bea@example.com"})
    page = client.get(reverse("account_confirm_login_code")).content.decode()
    assert re.search(r'id="resend-code" data-countdown="(5\d|60)"', page)


def test_abuse_past_the_form_gets_a_429_page_in_the_sites_language(
    settings: Any, mailoutbox: list[Any]
) -> None:
    settings.R1CHAT_CODE_RESEND_SECONDS = 0
    make_user(email="cat@example.com")
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-CN")
    statuses = [
        client.post(reverse("account_reset_password"), {"email": "cat@example.com"}).status_code
        for _ in range(6)
    ]
    assert statuses[:5] == [302] * 5
    response = client.post(reverse("account_reset_password"), {"email": "cat@example.com"})
    assert response.status_code == 429
    html = response.content.decode()
    assert 'id="too-many"' in html and 'class="auth-card"' in html
    assert '<html lang="zh-hans"' in html and "Too many" not in html


# --- the waiting room, mails, code inputs ---------------------------------------------------
def test_the_waiting_page_shows_no_stale_signed_in_banner(
    client: Client, settings: Any, mailoutbox: list[Any]
) -> None:
    settings.R1CHAT_SIGNUP_MODE = "approval"
    client.post(
        reverse("account_signup"),
        {"method": "email", "email": "wait@example.com", "password1": PW, "password2": PW},
    )
    response = client.post(
        reverse("accounts:verify"), {"code": code_in(mailoutbox[-1].body)}, follow=True
    )
    html = response.content.decode()
    assert 'id="waiting-title"' in html
    assert "Successfully signed in" not in html and 'id="auth-messages"' not in html
    # nor later, on the account page
    assert "Successfully signed in" not in client.get(reverse("accounts:account")).content.decode()


def test_mails_are_signed_with_the_configured_site_name(
    settings: Any, mailoutbox: list[Any]
) -> None:
    make_user(email="dan@example.com")
    client = Client(HTTP_HOST="127.0.0.1")
    client.post(reverse("account_request_login_code"), {"login": "dan@example.com"})
    assert "Hello from r1chat!" in mailoutbox[-1].body
    assert mailoutbox[-1].subject.startswith("[r1chat] ")
    settings.R1CHAT_SITE_NAME = "Acme Chat"
    client.post(
        reverse("account_signup"),
        {"method": "email", "email": "eve@example.com", "password1": PW, "password2": PW},
    )
    message = mailoutbox[-1]
    assert message.body.startswith("Hello from Acme Chat!")
    assert "Hello from 127.0.0.1" not in message.body
    assert message.subject.startswith("[Acme Chat] ")


@pytest.mark.parametrize("flow", ["signup", "login", "reset"])
def test_code_inputs_bring_up_the_number_pad_and_take_the_focus(
    client: Client, flow: str, mailoutbox: list[Any]
) -> None:
    make_user(email="fay@example.com")
    if flow == "signup":
        client.post(
            reverse("account_signup"),
            {"method": "email", "email": "gus@example.com", "password1": PW, "password2": PW},
        )
        url = reverse("accounts:verify")
    elif flow == "login":
        client.post(reverse("account_request_login_code"), {"login": "fay@example.com"})
        url = reverse("account_confirm_login_code")
    else:
        client.post(reverse("account_reset_password"), {"email": "fay@example.com"})
        url = reverse("account_confirm_password_reset_code")
    html = client.get(url).content.decode()
    field = re.search(r'<input[^>]*name="code"[^>]*>', html).group(0)
    assert 'inputmode="numeric"' in field
    assert 'autocomplete="one-time-code"' in field
    assert "autofocus" in field


# --- invitations and approvals ---------------------------------------------------------------
@pytest.fixture
def root(client: Client) -> Client:
    admin = get_user_model().objects.create_superuser("root", "root@example.com", PW)
    client.force_login(admin)
    return client


def test_saving_an_invitation_keeps_its_token(root: Client) -> None:
    add = root.get(reverse("admin:accounts_invitation_add")).content.decode()
    assert "field-token" not in add  # no token that saving would replace
    response = root.post(
        reverse("admin:accounts_invitation_add"),
        {"note": "for Ivy", "expires_at_0": "2030-01-01", "expires_at_1": "10:00:00"},
        follow=True,
    )
    invitation = Invitation.objects.get()
    assert reverse("accounts:invite", args=[invitation.token]) in response.content.decode()
    change = reverse("admin:accounts_invitation_change", args=[invitation.pk])
    assert invitation.token in root.get(change).content.decode()
    root.post(change, {"note": "for Ivy L.", "expires_at_0": "2030-02-01", "expires_at_1": "9:00"})
    again = Invitation.objects.get()
    assert again.note == "for Ivy L." and again.token == invitation.token


def _approve(root: Client, *users: Any) -> Any:
    return root.post(
        reverse("admin:accounts_user_changelist"),
        {"action": "approve", "_selected_action": [u.pk for u in users]},
    )


def test_approval_emails_the_person_in_their_language(
    root: Client,
    settings: Any,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.R1CHAT_SIGNUP_MODE = "approval"
    waiting = make_user(email="hua@example.com", approved=False, language="zh-hans")
    with django_capture_on_commit_callbacks(execute=True):
        _approve(root, waiting)
    waiting.refresh_from_db()
    assert waiting.approved
    assert [m.to for m in mailoutbox] == [["hua@example.com"]]
    assert "批准" in mailoutbox[0].subject
    assert "/accounts/login/" in mailoutbox[0].body
    # approving again tells nobody
    with django_capture_on_commit_callbacks(execute=True):
        _approve(root, waiting)
    assert len(mailoutbox) == 1


def test_approval_texts_a_person_with_only_a_phone(
    root: Client, settings: Any, sms_outbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    settings.R1CHAT_SIGNUP_MODE = "approval"
    waiting = make_user(phone=PHONE, approved=False)
    with django_capture_on_commit_callbacks(execute=True):
        _approve(root, waiting)
    assert [m["phone"] for m in sms_outbox] == [PHONE]
    assert "approved" in sms_outbox[0]["message"]


def test_ticking_approved_on_the_users_page_emails_them(
    root: Client, settings: Any, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    settings.R1CHAT_SIGNUP_MODE = "approval"
    waiting = make_user(email="ida@example.com", approved=False)
    joined = waiting.date_joined
    form = {
        "username": waiting.username,
        "email": waiting.email,
        "is_active": "on",
        "approved": "on",
        "theme": "system",
        "chat_defaults": "{}",
        "date_joined_0": joined.strftime("%Y-%m-%d"),
        "date_joined_1": joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": joined.strftime("%H:%M:%S"),
    }
    change = reverse("admin:accounts_user_change", args=[waiting.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = root.post(change, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert [m.to for m in mailoutbox] == [["ida@example.com"]]
    assert "http://testserver/accounts/login/" in mailoutbox[0].body
    with django_capture_on_commit_callbacks(execute=True):
        root.post(change, form)  # saved again, still approved: no second mail
    assert len(mailoutbox) == 1


def test_the_admin_home_shows_how_many_people_wait(root: Client, settings: Any) -> None:
    settings.R1CHAT_SIGNUP_MODE = "approval"
    make_user(email="w1@example.com", approved=False)
    make_user(email="w2@example.com", approved=False)
    make_user(email="ok@example.com")
    html = root.get(reverse("admin:index")).content.decode()
    link = re.search(r'<a href="([^"]+)" id="waiting-link">([^<]+)</a>', html)
    assert link and link.group(2) == "2 people waiting for approval"
    listing = root.get(link.group(1).replace("&amp;", "&")).content.decode()
    assert "w1@example.com" in listing and "w2@example.com" in listing
    assert "ok@example.com" not in listing
    settings.R1CHAT_SIGNUP_MODE = "open"
    assert 'id="waiting-for-approval"' not in root.get(reverse("admin:index")).content.decode()
