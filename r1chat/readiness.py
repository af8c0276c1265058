"""`/readyz`: may this process take traffic now?

Ready means: the database answers, Redis answers (when REDIS_URL is set: the cache and the
channel layer), at least one enabled model backend is reachable, and the process is not shutting
down. The JSON names every part and which failed; a failure gives 503. Failure texts are short
and never carry URLs or keys (the endpoint is meant for the local network, and nginx keeps it
there, but it must not leak secrets either way).

`/healthz` (liveness: the database and the channel layer) lives in `r1chat.views`.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

CHECK_TIMEOUT = 3.0  # seconds for each check; a probe answers within about this long
BACKEND_TTL = 15.0  # a backend's health is asked at most this often per process

# backend pk → (checked at, updated_at of the row, reachable)
_backend_cache: dict[int, tuple[float, Any, bool]] = {}

_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _describe(exc: BaseException) -> str:
    """A short failure text with any URL (which may carry a password) blanked out."""
    if isinstance(exc, TimeoutError):
        return "error: timed out"
    text = _URL.sub("<url>", str(exc)).strip()
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return "error: " + text[:200]


def _check_database() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_redis() -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(
        settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT
    )
    try:
        if not await client.ping():
            raise RuntimeError("PING was not answered")
    finally:
        await client.aclose()


async def _backend_reachable(backend: Any) -> bool:
    from conversations.backends import get_backend

    cached = _backend_cache.get(backend.pk)
    now = time.monotonic()
    if cached and cached[1] == backend.updated_at and now - cached[0] < BACKEND_TTL:
        return cached[2]
    try:
        health = await asyncio.wait_for(get_backend(backend.config()).health(), CHECK_TIMEOUT)
        reachable = bool(health.reachable)
    except Exception:
        reachable = False
    _backend_cache[backend.pk] = (now, backend.updated_at, reachable)
    return reachable


async def _check_backends() -> dict[str, str]:
    from conversations.models import Backend

    backends = [b async for b in Backend.objects.filter(enabled=True)]
    results = await asyncio.gather(*(_backend_reachable(b) for b in backends))
    return {b.name: "ok" if ok else "unreachable" for b, ok in zip(backends, results, strict=True)}


async def _run(check: Any) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # every failure is reported, none raised
        return _describe(exc)
    return "ok"


async def readiness() -> tuple[bool, dict[str, Any]]:
    """(ready, body) — what `/readyz` answers; also usable from management commands."""
    from conversations.runner import shutdown

    from .views import _check_channel_layer

    checks: dict[str, str] = {}
    if shutdown.is_shutting_down():
        checks["process"] = "error: shutting down"
    names = ["database"]
    jobs = [_run(sync_to_async(_check_database))]
    if settings.REDIS_URL:
        names += ["redis", "channel_layer"]
        jobs += [_run(_check_redis), _run(_check_channel_layer)]
    results = await asyncio.gather(*jobs)
    checks.update(zip(names, results, strict=True))

    backends: dict[str, str] = {}
    if checks["database"] == "ok":
        try:
            backends = await _check_backends()
        except Exception as exc:
            checks["backends"] = _describe(exc)
        else:
            if any(state == "ok" for state in backends.values()):
                checks["backends"] = "ok"
            elif backends:
                checks["backends"] = "error: no enabled backend is reachable"
            else:
                checks["backends"] = "error: no backend is enabled"
    else:
        checks["backends"] = "error: unknown (the database is not available)"

    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ready else "error", "checks": checks, "backends": backends}
    return ready, body


@never_cache
async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when this process can serve chats; 503 naming the failing parts."""
    ready, body = await readiness()
    return JsonResponse(body, status=200 if ready else 503)
