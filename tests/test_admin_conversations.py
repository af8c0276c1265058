"""The conversations changelist: columns, filters and search for reviewers."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation, Message
from review.models import ReviewAudit
from review.testing import add_answer, make_conversation, make_personas

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:conversations_conversation_changelist"


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


@pytest.fixture
def root(people: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(people["root"])
    return client


def listed(client: Client, query: str = "") -> str:
    response = client.get(reverse(CHANGELIST) + query)
    assert response.status_code == 200
    return response.content.decode()


def test_columns_show_owner_models_counts_tokens_and_status(
    people: dict[str, Any], root: Client
) -> None:
    conversation, asked, _ = make_conversation(
        people["alice"], title="Columns", usage={"prompt_tokens": 100, "completion_tokens": 23}
    )
    failed = add_answer(
        asked, "", model="qwq:32b", usage={"prompt_tokens": 7}, status=Message.Status.ERROR
    )
    conversation.current_leaf = failed
    conversation.save(update_fields=["current_leaf"])
    html = listed(root)
    assert "Columns" in html
    assert "alice@example.com" in html
    assert "deepseek-v4-flash, qwq:32b" in html
    assert ">3<" in html  # messages
    assert "130" in html  # tokens: 100 + 23 + 7
    assert "error" in html  # status of the visible answer
    assert reverse("admin:conversations_conversation_review", args=[conversation.uuid]) in html
    assert not ReviewAudit.objects.exists()


def test_search_covers_titles_and_message_text(people: dict[str, Any], root: Client) -> None:
    make_conversation(people["alice"], title="Cooking", answer="Use saffron sparingly")
    make_conversation(people["bob"], title="Maths", answer="Primes are infinite")
    html = listed(root, "?q=saffron")
    assert "Cooking" in html and "Maths" not in html
    html = listed(root, "?q=Maths")
    assert "Maths" in html and "Cooking" not in html


def test_filters_by_owner_model_backend_status_and_date(
    people: dict[str, Any], root: Client
) -> None:
    alice_conv, _, _ = make_conversation(people["alice"], title="Alpha", model="deepseek-r1:8b")
    make_conversation(people["bob"], title="Bravo", status=Message.Status.STOPPED)
    old, _, _ = make_conversation(people["bob"], title="Charlie")
    Conversation.objects.filter(pk=old.pk).update(
        updated_at=timezone.now() - dt.timedelta(days=400)
    )

    html = listed(root, f"?owner__id__exact={people['alice'].pk}")
    assert "Alpha" in html and "Bravo" not in html
    html = listed(root, "?model=deepseek-r1:8b")
    assert "Alpha" in html and "Bravo" not in html
    html = listed(root, "?backend=Simulator")
    assert "Alpha" in html and "Bravo" in html
    html = listed(root, "?status=stopped")
    assert "Bravo" in html and "Alpha" not in html
    since = urlencode({"updated_at__gte": str(timezone.now() - dt.timedelta(days=7))})
    html = listed(root, f"?{since}")
    assert "Alpha" in html and "Charlie" not in html
    assert alice_conv.title == "Alpha"


def test_reviewers_cannot_add_edit_or_delete_conversations(
    people: dict[str, Any], root: Client
) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    assert root.get(reverse("admin:conversations_conversation_add")).status_code == 403
    delete = reverse("admin:conversations_conversation_delete", args=[conversation.pk])
    assert root.post(delete, {"post": "yes"}).status_code == 403
    assert Conversation.objects.filter(pk=conversation.pk).exists()


def test_the_messages_list_shows_no_text_and_links_to_the_review(
    people: dict[str, Any], root: Client
) -> None:
    conversation, _, answer = make_conversation(people["alice"], answer="Private words here")
    response = root.get(reverse("admin:conversations_message_changelist"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Private words here" not in html
    assert f"#m-{answer.uuid}" in html
    change = reverse("admin:conversations_message_change", args=[answer.pk])
    response = root.get(change)
    assert response.status_code == 302
    assert response["Location"].endswith(f"/review/{conversation.uuid}/#m-{answer.uuid}")
