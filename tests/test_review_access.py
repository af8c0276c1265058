"""Who reaches the review pages: R1CHAT_REVIEW_ACCESS decides, and everyone else is refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from review.models import ReviewAudit
from review.testing import make_conversation, make_personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


def review_urls(conversation: Any, message: Any) -> list[str]:
    uuid = conversation.uuid
    return [
        reverse("admin:conversations_conversation_changelist"),
        reverse("admin:conversations_conversation_changelist") + "?flagged=queue",
        reverse("admin:conversations_conversation_review", args=[uuid]),
        reverse("admin:conversations_conversation_export_md", args=[uuid]),
        reverse("admin:conversations_conversation_export_json", args=[uuid]),
        reverse("admin:conversations_conversation_change", args=[conversation.pk]),
        reverse("admin:conversations_conversation_history", args=[conversation.pk]),
        reverse("admin:conversations_message_changelist"),
        reverse("admin:conversations_message_change", args=[message.pk]),
        reverse("admin:review_feedback_changelist"),
    ]


def assert_refused(client: Client, urls: list[str], secret: str) -> None:
    for url in urls:
        response = client.get(url)
        assert response.status_code in (302, 403, 404), url
        if response.status_code == 302:
            assert "/admin/login/" in response["Location"], url
        assert secret not in response.content.decode(), url


def test_anonymous_visitor_reaches_no_review_url(people: dict[str, Any]) -> None:
    conversation, _, answer = make_conversation(people["alice"], title="Secret plans")
    assert_refused(Client(), review_urls(conversation, answer), "Secret plans")
    assert not ReviewAudit.objects.exists()


def test_non_staff_user_reaches_no_review_url(people: dict[str, Any]) -> None:
    conversation, _, answer = make_conversation(people["alice"], title="Secret plans")
    client = Client()
    client.force_login(people["bob"])
    assert_refused(client, review_urls(conversation, answer), "Secret plans")
    client.force_login(people["alice"])  # not even the owner, through the admin
    assert_refused(client, review_urls(conversation, answer), "Secret plans")
    assert not ReviewAudit.objects.exists()


@pytest.mark.parametrize("mode", ["superusers", "permission"])
def test_staff_without_the_permission_reaches_no_review_url(
    people: dict[str, Any], settings: Any, mode: str
) -> None:
    settings.R1CHAT_REVIEW_ACCESS = mode
    conversation, _, answer = make_conversation(people["alice"], title="Secret plans")
    client = Client()
    client.force_login(people["carol"])
    assert_refused(client, review_urls(conversation, answer), "Secret plans")
    index = client.get(reverse("admin:index")).content.decode()
    assert "Review queue" not in index
    assert not ReviewAudit.objects.exists()


def test_superusers_mode_refuses_staff_with_the_permission(
    people: dict[str, Any], settings: Any
) -> None:
    settings.R1CHAT_REVIEW_ACCESS = "superusers"
    conversation, _, answer = make_conversation(people["alice"], title="Secret plans")
    client = Client()
    client.force_login(people["rita"])
    assert_refused(client, review_urls(conversation, answer), "Secret plans")
    client.force_login(people["root"])
    review = reverse("admin:conversations_conversation_review", args=[conversation.uuid])
    assert client.get(review).status_code == 200


def test_permission_mode_lets_staff_with_the_permission_review(
    people: dict[str, Any], settings: Any
) -> None:
    settings.R1CHAT_REVIEW_ACCESS = "permission"
    conversation, _, _ = make_conversation(people["alice"], title="Secret plans")
    client = Client()
    client.force_login(people["rita"])
    review = reverse("admin:conversations_conversation_review", args=[conversation.uuid])
    response = client.get(review)
    assert response.status_code == 200
    assert "Secret plans" in response.content.decode()
    assert "Review queue" in client.get(reverse("admin:index")).content.decode()


def test_nobody_mode_refuses_even_superusers(people: dict[str, Any], settings: Any) -> None:
    settings.R1CHAT_REVIEW_ACCESS = "nobody"
    conversation, _, answer = make_conversation(people["alice"], title="Secret plans")
    client = Client()
    client.force_login(people["root"])
    assert_refused(client, review_urls(conversation, answer), "Secret plans")
    assert not ReviewAudit.objects.exists()


def test_an_inactive_superuser_cannot_review(people: dict[str, Any]) -> None:
    from review.access import can_review

    root = people["root"]
    assert can_review(root)
    root.is_active = False
    assert not can_review(root)
