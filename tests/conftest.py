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
