"""Daphne's sockets send frames at once (r1chat/sockets.py), over a real socket pair; no
per-frame work for log lines nobody sees."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.protocol import Protocol

from r1chat import sockets


class Reactor:
    """What a Twisted connection asks of its reactor for writing, recorded."""

    def __init__(self) -> None:
        self.writers: list[Any] = []

    def addWriter(self, writer: Any) -> None:
        self.writers.append(writer)

    def removeWriter(self, writer: Any) -> None:
        self.writers.remove(writer)


def _connection() -> tuple[tcp.Connection, socket.socket, Reactor]:
    sockets.install()
    ours, peer = socket.socketpair()
    reactor = Reactor()
    connection = tcp.Connection(ours, Protocol(), reactor)  # type: ignore[arg-type]
    connection.connected = True
    peer.settimeout(1)
    return connection, peer, reactor


def _read(peer: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += peer.recv(size - len(data))
    return data


def test_a_frame_is_sent_at_once_without_waiting_for_the_reactor() -> None:
    connection, peer, reactor = _connection()
    connection.write(b"frame one")
    assert _read(peer, 9) == b"frame one"
    assert reactor.writers == []  # the socket was never registered for writing


def test_what_the_kernel_does_not_take_is_buffered_in_order() -> None:
    connection, peer, reactor = _connection()
    big = bytes(range(256)) * 40_000  # ~10 MB: more than the socket buffer takes
    connection.write(big)
    assert reactor.writers == [connection]  # the rest waits for the reactor
    connection.write(b"after")  # queued behind the rest, not sent ahead of it
    received = bytearray()
    while len(received) < len(big) + 5:
        received += peer.recv(1 << 20)
        if connection in reactor.writers:
            connection.doWrite()  # what the reactor does when the socket is writable
    assert bytes(received) == big + b"after"
    assert reactor.writers == []


def test_no_frame_formats_a_debug_line_while_debug_logging_is_off(monkeypatch: Any) -> None:
    import click
    from autobahn.twisted import websocket as twisted_websocket
    from autobahn.websocket import protocol

    styled: list[str] = []
    monkeypatch.setattr(click, "style", lambda text, **_kw: styled.append(text) or text)
    sockets.install()
    # The arguments autobahn builds for its "sent"/"received" debug lines on every frame.
    for module in (protocol, twisted_websocket):
        module.hltype(protocol.WebSocketProtocol.sendData)
        module.hlval("tcp:127.0.0.1:50000")
        module.hlval(1234)
    assert styled == []
