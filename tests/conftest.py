from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    import multiprocessing

    # Live-server (Daphne) processes must not fork from a process that already runs threads.
    multiprocessing.set_start_method("spawn", force=True)


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    from django.core.cache import cache

    cache.clear()


# The bundled model simulator (no Django needed, so importing it here is cheap).
from collections.abc import Iterator  # noqa: E402

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
