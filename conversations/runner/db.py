"""Database work of running generations, off the event loop and off the shared sync thread.

Django's async ORM and Channels run every sync call in one shared thread, one at a time. The
writes of 200 running generations (their text once a second, inserts, usage records) would
queue there in front of the chat socket's own work and delay every new question. They run in a
small pool of their own instead. A SQLite connection stays with its thread (reconnecting cost
more than the write); a PostgreSQL one goes back to psycopg's pool after each call. A call that
fails closes its connection, so the next starts afresh after a database outage.
"""

from __future__ import annotations

import asyncio
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


class Batched[T]:
    """Writes asked for in the same pass of the event loop, done as one call in the pool.

    `many` gets every item that is due (one transaction); if it fails, each item is tried in
    turn (with `one`, or `many` of that item alone), so that an item that cannot be written
    fails alone. Each caller waits for its item.
    At 200 streams, writing one row per call put 200 transactions a second (and 200 bursts of
    ORM work) on the database threads, which compete with the event loop for the interpreter.
    """

    def __init__(
        self, many: Callable[[list[T]], None], one: Callable[[T], None] | None = None
    ) -> None:
        self._many = in_db_pool(many)
        self._one = in_db_pool(one or (lambda item: many([item])))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: list[tuple[T, asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # (a new loop: a test, a management command)
            self._loop, self._due, self._writing = loop, [], None
        done = loop.create_future()
        self._due.append((item, done))
        if self._writing is None or self._writing.done():
            self._writing = loop.create_task(self._write_due())
        await done

    async def _write_due(self) -> None:
        while self._due:
            await asyncio.sleep(0)  # what becomes due in this pass of the loop joins
            batch, self._due = self._due, []
            try:
                outcomes = await self._write([item for item, _ in batch])
            except asyncio.CancelledError:  # the loop is closing: nobody waits in vain
                for _item, done in batch:
                    done.cancel()
                raise
            for (_item, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():
                    continue
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)

    async def _write(self, items: list[T]) -> list[BaseException | None]:
        """Each item's outcome: None once it is stored, or what stopped it."""
        try:
            await self._many(items)
            return [None] * len(items)
        except Exception:
            pass  # item by item: `one` says which failed, and why
        outcomes: list[BaseException | None] = []
        for item in items:
            try:
                await self._one(item)
                outcomes.append(None)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
