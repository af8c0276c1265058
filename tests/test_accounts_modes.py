"""Sign-up modes (open, approval, invite, closed) and the allowed email domains."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory
from django.urls import reverse

from accounts.access import can_chat, chat_redirect_url
from accounts.admin import UserAdmin
from accounts.models import Invitation

pytestmark = pytest.mark.django_db

PW = "a-Long-pass-phrase-42"


@pytest.fixture(autouse=True)
def _no_resend_delay(settings: Any) -> None:
    settings.R1CHAT_CODE_RESEND_SECONDS = 0


def signup_and_confirm(client: Client, email: str, mailoutbox: list[Any]) -> Any:
    response = client.post(
        reverse("account_signup"),
        {"method": "email", "email": email, "password1": PW, "password2": PW},
    )
    if response.status_code != 302 or response["Location"] != reverse("accounts:verify"):
        return response
    code = re.search(r"\b(\d{6})\b", mailoutbox[-1].body).group(1)
    return client.post(reverse("accounts:verify"), {"code": code})


def test_open_mode(client: Client, settings: Any, mailoutbox: list[Any]) -> None:
    settings.R1CHAT_SIGNUP_MODE = "open"
    response = signup_and_confirm(client, "open@example.com", mailoutbox)
    assert response["Location"] == reverse("home")
    assert can_chat(get_user_model().objects.get(email="open@example.com"))


def test_approval_mode_waits_for_admin(
    client: Client, settings: Any, mailoutbox: list[Any]
) -> None:
    settings.R1CHAT_SIGNUP_MODE = "approval"
    response = signup_and_confirm(client, "wait@example.com", mailoutbox)
    assert response["Location"] == reverse("accounts:waiting")
    user = get_user_model().objects.get(email="wait@example.com")
    assert not user.approved and not can_chat(user)
    assert chat_redirect_url(user) == reverse("accounts:waiting")
    page = client.get(reverse("accounts:waiting"))
    assert page.status_code == 200 and b'id="waiting-title"' in page.content
    # the admin approves with the action
    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", PW)
    request = RequestFactory().post("/admin/accounts/user/")
    request.user = admin_user
    request._messages = type("M", (), {"add": lambda *a, **k: None})()
    UserAdmin(get_user_model(), site).approve(request, get_user_model().objects.filter(pk=user.pk))
    user.refresh_from_db()
    assert user.approved and can_chat(user)
    assert client.get(reverse("accounts:waiting"))["Location"] == reverse("home")


def test_invite_mode(settings: Any, mailoutbox: list[Any]) -> None:
    settings.R1CHAT_SIGNUP_MODE = "invite"
    stranger = Client()
    page = stranger.get(reverse("account_signup"))
    assert b'id="signup-closed"' in page.content
    assert b"invitation" in page.content
    signup_and_confirm(stranger, "stranger@example.com", mailoutbox)
    assert not get_user_model().objects.filter(email="stranger@example.com").exists()

    invitation = Invitation.objects.create(note="for Ivy")
    guest = Client()
    response = guest.get(reverse("accounts:invite", args=[invitation.token]))
    assert response["Location"] == reverse("account_signup")
    assert b'id="signup-form"' in guest.get(reverse("account_signup")).content
    signup_and_confirm(guest, "ivy@example.com", mailoutbox)
    ivy = get_user_model().objects.get(email="ivy@example.com")
    assert can_chat(ivy)
    invitation.refresh_from_db()
    assert invitation.used_by == ivy and invitation.used_at is not None
    # used once: the link is dead now
    again = Client().get(reverse("accounts:invite", args=[invitation.token]))
    assert again.status_code == 404


def test_expired_invitation(settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    settings.R1CHAT_SIGNUP_MODE = "invite"
    invitation = Invitation.objects.create(expires_at=timezone.now() - timedelta(minutes=1))
    assert Client().get(reverse("accounts:invite", args=[invitation.token])).status_code == 404


def test_closed_mode(client: Client, settings: Any, mailoutbox: list[Any]) -> None:
    settings.R1CHAT_SIGNUP_MODE = "closed"
    assert b'id="signup-closed"' in client.get(reverse("account_signup")).content
    signup_and_confirm(client, "nope@example.com", mailoutbox)
    assert not get_user_model().objects.filter(email="nope@example.com").exists()
    assert mailoutbox == []


def test_unknown_mode_is_closed(client: Client, settings: Any) -> None:
    settings.R1CHAT_SIGNUP_MODE = "opne"
    assert b'id="signup-closed"' in client.get(reverse("account_signup")).content


def test_allowed_email_domains(settings: Any, mailoutbox: list[Any]) -> None:
    settings.R1CHAT_ALLOWED_EMAIL_DOMAINS = ["corp.example"]
    response = signup_and_confirm(Client(), "me@gmail.com", mailoutbox)
    assert response.status_code == 200 and b"@corp.example" in response.content
    assert not get_user_model().objects.filter(email="me@gmail.com").exists()
    response = Client().post(
        reverse("account_signup"),
        {"method": "phone", "phone": "+8613800138000", "password1": PW, "password2": PW},
    )
    assert response.status_code == 200
    assert not get_user_model().objects.filter(phone="+8613800138000").exists()
    signup_and_confirm(Client(), "me@Corp.Example", mailoutbox)
    assert can_chat(get_user_model().objects.get(email="me@corp.example"))


def test_signup_pages_render(client: Client) -> None:
    for name in (
        "account_signup",
        "account_login",
        "account_request_login_code",
        "account_reset_password",
    ):
        response = client.get(reverse(name))
        assert response.status_code == 200, name
        assert b"auth.css" in response.content
        assert b"<script>" not in response.content  # CSP: no inline scripts
    signup = client.get(reverse("account_signup")).content
    for element_id in (
        b'id="method-email"',
        b'id="method-phone"',
        b'id="id_email"',
        b'id="id_phone"',
        b'id="signup-submit"',
    ):
        assert element_id in signup
