"""Site-wide views: liveness and readiness."""

from __future__ import annotations

import asyncio
import uuid

from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    # Through a group, as the chat's frames go.
    if hasattr(layer, "ping"):  # team mode: a message through Redis and back
        await layer.ping()
    channel = await layer.new_channel()
    group = f"healthz.{uuid.uuid4().hex}"
    probe = {"type": "healthz.probe", "token": uuid.uuid4().hex}
    await layer.group_add(group, channel)
    try:
        await layer.group_send(group, probe)
        async with asyncio.timeout(2):
            received = await layer.receive(channel)
            while received.get("type") != probe["type"]:  # (e.g. r1chat's `layer.down`)
                received = await layer.receive(channel)
    finally:
        await layer.group_discard(group, channel)
    if received.get("token") != probe["token"]:
        raise RuntimeError("channel layer returned a different message")


@never_cache
async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database and the channel layer work; 503 naming the failing part."""
    from asgiref.sync import sync_to_async

    checks: dict[str, str] = {}
    try:
        await sync_to_async(_check_database)()
        checks["database"] = "ok"
    except Exception as exc:  # any failure is reported, not raised
        checks["database"] = f"error: {type(exc).__name__}: {exc}"
    try:
        await _check_channel_layer()
        checks["channel_layer"] = "ok"
    except Exception as exc:
        checks["channel_layer"] = f"error: {type(exc).__name__}: {exc}"
    ok = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if ok else "error", "checks": checks}
    return JsonResponse(body, status=200 if ok else 503)
