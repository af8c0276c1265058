from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def pytest_configure(config: pytest.Config) -> None:
    import multiprocessing

    # Live-server (Daphne) processes must not fork from a process that already runs threads.
    multiprocessing.set_start_method("spawn", force=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Browser tests last: Playwright's sync API keeps an event loop running on the main thread
    # for the rest of the session, where no asyncio test could start its own.
    browser = Path(__file__).parent / "browser"
    items.sort(key=lambda item: Path(str(item.path)).is_relative_to(browser))


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Close any PostgreSQL connection pool opened before the test database exists.

    Django keeps one pool per alias and makes it on first use (a request's start asks it, test
    database or not); create_test_db then renames the database but keeps that pool, so the
    migrations and every later query would go to the database named by DATABASE_URL while the
    live-server processes use the empty test database (found in random order, seed 3686172865).
    pytest-django runs this just before it creates the test database.
    """
    from django.db import connections

    for connection in connections.all():
        if connection.vendor == "postgresql":
            connection.close_pool()


@pytest.fixture
def sim(simulator: Any) -> Iterator[Any]:
    """The session's simulator, with its scenario and recorded requests reset around a test."""
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _forget_shared_backend_clients() -> Iterator[None]:
    """The shared model-server clients belong to the event loop of the test that made them.

    A sync test whose request asked a backend (e.g. /api/models through the test client) left
    its client, bound to a loop that is closed by now, for the next test that closes every
    client (tests/test_readyz.py: "Event loop is closed"; found in random order, seed
    459105730). They are dropped, not closed: their loop is gone.
    """
    yield
    from conversations import backends

    backends._backends.clear()


@pytest.fixture(autouse=True)
def _reset_language() -> Iterator[None]:
    """Every test starts and ends in the default language.

    A request through LocaleMiddleware (or a test's own `activate`) leaves its language active
    in the thread; the next test's gettext would answer in it.
    """
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


# The bundled model simulator (no Django needed, so importing it here is cheap).
from conversations.simulator import Simulator  # noqa: E402


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    """The bundled model simulator on loopback, shared by the whole session.

    The server outlives each test: a test that sets `simulator.scenario` calls
    `simulator.reset()` first (or when done).
    """
    sim = Simulator()
    sim.start_in_thread()
    yield sim
    sim.stop()
