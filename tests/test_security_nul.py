"""U+0000 in text: replaced with U+FFFD on its way to the database (r1chat.text), nothing else.

PostgreSQL refuses NUL in text and jsonb (the whole statement fails), so before this a user's
message with one made the conversation vanish, a rename returned 500, and so did a search. Run
on SQLite and on PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation, Message
from r1chat.text import clean_json, clean_text
from review.models import Feedback
from tests.chat_support import Tab, make_backend, make_user
from tests.views_support import conversation

NUL, REPLACEMENT = "\x00", "\ufffd"


def test_clean_text_replaces_nul_and_nothing_else() -> None:
    assert clean_text("a\x00b\x00") == "a\ufffdb\ufffd"
    text = "naïve 中文 \t\r\n\x01\x7f 😀 \ufffd"
    assert clean_text(text) is text
    assert clean_text(None) is None
    assert clean_json({"k\x00": ["v\x00", 1, None, {"x": "\x00"}]}) == {
        "k\ufffd": ["v\ufffd", 1, None, {"x": "\ufffd"}]
    }


# --- every way text reaches the database ---------------------------------------------------------


@pytest.mark.django_db
def test_saves_updates_and_bulk_creates_are_cleaned() -> None:
    alice = make_user("alice", password=None)
    conv = Conversation.objects.create(
        owner=alice, title="t\x00", settings={"system_prompt": "be\x00brief"}
    )
    message = Message.objects.create(
        conversation=conv, role="user", content="q\x00", reasoning="r\x00", usage={"n\x00": 1}
    )
    Message.objects.bulk_create(
        [Message(conversation=conv, role="assistant", content="bulk\x00", parent=message)]
    )
    Conversation.objects.filter(pk=conv.pk).update(title="u\x00")
    conv.refresh_from_db()
    message.refresh_from_db()
    assert conv.title == "u\ufffd"
    assert conv.settings == {"system_prompt": "be\ufffdbrief"}
    assert (message.content, message.reasoning) == ("q\ufffd", "r\ufffd")
    assert message.usage == {"n\ufffd": 1}
    assert Message.objects.filter(content="bulk\ufffd").exists()
    # An exact lookup finds the row by the text as written.
    assert Message.objects.filter(content="q\x00").get() == message
    Feedback.objects.create(user=alice, message=message, rating="down", reason="bad\x00")
    assert Feedback.objects.get().reason == "bad\ufffd"


# --- through the HTTP views ----------------------------------------------------------------------


@pytest.fixture
def alice_client(db: Any) -> tuple[Any, Client]:
    alice = make_user("alice")
    client = Client()
    client.force_login(alice)
    return alice, client


def test_a_rename_with_nul_is_saved_cleaned(alice_client: tuple[Any, Client]) -> None:
    alice, client = alice_client
    conv = conversation(alice, "Old")
    response = client.post(
        reverse("conversation-rename", args=[conv.uuid]),
        '{"title": "New\\u0000name"}',
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["conversation"]["title"] == "New\ufffdname"
    conv.refresh_from_db()
    assert conv.title == "New\ufffdname"


def test_a_search_with_nul_answers(alice_client: tuple[Any, Client]) -> None:
    alice, client = alice_client
    conversation(alice, "Odd \ufffd title")
    conversation(alice, "Plain")
    response = client.get(reverse("api-search"), {"q": "\x00"})
    assert response.status_code == 200
    # The search looks for what the database holds in its place.
    assert [item["title"] for item in response.json()["results"]] == ["Odd \ufffd title"]


@pytest.mark.django_db
def test_the_admin_search_with_nul_answers(admin_client: Client) -> None:
    for name in ("conversation", "message", "backend"):
        url = reverse(f"admin:conversations_{name}_changelist")
        assert admin_client.get(url, {"q": "a\x00b"}).status_code == 200, name
    url = reverse("admin:accounts_user_changelist")
    assert admin_client.get(url, {"q": "a\x00b"}).status_code == 200


# --- through the chat socket ---------------------------------------------------------------------


@pytest.fixture
def _fresh_layer_and_clients():
    from channels.layers import channel_layers

    from conversations import backends

    channel_layers.backends.clear()
    backends._backends.clear()
    yield
    channel_layers.backends.clear()
    backends._backends.clear()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_fresh_layer_and_clients")
async def test_a_message_with_nul_is_kept_and_answered(simulator: Any) -> None:
    simulator.reset()
    user = await sync_to_async(make_user)("alice", password=None)
    await sync_to_async(make_backend)(simulator.base_url)
    tab = await Tab.open(user)
    await tab.send({"type": "send", "conversation": None, "content": "Is 91\x00 prime?",
                    "client_id": uuid.uuid4().hex})  # fmt: skip
    created = await tab.until("conversation.created")
    shown = await tab.until("message.created")
    assert shown["message"]["content"] == "Is 91\ufffd prime?"  # what every tab shows: as stored
    reply = await tab.until("message.created")
    done = await tab.until("generation.done", message=reply["message"]["id"])
    assert done["status"] == "complete"
    await tab.close()
    conv = await Conversation.objects.aget(uuid=created["conversation"]["id"])
    question = await Message.objects.aget(conversation=conv, role="user")
    assert question.content == "Is 91\ufffd prime?"
    assert NUL not in conv.title
    answer = await Message.objects.aget(uuid=reply["message"]["id"])
    assert answer.status == "complete" and answer.content
    simulator.reset()
