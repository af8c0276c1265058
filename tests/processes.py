"""Helpers for tests that run the app in separate processes (Daphne, redis-server, nginx)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import websockets
import websockets.asyncio.client
from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """A URL for the database this test runs on (pytest-django's test database)."""
    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    if s["ENGINE"] == "django.db.backends.postgresql":
        auth = quote(s.get("USER") or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        host = s.get("HOST") or "127.0.0.1"
        port = s.get("PORT") or 5432
        return f"postgres://{auth}@{host}:{port}/{s['NAME']}"
    raise RuntimeError(f"no URL for {s['ENGINE']}")


def app_env(**extra: str) -> dict[str, str]:
    """The environment of an app process beside this test: same database, plain HTTP."""
    # (Not the tests' own allowance for sync ORM calls: app processes keep Django's check.)
    skip = ("PYTEST_", "DJANGO_SETTINGS", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(
        DJANGO_SETTINGS_MODULE="r1chat.settings",
        DATABASE_URL=database_url(),
        DEBUG="0",
        R1CHAT_HTTPS="0",
        R1CHAT_STATIC_MANIFEST="0",
        R1CHAT_SIMULATOR="off",
        ALLOWED_HOSTS="localhost,127.0.0.1",
        PYTHONPATH=str(BASE_DIR),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {output(proc)}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def output(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None or proc.stdout is None:
        return ""
    return proc.stdout.read().decode(errors="replace")[-4000:]


def start_daphne(
    application: str = "r1chat.asgi:application", *, env: dict[str, str], port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = port or free_port()
    proc = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), application],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    except BaseException:
        stop(proc, sig=signal.SIGKILL)
        raise
    return proc, port


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


@contextlib.contextmanager
def daphne(
    application: str = "r1chat.asgi:application", **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    proc, port = start_daphne(application, env=app_env(**env))
    try:
        yield proc, port
    finally:
        stop(proc, sig=signal.SIGKILL)


# --- a browser tab's socket to an app process ------------------------------------------


class WsTab:
    """A browser tab's socket to one process."""

    def __init__(self, ws: Any, name: str) -> None:
        self.ws = ws
        self.name = name
        self.frames: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, port: int, cookie: str, name: str = "tab") -> WsTab:
        ws = await websockets.asyncio.client.connect(
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
            if frame["type"] == kind and all(_field(frame, k) == v for k, v in match.items()):
                return frame

    async def closed_by_server(self, timeout: float) -> bool:
        """Read (and keep) frames until the server closes the socket; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.recv(timeout)
        except websockets.exceptions.ConnectionClosed:
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        await self.ws.close()


def _field(frame: dict[str, Any], key: str) -> Any:
    """A frame's field; a sidebar item (`conversation: {id, …}`) compares by its id."""
    value = frame.get(key)
    return value["id"] if isinstance(value, dict) and "id" in value else value
