"""`/readyz`: database, Redis (when configured), at least one reachable backend; 503 naming the
failing parts."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from conversations.backends import close_all
from conversations.models import Backend
from conversations.runner import shutdown
from r1chat import readiness
from tests.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class _Ollama(BaseHTTPRequestHandler):
    """Just enough of Ollama for a health check."""

    def do_GET(self) -> None:
        if self.path == "/api/version":
            body: dict[str, Any] = {"version": "0.12.0"}
        elif self.path == "/api/tags":
            body = {"models": [{"name": "deepseek-r1:14b", "model": "deepseek-r1:14b"}]}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ollama_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ollama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
async def _clean() -> AsyncIterator[None]:
    readiness._backend_cache.clear()
    shutdown._reset_for_tests()
    yield
    readiness._backend_cache.clear()
    shutdown._reset_for_tests()
    await close_all()  # the shared httpx clients belong to this test's event loop
    await sync_to_async(connections.close_all)()


async def _ready(async_client: Any) -> tuple[int, dict[str, Any]]:
    response = await async_client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json()


async def test_ready_with_database_and_a_reachable_backend(async_client, ollama_url) -> None:
    await Backend.objects.acreate(name="Local Ollama", kind="ollama", base_url=ollama_url)
    await Backend.objects.acreate(
        name="Down", kind="ollama", base_url=f"http://127.0.0.1:{free_port()}"
    )
    status, body = await _ready(async_client)
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["backends"] == "ok"
    # One reachable backend is enough; the others are named.
    assert body["backends"] == {"Local Ollama": "ok", "Down": "unreachable"}
    from django.conf import settings

    if settings.REDIS_URL:
        assert body["checks"]["redis"] == "ok"
        assert body["checks"]["channel_layer"] == "ok"
    else:
        assert "redis" not in body["checks"]


async def test_not_ready_when_no_backend_is_reachable(async_client) -> None:
    await Backend.objects.acreate(
        name="Down", kind="ollama", base_url=f"http://127.0.0.1:{free_port()}"
    )
    await Backend.objects.acreate(
        name="Off", kind="ollama", base_url="http://127.0.0.1:9", enabled=False
    )
    status, body = await _ready(async_client)
    assert status == 503
    assert body["status"] == "error"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["backends"] == "error: no enabled backend is reachable"
    assert body["backends"] == {"Down": "unreachable"}  # disabled ones are not asked


async def test_not_ready_without_any_enabled_backend(async_client) -> None:
    status, body = await _ready(async_client)
    assert status == 503
    assert body["checks"]["backends"] == "error: no backend is enabled"


async def test_not_ready_when_redis_is_down_and_no_secret_is_shown(
    async_client, settings, ollama_url
) -> None:
    await Backend.objects.acreate(name="Local Ollama", kind="ollama", base_url=ollama_url)
    dead = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    settings.REDIS_URL = dead
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [dead]}}
    }
    status, body = await _ready(async_client)
    assert status == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["backends"] == "ok"
    assert body["checks"]["redis"].startswith("error:")
    assert body["checks"]["channel_layer"].startswith("error:")
    assert "hunter2secret" not in json.dumps(body)


async def test_not_ready_when_the_database_fails(async_client, monkeypatch) -> None:
    def broken() -> None:
        raise RuntimeError("connection to postgres://r1chat:pw@db/r1chat refused")

    monkeypatch.setattr(readiness, "_check_database", broken)
    status, body = await _ready(async_client)
    assert status == 503
    assert body["checks"]["database"].startswith("error: RuntimeError")
    assert "pw@" not in body["checks"]["database"]
    assert body["checks"]["backends"].startswith("error: unknown")


async def test_not_ready_while_shutting_down(async_client, ollama_url) -> None:
    await Backend.objects.acreate(name="Local Ollama", kind="ollama", base_url=ollama_url)
    assert (await _ready(async_client))[0] == 200
    await shutdown.drain(grace=0)
    status, body = await _ready(async_client)
    assert status == 503
    assert body["checks"]["process"] == "error: shutting down"


async def test_backend_health_is_cached_briefly(async_client, ollama_url) -> None:
    backend = await Backend.objects.acreate(name="Local Ollama", kind="ollama", base_url=ollama_url)
    assert (await _ready(async_client))[0] == 200
    assert backend.pk in readiness._backend_cache
    checked_at = readiness._backend_cache[backend.pk][0]
    assert (await _ready(async_client))[0] == 200
    assert readiness._backend_cache[backend.pk][0] == checked_at
