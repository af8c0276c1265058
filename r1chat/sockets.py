"""Daphne's sockets send a frame at once instead of at the next turn of the event loop.

Twisted buffers every write until the reactor reports the socket writable: for each frame a
tab gets, the socket is registered for writing (a system call), the loop turns, the data is sent
and the socket unregistered (another system call). A stream gives its tabs ~25 frames a second,
so at 200 streams that was 10,000 extra system calls and loop callbacks a second, and every
frame waited behind whatever else that turn of the loop ran. Here a write to a plain TCP
connection with nothing already waiting is sent at once; whatever the kernel does not take is
buffered and written by the reactor as before, so the order of bytes never changes.

autobahn's per-frame debug-log arguments are not formatted while debug logging is off.
"""

from __future__ import annotations

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
