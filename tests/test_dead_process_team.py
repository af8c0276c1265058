"""Team mode: a process killed mid-answer. A tab on another process that follows the answer
sees it end as interrupted within 5 s, with the default heartbeat settings (the liveness marks
in the shared cache, not the 20 s heartbeat rule, tell it)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.models import Message
from conversations.simulator import Scenario
from tests import processes
from tests.chat_support import make_backend, make_user, session_cookie
from tests.processes import WsTab

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
        or not os.environ.get("REDIS_URL"),
        reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL",
    ),
    pytest.mark.timeout(120),
]


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


async def test_a_tab_on_another_process_sees_the_answer_interrupted_within_5_s(
    simulator: Any,
) -> None:
    simulator.reset()
    simulator.scenario = Scenario(token_rate=20)

    def setup() -> str:
        user = make_user("alice")
        make_backend(simulator.base_url)
        return session_cookie(user)

    cookie = await sync_to_async(setup)()
    env = processes.app_env(LOG_LEVEL="WARNING")  # the default heartbeat: 5 s, stale after 20 s
    a, port_a = await asyncio.to_thread(processes.start_daphne, env=env)
    b, port_b = await asyncio.to_thread(processes.start_daphne, env=env)
    try:
        writer = await WsTab.open(port_a, cookie, "A")
        await writer.send({"type": "send", "conversation": None, "content": "Think slowly",
                           "client_id": uuid.uuid4().hex})  # fmt: skip
        conversation = (await writer.until("conversation.created"))["conversation"]["id"]
        while (reply := await writer.until("message.created"))["message"]["role"] != "assistant":
            pass
        reply_id = reply["message"]["id"]
        watcher = await WsTab.open(port_b, cookie, "B")
        await watcher.send({"type": "subscribe", "conversation": conversation})
        await watcher.until("generation.snapshot", message=reply_id)
        await watcher.until("generation.delta", message=reply_id)
        for _ in range(50):  # a write of the text so far has happened (once a second)
            stored = await Message.objects.aget(uuid=reply_id)
            if stored.reasoning or stored.content:
                break
            await asyncio.sleep(0.2)
        a.send_signal(signal.SIGKILL)
        await asyncio.to_thread(a.wait, 10)
        killed = time.monotonic()
        done = await watcher.until("generation.done", message=reply_id, timeout=15)
        took = time.monotonic() - killed
        print(f"interrupted on B {took:.2f} s after SIGKILL of A")
        assert took < 5.0, f"interrupted on B only {took:.1f} s after SIGKILL"
        assert done["status"] == "interrupted" and done["error"]["retryable"] is True
        # The sidebars of the user's tabs on B lose the mark too.
        mark = await watcher.until("conversation.generating", conversation=conversation)
        assert mark["generating"] is False
        stored = await Message.objects.aget(uuid=reply_id)
        assert stored.status == "interrupted" and (stored.reasoning or stored.content)
        await watcher.close()
    finally:
        for proc in (a, b):
            processes.stop(proc, sig=signal.SIGKILL)
        simulator.reset()
