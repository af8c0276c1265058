"""Deactivating users many at once closes their sockets and stops their answers, like saving one.

Through the real ASGI application (channels' WebsocketCommunicator) and the simulator: a user
with an open tab and an answer streaming is deactivated by a queryset update, bulk_update, or
the admin's bulk action; the tab is closed and the answer ends `stopped`. Another user's tab and
answer go on.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from conversations.models import Message
from conversations.simulator import Scenario
from tests.chat_support import (  # noqa: F401 (autouse fixtures: they apply to this module)
    Tab,
    fresh_layer_and_clients,
    generations_end_before_the_database_is_emptied,
    make_backend,
    make_user,
)

pytestmark = pytest.mark.django_db(transaction=True)

CLOSE_REVOKED = 4403


@pytest.fixture
def sim(simulator):
    simulator.reset()
    simulator.scenario = Scenario(token_rate=20)  # a long answer: still streaming when it counts
    yield simulator
    simulator.reset()


async def _start_answer(tab: Tab) -> str:
    frame = {"type": "send", "conversation": None, "content": "Explain E = mc².",
             "client_id": uuid.uuid4().hex}  # fmt: skip
    await tab.send(frame)
    await tab.until("message.created")
    reply = await tab.until("message.created")
    await tab.until("generation.delta", message=reply["message"]["id"])
    return reply["message"]["id"]


def _deactivate(way: str, user_ids: list[int]) -> None:
    User = get_user_model()
    if way == "queryset_update":
        User.objects.filter(pk__in=user_ids).update(is_active=False)
    elif way == "single_saves":
        for user in User.objects.filter(pk__in=user_ids):
            user.is_active = False
            user.save()
    elif way == "bulk_update":
        users = list(User.objects.filter(pk__in=user_ids))
        for user in users:
            user.is_active = False
        User.objects.bulk_update(users, ["is_active"])
    else:  # the admin's bulk action
        root = User.objects.create_superuser("root", "root@example.com", None)
        client = Client()
        client.force_login(root)
        response = client.post(
            reverse("admin:accounts_user_changelist"),
            {"action": "deactivate", "_selected_action": [str(pk) for pk in user_ids]},
        )
        assert response.status_code == 302


async def _closed(tab: Tab, timeout: float = 5.0) -> int | None:
    """The close code once the server closes the socket (frames before it are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        output = await tab.ws.receive_output(timeout=deadline - loop.time())
        if output["type"] == "websocket.close":
            return output.get("code")
    return None


@pytest.mark.parametrize("way", ["single_saves", "queryset_update", "bulk_update", "admin_action"])
async def test_deactivating_many_closes_their_sockets_and_stops_their_answers(
    sim: Any, way: str
) -> None:
    alice = await sync_to_async(make_user)("alice", password=None)
    carl = await sync_to_async(make_user)("carl", password=None)
    bob = await sync_to_async(make_user)("bob", password=None)
    await sync_to_async(make_backend)(sim.base_url)
    tabs = {name: await Tab.open(user) for name, user in [("alice", alice), ("carl", carl),
                                                          ("bob", bob)]}  # fmt: skip
    answers = {name: await _start_answer(tab) for name, tab in tabs.items()}

    await sync_to_async(_deactivate)(way, [alice.pk, carl.pk])

    for name in ("alice", "carl"):
        assert await _closed(tabs[name]) == CLOSE_REVOKED, name
    for name in ("alice", "carl"):
        for _ in range(100):
            message = await Message.objects.aget(uuid=answers[name])
            if message.status != Message.Status.STREAMING:
                break
            await asyncio.sleep(0.05)
        assert message.status == Message.Status.STOPPED, name
    # Bob was not deactivated: his tab and answer go on.
    await tabs["bob"].until("generation.delta", message=answers["bob"])
    bob_answer = await Message.objects.aget(uuid=answers["bob"])
    assert bob_answer.status == Message.Status.STREAMING
    await tabs["bob"].send({"type": "stop", "message": answers["bob"]})
    await tabs["bob"].until("generation.done", message=answers["bob"])
    await tabs["bob"].close()


async def test_an_update_of_other_fields_closes_nothing(sim: Any) -> None:
    alice = await sync_to_async(make_user)("alice", password=None)
    await sync_to_async(make_backend)(sim.base_url)
    tab = await Tab.open(alice)
    answer = await _start_answer(tab)
    await sync_to_async(
        lambda: get_user_model().objects.filter(pk=alice.pk).update(first_name="Alice")
    )()
    await tab.until("generation.delta", message=answer)  # still open and streaming
    await tab.send({"type": "stop", "message": answer})
    await tab.until("generation.done", message=answer)
    await tab.close()
