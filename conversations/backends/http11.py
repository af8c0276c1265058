"""The model requests' own HTTP/1.1 client: one request, its status and headers, its body.

httpx and httpcore, which r1chat used before, cost about 0.6 ms of CPU to send a request and
read its headers, and gave the event loop back four times on the way even over a pooled
connection (anyio's lock and event checkpoints). In a burst of 200 questions every one of
those turns waited behind the whole burst, so the requests left for the model in one late
wave. Here a request over an idle pooled connection is written without giving the loop back,
and a new connection costs only the connect itself.

Every backend request goes this way, over plain HTTP or TLS, through the proxy the environment
names if any (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY, as curl and httpx read them: a
CONNECT tunnel through an http:// proxy). Errors are httpx's exception types
(`retry.HTTPBackend._transport_error` describes them); bodies are read by `body.RawBody`.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import ipaddress
import select
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

import httpx

from .transport import AsyncioStream, _Protocol, notify_request_written

if TYPE_CHECKING:
    from .body import RawBody
    from .retry import StreamTimer

# A status line and headers longer than this are not a model server's (h11 allows 16 KiB).
MAX_HEAD = 64 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
# A connection opened ahead of a request (`Pool.warm`) that takes longer than this is given up.
WARM_CONNECT_TIMEOUT = 10.0
_NO_BODY_STATUS = frozenset({204, 304})


class Proxy(NamedTuple):
    host: str
    port: int
    authorization: bytes  # a Proxy-Authorization header line, or b""


def proxy_for(origin: tuple[str, str, int], proxies: dict[str, str]) -> Proxy | None:
    """The proxy to reach `origin` through, or None to connect directly."""
    scheme, host, port = origin
    url = proxies.get(scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass_environment(f"{host}:{port}", proxies):
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        # Never a silent direct connection where the environment asks for a proxy.
        raise httpx.ProxyError(f"unsupported proxy {parts.scheme}://{parts.hostname or ''} "
                               "(an http:// proxy is needed)")  # fmt: skip
    authorization = b""
    if parts.username is not None:
        secret = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = b"Proxy-Authorization: Basic " + base64.b64encode(secret) + b"\r\n"
    return Proxy(parts.hostname, parts.port or 80, authorization)


class Headers(dict[str, str]):
    """Response headers by lower-case name; a repeated header's values joined with ", "."""

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


def _protocol_error(detail: str) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(detail)


class Response:
    """A response whose status and headers have arrived; read the body with `body()`,
    `aiter_bytes()` or `aread()`, then `aclose()` (which pools the connection if it can)."""

    __slots__ = (
        "_body",
        "_closed",
        "_keep_alive",
        "_make_timer",
        "_origin",
        "_pool",
        "chunked",
        "headers",
        "http_version",
        "length",
        "reason_phrase",
        "status_code",
        "stream",
    )

    def __init__(
        self,
        pool: Pool,
        origin: tuple[str, str, int],
        stream: AsyncioStream,
        status: int,
        reason: str,
        version: str,
        headers: Headers,
        *,
        chunked: bool,
        length: int | None,
        keep_alive: bool,
        make_timer: Callable[[], StreamTimer],
    ) -> None:
        self._pool = pool
        self._origin = origin
        self.stream = stream
        self.status_code = status
        self.reason_phrase = reason
        self.http_version = version
        self.headers = headers
        self.chunked = chunked
        self.length = length  # None: until the server closes the connection
        self._keep_alive = keep_alive
        self._make_timer = make_timer
        self._body: RawBody | None = None
        self._closed = False

    def body(self, timer: StreamTimer | None = None) -> RawBody:
        """The body reader (one per response), timed by `timer` (the backend's default)."""
        if self._body is None:
            from .body import RawBody

            self._body = RawBody(
                self.stream,
                self.chunked,
                self.length,
                timer or self._make_timer(),
                pooled=self._keep_alive,
            )
        return self._body

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        body = self.body()
        while (chunk := await body.read()) is not None:
            yield chunk

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        body = self._body
        if body is not None:
            await body.aclose()
        if body is not None and body.ended_cleanly():
            self._pool.release(self._origin, self.stream)
        else:
            self.stream._transport.close()  # an unread or cut body: this connection is done


class Pool:
    """Keep-alive connections by origin (scheme, host, port), newest first, for one backend."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        *,
        max_idle: int = 64,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], list[tuple[AsyncioStream, float]]] = {}
        self._idle_count = 0
        self._loop = asyncio.get_running_loop()
        self.closed = False
        # Connections being opened ahead of a request (`warm`), and how many clients are
        # expected to send one soon (`expect`), by origin.
        self._warming: dict[tuple[str, str, int], set[asyncio.Task[None]]] = {}
        self._expected: dict[tuple[str, str, int], int] = {}
        # The proxies the environment names, by scheme ("no": the hosts that bypass them).
        self._proxies = urllib.request.getproxies_environment()
        self._proxy_by_origin: dict[tuple[str, str, int], Proxy | None] = {}

    def _proxy(self, origin: tuple[str, str, int]) -> Proxy | None:
        try:
            return self._proxy_by_origin[origin]
        except KeyError:
            proxy = self._proxy_by_origin[origin] = proxy_for(origin, self._proxies)
            return proxy

    @property
    def idle_count(self) -> int:
        return self._idle_count

    def idle_for(self, url: httpx.URL) -> int:
        """Idle connections to `url`'s origin (some may have been closed by the server)."""
        return len(self._idle.get(_origin(url), ()))

    def expect(self, url: httpx.URL, change: int) -> None:
        """One more (`change` 1) or one fewer (-1) client likely to send a request to `url`'s
        origin soon; for each, a connection is kept open and idle (`warm`)."""
        origin = _origin(url)
        self._expected[origin] = max(0, self._expected.get(origin, 0) + change)
        if change > 0:
            self.warm(origin, self._expected[origin])

    def warm(self, origin: tuple[str, str, int], want: int) -> None:
        """Open connections to `origin` in the background until `want` are idle or being
        opened (at most the pool's idle limit), so that the next requests need no handshake.

        A browser preconnects when a page is likely to need a server; r1chat does when a chat
        tab opens: its question usually follows, and a new connection costs it a TCP (and, to
        a cloud API, a TLS) handshake before the request can leave — in a burst of questions,
        the creation and connect of every socket on top. A server that closes idle connections
        early (uvicorn, llama.cpp: after 5 s) only makes this useless, never wrong: a closed
        idle connection is not used (`_take`). A failure is left for the request to meet."""
        opening = self._warming.setdefault(origin, set())
        missing = min(want, self._max_idle) - len(self._idle.get(origin, ())) - len(opening)
        for _ in range(max(0, missing)):
            task = self._loop.create_task(self._open_idle(origin))
            opening.add(task)
            task.add_done_callback(opening.discard)

    async def _open_idle(self, origin: tuple[str, str, int]) -> None:
        _scheme, host, port = origin
        try:
            made = self._connect_now(host, port) if self._direct_http(origin) else None
            if made is None:
                stream = await self._connect(origin, WARM_CONNECT_TIMEOUT)
            else:
                sock, connected = made
                stream = await self._wrap(
                    sock, host, port, WARM_CONNECT_TIMEOUT, connecting=not connected
                )
        except httpx.TransportError:
            return  # unreachable now: the question will say so
        self.release(origin, stream)

    def _take(self, origin: tuple[str, str, int]) -> AsyncioStream | None:
        idle = self._idle.get(origin)
        now = self._loop.time()
        while idle:
            stream, since = idle.pop()
            self._idle_count -= 1
            protocol = stream._protocol
            if (
                now - since < self._expiry
                and not protocol.eof
                and not protocol.buffer  # bytes nobody asked for: the server is confused
                and not stream._transport.is_closing()
            ):
                return stream
            stream._transport.close()
        return None

    def release(self, origin: tuple[str, str, int], stream: AsyncioStream) -> None:
        protocol = stream._protocol
        if self.closed or protocol.eof or protocol.buffer or stream._transport.is_closing():
            stream._transport.close()
            return
        self._idle.setdefault(origin, []).append((stream, self._loop.time()))
        self._idle_count += 1
        while self._idle_count > self._max_idle:  # the oldest idle connection goes
            oldest = min(
                (key for key, streams in self._idle.items() if streams),
                key=lambda key: self._idle[key][0][1],
            )
            old, _since = self._idle[oldest].pop(0)
            self._idle_count -= 1
            old._transport.close()

    async def _connect(self, origin: tuple[str, str, int], timeout: float | None) -> AsyncioStream:
        scheme, host, port = origin
        tls = scheme == "https"
        if tls and self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        proxy = self._proxy(origin)
        try:
            async with asyncio.timeout(timeout):
                if proxy is not None:
                    transport, protocol = await self._tunnel(proxy, host, port, tls)
                else:
                    transport, protocol = await self._loop.create_connection(
                        _Protocol,
                        host,
                        port,
                        ssl=self._ssl_context if tls else None,
                        server_hostname=host if tls else None,
                    )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return AsyncioStream(transport, protocol)  # type: ignore[arg-type]

    async def _tunnel(
        self, proxy: Proxy, host: str, port: int, tls: bool
    ) -> tuple[asyncio.BaseTransport, _Protocol]:
        """A connection to `host:port` through an HTTP CONNECT tunnel of `proxy` (TLS inside it,
        end to end with the model server, for https)."""
        try:
            transport, protocol = await self._loop.create_connection(
                _Protocol, proxy.host, proxy.port
            )
        except OSError as exc:
            raise httpx.ProxyError(
                f"cannot connect to the proxy {proxy.host}:{proxy.port}: {exc}"
            ) from exc
        try:
            target = (f"[{host}]" if ":" in host else host).encode("ascii") + b":%d" % port
            stream = AsyncioStream(transport, protocol)
            await stream.write(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                               % (target, target, proxy.authorization))  # fmt: skip
            try:
                status, reason, _version, _headers = await _read_head(stream)
            except httpx.TransportError as exc:
                raise httpx.ProxyError(f"the proxy {proxy.host}:{proxy.port}: {exc}") from exc
            if not 200 <= status < 300 or protocol.buffer:
                raise httpx.ProxyError(
                    f"the proxy {proxy.host}:{proxy.port} refused the tunnel to "
                    f"{target.decode()}: {status} {reason}".rstrip()
                )
            if tls:
                transport = await self._loop.start_tls(
                    transport, protocol, self._ssl_context, server_hostname=host
                )
                protocol.transport = transport  # type: ignore[assignment]
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    def _direct_http(self, origin: tuple[str, str, int]) -> bool:
        return origin[0] == "http" and self._proxy(origin) is None

    def _connect_now(self, host: str, port: int) -> tuple[socket.socket, bool] | None:
        """A new socket to `host` (an IP address) and whether it is connected already; None
        if `host` is a name (resolving it may block, so asyncio does it in `_connect`).

        On loopback and most LANs the handshake is over by the time `connect` returns, so
        the request can be written in the same turn of the event loop, before the transport
        that reads the answer is set up."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            error = sock.connect_ex((host, port))
            if error not in (0, errno.EINPROGRESS):
                raise OSError(error, f"Connect call failed {(host, port)}")
            poller = select.poll()
            poller.register(sock, select.POLLOUT)
            if not poller.poll(0):
                return sock, False
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, f"Connect call failed {(host, port)}")
        except OSError as exc:
            sock.close()
            raise httpx.ConnectError(str(exc)) from exc
        return sock, True

    async def _open_and_send(
        self, origin: tuple[str, str, int], data: bytes, timeout: float | None
    ) -> AsyncioStream:
        """A new connection with `data` written on it."""
        _scheme, host, port = origin
        made = self._connect_now(host, port) if self._direct_http(origin) else None
        if made is None:
            stream = await self._connect(origin, timeout)
        else:
            sock, connected = made
            sent = 0
            if connected:
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    pass
                except OSError as exc:
                    sock.close()
                    raise httpx.ConnectError(str(exc)) from exc
                if sent:
                    notify_request_written()
            stream = await self._wrap(sock, host, port, timeout, connecting=not connected)
            data = data[sent:]
        if data:
            await stream.write(data)
        return stream

    async def _wrap(
        self,
        sock: socket.socket,
        host: str,
        port: int,
        timeout: float | None,
        *,
        connecting: bool = False,
    ) -> AsyncioStream:
        """The stream over `sock`, once its connection (still `connecting`) is made."""
        try:
            async with asyncio.timeout(timeout):
                if connecting:
                    await self._loop.sock_connect(sock, (host, port))
                transport, protocol = await self._loop.create_connection(_Protocol, sock=sock)
        except TimeoutError:
            sock.close()
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            sock.close()
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            sock.close()
            raise
        return AsyncioStream(transport, protocol)  # type: ignore[arg-type]

    async def request(
        self,
        method: bytes,
        url: httpx.URL,
        head: bytes,
        body: bytes,
        *,
        connect_timeout: float | None,
        make_timer: Callable[[], StreamTimer],
    ) -> Response:
        """Send `method url` with the header lines `head` (each ending in CRLF) and `body`,
        and return the response once its status and headers have arrived.

        A pooled connection the server closed while it sat idle is noticed when nothing comes
        back; the request is then sent once more on a new connection."""
        origin = _origin(url)
        length = b"Content-Length: %d\r\n" % len(body) if method != b"GET" else b""
        data = b"".join((method, b" ", url.raw_path, b" HTTP/1.1\r\nHost: ", url.netloc, b"\r\n",
                         head, length, b"\r\n", body))  # fmt: skip
        stream = self._take(origin)
        while True:
            fresh = stream is None
            try:
                if stream is None:
                    stream = await self._open_and_send(origin, data, connect_timeout)
                else:
                    await stream.write(data)
                status, reason, version, headers = await _read_head(stream)
            except BaseException as exc:
                if stream is not None:
                    stream._transport.close()
                if not fresh and isinstance(exc, _Stale | httpx.WriteError):
                    stream = None  # a pooled connection the server had closed: a new one
                    continue
                raise
            break
        return _response(self, origin, stream, method, status, reason, version, headers,
                         make_timer)  # fmt: skip

    def close(self) -> None:
        self.closed = True
        for opening in self._warming.values():
            for task in opening:
                task.cancel()
        self._warming.clear()
        for streams in self._idle.values():
            for stream, _since in streams:
                stream._transport.close()
        self._idle.clear()
        self._idle_count = 0


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return (url.scheme, url.raw_host.decode("ascii"), url.port or DEFAULT_PORTS[url.scheme])


class _Stale(httpx.RemoteProtocolError):
    """The connection ended before the first byte of a response."""


async def _read_head(stream: AsyncioStream) -> tuple[int, str, str, Headers]:
    """The status line and headers of the next final (non-1xx) response."""
    protocol = stream._protocol
    buffer = protocol.buffer
    loop = asyncio.get_running_loop()
    start = 0
    while True:
        end = buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(buffer) > MAX_HEAD:
                raise _protocol_error("the response's headers are too long")
            if protocol.eof:
                if protocol.error is not None and not buffer:
                    raise _Stale(f"connection lost: {protocol.error}")
                if not buffer:
                    raise _Stale("Server disconnected without sending a response.")
                raise _protocol_error("the connection closed in the middle of the headers")
            start = max(0, len(buffer) - 3)
            protocol.resume()  # (paused while a burst went on: this read needs more)
            protocol.read_waiter = loop.create_future()
            try:
                await protocol.read_waiter
            finally:
                protocol.read_waiter = None
            continue
        head = bytes(buffer[:end])
        del buffer[: end + 4]
        start = 0
        status, reason, version, headers = _parse_head(head)
        if 100 <= status < 200 and status != 101:
            continue  # 100 Continue, 103 Early Hints: the real response follows
        return status, reason, version, headers


def _parse_head(head: bytes) -> tuple[int, str, str, Headers]:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise _protocol_error(f"malformed status line {lines[0][:80]!r}")
    status = int(parts[1])
    if not 100 <= status <= 999 or len(parts[1]) != 3:
        raise _protocol_error(f"malformed status line {lines[0][:80]!r}")
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise _protocol_error(f"malformed header line {line[:80]!r}")
        key = name.decode("latin-1").lower()
        text = value.strip(b" \t").decode("latin-1")
        old = headers.get(key)
        dict.__setitem__(headers, key, text if old is None else f"{old}, {text}")
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    return status, reason, parts[0].decode("ascii", "replace"), headers


def _response(
    pool: Pool,
    origin: tuple[str, str, int],
    stream: AsyncioStream,
    method: bytes,
    status: int,
    reason: str,
    version: str,
    headers: Headers,
    make_timer: Callable[[], StreamTimer],
) -> Response:
    """How the body is framed (RFC 9112 §6.3), and whether the connection can be reused."""
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = version == "HTTP/1.1" and "close" not in tokens
    chunked, length = False, None
    te = headers.get("transfer-encoding")
    if method == b"HEAD" or status in _NO_BODY_STATUS:
        length = 0
    elif te is not None:
        codings = [c.strip().lower() for c in te.split(",")]
        if codings != ["chunked"]:
            stream._transport.close()
            raise _protocol_error(f"unsupported transfer coding {te!r}")
        chunked = True
    elif (cl := headers.get("content-length")) is not None:
        values = {v.strip() for v in cl.split(",")}
        if len(values) != 1 or not (value := values.pop()).isdigit():
            stream._transport.close()
            raise _protocol_error(f"malformed Content-Length {cl!r}")
        length = int(value)
    else:
        keep_alive = False  # the body runs until the server closes the connection
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", ""):
        # Asked for with "Accept-Encoding: identity"; a server that compresses anyway is broken.
        stream._transport.close()
        raise _protocol_error(f"the server compressed its answer ({encoding}) unasked")
    return Response(pool, origin, stream, status, reason, version, headers, chunked=chunked,
                    length=length, keep_alive=keep_alive, make_timer=make_timer)  # fmt: skip
