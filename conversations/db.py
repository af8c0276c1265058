"""Database work of running generations, off the event loop and off the shared sync thread.

Django's async ORM and Channels run every sync call in one shared thread, one at a time. The
writes of 200 running generations (their text once a second, inserts, usage records) would
queue there in front of the chat socket's own work and delay every new question. They run in a
small pool of their own instead, each call closing stale connections before and after, as
Channels' `database_sync_to_async` does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="r1chat-db")


def in_db_pool[**P, R](func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """An awaitable version of `func` that runs in the generation database pool."""
    return DatabaseSyncToAsync(func, thread_sensitive=False, executor=_pool)
