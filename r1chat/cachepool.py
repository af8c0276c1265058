"""One connection pool per process for the Redis cache, whichever task or thread reads it.

Django keeps a cache object per thread and per asyncio task (its handler is context-local), and
its Redis cache makes a connection pool per object: every WebSocket (a task under Daphne) opened
a connection of its own to Redis on its first cache read (a TCP handshake and a HELLO on the way
of a tab's first question) and kept it while it was open: a thousand tabs, a thousand
connections. Named in CACHES' OPTIONS as `pool_class`; the pools are redis-py's own, which are
thread-safe and start afresh in a forked child.
"""

from __future__ import annotations

import threading
from typing import Any

import redis


class SharedConnectionPool(redis.ConnectionPool):
    _pools: dict[tuple[str, str], redis.ConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> redis.ConnectionPool:  # type: ignore[override]
        key = (url, repr(sorted(options.items())))
        with cls._lock:
            pool = cls._pools.get(key)
            if pool is None:
                pool = cls._pools[key] = redis.ConnectionPool.from_url(url, **options)
        return pool
