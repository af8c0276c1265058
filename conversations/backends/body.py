"""Reading a streamed response body straight off the connection.

A model server writes one small packet per token. `RawBody` reads the body from the
connection's buffer (transport.py's protocol) with its own chunked-transfer decoder, one
`read()` per network read, and one lazily re-armed timer per stream for its deadlines. A body
read to its clean end lets http11.py give the connection back to its pool.
"""

from __future__ import annotations

import asyncio

from . import http11
from .base import BackendError, ErrorKind
from .retry import StreamTimer, describe_transport
from .transport import LOW_WATER, AsyncioStream

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
# A chunk-size line or trailer line longer than this is not HTTP (h11's own limit is 16 KiB
# for a whole incomplete event).
MAX_LINE = 16 * 1024


def _lost(detail: str) -> BackendError:
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
        "_handle",
        "_line",
        "_loop",
        "_pooled",
        "_protocol",
        "_remaining",
        "_state",
        "_timer",
        "_transport",
        "_waiter",
    )

    def __init__(
        self,
        stream: AsyncioStream,
        chunked: bool,
        length: int | None,
        timer: StreamTimer,
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
        # The connection may go back to its pool after a whole body with nothing after it
        # (see ended_cleanly).
        self._pooled = pooled
        self._done = not chunked and length == 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed_cap: float | None = None  # the timer's cap when the handle was armed
        self._waiter: asyncio.Future[None] | None = None

    # --- reading ---

    async def read(self) -> bytes | None:
        """Body bytes that have arrived (at least one), or None at the clean end of the body."""
        while not self._done:
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
        if len(protocol.buffer) < LOW_WATER:
            protocol.resume()
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
                        self._pooled = False
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
        go back to the pool. Bounded in time and in reads: a server that keeps talking after its
        terminal event is simply cut off (the connection is then closed)."""
        cap = self._loop.time() + 0.25
        timer = self._timer
        timer.cap = cap if timer.cap is None else min(cap, timer.cap)
        try:
            for _ in range(4):
                if await self.read() is None:
                    return
        except BackendError:
            self._pooled = False

    async def aclose(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def open_body(response: http11.Response, timer: StreamTimer) -> RawBody:
    """The reader of `response`'s body, timed by `timer`."""
    return response.body(timer)
