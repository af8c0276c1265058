"""The sidebar's "generating" mark (the list's JSON and HTML, and live frames to every tab of
the user), the message length limit on the socket, and generations whose process died shown
as interrupted within seconds (the liveness marks in the shared cache)."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import r1chat.asgi  # noqa: F401  (Django's logging set up before the tests: see test_chat_consumer)
from conversations.chat.protocol import MAX_CONTENT_CHARS
from conversations.models import Conversation, Message
from conversations.runner import generation
from conversations.simulator import Scenario
from tests.chat_support import (  # noqa: F401 (autouse fixtures: they apply to this module)
    Tab,
    fresh_layer_and_clients,
    generations_end_before_the_database_is_emptied,
    make_backend,
    make_user,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def people(sim):
    # Alice chats in two tabs; Bob, another user, hears nothing of it.
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    await sync_to_async(make_backend)(sim.base_url)
    return alice, bob


def _streaming(conversation: Conversation, beat_ago: float) -> Message:
    question = Message.objects.create(conversation=conversation, role="user", content="q")
    beat = timezone.now() - dt.timedelta(seconds=beat_ago)
    return Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="streaming",
        content="partial answer", created_at=beat, heartbeat_at=beat,
    )  # fmt: skip


# --- the sidebar list -----------------------------------------------------------------------


def test_the_list_marks_conversations_with_an_answer_being_written():
    alice = make_user("alice")
    running = Conversation.objects.create(owner=alice, title="running")
    _streaming(running, beat_ago=1)
    done = Conversation.objects.create(owner=alice, title="done")
    Message.objects.create(conversation=done, role="user", content="q")
    dead = Conversation.objects.create(owner=alice, title="dead")
    _streaming(dead, beat_ago=3600)  # its process died long ago
    client = Client()
    client.force_login(alice)
    items = client.get(reverse("api-conversations")).json()["items"]
    assert {item["title"]: item["generating"] for item in items} == {
        "running": True, "done": False, "dead": False,
    }  # fmt: skip
    page = client.get(reverse("home")).content.decode()
    assert f'data-id="{running.uuid}" data-pinned="false"' in page
    marks = {
        str(c.uuid): f'data-id="{c.uuid}"' in page
        and page.split(f'data-id="{c.uuid}"')[1].split(">")[0]
        for c in (running, done)
    }
    assert 'data-generating="true"' in marks[str(running.uuid)]
    assert 'data-generating="false"' in marks[str(done.uuid)]


# --- live: every tab of the user -----------------------------------------------------------


async def test_every_tab_of_the_user_hears_a_generation_start_and_end(people, sim):
    alice, bob = people
    sim.scenario = Scenario(token_rate=30, reasoning_tokens=10, answer_tokens=10)
    writer = await Tab.open(alice)
    sidebar = await Tab.open(alice)  # another tab, showing no conversation
    stranger = await Tab.open(bob)
    await writer.send({"type": "send", "conversation": None, "content": "hi",
                       "client_id": uuid.uuid4().hex})  # fmt: skip
    conversation = (await writer.until("conversation.created"))["conversation"]["id"]
    started = await sidebar.until("conversation.generating", conversation=conversation)
    assert started["generating"] is True
    ended = await sidebar.until("conversation.generating", conversation=conversation)
    assert ended["generating"] is False
    done = [f for f in writer.frames if f["type"] == "generation.done"]
    assert not done or done[0]["status"] == "complete"
    assert await stranger.ws.receive_nothing(timeout=0.5)
    for tab in (writer, sidebar, stranger):
        await tab.close()


# --- the length limit -------------------------------------------------------------------------


async def test_a_message_over_the_limit_gets_a_clear_error_and_nothing_is_stored(people):
    alice, _bob = people
    tab = await Tab.open(alice)
    client_id = uuid.uuid4().hex
    await tab.send({"type": "send", "conversation": None, "content": "x" * (MAX_CONTENT_CHARS + 1),
                    "client_id": client_id})  # fmt: skip
    error = await tab.until("error")
    assert error["code"] == "too_long"
    assert error["ref"] == client_id  # (the page gives the text back to the message box)
    assert f"{MAX_CONTENT_CHARS:,}".replace(",", "") in error["detail"].replace(",", "")
    assert not await Message.objects.filter(sender=alice).aexists()
    await tab.close()


async def test_a_message_at_the_limit_in_chinese_is_accepted(people, sim):
    alice, _bob = people
    sim.scenario = Scenario(reasoning_tokens=2, answer_tokens=2)
    tab = await Tab.open(alice)
    await tab.send({"type": "send", "conversation": None, "content": "汉" * MAX_CONTENT_CHARS,
                    "client_id": uuid.uuid4().hex})  # fmt: skip
    await tab.until("conversation.created")
    stored = await Message.objects.aget(sender=alice)
    assert len(stored.content) == MAX_CONTENT_CHARS
    await tab.close()


# --- a generation whose process died ----------------------------------------------------------


async def test_a_resubscribing_tab_learns_at_once_that_a_dead_process_s_answer_is_over(people):
    alice, _bob = people
    conversation = await Conversation.objects.acreate(owner=alice, title="orphan")
    # Beat 10 s ago: not stale by the heartbeat rule (20 s), but no process marks it alive.
    message = await sync_to_async(_streaming)(conversation, beat_ago=10)
    tab = await Tab.open(alice)
    asked = time.monotonic()
    await tab.send({"type": "subscribe", "conversation": str(conversation.uuid)})
    # Either the subscribe finds it dead, or this process's sweep (started by the tab's
    # connect) got there first: over within a second either way, and the sidebars are told.
    mark = await tab.until("conversation.generating", conversation=str(conversation.uuid))
    assert mark["generating"] is False
    stored = await Message.objects.aget(pk=message.pk)
    assert time.monotonic() - asked < 1.0
    assert stored.status == "interrupted" and stored.content == "partial answer"
    assert stored.error_code == "interrupted"
    await tab.close()


async def test_the_sweep_interrupts_unmarked_generations_and_spares_marked_ones(people):
    alice, _bob = people
    orphan_chat = await Conversation.objects.acreate(owner=alice, title="orphan")
    orphan = await sync_to_async(_streaming)(orphan_chat, beat_ago=10)
    alive_chat = await Conversation.objects.acreate(owner=alice, title="alive elsewhere")
    alive = await sync_to_async(_streaming)(alive_chat, beat_ago=10)
    fresh_chat = await Conversation.objects.acreate(owner=alice, title="just started")
    fresh = await sync_to_async(_streaming)(fresh_chat, beat_ago=0)
    await generation.mark_alive([str(alive.uuid)])  # (another process runs it)
    tab = await Tab.open(alice)
    try:
        assert await generation.sweep_dead() >= 0  # (the tab's own maintenance may be first)
        statuses = {
            m.pk: m.status
            async for m in Message.objects.filter(pk__in=[orphan.pk, alive.pk, fresh.pk])
        }
        assert statuses == {orphan.pk: "interrupted", alive.pk: "streaming", fresh.pk: "streaming"}
        # The sidebar mark goes in every tab.
        gone = await tab.until("conversation.generating", conversation=str(orphan_chat.uuid))
        assert gone["generating"] is False
    finally:
        await cache.adelete(f"r1chat:live:{alive.uuid}")
        await tab.close()
