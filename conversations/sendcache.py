"""What every question reads and writes in the shared cache, in one round trip.

A question counts against its user's sends of the minute (the throttle), claims its `client_id`
(the second send with one id is a no-op), and reads two values other processes change: whether
any quota applies (`actions._quotas_in_use`) and the backends' version
(`catalog.enabled_backends`). Through Django's cache API on Redis that was six commands in four
round trips, ~330 µs of the event loop per question (blocking calls, on a question's path that
is ~650 µs of CPU in all); here it is one script, ~70 µs. The keys and values are the cache
API's own (`cache.make_key`, integers stored as they are), so either side reads the other's.

With any other cache (`LocMemCache`: the process's own memory, no round trip) the cache API is
used as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache

THROTTLE_KEY_SECONDS = 120  # a minute's count outlives its minute
QUOTAS_IN_USE_KEY = "r1chat:quotas-in-use"
BACKENDS_VERSION_KEY = "r1chat:backends-version"


@dataclass(frozen=True, slots=True)
class SendState:
    sends: int  # the user's sends in this minute, this one included
    claimed: bool  # the first send with its client_id (False: a repeat, or not claimed)
    quotas_in_use: bool | None  # None: not in the cache
    backends_version: Any  # None: not in the cache


def throttle_key(user_id: int) -> str:
    return f"r1chat:sends:{user_id}:{int(time.time() // 60)}"


def client_id_key(user_id: int, client_id: str) -> str:
    return f"r1chat:client-id:{user_id}:{client_id}"


def read(user_id: int, client_id: str | None, *, limit: int, claim_seconds: int) -> SendState:
    """Count this send; claim `client_id` (if given) unless the count is over `limit`."""
    script = _script()
    if script is not None:
        keys = [
            cache.make_key(throttle_key(user_id)),
            cache.make_key(client_id_key(user_id, client_id)) if client_id else "",
            cache.make_key(QUOTAS_IN_USE_KEY),
            cache.make_key(BACKENDS_VERSION_KEY),
        ]
        sends, claimed, quotas, version = script(
            keys=keys, args=[limit, claim_seconds, THROTTLE_KEY_SECONDS]
        )
        quotas, version = _integer(quotas), _integer(version)
        return SendState(sends, bool(claimed), None if quotas is None else bool(quotas), version)
    key = throttle_key(user_id)
    try:
        sends = cache.incr(key)
    except ValueError:  # this minute's first send
        sends = 1 if cache.add(key, 1, timeout=THROTTLE_KEY_SECONDS) else cache.incr(key)
    claimed = bool(
        client_id
        and sends <= limit
        and cache.add(client_id_key(user_id, client_id), 1, timeout=claim_seconds)
    )
    found = cache.get_many([QUOTAS_IN_USE_KEY, BACKENDS_VERSION_KEY])
    quotas = found.get(QUOTAS_IN_USE_KEY)
    return SendState(
        sends, claimed, None if quotas is None else bool(quotas), found.get(BACKENDS_VERSION_KEY)
    )


def _integer(raw: bytes | None) -> int | None:
    """A value the cache API stored as an integer; None for anything else (not there, or
    pickled by an older release: read afresh)."""
    try:
        return None if raw is None else int(raw)
    except ValueError:
        return None


def release(user_id: int, client_id: str) -> None:
    """A refused send's id may be sent again."""
    cache.delete(client_id_key(user_id, client_id))


# KEYS: the throttle count, the client_id claim ("" for none), the quotas flag, the backends'
# version. ARGV: the limit of sends a minute, the claim's seconds, the count's seconds.
_LUA = """
local sends = redis.call('INCR', KEYS[1])
if sends == 1 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
local claimed = 0
if KEYS[2] ~= '' and sends <= tonumber(ARGV[1]) then
  if redis.call('SET', KEYS[2], 1, 'NX', 'EX', ARGV[2]) then claimed = 1 end
end
return {sends, claimed, redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4])}
"""

# (the CACHES entry it was made for, the script or None): made again for another entry, as in
# tests that change CACHES
_made: tuple[Any, Any] | None = None


def _script() -> Any:
    """The registered script when the default cache is Django's Redis cache, else None."""
    global _made
    config = django_settings.CACHES[DEFAULT_CACHE_ALIAS]
    if _made is not None and _made[0] is config:
        return _made[1]
    script = None
    if config["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
        import redis

        location = config["LOCATION"]
        primary = (location.split(",") if isinstance(location, str) else location)[0]
        script = redis.Redis.from_url(primary).register_script(_LUA)
    _made = (config, script)
    return script
