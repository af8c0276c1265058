"""Reading a streamed response body: straight off the connection, or through httpx.

A model server writes one small packet per token. Through httpx every packet passes h11's event
machinery and half a dozen async iterators (httpcore's connection and pool streams, httpx's
response stream, `aiter_raw`, `aiter_bytes`) plus an `asyncio.timeout_at` per read; at 200
streams × 50 tokens/s that was most of the backend's CPU. So `RawBody` reads the body from the
connection's buffer (transport.py's protocol) with its own chunked-transfer decoder, one
`read()` per network read.

Requests normally go through r1chat's own client (http11.py): its responses are always read by
`RawBody`, and a body read to its clean end gives the connection back to http11's pool. For a
response httpx fetched (see http11.py for when), httpx sent the request and read the headers;
after a clean chunked end httpcore's h11 state is told the body ended (a bare terminator), so
the connection goes back to httpx's pool; anything unusual (a compressed body, an unknown
transfer coding) falls back to `HttpxBody`, the plain httpx path. Both raise the same
`BackendError`s for the same faults.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import httpx

from . import http11
from .base import BackendError, ErrorKind
from .retry import StreamTimer, describe_transport, drain
from .transport import LOW_WATER, AsyncioStream

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
# A chunk-size line or trailer line longer than this is not HTTP (h11's own limit is 16 KiB
# for a whole incomplete event).
MAX_LINE = 16 * 1024


class HttpxBody:
    """The body through httpx: `response.aiter_bytes()` under the stream timer."""

    __slots__ = ("_chunks", "_timer")

    def __init__(self, response: httpx.Response, timer: StreamTimer) -> None:
        self._chunks = response.aiter_bytes()
        self._timer = timer

    async def read(self) -> bytes | None:
        """The next piece of the body, or None at its clean end."""
        return await self._timer.read(self._chunks)

    async def drain(self) -> None:
        await drain(self._chunks, self._timer)

    async def aclose(self) -> None:
        await self._chunks.aclose()


def _lost(detail: str) -> BackendError:
    # The same wording as StreamTimer.read gives httpx's transport errors.
    return BackendError(ErrorKind.TRUNCATED, f"connection lost mid-stream: {detail}")


class RawBody:
    """The body of a streamed response, read from the connection's protocol buffer.

    `read()` returns everything that has arrived (de-chunked) in one piece, so a parser sees
    one call per network read. Timing is the `StreamTimer`'s (idle, no-data, total, cap), with
    one lazily re-armed timer handle per stream instead of a timeout per read: deadlines only
    move later as bytes arrive, so the handle fires about once per idle period, and then
    re-arms itself unless the deadline has really passed while we were waiting.
    """

    __slots__ = (
        "_armed_cap",
        "_chunked",
        "_done",
        "_h11",
        "_handle",
        "_line",
        "_loop",
        "_pending",
        "_pooled",
        "_protocol",
        "_remaining",
        "_reusable",
        "_state",
        "_timer",
        "_transport",
        "_waiter",
    )

    def __init__(
        self,
        stream: AsyncioStream,
        leftover: bytes,
        chunked: bool,
        length: int | None,
        timer: StreamTimer,
        h11_state: h11.Connection | None = None,
        *,
        pooled: bool = False,
    ) -> None:
        self._protocol = stream._protocol
        self._transport = stream._transport
        self._timer = timer
        self._loop = asyncio.get_running_loop()
        self._chunked = chunked
        self._remaining = length  # Content-Length bytes still to come (None: until close)
        self._state = _SIZE
        self._line = b""  # an unfinished chunk-size or trailer line
        self._pending = leftover  # body bytes h11 had already received with the headers
        # httpcore's HTTP/1.1 state for this connection; it still holds `leftover` unparsed.
        self._h11 = h11_state
        # The connection can go back to the pool after the body: chunked, and `leftover` ends
        # on a chunk boundary (so h11 can be told the body's end with a bare terminator).
        self._reusable = chunked and h11_state is not None and not leftover
        # On http11's own connection (no h11 state): it may go back to its pool after a
        # whole body with nothing after it (see ended_cleanly).
        self._pooled = pooled
        self._done = not chunked and length == 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_cap: float | None = None  # the timer's cap when the handle was armed
        self._waiter: asyncio.Future[None] | None = None

    # --- reading ---

    async def read(self) -> bytes | None:
        """Body bytes that have arrived (at least one), or None at the clean end of the body."""
        while not self._done:
            data = self._pending
            if data:
                self._pending = b""
                if self._chunked:
                    data = self._dechunk(data)
                    self._reusable = (
                        self._h11 is not None and self._state == _SIZE and not self._line
                    )
                    if data:
                        return data
                    continue
            else:
                data = await self._receive()
                if data is None:
                    return self._at_eof()
            self._timer.last_byte = self._loop.time()
            if self._chunked:
                data = self._dechunk(data)
            elif self._remaining is not None:
                if len(data) >= self._remaining:
                    if len(data) > self._remaining:  # a server that talks after its body
                        self._pooled = False
                    data = data[: self._remaining]
                    self._done = True
                self._remaining -= len(data)
            if data:
                return data
        return None

    async def _receive(self) -> bytes | None:
        """Raw bytes from the connection, or None at EOF (an error raises)."""
        protocol = self._protocol
        while not protocol.buffer:
            if protocol.eof:
                if protocol.error is not None:
                    raise _lost(describe_transport(protocol.error))
                return None
            self._wait_armed()
            waiter = self._waiter = protocol.read_waiter = self._loop.create_future()
            try:
                await waiter
            except TimeoutError:
                raise self._timer._timeout_error() from None
            finally:
                protocol.read_waiter = None
                self._waiter = None
        data = bytes(protocol.buffer)
        protocol.buffer.clear()
        if protocol.reading_paused and len(protocol.buffer) < LOW_WATER:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    def _at_eof(self) -> None:
        if self._chunked:
            raise _lost(
                "peer closed connection without sending complete message body: "
                "incomplete chunked read"
            )
        if self._remaining:
            raise _lost(
                "peer closed connection without sending complete message body: "
                f"{self._remaining} bytes missing"
            )
        self._done = True
        return None

    # --- deadlines ---

    def _wait_armed(self) -> None:
        handle = self._handle
        cap = self._timer.cap
        if handle is not None and cap == self._armed_cap:
            # Without a new cap the deadlines only moved later (bytes arrived): the handle
            # fires no later than needed, and re-arms itself if early.
            return
        deadline = self._timer.deadline()
        self._armed_cap = cap
        if handle is not None:
            if handle.when() <= deadline:
                return
            handle.cancel()
        self._handle = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody is waiting: the next wait arms a new handle
        deadline = self._timer.deadline()
        if deadline <= self._loop.time() + self._loop._clock_resolution:  # type: ignore[attr-defined]
            waiter.set_exception(TimeoutError())
        else:
            self._armed_cap = self._timer.cap
            self._handle = self._loop.call_at(deadline, self._on_timer)

    # --- chunked transfer coding ---

    def _dechunk(self, data: bytes) -> bytes:
        if self._state == _SIZE and not self._line:
            # The usual packet: exactly one whole chunk, `<hex size>\r\n<data>\r\n`.
            nl = data.find(b"\r\n")
            if 0 < nl <= 8 and data.endswith(b"\r\n"):
                try:
                    size = int(data[:nl], 16)
                except ValueError:
                    size = -1
                if size > 0 and len(data) == nl + size + 4 and data[:1] not in (b"+", b"-"):
                    return data[nl + 2 : nl + 2 + size]
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = min(self._remaining or 0, end - pos)
                out.append(data[pos : pos + take])
                pos += take
                self._remaining = (self._remaining or 0) - take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DONE:  # a server that talks after its body is ignored
                break
            else:
                nl = data.find(b"\n", pos)
                if nl < 0:
                    self._line += data[pos:]
                    if len(self._line) > MAX_LINE:
                        raise _lost("chunk header too long")
                    break
                line = data[pos:nl]
                if self._line:
                    line = self._line + line
                    self._line = b""
                pos = nl + 1
                if line.endswith(b"\r"):
                    line = line[:-1]
                if state == _DATA_END:
                    if line:
                        raise _lost("illegal chunk terminator")
                    self._state = _SIZE
                elif state == _SIZE:
                    size_text = line.split(b";", 1)[0].strip()
                    try:
                        size = int(size_text, 16)
                    except ValueError:
                        raise _lost("illegal chunk header") from None
                    if size < 0 or size_text[:1] in (b"+", b"-"):
                        raise _lost("illegal chunk header")
                    if size == 0:
                        self._state = _TRAILER
                    else:
                        self._remaining = size
                        self._state = _DATA
                elif not line:  # the blank line after the (usually absent) trailers
                    self._state = _DONE
                    self._done = True
                    if pos < end:  # a server that talks after its body: never reuse it
                        self._reusable = self._pooled = False
                    break
        if len(out) == 1:
            return out[0]
        return b"".join(out)

    def ended_cleanly(self) -> bool:
        """The whole body was read, nothing came after it, and the connection is open: it can
        serve another request (http11's pool)."""
        protocol = self._protocol
        return (
            self._pooled
            and self._done
            and (not self._chunked or self._state == _DONE)
            and self._remaining in (None, 0)
            and not protocol.buffer
            and not protocol.eof
        )

    async def drain(self) -> None:
        """Read what is left of a finished body (the chunked terminator) so the connection can
        go back to the pool. Bounded like `retry.drain`: a server that keeps talking after its
        terminal event is simply cut off (the connection is then closed)."""
        cap = self._loop.time() + 0.25
        timer = self._timer
        timer.cap = cap if timer.cap is None else min(cap, timer.cap)
        try:
            for _ in range(4):
                if await self.read() is None:
                    return
        except BackendError:
            self._reusable = self._pooled = False

    async def aclose(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        state = self._h11
        if state is None:
            return
        self._h11 = None
        protocol = self._protocol
        if (
            not self._reusable
            or self._state != _DONE
            or protocol.buffer
            or protocol.eof
            or state.their_state is not h11.SEND_BODY
        ):
            return  # httpcore sees an unfinished body and closes the connection
        # Tell httpcore's h11 the body ended, so closing the response pools the connection:
        # what it holds unparsed ended on a chunk boundary, so a bare terminator completes it.
        try:
            state.receive_data(b"0\r\n\r\n")
            while True:
                event = state.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or type(event) is h11.EndOfMessage:
                    break
        except h11.RemoteProtocolError:
            return  # h11 is in its error state: the connection is closed
        if state.their_state is not h11.DONE or state.trailing_data[0]:
            # Not a clean end after all: make sure the connection is never reused.
            protocol.eof = True
            self._transport.abort()


def open_body(
    response: httpx.Response | http11.Response, timer: StreamTimer
) -> RawBody | HttpxBody:
    """The fastest reader that is correct for this response."""
    if isinstance(response, http11.Response):
        return response.body(timer)
    raw = _raw_source(response)
    if raw is None:
        return HttpxBody(response, timer)
    stream, leftover, chunked, length, state = raw
    return RawBody(stream, leftover, chunked, length, timer, state)


def _raw_source(
    response: httpx.Response,
) -> tuple[AsyncioStream, bytes, bool, int | None, h11.Connection] | None:
    """The connection and what h11 already buffered, if the body can be read raw."""
    stream: Any = response.extensions.get("network_stream")
    if type(stream) is not AsyncioStream:
        return None
    if response.extensions.get("http_version") not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    headers = response.headers
    if headers.get("content-encoding", "identity").strip().lower() not in ("identity", ""):
        return None  # gzip & co.: httpx decodes them
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    length: int | None = None
    if te is not None:
        if te.strip().lower() != "chunked":
            return None
        chunked = True
    else:
        chunked = False
        if cl is not None:
            if not cl.strip().isdigit():
                return None
            length = int(cl)
    try:
        # BoundAsyncStream -> AsyncResponseStream -> PoolByteStream -> HTTP11ConnectionByteStream
        connection = response.stream._stream._httpcore_stream._stream._connection  # type: ignore[attr-defined]
        state = connection._h11_state
    except AttributeError:
        return None
    if not isinstance(state, h11.Connection) or connection._network_stream is not stream:
        return None
    if state.their_state is not h11.SEND_BODY:
        return None
    leftover, _closed = state.trailing_data
    return stream, bytes(leftover), chunked, length, state
