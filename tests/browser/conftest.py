"""Browser tests: Debian's Chromium driven by Playwright against the app served by Daphne.

The app runs in a separate Daphne process on the test database; the model simulator runs in
this process (the `simulator` fixture) and a `conversations.Backend` row points at it. Users
are signed in by putting a session cookie in the browser context.

Without /usr/bin/chromium the package is skipped, unless R1CHAT_BROWSER_TESTS=required.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BROWSER_BACKEND_ID = 7001
REQUIRED = os.environ.get("R1CHAT_BROWSER_TESTS", "").lower() == "required"


@pytest.fixture(scope="session", autouse=True)
def _sync_orm_beside_playwright() -> Iterator[None]:
    # Playwright's sync API keeps an event loop on this thread; the ORM calls in these tests
    # (and the test database's setup, when they run alone) are plain synchronous code all the
    # same. Only from the first browser test on: they run last, and elsewhere the check stays.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # With R1CHAT_BROWSER_TESTS=required a missing Chromium fails (launching it fails).
    if CHROMIUM.exists() or REQUIRED:
        return
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.skip(reason=f"{CHROMIUM} is not installed"))


@pytest.fixture(scope="session")
def live_outbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the live server's mail (mail/, one file per connection) and SMS (sms.jsonl) go."""
    return tmp_path_factory.mktemp("live-outbox")


@pytest.fixture(scope="session")
def live_server_url(
    django_db_setup: Any, django_db_blocker: Any, live_outbox: Path
) -> Iterator[str]:
    """Daphne serving r1chat (HTTP and WebSockets) on the test database."""
    from tests.processes import app_env, free_port, stop, wait_http

    ARTIFACTS.mkdir(exist_ok=True)
    with django_db_blocker.unblock():
        env = app_env(
            LOG_LEVEL="WARNING",
            # Codes are sent to files the tests can read (test_signup_browser.py).
            DJANGO_SETTINGS_MODULE="tests.browser.live_settings",
            R1CHAT_EMAIL_FILE_PATH=str(live_outbox / "mail"),
            SMS_BACKEND="accounts.sms.FileSmsBackend",
            SMS_FILE_PATH=str(live_outbox / "sms.jsonl"),
        )
    port = free_port()
    log = (ARTIFACTS / "browser-daphne.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
         "r1chat.asgi:application"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
        yield f"http://localhost:{port}"
    finally:
        stop(proc, sig=signal.SIGTERM, timeout=5)
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def chat_backend(transactional_db: Any, simulator: Any) -> Iterator[Any]:
    """A backend row pointing at the simulator, reset to its default scenario."""
    from conversations.models import Backend
    from conversations.turns import catalog

    simulator.reset()
    catalog.forget()
    # The same primary key in every test: the server process caches the enabled backends
    # (invalidated through the shared cache, which a local-memory cache does not share), and
    # each test's flush deletes the row. Recreated identically, the cached copy stays true.
    backend = Backend.objects.create(
        id=BROWSER_BACKEND_ID,
        name="Simulator (offline demo)",
        kind="openai",
        base_url=simulator.base_url,
        default_model="deepseek-reasoner",
        source="simulator",
        idle_timeout=10,
        no_data_timeout=10,
        total_timeout=60,
    )
    yield backend
    simulator.reset()


class Watch:
    """What a page did that it must not: dialogs, requests to other hosts, script errors."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.dialogs: list[str] = []
        self.foreign_requests: list[str] = []
        self.errors: list[str] = []

    def attach(self, page: Any) -> None:
        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        def on_request(request: Any) -> None:
            host = urlparse(request.url).hostname or ""
            if request.url.startswith(("data:", "blob:", "about:")):
                return
            if host not in ("localhost", "127.0.0.1"):
                self.foreign_requests.append(request.url)

        page.on("dialog", on_dialog)
        page.on("request", on_request)
        page.on("pageerror", lambda error: self.errors.append(str(error)))


@pytest.fixture
def signed_in(browser: Any, live_server_url: str, chat_backend: Any) -> Iterator[Any]:
    """A factory: a signed-in page (viewport, colour scheme and language as asked)."""
    from tests.chat_support import make_user, session_cookie

    contexts: list[Any] = []

    def open_page(
        user: Any = None,
        *,
        viewport: tuple[int, int] = (1280, 860),
        color_scheme: str = "light",
        locale: str = "en-US",
    ) -> tuple[Any, Any, Watch]:
        user = user or make_user(f"user{len(contexts)}")
        context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            color_scheme=color_scheme,
            locale=locale,
            timezone_id="UTC",
        )
        contexts.append(context)
        name, value = session_cookie(user).split("=", 1)
        context.add_cookies([{"name": name, "value": value, "url": live_server_url}])
        page = context.new_page()
        page.set_default_timeout(10_000)
        watch = Watch(live_server_url)
        watch.attach(page)
        return page, user, watch

    yield open_page
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path
