"""Team administration of users: deactivation closes sockets; daily quotas set in the admin."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import Client
from django.urls import reverse

from accounts.access import user_group
from review.models import UsageRecord, UserQuota
from review.quota import quota_error
from review.testing import make_conversation, make_personas
from review.usage import record_usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


@pytest.fixture
def root(people: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(people["root"])
    return client


def user_form(user: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "username": user.username,
        "email": user.email or "",
        "phone": "",
        "first_name": "",
        "last_name": "",
        "is_active": "on" if user.is_active else "",
        "approved": "on",
        "language": "",
        "theme": "system",
        "chat_defaults": "{}",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def test_deactivating_a_user_in_the_admin_closes_their_sockets(
    people: dict[str, Any], root: Client, django_capture_on_commit_callbacks: Any
) -> None:
    alice = people["alice"]
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(user_group(alice.pk), channel)

    change = reverse("admin:accounts_user_change", args=[alice.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = root.post(change, user_form(alice, is_active=""))
    assert response.status_code == 302, response.content.decode()[:3000]
    alice.refresh_from_db()
    assert not alice.is_active
    assert async_to_sync(layer.receive)(channel) == {"type": "user.revoked"}


def test_a_daily_quota_set_in_the_admin_applies_at_once(
    people: dict[str, Any], root: Client
) -> None:
    alice = people["alice"]
    _, _, answer = make_conversation(alice, usage={"prompt_tokens": 300, "completion_tokens": 0})
    record_usage(answer)
    assert quota_error(alice.pk) is None
    response = root.post(
        reverse("admin:review_userquota_add"),
        {"user": alice.pk, "daily_tokens": "250", "note": "trial account"},
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert UserQuota.objects.get(user=alice).daily_tokens == 250
    assert quota_error(alice.pk) == "quota"
    html = root.get(reverse("admin:review_userquota_changelist")).content.decode()
    assert '<td class="field-used_today">300</td>' in html
    assert '<td class="field-effective_quota">250</td>' in html
    assert UsageRecord.objects.count() == 1
