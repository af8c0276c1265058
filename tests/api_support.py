"""Fixtures of the API tests: r1chat served by Daphne in its own process on the test database,
the model simulator in this process, and the official `openai` client.

Import the fixtures into a test module: `from tests.api_support import *  # noqa: F403`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "API_BACKEND_ID",
    "ApiServer",
    "api_backend",
    "api_calls_recorded",
    "api_server",
    "client_for",
    "key_for",
]

# The same primary key in every test: the server process keeps the enabled backends in memory
# for a moment (its local cache does not hear this process's changes), and each test's flush
# deletes the row; recreated identically, the copy it kept stays true.
API_BACKEND_ID = 7101


class ApiServer:
    """A Daphne process serving r1chat, and its log."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_api_server(django_db_blocker: Any, name: str, **extra: str) -> Iterator[ApiServer]:
    from tests.processes import BASE_DIR, BIN, app_env, free_port, stop, wait_http

    with django_db_blocker.unblock():
        env = app_env(LOG_LEVEL="INFO", **extra)
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"r1chat-api-{name}-{os.getpid()}-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "r1chat.asgi:application"],
            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
        yield ApiServer(proc, port, log_path)
    finally:
        stop(proc, sig=signal.SIGTERM, timeout=5)
        print(f"--- API server log ---\n{log_path.read_text(errors='replace')[-10000:]}")
        log_path.unlink(missing_ok=True)
        with django_db_blocker.unblock():
            _server_sessions_gone()


def _server_sessions_gone(timeout: float = 10.0) -> None:
    """Wait until PostgreSQL has closed the stopped server's sessions: the test database is
    dropped at the end of the run, which fails while another session uses it."""
    import time

    from django.db import connection

    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


@pytest.fixture(scope="session")
def api_server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ApiServer]:
    """One server for the API tests: questions a minute and quotas as high as they go, so
    tests (whose users reuse primary keys after each flush) never meet another test's count;
    a default quota so that every call reads the user's own (no "no quotas" shortcut kept
    in the server's memory)."""
    yield from start_api_server(
        django_db_blocker,
        "main",
        R1CHAT_SEND_RATE_PER_MINUTE="100000",
        R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA="1000000000",
    )


@pytest.fixture
def api_backend(transactional_db: Any, sim: Any) -> Any:
    """The simulator as the one enabled backend."""
    from conversations.models import Backend
    from conversations.turns import catalog

    catalog.forget()
    return Backend.objects.create(
        id=API_BACKEND_ID,
        name="Simulator",
        kind="openai",
        base_url=sim.base_url,
        default_model="deepseek-v4-flash",
        idle_timeout=10,
        no_data_timeout=10,
        total_timeout=60,
    )


@pytest.fixture(autouse=True)
def api_calls_recorded(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that called the server, wait until what it records after a stream has
    ended (usage, a saved conversation) is in: the database is emptied after each test, and on
    PostgreSQL that TRUNCATE deadlocks with a write still under way (then the emptying fails
    and the next test finds this one's rows)."""
    calls_server = "api_server" in request.fixturenames or "slow_server" in request.fixturenames
    if calls_server:
        request.getfixturevalue("transactional_db")  # (emptied after this fixture ends)
    yield
    if not calls_server:
        return
    import time

    from conversations.models import Message
    from review.models import UsageRecord

    def rows() -> tuple[int, int]:
        return UsageRecord.objects.count(), Message.objects.count()

    deadline = time.monotonic() + 5
    seen = rows()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = rows()
        if now == seen:
            return
        seen = now


def key_for(user: Any, **options: Any) -> tuple[Any, str]:
    from api.models import ApiKey

    return ApiKey.issue(user, options.pop("name", "test"), **options)


def client_for(server: ApiServer, token: str) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0, timeout=30)


def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something true (what the server writes after a stream
    ends lands a moment later)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
