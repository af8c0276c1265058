"""The account page: contact changes by code, preferences, sessions, deletion; socket closing."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import models
from django.test import Client
from django.urls import reverse

from accounts import sms
from accounts.access import aclose_user_sockets, can_chat, close_user_sockets, user_group

pytestmark = pytest.mark.django_db

PW = "a-Long-pass-phrase-42"
PHONE = "+8613800138000"


@pytest.fixture(autouse=True)
def _no_resend_delay(settings: Any) -> None:
    settings.R1CHAT_CODE_RESEND_SECONDS = 0


@pytest.fixture
def sms_outbox() -> Any:
    sms.outbox.clear()
    yield sms.outbox
    sms.outbox.clear()


def code_in(text: str) -> str:
    return re.search(r"\b(\d{6})\b", text).group(1)


@pytest.fixture
def user() -> Any:
    user = get_user_model().objects.create_user(
        username="amy", password=PW, email="amy@example.com", phone=PHONE, phone_verified=True
    )
    EmailAddress.objects.create(user=user, email="amy@example.com", primary=True, verified=True)
    return user


@pytest.fixture
def signed_in(user: Any) -> Client:
    client = Client()
    assert (
        client.post(
            reverse("account_login"), {"login": "amy@example.com", "password": PW}
        ).status_code
        == 302
    )
    return client


class Listener:
    """A test channel in the user's group, as the chat consumer would have."""

    def __init__(self, user_id: int) -> None:
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(user_group(user_id), self.channel)

    def receive(self, timeout: float = 2.0) -> dict[str, Any] | None:
        async def _get() -> dict[str, Any] | None:
            try:
                return await asyncio.wait_for(self.layer.receive(self.channel), timeout)
            except TimeoutError:
                return None

        return async_to_sync(_get)()


def test_account_page_renders_with_stable_ids(signed_in: Client) -> None:
    page = signed_in.get(reverse("accounts:account"))
    assert page.status_code == 200
    for element_id in (
        b'id="change-email"',
        b'id="change-phone"',
        b'id="change-password"',
        b'id="preferences-form"',
        b'id="id_temperature"',
        b'id="sign-out-everywhere"',
        b'id="section-reviews"',
        b'id="delete-account"',
    ):
        assert element_id in page.content, element_id


def test_account_page_needs_sign_in(client: Client) -> None:
    assert client.get(reverse("accounts:account")).status_code == 302


def test_preferences_saved_and_language_cookie(signed_in: Client, user: Any, settings: Any) -> None:
    response = signed_in.post(
        reverse("accounts:account"),
        {
            "language": "zh-hans",
            "theme": "dark",
            "temperature": "0.3",
            "max_tokens": "4096",
            "system_prompt": "Be brief.",
        },
    )
    assert response.status_code == 302
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    user.refresh_from_db()
    assert (user.language, user.theme) == ("zh-hans", "dark")
    assert user.get_chat_defaults() == {
        "temperature": 0.3,
        "max_tokens": 4096,
        "deep_think": False,
        "system_prompt": "Be brief.",
    }
    page = signed_in.get(reverse("accounts:account"))
    assert b'lang="zh-hans"' in page.content
    assert b'data-theme="dark"' in page.content


def test_preferences_validated(signed_in: Client) -> None:
    response = signed_in.post(
        reverse("accounts:account"),
        {"language": "en", "theme": "light", "temperature": "1.5", "max_tokens": "2048"},
    )
    assert response.status_code == 400


def test_defaults_for_a_new_user(user: Any) -> None:
    assert user.get_chat_defaults() == {
        "temperature": 0.6,
        "max_tokens": 2048,
        "deep_think": True,
        "system_prompt": "",
    }


def test_changed_phone_is_reconfirmed(signed_in: Client, user: Any, sms_outbox: list[Any]) -> None:
    response = signed_in.post(reverse("accounts:change_phone"), {"phone": "139 0013 9000"})
    assert response["Location"] == reverse("accounts:confirm_phone")
    user.refresh_from_db()
    assert user.phone == PHONE  # unchanged until the code is entered
    assert sms_outbox[-1]["phone"] == "+8613900139000"
    assert (
        signed_in.post(
            reverse("accounts:confirm_phone"),
            {"code": "000000" if code_in(sms_outbox[-1]["message"]) != "000000" else "111111"},
        ).status_code
        == 400
    )
    signed_in.post(reverse("accounts:confirm_phone"), {"code": code_in(sms_outbox[-1]["message"])})
    user.refresh_from_db()
    assert (user.phone, user.phone_verified) == ("+8613900139000", True)


def test_changed_email_is_reconfirmed(signed_in: Client, user: Any, mailoutbox: list[Any]) -> None:
    signed_in.post(reverse("accounts:change_email"), {"email": "amy@new.example"})
    user.refresh_from_db()
    assert user.email == "amy@example.com"
    assert mailoutbox[-1].to == ["amy@new.example"]
    signed_in.post(reverse("accounts:confirm_email"), {"code": code_in(mailoutbox[-1].body)})
    user.refresh_from_db()
    assert user.email == "amy@new.example"
    assert list(EmailAddress.objects.filter(user=user).values_list("email", "verified")) == [
        ("amy@new.example", True)
    ]
    assert can_chat(user)


def test_change_to_taken_email_reveals_nothing(
    signed_in: Client, user: Any, mailoutbox: list[Any]
) -> None:
    get_user_model().objects.create_user(username="bo", password=PW, email="bo@example.com")
    response = signed_in.post(reverse("accounts:change_email"), {"email": "bo@example.com"})
    assert response["Location"] == reverse("accounts:confirm_email")
    assert not re.search(r"\b\d{6}\b", mailoutbox[-1].body)  # a notice to the owner, no code
    signed_in.post(reverse("accounts:confirm_email"), {"code": "123456"})
    user.refresh_from_db()
    assert user.email == "amy@example.com"


def _conversation_for(user: Any) -> None:
    if apps.is_installed("conversations"):
        Conversation = apps.get_model("conversations", "Conversation")
        Conversation.objects.create(owner=user, title="secret plans")


def _rows_pointing_at(user_id: int) -> dict[str, int]:
    found = {}
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if (
                isinstance(field, models.ForeignKey | models.OneToOneField)
                and field.related_model is get_user_model()
            ):
                count = model.objects.filter(**{field.attname: user_id}).count()
                if count:
                    found[f"{model._meta.label}.{field.name}"] = count
    return found


def test_delete_account_by_password_leaves_no_data(
    signed_in: Client, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _conversation_for(user)
    assert _rows_pointing_at(user.pk)
    listener = Listener(user.pk)
    assert (
        signed_in.post(
            reverse("accounts:delete"), {"password": "wrong", "confirm": "on"}
        ).status_code
        == 400
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("accounts:delete"), {"password": PW, "confirm": "on"})
    assert response["Location"] == reverse("account_login")
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    assert _rows_pointing_at(user.pk) == {}
    assert "_auth_user_id" not in signed_in.session
    assert listener.receive() == {"type": "user.revoked"}


def test_delete_account_by_code(signed_in: Client, user: Any, sms_outbox: list[Any]) -> None:
    signed_in.post(reverse("accounts:delete"), {"action": "send_code"})
    assert sms_outbox[-1]["phone"] == PHONE
    page = signed_in.get(reverse("accounts:delete"))
    assert b'id="id_code"' in page.content
    response = signed_in.post(
        reverse("accounts:delete"), {"code": code_in(sms_outbox[-1]["message"]), "confirm": "on"}
    )
    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=user.pk).exists()


def test_sign_out_closes_sockets(signed_in: Client, user: Any) -> None:
    listener = Listener(user.pk)
    response = signed_in.post(reverse("account_logout"))
    assert response.status_code == 302
    assert listener.receive() == {"type": "user.revoked"}


def test_sign_out_everywhere(
    signed_in: Client, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    other = Client()
    other.post(reverse("account_login"), {"login": PHONE, "password": PW})
    assert other.get(reverse("accounts:account")).status_code == 200
    listener = Listener(user.pk)
    with django_capture_on_commit_callbacks(execute=True):
        signed_in.post(reverse("accounts:sign_out_everywhere"))
    assert listener.receive() == {"type": "user.revoked"}
    assert other.get(reverse("accounts:account")).status_code == 302
    assert signed_in.get(reverse("accounts:account")).status_code == 302


def test_password_change_and_deactivation_close_sockets(
    signed_in: Client, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    listener = Listener(user.pk)
    new = "an0ther-Long-phrase"
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(
            reverse("account_change_password"),
            {"oldpassword": PW, "password1": new, "password2": new},
        )
    assert response.status_code == 302
    assert listener.receive() == {"type": "user.revoked"}
    with django_capture_on_commit_callbacks(execute=True):
        user.refresh_from_db()
        user.is_active = False
        user.save()
    assert listener.receive() == {"type": "user.revoked"}
    assert not can_chat(user)
    # an unrelated save (last_login) sends nothing
    with django_capture_on_commit_callbacks(execute=True):
        user.save(update_fields=["last_login"])
    assert listener.receive(timeout=0.2) is None


def test_close_user_sockets_api(user: Any) -> None:
    listener = Listener(user.pk)
    close_user_sockets(user.pk)
    assert listener.receive() == {"type": "user.revoked"}
    async_to_sync(aclose_user_sockets)(user.pk)
    assert listener.receive() == {"type": "user.revoked"}


def test_first_admin_hint(capsys: Any) -> None:
    from accounts.apps import _hint_first_admin

    _hint_first_admin(apps.get_app_config("accounts"), verbosity=1)
    assert "createsuperuser" in capsys.readouterr().out
    get_user_model().objects.create_superuser("root", "root@example.com", PW)
    _hint_first_admin(apps.get_app_config("accounts"), verbosity=1)
    assert capsys.readouterr().out == ""


def test_superuser_can_chat_without_code() -> None:
    admin = get_user_model().objects.create_superuser("root", "root@example.com", PW)
    assert can_chat(admin)


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_pages_render_in_both_languages(
    language: str, signed_in: Client, sms_outbox: list[Any], mailoutbox: list[Any], settings: Any
) -> None:
    signed_in.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    for name in (
        "accounts:account",
        "accounts:change_email",
        "accounts:change_phone",
        "accounts:delete",
        "account_change_password",
        "account_email",
        "account_logout",
    ):
        response = signed_in.get(reverse(name))
        assert response.status_code == 200, name
        assert f'lang="{language}"'.encode() in response.content, name
    signed_in.post(reverse("accounts:change_phone"), {"phone": "+8613900139000"})
    page = signed_in.get(reverse("accounts:confirm_phone"))
    assert page.status_code == 200 and b'id="resend-code"' in page.content
    anonymous = Client()
    anonymous.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    anonymous.post(reverse("account_request_login_code"), {"method": "phone", "phone": PHONE})
    page = anonymous.get(reverse("account_confirm_login_code"))
    assert page.status_code == 200 and b'id="code-form"' in page.content
    anonymous = Client()
    anonymous.post(reverse("account_reset_password"), {"email": "amy@example.com"})
    page = anonymous.get(reverse("account_confirm_password_reset_code"))
    assert page.status_code == 200 and b'id="code-submit"' in page.content
