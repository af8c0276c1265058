"""Helpers for tests that talk to the chat socket through the real ASGI application."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore

from conversations.models import Backend

PASSWORD = "correct horse battery staple"


def make_user(name: str, password: str | None = PASSWORD, **extra: Any) -> Any:
    """A verified user; `password=None` skips hashing one (for many users at once)."""
    user = get_user_model().objects.create_user(
        username=name, email=f"{name}@example.com", password=password, **extra
    )
    # Verified, so the accounts rules let this person chat.
    try:
        from allauth.account.models import EmailAddress

        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    except ImportError:  # pragma: no cover
        pass
    return user


def session_cookie(user: Any) -> str:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


def make_backend(base_url: str, kind: str = "openai", **extra: Any) -> Backend:
    defaults = {"idle_timeout": 5.0, "no_data_timeout": 5.0, "total_timeout": 30.0}
    defaults.update(extra)
    return Backend.objects.create(
        name=f"sim-{uuid.uuid4().hex[:6]}", kind=kind, base_url=base_url, **defaults
    )


class Tab:
    """One browser tab's socket."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, user: Any, origin: str = "http://localhost") -> Tab:
        cookie = await sync_to_async(session_cookie)(user)
        headers = [
            (b"origin", origin.encode()),
            (b"host", b"localhost"),
            (b"cookie", cookie.encode()),
        ]
        from r1chat.asgi import application

        tab = cls(WebsocketCommunicator(application, "/ws/chat/", headers=headers))
        connected, _ = await tab.ws.connect()
        assert connected
        return tab

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json_to(frame)

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = await self.ws.receive_json_from(timeout=timeout)
        self.frames.append(frame)
        return frame

    async def until(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Frames until one of `kind` (matching the given fields) arrives; returns it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                frame = await self.recv(timeout=remaining)
            except TimeoutError:
                got = [(f["type"], f.get("code")) for f in self.frames]
                raise AssertionError(f"no {kind} frame in {timeout} s; got {got}") from None
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame

    async def close(self) -> None:
        await self.ws.disconnect()


def assemble(frames: list[dict[str, Any]], message_id: str) -> tuple[str, str, list[int]]:
    """The reasoning and answer a client shows after these frames, and the seqs it applied."""
    reasoning, answer, seqs = "", "", []
    for frame in frames:
        if frame.get("message") != message_id:
            continue
        if frame["type"] == "generation.snapshot":
            reasoning, answer, seqs = frame["reasoning"], frame["answer"], [frame["seq"]]
        elif frame["type"] == "generation.delta":
            reasoning += frame.get("reasoning", "")
            answer += frame.get("answer", "")
            # (a delta from another process covers the frames from_seq to seq)
            seqs.extend(range(frame.get("from_seq", frame["seq"]), frame["seq"] + 1))
    return reasoning, answer, seqs


def redis_url_or_skip() -> str:
    """The Redis of this run (REDIS_URL), else the machine's; the test is skipped without one."""
    import os
    import socket
    from urllib.parse import urlsplit

    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    where = urlsplit(url)
    try:
        socket.create_connection((where.hostname, where.port or 6379), timeout=1).close()
    except OSError:
        pytest.skip(f"no Redis at {url}")
    return url


# --- autouse fixtures of the modules that stream through the socket (import them there) ---


@pytest.fixture(autouse=True)
def fresh_layer_and_clients():
    """Each test has its own event loop: no channel layer or HTTP client from an old one."""
    from channels.layers import channel_layers

    from conversations import backends

    channel_layers.backends.clear()
    backends._backends.clear()
    yield
    channel_layers.backends.clear()
    backends._backends.clear()


@pytest.fixture(autouse=True)
async def generations_end_before_the_database_is_emptied():
    """A test may end while an answer still streams (the second prompt after a Stop): its
    runner is cancelled and its last write done before the tables are truncated, which it
    could otherwise deadlock with (PostgreSQL). Then the database threads finish what they
    were given (a batch of progress writes the cancelled runner no longer waits for)."""
    from conversations.runner import db
    from conversations.runner.generation import _running

    yield
    tasks = [runner.task for runner in list(_running.values()) if runner.task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    workers = db._pool._max_workers
    everyone_free = threading.Barrier(workers, timeout=10)
    await asyncio.gather(
        *(asyncio.wrap_future(db._pool.submit(everyone_free.wait)) for _ in range(workers))
    )
    await sync_to_async(lambda: None)()  # the shared sync thread too
