"""Database work of running generations, off the event loop and off the shared sync thread.

Django's async ORM and Channels run every sync call in one shared thread, one at a time. The
writes of 200 running generations (their text once a second, inserts, usage records) would
queue there in front of the chat socket's own work and delay every new question. They run in a
small pool of their own instead. A SQLite connection stays with its thread (reconnecting cost
more than the write); a PostgreSQL one goes back to psycopg's pool after each call. A call that
fails closes its connection, so the next starts afresh after a database outage.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.db import connection

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="r1chat-db")


def in_db_pool[**P, R](func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """An awaitable version of `func` that runs in the generation database pool."""

    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except Exception:
            connection.close()  # perhaps broken: the next call reconnects
            raise
        finally:
            if connection.vendor != "sqlite":
                # Back to psycopg's pool (cheap), not held by an idle thread.
                connection.close()

    return sync_to_async(call, thread_sensitive=False, executor=_pool)
