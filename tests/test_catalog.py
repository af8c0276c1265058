"""Which backends a question may use (conversations.turns.catalog.enabled_backends): read once for a
burst, and never waited for again once known."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from conversations.models import Backend
from conversations.turns import catalog

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def queries() -> Any:
    """SELECTs of Backend rows made through the async ORM's thread, counted."""
    seen: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "conversations_backend" in sql and sql.lstrip().upper().startswith("SELECT"):
            seen.append(sql)
        return execute(sql, params, many, context)

    await sync_to_async(lambda: connection.execute_wrappers.append(count))()
    yield seen
    await sync_to_async(lambda: connection.execute_wrappers.remove(count))()


async def _backend(name: str) -> Backend:
    return await Backend.objects.acreate(name=name, kind="openai", base_url="http://127.0.0.1:9")


async def test_a_burst_on_a_cold_list_reads_the_backends_once(queries: list[str]) -> None:
    first = await _backend("first")
    catalog.forget()
    answers = await asyncio.gather(*(catalog.enabled_backends() for _ in range(20)))
    assert all([b.pk for b in rows] == [first.pk] for rows in answers)
    assert len(queries) == 1


async def test_an_old_list_is_answered_at_once_and_read_again_behind_it(
    queries: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _backend("first")
    assert [b.pk for b in await catalog.enabled_backends()] == [first.pk]
    # Disabled behind the cache's back (another process without the shared cache).
    await Backend.objects.filter(pk=first.pk).aupdate(enabled=False)
    monkeypatch.setattr(catalog, "BACKENDS_SECONDS", 0.0)
    read = len(queries)
    assert [b.pk for b in await catalog.enabled_backends()] == [first.pk]  # not waited for
    assert len(queries) == read  # (the fresh read has not even started)
    assert catalog._lookup is not None
    await catalog._lookup[1]
    assert await catalog.enabled_backends() == []


async def test_a_change_through_the_models_is_seen_by_the_next_question() -> None:
    first = await _backend("first")
    assert [b.pk for b in await catalog.enabled_backends()] == [first.pk]
    second = await _backend("second")  # post_save bumps the shared version
    assert sorted(b.pk for b in await catalog.enabled_backends()) == [first.pk, second.pk]
