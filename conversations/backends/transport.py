"""A lean asyncio network layer under httpx, for streams that arrive one token per packet.

httpx's default async network backend goes through anyio: every read of a streamed body opens a
cancel scope and pauses then resumes the socket in the selector (two epoll_ctl calls). A model
server writes one small packet per token, so at 200 streams × 50 tokens/s that was most of
r1chat's CPU. This backend keeps what httpx and httpcore do above the socket (HTTP/1.1 parsing,
pooling, TLS setup, errors) and replaces only the socket: an `asyncio.Protocol` that buffers what
arrives and hands it over without touching the selector.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx
from httpcore import AsyncNetworkBackend, AsyncNetworkStream

# Stop reading a socket whose unread data grows past this (the consumer is slow); go on below
# LOW_WATER.
HIGH_WATER = 1 << 20
LOW_WATER = 1 << 18

# Called once, in the task that set it, when that task's next request has been handed to the
# socket: a generation runner learns its question has left for the model (GenerationRunner.
# request_sent) without waiting for the response.
request_written: ContextVar[Callable[[], None] | None] = ContextVar("request_written", default=None)


def notify_request_written() -> None:
    notify = request_written.get()
    if notify is not None:
        request_written.set(None)
        notify()


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.read_waiter: asyncio.Future[None] | None = None
        self.drain_waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake_reader()
        if len(self.buffer) > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        self.writing_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain_waiter is not None and not self.drain_waiter.done():
            self.drain_waiter.set_result(None)

    def _wake_reader(self) -> None:
        if self.read_waiter is not None and not self.read_waiter.done():
            self.read_waiter.set_result(None)


class AsyncioStream(AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        while not protocol.buffer:
            if protocol.eof:
                if protocol.error is not None:
                    raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
                return b""
            protocol.read_waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await protocol.read_waiter
                else:
                    async with asyncio.timeout(timeout):
                        await protocol.read_waiter
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading") from None
            finally:
                protocol.read_waiter = None
        buffer = protocol.buffer
        if len(buffer) <= max_bytes:
            data = bytes(buffer)
            buffer.clear()
        else:
            data = bytes(buffer[:max_bytes])
            del buffer[:max_bytes]
        if protocol.reading_paused and len(buffer) < LOW_WATER:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        notify_request_written()
        protocol = self._protocol
        if protocol.writing_paused:
            protocol.drain_waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await protocol.drain_waiter
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out writing") from None
            finally:
                protocol.drain_waiter = None

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                self._transport,
                self._protocol,
                ssl_context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:
            raise httpcore.ConnectError("TLS could not be started")
        return AsyncioStream(transport, self._protocol)  # type: ignore[arg-type]

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # An idle pooled connection with something to read was closed by the server.
            return self._protocol.eof or bool(self._protocol.buffer)
        return None


class AsyncioBackend(AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol, host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock: socket.socket | None = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return AsyncioStream(transport, protocol)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ConnectionPool(httpcore.AsyncConnectionPool):
    """httpcore's pool, handing each HTTP/1.1 connection to one request at a time.

    httpcore counts an idle keep-alive connection available until the request handed to it has
    taken the connection's lock. In a burst of questions, dozens were handed the same idle
    connection, queued on its lock, and then found it busy and went back for a new connection
    one after another: the first 40 of 200 questions waited up to 1.4 s before connecting.
    The bookkeeping pass here also costs one walk over the connections, not one per idle one.
    """

    def _assign_requests_to_connections(self) -> list[Any]:
        # Called twice per request (when it arrives and when its response is closed): at 200
        # streams, asking every busy connection whether it is closed, expired or idle (four
        # calls each) was a fifth of the cost of a request. A connection handed to a request
        # is none of those, so it is only looked up in a set.
        closing: list[Any] = []
        taken = {r.connection for r in self._requests if r.connection is not None}
        kept: list[Any] = []
        idle: list[Any] = []
        for connection in self._connections:
            if connection in taken:
                kept.append(connection)
            elif connection.is_closed():
                continue
            elif connection.has_expired():
                closing.append(connection)
            else:
                kept.append(connection)
                if connection.is_idle():
                    idle.append(connection)
        surplus = len(idle) - self._max_keepalive_connections
        if surplus > 0:
            closing.extend(idle[:surplus])
            kept = [c for c in kept if c not in closing]
            idle = idle[surplus:]
        connections = self._connections
        connections[:] = kept
        for request in self._requests:
            if request.connection is not None:
                continue
            origin = request.request.url.origin
            connection = next(
                (c for c in idle if c.can_handle_request(origin) and c.is_available()), None
            )
            if connection is not None:
                idle.remove(connection)
            else:
                if len(connections) >= self._max_connections:
                    if not idle:
                        continue  # stays queued until a connection is released
                    surplus_connection = idle.pop(0)  # idle, for another origin
                    connections.remove(surplus_connection)
                    closing.append(surplus_connection)
                connection = self.create_connection(origin)
                connections.append(connection)
            request.assign_to_connection(connection)
        return closing


def make_transport(limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's own HTTP/1.1 transport (TLS, errors) over `AsyncioBackend` and `ConnectionPool`."""
    transport = httpx.AsyncHTTPTransport(http1=True, http2=False, limits=limits)
    pool = transport._pool
    transport._pool = ConnectionPool(
        ssl_context=pool._ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=AsyncioBackend(),
    )
    return transport
