"""Daphne's sockets send a frame at once instead of at the next turn of the event loop.

Twisted buffers every write until the reactor reports the socket writable: for each frame a
tab gets, the socket is registered for writing (a system call), the loop turns, the data is sent
and the socket unregistered (another system call). A stream gives its tabs ~25 frames a second,
so at 200 streams that was 10,000 extra system calls and loop callbacks a second, and every
frame waited behind whatever else that turn of the loop ran. Here a write to a plain TCP
connection with nothing already waiting is sent at once; whatever the kernel does not take is
buffered and written by the reactor as before, so the order of bytes never changes.

autobahn's per-frame debug-log arguments are not formatted while debug logging is off.

`FrameWriter`: the chat socket's text frames go straight onto Daphne's connection, the frames
of one pass of the event loop in one write.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from twisted.internet import tcp


def install() -> None:
    """Patch Twisted's TCP connections (idempotent; Daphne serves through them)."""
    _quiet_autobahn()
    if getattr(tcp.Connection, "_r1chat_write_through", False):
        return
    buffered_write = tcp.Connection.write

    def write(self: Any, data: bytes) -> None:
        if (
            type(data) is not bytes
            or not data
            or self.TLS
            or not self.connected
            or self.disconnecting
            or self._writeDisconnected
            or self._tempDataBuffer
            or self.offset < len(self.dataBuffer)
        ):
            buffered_write(self, data)  # the reactor's way: keeps everything in order
            return
        sent = self.writeSomeData(data)
        if not isinstance(sent, int) or sent < 0:
            buffered_write(self, data)  # the reactor's own write meets the error and reports it
        elif sent < len(data):
            buffered_write(self, data[sent:])

    tcp.Connection.write = write  # type: ignore[method-assign]
    tcp.Connection._r1chat_write_through = True  # type: ignore[attr-defined]


def _as_is(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


def _quiet_autobahn() -> None:
    """autobahn (Daphne's WebSocket layer) colours the arguments of a debug log line for every
    frame it sends and every read, through click, before the logger drops the line: about
    10 µs a frame, 5,000 frames a second at 200 streams. While debug logging is off, those
    arguments are passed as they are."""
    import txaio
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    if txaio.get_global_log_level() in ("debug", "trace"):
        return
    for module in (protocol, twisted_websocket):
        module.hltype = module.hlval = _as_is  # type: ignore[attr-defined]


# --- the chat socket's frames ---------------------------------------------------------------


def unwrapped_send(send: Any) -> Any:
    """`send` without Channels' session wrapper, which reads the session (through its lazy
    proxy, twice) on every message it passes, to save it before an HTTP response starts. A
    WebSocket never sends one, so for its messages the wrapper does nothing else."""
    from channels.sessions import InstanceSessionWrapper

    owner = getattr(send, "__self__", None)
    if isinstance(owner, InstanceSessionWrapper) and send.__func__ is InstanceSessionWrapper.send:
        return owner.real_send
    return send


def daphne_websocket(send: Any) -> Any:
    """The autobahn protocol of the Daphne connection behind an ASGI `send`, or None (another
    server, the test communicator)."""
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketProtocol

    send = unwrapped_send(send)
    if (
        isinstance(send, functools.partial)
        and getattr(send.func, "__func__", None) is Server.handle_reply
        and len(send.args) == 1
        and isinstance(send.args[0], WebSocketProtocol)
        and all(hasattr(send.args[0], name) for name in _AUTOBAHN_STATE)
    ):
        return send.args[0]
    return None


# What FrameWriter reads of autobahn's protocol; another autobahn without them is sent to
# through Daphne as before.
_AUTOBAHN_STATE = (
    "state", "STATE_OPEN", "transport", "_perMessageCompress", "send_queue", "autoFragmentSize",
    "maxMessagePayloadSize", "logFrames", "logOctets", "trackedTimings",
)  # fmt: skip


def text_frame(payload: bytes) -> bytes:
    """One whole, unmasked WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


class FrameWriter:
    """A chat socket's text frames, written straight onto its Daphne connection.

    Through Channels and Daphne a frame passed five layers of `send` (the session wrapper reading
    the session twice), was decoded to text and encoded back, and autobahn built its header
    field by field and counted it in its statistics: about half of what a frame cost the event
    loop, for ~25 frames a second per stream. Here the frame is built once and written. The
    frames of one pass of the loop go out in one write (a new question's three announcements
    were three system calls, each also waking the browser), at the start of the next pass.

    Only plain frames come this way: `send` says False for anything autobahn would treat
    otherwise (not open, compression, fragmentation, a size limit, frame logging), and the
    caller then sends through Daphne, after what is pending here. A frame pending when the
    socket closes is dropped, as autobahn drops frames sent after a close.
    """

    __slots__ = ("loop", "pending", "protocol")

    def __init__(self, protocol: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.protocol = protocol
        self.loop = loop
        self.pending: list[bytes] = []

    def send(self, payload: bytes) -> bool:
        p = self.protocol
        if (
            p.state != p.STATE_OPEN
            or p._perMessageCompress is not None
            or p.send_queue
            or p.autoFragmentSize
            or 0 < p.maxMessagePayloadSize < len(payload)
            or p.logFrames
            or p.logOctets
            or p.trackedTimings
        ):
            self.flush()
            return False
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(text_frame(payload))
        return True

    def flush(self) -> None:
        if not self.pending:
            return
        data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending.clear()
        p = self.protocol
        if p.state == p.STATE_OPEN and p.transport is not None:
            p.transport.write(data)
