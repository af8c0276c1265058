"""The chat socket's frames written straight onto Daphne's connection (r1chat/sockets.py
`FrameWriter`): well-formed WebSocket frames of every length, in order, over a real Daphne."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.sessions import InstanceSessionWrapper
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from conversations.models import Message
from conversations.simulator import Scenario
from r1chat import sockets
from tests import processes
from tests.chat_support import assemble, make_backend, make_user, session_cookie
from tests.processes import WsTab


def _server() -> Server:
    return Server(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])  # (not run)


def _parse(data: bytes) -> list[Frame]:
    """The frames in `data`, parsed as a browser does (server frames are unmasked)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("a frame was cut short")
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_a_text_frame_of_any_length_is_one_whole_frame(size: int) -> None:
    payload = ("é" * size).encode()[:size]  # (cut anywhere: the length is in bytes)
    [frame] = _parse(sockets.text_frame(payload))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, payload)


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)


class Loop:
    """Records what the writer leaves for the next pass of the loop."""

    def __init__(self) -> None:
        self.soon: list[Any] = []

    def call_soon(self, callback: Any) -> None:
        self.soon.append(callback)

    def next_pass(self) -> None:
        soon, self.soon = self.soon, []
        for callback in soon:
            callback()


def _open_websocket() -> tuple[WebSocketProtocol, Transport]:
    """A protocol from Daphne's factory as it is once the handshake is over (autobahn copies the
    factory's options when the connection is made)."""
    factory = WebSocketFactory(_server(), server="daphne")
    factory.setProtocolOptions(maxMessagePayloadSize=1 << 20)
    protocol = factory.buildProtocol(None)
    for name in protocol.CONFIG_ATTRS:
        setattr(protocol, name, getattr(factory, name))
    protocol.state = protocol.STATE_OPEN
    protocol._perMessageCompress = None
    protocol.send_queue = []
    protocol.trackedTimings = None
    protocol.transport = Transport()
    return protocol, protocol.transport


def test_the_frames_of_one_pass_go_out_in_one_write_in_order() -> None:
    protocol, transport = _open_websocket()
    loop = Loop()
    writer = sockets.FrameWriter(protocol, loop)  # type: ignore[arg-type]
    assert writer.send(b'{"n":1}') and writer.send(b'{"n":2}') and writer.send(b"x" * 300)
    assert transport.writes == []  # not before the next pass
    loop.next_pass()
    [data] = transport.writes
    assert [f.data for f in _parse(data)] == [b'{"n":1}', b'{"n":2}', b"x" * 300]
    loop.next_pass()
    assert len(transport.writes) == 1


def test_a_frame_autobahn_must_handle_goes_after_what_is_pending() -> None:
    protocol, transport = _open_websocket()
    loop = Loop()
    writer = sockets.FrameWriter(protocol, loop)  # type: ignore[arg-type]
    writer.send(b"first")
    assert not writer.send(b"x" * ((1 << 20) + 1))  # over the limit: autobahn refuses it itself
    assert [f.data for f in _parse(b"".join(transport.writes))] == [b"first"]


def test_frames_pending_when_the_socket_closes_are_not_sent() -> None:
    protocol, transport = _open_websocket()
    loop = Loop()
    writer = sockets.FrameWriter(protocol, loop)  # type: ignore[arg-type]
    writer.send(b"late")
    protocol.state = protocol.STATE_CLOSING  # the browser closed meanwhile
    loop.next_pass()
    assert transport.writes == []
    assert not writer.send(b"after the close")
    assert transport.writes == []


def test_daphnes_websocket_is_found_behind_the_session_wrapper() -> None:
    protocol, _transport = _open_websocket()
    daphne_send = functools.partial(_server().handle_reply, protocol)
    wrapper = InstanceSessionWrapper({"cookies": {}}, daphne_send)
    assert sockets.unwrapped_send(wrapper.send) is daphne_send
    assert sockets.daphne_websocket(wrapper.send) is protocol

    async def elsewhere(message: dict[str, Any]) -> None:  # another server, a test communicator
        pass

    assert sockets.daphne_websocket(InstanceSessionWrapper({"cookies": {}}, elsewhere).send) is None
    assert sockets.daphne_websocket(elsewhere) is None
    del protocol.send_queue  # an autobahn that keeps its state otherwise: through Daphne
    assert sockets.daphne_websocket(wrapper.send) is None


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
async def test_a_chat_through_daphne_arrives_whole_and_in_order(simulator: Any) -> None:
    sim = simulator
    sim.reset()
    sim.scenario = Scenario(token_rate=200, reasoning_tokens=60, answer_tokens=90)

    def setup() -> str:
        make_backend(sim.base_url)
        return session_cookie(make_user("frames"))

    cookie = await sync_to_async(setup)()
    question = "How are mass and energy related? " + "x" * 70_000  # its frame: > 64 KiB
    with processes.daphne() as (_proc, port):
        tab = await WsTab.open(port, cookie)
        await tab.send({"type": "nonsense"})
        bad = await tab.until("error")
        await tab.send({"type": "send", "conversation": None, "content": question,
                        "client_id": uuid.uuid4().hex})  # fmt: skip
        created = await tab.until("conversation.created")
        asked = await tab.until("message.created")
        reply = await tab.until("message.created")
        done = await tab.until("generation.done", message=reply["message"]["id"], timeout=60)
        await tab.close()

    assert bad["code"] == "unknown_type"
    assert asked["message"]["content"] == question
    assert asked["conversation"] == reply["conversation"] == created["conversation"]["id"]
    reply_id = reply["message"]["id"]
    kinds = [f["type"] for f in tab.frames]
    assert kinds[:4] == ["error", "conversation.created", "message.created", "message.created"]
    reasoning, answer, seqs = assemble(tab.frames, reply_id)
    assert seqs == list(range(1, len(seqs) + 1)) and done["seq"] == len(seqs) + 1
    assert (reasoning, answer) == sim.expected()
    assert done["status"] == "complete" and done["html"]
    stored = await Message.objects.aget(uuid=reply_id)
    assert (stored.reasoning, stored.content) == (reasoning, answer)
