"""What a question reads and writes in the shared cache (conversations.sendcache): the same
answers from the one-round-trip script on Redis as from the cache API in the process's memory,
in keys and values the cache API reads and writes too."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from conversations import sendcache
from conversations.catalog import BACKENDS_VERSION_KEY
from tests.chat_support import redis_url_or_skip


@pytest.fixture(params=["locmem", "redis"])
def shared(request: Any, settings: Any) -> Iterator[str]:
    """The default cache: the process's memory, or Redis under a prefix of this test's own."""
    if request.param == "redis":
        url = redis_url_or_skip()
        prefix = f"r1chat-test-sendcache-{os.getpid()}-{time.monotonic_ns()}"
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": prefix,
            }
        }
        cache.clear()
        yield request.param
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        cache.clear()
        yield request.param


def read(user_id: int, client_id: str | None, limit: int = 3) -> sendcache.SendState:
    return sendcache.read(user_id, client_id, limit=limit, claim_seconds=60)


def test_sends_are_counted_per_user_and_a_client_id_claimed_once(shared: str) -> None:
    first = read(1, "a")
    assert (first.sends, first.claimed) == (1, True)
    again = read(1, "a")
    assert (again.sends, again.claimed) == (2, False)  # the repeat counts, claims nothing
    assert (read(2, "a").sends, read(2, "a").claimed) == (1, False)  # another user's own count
    assert read(1, None) == sendcache.SendState(3, False, None, None)
    # The count is the cache API's own integer, with an expiry.
    assert cache.get(sendcache.throttle_key(1)) == 3
    if shared == "redis":
        import redis

        client = redis.Redis.from_url(redis_url_or_skip())
        ttl = client.ttl(cache.make_key(sendcache.throttle_key(1)))
        client.close()
        assert 0 < ttl <= sendcache.THROTTLE_KEY_SECONDS


def test_over_the_limit_nothing_is_claimed_and_a_released_id_may_be_sent_again(
    shared: str,
) -> None:
    assert read(1, "a", limit=1).claimed
    over = read(1, "b", limit=1)
    assert (over.sends, over.claimed) == (2, False)
    assert read(1, "b", limit=5).claimed  # not claimed by the refused send
    sendcache.release(1, "b")
    assert read(1, "b", limit=5).claimed
    assert not read(1, "a", limit=5).claimed


def test_the_flags_other_processes_set_are_read_with_it(shared: str) -> None:
    version = time.time_ns()
    cache.set(BACKENDS_VERSION_KEY, version, None)
    cache.set(sendcache.QUOTAS_IN_USE_KEY, 1, 60)
    state = read(1, "a")
    assert (state.quotas_in_use, state.backends_version) == (True, version)
    cache.set(sendcache.QUOTAS_IN_USE_KEY, 0, 60)
    assert read(1, "b").quotas_in_use is False
    cache.delete(sendcache.QUOTAS_IN_USE_KEY)
    assert read(1, "c").quotas_in_use is None


def test_a_flag_an_older_release_pickled_is_read_afresh(shared: str) -> None:
    """Up to the last release the quotas flag was a bool, which the cache pickles on Redis: the
    script cannot read it and says "not in the cache", so the database is asked again."""
    cache.set(sendcache.QUOTAS_IN_USE_KEY, True, 60)
    expected = None if shared == "redis" else True
    assert read(1, "a").quotas_in_use is expected


async def test_every_task_reads_the_cache_through_one_connection() -> None:
    """Django keeps a cache object per asyncio task: with a pool of its own, every WebSocket
    opened its own connection to Redis (r1chat/cachepool.py). 50 tasks reading the cache at
    once open at most a few."""
    import asyncio
    import contextvars

    import redis
    from django.conf import settings

    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set: the Redis cache's settings are not in use")
    server = redis.Redis.from_url(settings.REDIS_URL)
    cache.get("warm")  # (the pool's first connection)
    before = server.info("clients")["connected_clients"]
    go = asyncio.Event()

    async def tab() -> None:
        cache.get("anything")
        await go.wait()  # (each task, and its cache object, still there)

    # (each in a context of its own, as the server starts each socket's task)
    tabs = [asyncio.create_task(tab(), context=contextvars.Context()) for _ in range(50)]
    await asyncio.sleep(0.1)
    opened = server.info("clients")["connected_clients"] - before
    go.set()
    await asyncio.gather(*tabs)
    server.close()
    assert opened <= 2
