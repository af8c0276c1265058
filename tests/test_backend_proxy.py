"""Model servers reached through the proxy the environment names (HTTPS_PROXY, HTTP_PROXY,
ALL_PROXY, NO_PROXY): a real CONNECT proxy on loopback, in front of the simulator and of a TLS
server with a certificate of a test authority."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import trustme

from conversations.backends.base import BackendConfig, ErrorKind
from conversations.backends.openai import OpenAIBackend
from conversations.simulator import Scenario, Simulator
from tests.test_backend_scenarios import (
    close_made_backends,  # noqa: F401 (an autouse fixture: every backend made is closed)
    collect,
    make_backend,
    make_request,
)

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ConnectProxy:
    """An HTTP proxy as curl uses one: it tunnels (CONNECT) and forwards plain http requests
    (one per connection). It records the head of every request it gets and answers `refuse`
    instead, if set."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.refuse: bytes | None = None
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            request_line, _, header_block = head.partition(b"\r\n")
            method, target, version = request_line.split(b" ")
            if self.refuse is not None:
                writer.write(self.refuse)
                return
            if method == b"CONNECT":
                host, port = target.rsplit(b":", 1)
                up_reader, up_writer = await asyncio.open_connection(host.decode(), int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                url = urlsplit(target.decode())
                up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
                headers = [
                    line
                    for line in header_block.split(b"\r\n")
                    if line and not line.lower().startswith((b"connection:", b"proxy-"))
                ]
                up_writer.write(
                    b"%s %s %s\r\n%s\r\nConnection: close\r\n\r\n"
                    % (method, url.path.encode(), version, b"\r\n".join(headers))
                )
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[Simulator]:
    simulator.reset()
    simulator.scenario = Scenario(profile="deepseek", reasoning_tokens=3, answer_tokens=4)
    yield simulator
    simulator.reset()


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ConnectProxy]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    server = ConnectProxy()
    await server.start()
    yield server
    await server.stop()


async def test_a_stream_goes_through_the_proxy_the_environment_names(
    sim: Simulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    backend = make_backend(sim, "deepseek")
    got = await collect(backend, make_request("deepseek"))
    assert got.error is None
    assert (got.reasoning, got.answer) == sim.expected()
    assert len(proxy.heads) == 1
    # A plain http server: the proxy forwards the request (https goes through a tunnel).
    target = b"POST http://127.0.0.1:%d/chat/completions HTTP/1.1\r\n" % sim.port
    assert proxy.heads[0].startswith(target)
    assert (await collect(backend, make_request("deepseek"))).error is None
    assert len(proxy.heads) == 2 and proxy.heads[1].startswith(target)
    assert len(sim.requests) == 2
    await backend.aclose()


async def test_no_proxy_hosts_are_reached_directly(
    sim: Simulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    backend = make_backend(sim, "deepseek")
    assert (await collect(backend, make_request("deepseek"))).error is None
    assert proxy.heads == []
    await backend.aclose()


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_proxy_that_refuses_is_a_clear_error_without_its_password(
    sim: Simulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """Refused when forwarding a plain http request, or when asked for a tunnel (https)."""
    proxy.refuse = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    secret_url = f"http://team%40corp:s3cr%3At@127.0.0.1:{proxy.port}"
    monkeypatch.setenv(f"{scheme}_proxy", secret_url)
    backend = make_backend(sim, "deepseek", base_url=f"{scheme}://127.0.0.1:{sim.port}")
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind == ErrorKind.UNREACHABLE
    assert "through the proxy" in got.error.detail and "407" in got.error.detail
    assert "s3cr" not in got.error.detail
    assert not got.error.retryable and len(proxy.heads) == 1
    expected = base64.b64encode(b"team@corp:s3cr:t")
    header = b"\r\nproxy-authorization: basic " + expected.lower() + b"\r\n"
    assert header in proxy.heads[0].lower()
    assert sim.requests == []  # nothing went around the proxy
    await backend.aclose()


async def test_a_proxy_that_cannot_be_used_is_not_bypassed(
    sim: Simulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "socks5://127.0.0.1:1080")
    backend = make_backend(sim, "deepseek")
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind == ErrorKind.UNREACHABLE
    assert "unsupported proxy socks5://127.0.0.1" in got.error.detail
    assert sim.requests == []
    await backend.aclose()


async def test_tls_to_the_model_server_runs_inside_the_tunnel(
    proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """A cloud API (https) behind an egress proxy: TLS end to end, checked against the server's
    name, the proxy seeing only the tunnel."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    authority_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(authority_file))
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                seen.append(head)
                body = json.dumps({"data": [{"id": "deepseek-v4-flash"}]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("SSL_CERT_FILE", str(authority_file))
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")  # (no scheme: http://)
    backend = OpenAIBackend(BackendConfig(kind="openai", base_url=f"https://localhost:{port}"))
    try:
        models = await backend.list_models()
        assert [m.name for m in models] == ["deepseek-v4-flash"]
        assert proxy.heads[0].startswith(b"CONNECT localhost:%d HTTP/1.1\r\n" % port)
        assert seen and seen[0].startswith(b"GET /models HTTP/1.1\r\n")
        assert b"\r\nhost: localhost:%d\r\n" % port in seen[0].lower()
        # The tunnel is kept alive and reused like a direct connection.
        assert [m.name for m in await backend.list_models()] == ["deepseek-v4-flash"]
        assert len(proxy.heads) == 1 and len(seen) == 2
    finally:
        await backend.aclose()
        server.close()
