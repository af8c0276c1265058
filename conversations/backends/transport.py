"""The socket under the backends' HTTP client (http11.py), for streams that arrive one token
per packet.

An `asyncio.Protocol` buffers what arrives and wakes at most one reader, without touching the
selector: no cancel scope per read and no pausing and resuming of the socket (two epoll_ctl
calls), as a stream-based reader would do for every token at 200 streams × 50 tokens/s. It
pauses the socket only when nobody reads: the reader is slow, or a burst of questions is taken
and the stream holds its tokens (conversations.admission), once per burst instead of a read per
token meanwhile.
`body.RawBody` and http11's header reader read its buffer directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextvars import ContextVar

import httpx

# Stop reading a socket whose unread data grows past this (the consumer is slow); go on below
# LOW_WATER.
HIGH_WATER = 1 << 20
LOW_WATER = 1 << 18

# Called once, in the task that set it, when that task's next request has been handed to the
# socket: a generation runner learns its question has left for the model (GenerationRunner.
# request_sent) without waiting for the response.
request_written: ContextVar[Callable[[], None] | None] = ContextVar("request_written", default=None)


def _burst() -> bool:
    from conversations.admission import admission

    return bool(admission().waiting)


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
        if self.read_waiter is not None:
            self._wake_reader()
            if len(self.buffer) <= HIGH_WATER:
                return
        elif len(self.buffer) <= HIGH_WATER and not _burst():
            return
        # Nobody reads now while a burst of questions is taken (a held stream, see
        # conversations.admission): its next tokens wait in the kernel, not a read each
        # (~10 per stream per burst, each a wakeup of the loop); or the reader is slow.
        if self.transport is not None and not self.reading_paused:
            self.transport.pause_reading()
            self.reading_paused = True

    def resume(self) -> None:
        """Read the socket again, if it was paused (a slow reader, or a stream held through a
        burst)."""
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

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


class AsyncioStream:
    """One connection: its transport and its protocol's buffer."""

    __slots__ = ("_protocol", "_transport")

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def write(self, buffer: bytes) -> None:
        """Hand `buffer` to the socket; wait only if the kernel's buffer is full."""
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpx.WriteError("the connection is closed")
        self._transport.write(buffer)
        notify_request_written()
        protocol = self._protocol
        if protocol.writing_paused:
            protocol.drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await protocol.drain_waiter
            finally:
                protocol.drain_waiter = None
