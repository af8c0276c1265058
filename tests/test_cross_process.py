"""Two Daphne processes against one PostgreSQL and one Redis (DESIGN.md "Scale-out", issue 6).

Runs only when DATABASE_URL is PostgreSQL and REDIS_URL is set (`.ci/run`'s second pass). The
app processes use the pytest-created test database and this run's Redis key prefix (inherited
from tests/testenv.py), with short heartbeats. The model simulator runs in this test process;
each tab is a real WebSocket client (`websockets`) with the Origin and session Cookie headers of
a signed-in user.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.models import Conversation, Message
from conversations.simulator import Scenario
from conversations.turns import actions
from tests import processes
from tests.chat_support import assemble, make_backend, make_user, session_cookie
from tests.processes import WsTab

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

# Heartbeats and the stale threshold of the app processes here, so a crashed process is noticed
# in seconds, not 20+ s.
HEARTBEAT_SECONDS, STALE_SECONDS = 1.0, 4.0
FAST_RECOVERY = {
    "R1CHAT_HEARTBEAT_INTERVAL": str(HEARTBEAT_SECONDS),
    "R1CHAT_STALE_AFTER": str(STALE_SECONDS),
}


# --- fixtures ----------------------------------------------------------------------------------


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


_logs: dict[int, str] = {}  # pid → log file


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """A Daphne process logging to a file (a pipe nobody reads fills up and then blocks the
    server, e.g. with the tracebacks of a Redis outage)."""
    port = processes.free_port()
    path = os.path.join(tempfile.gettempdir(), f"r1chat-daphne-{os.getpid()}-{port}.log")
    with open(path, "wb") as log:
        proc = subprocess.Popen(
            [str(processes.BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
             "r1chat.asgi:application"],
            cwd=processes.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _logs[proc.pid] = path
    try:
        processes.wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    except BaseException:
        processes.stop(proc, sig=signal.SIGKILL)
        raise
    return proc, port


def _log(proc: subprocess.Popen[bytes]) -> str:
    path = _logs.pop(proc.pid, None)
    if path is None:
        return ""
    with open(path, errors="replace") as f:
        text = f.read()
    os.unlink(path)
    return text


@pytest.fixture
def two_processes() -> Iterator[tuple[subprocess.Popen[bytes], int, subprocess.Popen[bytes], int]]:
    a, port_a = _start(_env())
    try:
        b, port_b = _start(_env())
    except BaseException:
        processes.stop(a, sig=signal.SIGKILL)
        raise
    yield a, port_a, b, port_b
    for name, proc in (("A", a), ("B", b)):
        processes.stop(proc, sig=signal.SIGKILL)
        print(f"--- process {name} ---\n{_log(proc)[-20000:]}")  # shown when a test fails


async def _send(
    tab: WsTab, content: str = "How are mass and energy related?", conversation: str | None = None
) -> tuple[str, str]:
    """Send a message from this tab; (conversation id, the answer's message id)."""
    await tab.send(
        {"type": "send", "conversation": conversation, "content": content,
         "client_id": uuid.uuid4().hex}
    )  # fmt: skip
    if conversation is None:
        conversation = (await tab.until("conversation.created"))["conversation"]["id"]
    while True:
        frame = await tab.until("message.created")
        if frame["message"]["role"] == "assistant":
            return conversation, frame["message"]["id"]


def _contiguous(seqs: list[int]) -> bool:
    return bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def _assert_live(tab: WsTab, reply_id: str, expected: tuple[str, str]) -> None:
    """The tab applied every frame once, in order, and shows exactly the model's text."""
    reasoning, answer, seqs = assemble(tab.frames, reply_id)
    assert _contiguous(seqs), f"{tab.name}: gap or duplicate in {seqs}"
    done = [f for f in tab.frames if f["type"] == "generation.done" and f["message"] == reply_id]
    assert len(done) == 1 and done[0]["seq"] == seqs[-1] + 1, f"{tab.name}: {done} after {seqs}"
    assert (reasoning, answer) == expected, f"{tab.name}: the text differs"


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
    # The snapshot comes from the runner on A (not the 2 s fallback to the stored message).
    asked = time.monotonic()
    snapshot = await reader.until("generation.snapshot", message=reply_id, timeout=1.5)
    assert time.monotonic() - asked < 1.5
    assert snapshot["seq"] >= 1 and snapshot["reasoning"]

    # Drop the reader mid-stream and come back on a new socket (still process B): resume.
    await reader.until("generation.delta", message=reply_id)
    await reader.close()
    again = await WsTab.open(port_b, cookie, "B2")
    await again.send({"type": "subscribe", "conversation": conv_id})
    await again.until("generation.snapshot", message=reply_id, timeout=1.5)
    done = await again.until("generation.done", message=reply_id, timeout=30)
    assert done["status"] == "complete"
    await writer.until("generation.done", message=reply_id, timeout=30)

    expected = sim.expected()
    for tab in (writer, again):
        _assert_live(tab, reply_id, expected)
    _reasoning, _answer, seqs = assemble(reader.frames, reply_id)
    assert _contiguous(seqs), f"B: gap or duplicate in {seqs}"
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
    # What both tabs show is what was stored, every frame once.
    for tab in (writer, other):
        reasoning, answer, seqs = assemble(tab.frames, reply_id)
        assert _contiguous(seqs), f"{tab.name}: gap or duplicate in {seqs}"
        assert (reasoning, answer) == (message.reasoning, message.content), tab.name
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
    # Later changes (the generated title, a rename made elsewhere) reach both sidebars too.
    for tab in (on_a, on_b):
        await tab.until("conversation.updated", conversation=conv_a, timeout=15)
    conversation = await Conversation.objects.select_related("owner").aget(uuid=conv_a)
    assert conversation.title_generated
    await actions.rename_conversation(conversation.owner, conversation.uuid, "Renamed here")
    for tab in (on_a, on_b):
        update = await tab.until("conversation.updated", conversation=conv_a, timeout=5)
        assert update["conversation"]["title"] == "Renamed here"
    _assert_live(on_a, reply_a, sim.expected())
    _assert_live(on_b, reply_b, sim.expected())
    # Probes answer at once on processes whose sockets sit waiting for frames.
    for port in (port_a, port_b):
        for path in ("/healthz", "/readyz"):
            started = time.monotonic()
            status, body = await asyncio.to_thread(_get, port, path)
            assert status == 200 and time.monotonic() - started < 1.5, (path, body)
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

    # B's maintenance sweep notices the missing heartbeat: stale threshold + one sweep interval.
    limit = STALE_SECONDS + 2 * HEARTBEAT_SECONDS + 1
    done = await watcher.until("generation.done", message=reply_id, timeout=limit + 5)
    took = time.monotonic() - killed
    assert took <= limit, f"interrupted visible on B only {took:.1f} s after SIGKILL"
    assert done["status"] == "interrupted"
    assert done["error"]["retryable"] is True
    message = await Message.objects.aget(uuid=reply_id)
    assert message.status == "interrupted"
    expected_reasoning, expected_answer = sim.expected()
    assert message.reasoning or message.content, "the partial text was lost"
    assert expected_reasoning.startswith(message.reasoning)
    assert expected_answer.startswith(message.content)
    # The watcher saw at least what was stored, in order.
    reasoning, answer, seqs = assemble(watcher.frames, reply_id)
    assert _contiguous(seqs), f"B: gap or duplicate in {seqs}"
    assert reasoning.startswith(message.reasoning) and answer.startswith(message.content)
    # A new tab on B gets no snapshot of it: it is over (the page shows the stored message).
    fresh = await WsTab.open(port_b, cookie, "B-new")
    await fresh.send({"type": "subscribe", "conversation": conv_id})
    with pytest.raises(AssertionError):
        await fresh.until("generation.snapshot", timeout=2.5)
    for tab in (fresh, watcher):
        await tab.close()


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


async def _follow_to_the_end(
    tab: WsTab, port: int, cookie: str, conv_id: str, reply_id: str
) -> WsTab:
    """Read `tab` until the answer ends, as the page does: when the server closes the socket,
    reconnect with backoff and subscribe again. The tab whose frames show the end."""
    delay = 0.25
    while True:
        try:
            await tab.until("generation.done", message=reply_id, timeout=30)
            return tab
        except websockets.exceptions.ConnectionClosed:
            pass
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)
            try:
                tab = await WsTab.open(port, cookie, tab.name + "+")
                await tab.send({"type": "subscribe", "conversation": conv_id})
                break
            except (OSError, websockets.exceptions.InvalidStatus):
                continue


async def test_redis_restarted_mid_stream_every_tab_catches_up(alice, sim, own_redis) -> None:
    """Redis restarts (losing every queue and group) while an answer streams on A, followed by
    a tab on A and one on B: each ends showing exactly the model's text, every frame once and
    in order from its last snapshot, and the answer is stored whole."""
    _user, cookie = alice
    env = _env(REDIS_URL=own_redis["url"])
    a, port_a = _start(env)
    b, port_b = _start(env)
    try:
        scenario = Scenario(token_rate=40, reasoning_tokens=120, answer_tokens=120)  # ~6 s
        sim.scenario = scenario
        writer = await WsTab.open(port_a, cookie, "A")
        conv_id, reply = await _send(writer, "across a restart")
        watcher = await WsTab.open(port_b, cookie, "B")
        await watcher.send({"type": "subscribe", "conversation": conv_id})
        await watcher.until("generation.snapshot", message=reply)
        await watcher.until("generation.delta", message=reply)
        own_redis["stop"]()
        own_redis["start"]()
        expected = sim.expected(scenario)
        for tab, port in ((writer, port_a), (watcher, port_b)):
            last = await _follow_to_the_end(tab, port, cookie, conv_id, reply)
            reasoning, answer, seqs = assemble(last.frames, reply)
            updated = [f for f in last.frames if f["type"] == "message.updated"]
            if updated:  # (it had ended before the tab subscribed again: the stored message)
                shown = updated[-1]["message"]
                assert (shown["reasoning"], shown["content"]) == expected, last.name
                continue
            assert _contiguous(seqs), f"{last.name}: gap or duplicate in {seqs}"
            done = [f for f in last.frames if f["type"] == "generation.done"]
            assert len(done) == 1 and done[0]["seq"] == seqs[-1] + 1, last.name
            assert (reasoning, answer) == expected, f"{last.name}: the text differs"
        message = await Message.objects.aget(uuid=reply)
        assert message.status == "complete"
        assert (message.reasoning, message.content) == expected
    finally:
        for name, proc in (("A", a), ("B", b)):
            processes.stop(proc, sig=signal.SIGKILL)
            print(f"--- process {name} ---\n{_log(proc)[-20000:]}")


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


async def test_redis_outage_gives_a_clear_error_loses_nothing_and_recovers(
    alice, sim, own_redis
) -> None:
    """What a user sees: the open sockets close (the page says "Reconnecting in N s" and retries
    with backoff), new handshakes are refused until Redis is back, /readyz says `redis` failed.
    Generations running meanwhile go on and are stored; nothing stored is lost; once Redis is
    back the pages reconnect and chat works again, in both processes, without a restart."""
    _user, cookie = alice
    env = _env(REDIS_URL=own_redis["url"])
    a, port_a = _start(env)
    b, port_b = _start(env)
    try:
        # Something saved before the outage.
        sim.scenario = Scenario()
        tab = await WsTab.open(port_a, cookie, "A")
        conv_id, first = await _send(tab, "before the outage")
        await tab.until("generation.done", message=first)
        saved = await Message.objects.aget(uuid=first)
        assert saved.status == "complete"

        # A generation is running on A, followed by a tab on B, when Redis goes away.
        scenario = Scenario(token_rate=40, reasoning_tokens=60, answer_tokens=60)  # ~3 s
        sim.scenario = scenario
        watcher = await WsTab.open(port_b, cookie, "B")
        await watcher.send({"type": "subscribe", "conversation": conv_id})
        _conv, running = await _send(tab, "during", conversation=conv_id)
        await watcher.until("generation.delta", message=running)
        own_redis["stop"]()

        # Both open sockets are closed by the server: the page shows "reconnecting".
        for socket in (tab, watcher):
            assert await socket.closed_by_server(5), f"{socket.name}: still open without Redis"

        # Readiness says what is wrong (probes, load balancers).
        status, body = await asyncio.to_thread(_get, port_b, "/readyz")
        assert status == 503
        assert body["checks"]["redis"].startswith("error")

        # A tab connecting now is refused (or closed at once) rather than left hanging.
        try:
            probe = await WsTab.open(port_b, cookie, "B-during")
        except websockets.exceptions.InvalidStatus as exc:
            assert exc.response.status_code >= 500
        else:
            assert await probe.closed_by_server(5), "a socket was accepted without Redis"

        # The running generation still ends and is stored whole (the database is up).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = await Message.objects.aget(uuid=running)
            if message.status != "streaming":
                break
            await asyncio.sleep(0.2)
        assert message.status == "complete", message.status
        assert (message.reasoning, message.content) == sim.expected(scenario)
        still = await Message.objects.aget(uuid=first)
        assert (still.status, still.content, still.reasoning) == (
            saved.status, saved.content, saved.reasoning,
        )  # fmt: skip

        # Redis comes back: service resumes without restarting the processes.
        own_redis["start"]()
        sim.scenario = Scenario()
        for port in (port_a, port_b):
            deadline = time.monotonic() + 30
            while True:
                status, body = await asyncio.to_thread(_get, port, "/readyz")
                if status == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert status == 200, body
        # The pages reconnect at once (no handshake fails on a connection from before).
        on_b = await WsTab.open(port_b, cookie, "B-after")
        watcher = await WsTab.open(port_a, cookie, "A-after")
        await watcher.send({"type": "subscribe", "conversation": conv_id})
        await asyncio.sleep(0.2)
        _conv, reply = await _send(on_b, "after", conversation=conv_id)
        done = await on_b.until("generation.done", message=reply, timeout=20)
        assert done["status"] == "complete"
        await watcher.until("generation.done", message=reply, timeout=20)
        for socket in (on_b, watcher):
            _assert_live(socket, reply, sim.expected())
        assert await Message.objects.filter(conversation__uuid=conv_id).acount() == 6
        assert await Conversation.objects.acount() == 1
        for socket in (on_b, watcher):
            await socket.close()
    finally:
        for name, proc in (("A", a), ("B", b)):
            processes.stop(proc, sig=signal.SIGKILL)
            print(f"--- process {name} ---\n{_log(proc)[-20000:]}")
