"""Graceful shutdown: running generations may finish within the grace period; the rest are saved
as `interrupted` with their partial text (conversations.runner.shutdown)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections

from conversations.backends.base import Answer, ChatRequest, Finished, Reasoning
from conversations.models import Backend, Conversation, Message
from conversations.runner import generation, shutdown
from tests import processes

pytestmark = pytest.mark.django_db(transaction=True)


class FakeModel:
    """Says `t0 t1 …`, one word every `delay` seconds (the simulator's shape, in-process)."""

    def __init__(self, tokens: int, delay: float) -> None:
        self.tokens = tokens
        self.delay = delay
        self.closed = False

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[Any]:
        try:
            yield Reasoning("thinking ")
            for i in range(self.tokens):
                await asyncio.sleep(self.delay)
                yield Answer(f"t{i} ")
            yield Finished("stop")
        finally:
            self.closed = True


def expected(tokens: int) -> str:
    return "".join(f"t{i} " for i in range(tokens))


@pytest.fixture(autouse=True)
def _fresh_shutdown_state() -> Any:
    shutdown._reset_for_tests()
    yield
    shutdown._reset_for_tests()
    generation._running.clear()


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    """Give the async ORM's worker-thread connection back (else PostgreSQL's test database
    cannot be dropped at the end: "being accessed by other users")."""
    yield
    await sync_to_async(connections.close_all)()


def _make_turn(name: str, username: str = "shut") -> Message:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=username)
    backend = Backend.objects.create(name=name, kind="ollama", base_url="http://127.0.0.1:9")
    conversation = Conversation.objects.create(owner=user, title=name)
    question = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, content="hi"
    )
    return Message.objects.create(
        conversation=conversation,
        parent=question,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        backend=backend,
        backend_name=name,
        model="fake",
    )


make_turn = sync_to_async(_make_turn)


async def _start(name: str) -> generation.GenerationRunner:
    message = await make_turn(name)
    message = await Message.objects.select_related("conversation", "backend").aget(pk=message.pk)
    runner = generation.GenerationRunner(
        message=message,
        conversation=message.conversation,
        backend=message.backend,
        request=ChatRequest(model="fake", messages=[{"role": "user", "content": "hi"}]),
    )
    runner.start()
    return runner


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeModel]:
    models: dict[str, FakeModel] = {}
    monkeypatch.setattr(generation, "get_backend", lambda config: models[config.name])
    # The hook itself is exercised by the Daphne test; in-process it must not touch signals.
    monkeypatch.setattr(shutdown, "install", lambda: None)
    return models


async def test_drain_lets_short_generations_finish_and_interrupts_the_rest(
    monkeypatch: pytest.MonkeyPatch, fake_models: dict[str, FakeModel]
) -> None:
    fake_models["short"] = FakeModel(tokens=12, delay=0.05)  # ~0.6 s
    fake_models["long"] = FakeModel(tokens=10_000, delay=0.02)
    short = await _start("short")
    long = await _start("long")
    layer = get_channel_layer()
    tab = await layer.new_channel("tab.")
    await layer.group_add(long.group, tab)
    await asyncio.sleep(0.2)

    started = time.monotonic()
    result = await shutdown.drain(grace=1.5)
    elapsed = time.monotonic() - started

    assert result == {"finished": 1, "interrupted": 1, "unsaved": 0}
    assert 1.4 <= elapsed < 3.5
    assert shutdown.is_shutting_down()
    assert not generation._running
    assert fake_models["long"].closed  # the upstream stream was closed

    done = await Message.objects.aget(pk=short.message.pk)
    assert done.status == Message.Status.COMPLETE
    assert done.content == expected(12)

    cut = await Message.objects.aget(pk=long.message.pk)
    assert cut.status == Message.Status.INTERRUPTED
    assert cut.error_code == "interrupted"
    assert cut.reasoning == "thinking "
    assert len(cut.content) > 20  # the partial answer is kept …
    assert expected(10_000).startswith(cut.content)  # … exactly as streamed
    assert cut.finished_at is not None

    # Tabs (in any process) are told, with the final status.
    frames = []
    while True:
        frame = await asyncio.wait_for(layer.receive(tab), 2)
        frames.append(frame)
        if frame["type"] == "generation.done":
            break
    assert frames[-1]["status"] == Message.Status.INTERRUPTED
    sent = "".join(f.get("answer", "") for f in frames if f["type"] == "generation.delta")
    assert sent == cut.content


async def test_drain_with_nothing_running_returns_at_once() -> None:
    started = time.monotonic()
    assert await shutdown.drain(grace=20) == {"finished": 0, "interrupted": 0, "unsaved": 0}
    assert time.monotonic() - started < 0.5


async def test_drain_also_covers_generations_started_during_the_grace_period(
    monkeypatch: pytest.MonkeyPatch, fake_models: dict[str, FakeModel]
) -> None:
    fake_models["first"] = FakeModel(tokens=10_000, delay=0.02)
    fake_models["late"] = FakeModel(tokens=10_000, delay=0.02)
    first = await _start("first")
    draining = asyncio.ensure_future(shutdown.drain(grace=1.0))
    await asyncio.sleep(0.3)
    late = await _start("late")
    assert await draining == {"finished": 0, "interrupted": 2, "unsaved": 0}
    for runner in (first, late):
        message = await Message.objects.aget(pk=runner.message.pk)
        assert message.status == Message.Status.INTERRUPTED


async def test_a_stop_during_the_grace_period_is_still_a_stop(
    monkeypatch: pytest.MonkeyPatch, fake_models: dict[str, FakeModel]
) -> None:
    fake_models["stopped"] = FakeModel(tokens=10_000, delay=0.02)
    runner = await _start("stopped")
    draining = asyncio.ensure_future(shutdown.drain(grace=5.0))
    await asyncio.sleep(0.3)
    runner.stop()
    assert await draining == {"finished": 1, "interrupted": 0, "unsaved": 0}
    message = await Message.objects.aget(pk=runner.message.pk)
    assert message.status == Message.Status.STOPPED


async def test_generation_runner_start_installs_the_shutdown_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = {"hooked": FakeModel(tokens=1, delay=0.01)}
    monkeypatch.setattr(generation, "get_backend", lambda config: models[config.name])
    calls: list[bool] = []
    monkeypatch.setattr(shutdown, "install", lambda: calls.append(True))
    runner = await _start("hooked")
    await runner.task
    assert calls, (
        "GenerationRunner.start() must call conversations.runner.shutdown.install() (one line), so "
        "that SIGTERM lets running generations finish or saves them as interrupted"
    )


async def test_signal_handler_for_other_servers_drains_then_chains(
    settings: Any, fake_models: dict[str, FakeModel]
) -> None:
    """Outside Daphne: a chained SIGTERM handler on the running loop."""
    settings.R1CHAT_SHUTDOWN_GRACE = 0.5
    fake_models["sig"] = FakeModel(tokens=10_000, delay=0.02)
    runner = await _start("sig")
    previous_called = asyncio.Event()
    loop = asyncio.get_running_loop()

    def previous(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(previous_called.set)

    original = signal.signal(signal.SIGTERM, previous)
    try:
        assert shutdown.install_signal_handler()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(previous_called.wait(), 5)
    finally:
        signal.signal(signal.SIGTERM, original)
    message = await Message.objects.aget(pk=runner.message.pk)
    assert message.status == Message.Status.INTERRUPTED
    assert message.content


# --- under Daphne ----------------------------------------------------------------------------


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _wait_for_text(message: Message, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message.refresh_from_db()
        if message.content:
            return message.content
        time.sleep(0.1)
    raise TimeoutError("the generation never persisted any text")


def test_sigterm_under_daphne_finishes_short_and_interrupts_long_generations() -> None:
    short = _make_turn("daphne-short")
    long = _make_turn("daphne-long")
    grace = 3.0
    env = processes.app_env(R1CHAT_SHUTDOWN_GRACE=str(grace))
    proc, port = processes.start_daphne("tests.shutdown_app:application", env=env)
    try:
        base = f"http://127.0.0.1:{port}/_test/generate"
        # The short one needs ~2 s (within the grace period), the long one ~200 s.
        started = _get_json(f"{base}?message={short.uuid}&tokens=40&delay=0.05")
        assert started["shutdown_hook"] == "twisted"
        _get_json(f"{base}?message={long.uuid}&tokens=10000&delay=0.02")
        _wait_for_text(long)

        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(grace + 20)
        took = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    log = processes.output(proc)
    assert proc.returncode == 0, log
    assert grace - 0.5 <= took <= grace + 8, (took, log)

    short.refresh_from_db()
    assert short.status == Message.Status.COMPLETE, log
    assert short.content == expected(40)

    long.refresh_from_db()
    assert long.status == Message.Status.INTERRUPTED, log
    assert long.error_code == "interrupted"
    assert len(long.content) > 20
    assert expected(10_000).startswith(long.content)
    assert long.finished_at is not None


def test_sigterm_under_daphne_with_nothing_running_exits_at_once() -> None:
    env = processes.app_env(R1CHAT_SHUTDOWN_GRACE="30")
    proc, port = processes.start_daphne("tests.shutdown_app:application", env=env)
    message = _make_turn("daphne-quick")
    # A generation that ends on its own before the signal: nothing to wait for.
    _get_json(f"http://127.0.0.1:{port}/_test/generate?message={message.uuid}&tokens=2&delay=0")
    deadline = time.monotonic() + 10
    while message.status == Message.Status.STREAMING and time.monotonic() < deadline:
        time.sleep(0.1)
        message.refresh_from_db()
    sent_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert time.monotonic() - sent_at < 5
    assert message.status == Message.Status.COMPLETE
