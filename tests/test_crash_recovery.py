"""A server killed between a question and the model's first token loses nothing: the question
is stored before the model is asked, and after a restart its answer is shown as interrupted,
with Retry (DESIGN.md, Streaming pipeline). Runs a real Daphne process on this test's database,
with the simulator holding its first token back."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from conversations.models import Message
from conversations.simulator import Scenario
from tests import processes
from tests.chat_support import make_backend, make_user, session_cookie
from tests.processes import WsTab

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

FAST_RECOVERY = {"R1CHAT_HEARTBEAT_INTERVAL": "0.5", "R1CHAT_STALE_AFTER": "2"}


def _thread(port: int, cookie: str, conversation: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/conversations/{conversation}/thread",
        headers={"Cookie": cookie},
    )
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())["messages"]


async def test_a_question_survives_a_crash_before_the_first_token(simulator: Any) -> None:
    simulator.reset()
    simulator.scenario = Scenario(first_token_delay=30.0)  # the model thinks before it speaks

    def setup() -> str:
        user = make_user("alice")
        make_backend(simulator.base_url)
        return session_cookie(user)

    cookie = await sync_to_async(setup)()
    env = processes.app_env(**FAST_RECOVERY)
    proc, port = await asyncio.to_thread(processes.start_daphne, env=env)
    try:
        tab = await WsTab.open(port, cookie, "A")
        await tab.send({"type": "send", "conversation": None, "content": "Will this survive?",
                        "client_id": uuid.uuid4().hex})  # fmt: skip
        conversation = (await tab.until("conversation.created"))["conversation"]["id"]
        while (await tab.until("message.created"))["message"]["role"] != "assistant":
            pass
        for _ in range(100):  # the request has reached the model, which has not answered yet
            if simulator.requests:
                break
            await asyncio.sleep(0.05)
        assert simulator.requests, "the model was never asked"
        processes.stop(proc, sig=signal.SIGKILL)
    finally:
        processes.stop(proc, sig=signal.SIGKILL)

    stored = [m async for m in Message.objects.filter(conversation__uuid=conversation)]
    assert [(m.role, m.content, m.status) for m in stored] == [
        ("user", "Will this survive?", "complete"),
        ("assistant", "", "streaming"),
    ]

    proc, port = await asyncio.to_thread(processes.start_daphne, env=env)
    try:
        await asyncio.sleep(2.5)  # (its heartbeat is stale now)
        tab = await WsTab.open(port, cookie, "after restart")
        await tab.send({"type": "subscribe", "conversation": conversation})
        messages = await asyncio.to_thread(_thread, port, cookie, conversation)
        question, answer = messages
        assert question["content"] == "Will this survive?"
        assert answer["status"] == "interrupted"
        for _ in range(100):  # the sweeper stores it too
            reply = await Message.objects.aget(uuid=answer["id"])
            if reply.status == "interrupted":
                break
            await asyncio.sleep(0.1)
        assert reply.status == "interrupted" and reply.error_code == "interrupted"
        # Retry: a regeneration of that answer is accepted and answered.
        simulator.reset()
        simulator.scenario = Scenario(reasoning_tokens=5, answer_tokens=5)
        await tab.send({"type": "regenerate", "message": answer["id"]})
        while True:
            frame = await tab.until("message.created")
            if frame["message"]["role"] == "assistant":
                break
        done = await tab.until("generation.done", message=frame["message"]["id"], timeout=30)
        assert done["status"] == "complete"
        await tab.close()
    finally:
        processes.stop(proc, sig=signal.SIGKILL)
        simulator.reset()
