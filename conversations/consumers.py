"""`/ws/chat/`: one socket per tab. Frames are documented in `protocol.py`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any

import orjson
from channels.db import aclose_old_connections
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.utils.functional import LazyObject, empty
from django.utils.translation import gettext as _

from r1chat import sockets

from . import actions, catalog
from .admission import admission
from .backends.base import ModelBackend
from .generation import ensure_maintenance, mark_interrupted, running
from .models import Message
from .protocol import MAX_FRAME_BYTES, ClientError, parse_frame
from .threads import serialize_message

logger = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT = 2.0
# Channel-layer frames sent to the socket as they are.
RELAYED = frozenset(
    {"message.created", "thread", "conversation.created", "conversation.updated",
     "conversation.deleted"}
)  # fmt: skip
# Channels closes stale database connections before every handler; for the frames a tab sends
# (a burst of questions at once) once a second is enough.
CONNECTION_CHECK_INTERVAL = 1.0
_connections_checked = 0.0
# The message that ends a closed socket's channel-layer reader (see `_stop_reading`).
READER_EXIT = "chat.reader_exit"
READER_EXIT_TIMEOUT = 2.0
STOP_FRAME_MAX = 200  # characters: a Stop frame is ~70
CLOSE_UNAUTHORIZED = 4401
CLOSE_REVOKED = 4403


def _can_chat(user: Any) -> bool:
    try:
        from accounts.access import can_chat
    except ImportError:  # the accounts rules are not there yet: any active user may chat
        return bool(user.is_authenticated and user.is_active)
    return bool(can_chat(user))


class ChatConsumer(AsyncJsonWebsocketConsumer):
    frames: sockets.FrameWriter | None = None  # under Daphne (see __call__)
    model_client: ModelBackend | None = None  # keeps a connection ready (catalog.tab_opened)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Channels' consumer loop, one long-lived reader per source instead of a new task and
        an `asyncio.wait` for every message (a socket gets ~25 frames a second per stream).

        Handlers still run one at a time, in the order each source delivered them."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = sockets.unwrapped_send(send)
        websocket = sockets.daphne_websocket(send)
        if websocket is not None:
            self.frames = sockets.FrameWriter(websocket, asyncio.get_running_loop())
            self.base_send = functools.partial(_after_frames, self.frames, self.base_send)
        one_at_a_time = asyncio.Lock()
        ending = False

        async def read(source: Any) -> None:
            while True:
                message = await source()
                if ending:  # the socket is gone: what was on its way to it is dropped
                    if message.get("type") == READER_EXIT:
                        return
                    continue
                async with one_at_a_time:
                    await self.dispatch(message)

        readers = [
            asyncio.create_task(read(receive)),
            asyncio.create_task(read(self.channel_receive)),
        ]
        try:
            done, _pending = await asyncio.wait(readers, return_when=asyncio.FIRST_COMPLETED)
            for reader in done:
                reader.result()  # StopConsumer after a disconnect, or a handler's error
        except StopConsumer:
            pass
        finally:
            ending = True
            readers[0].cancel()  # (the server's queue: cancelling its read loses nothing)
            await self._stop_reading(readers[1])
            for reader in readers:
                with contextlib.suppress(asyncio.CancelledError, StopConsumer):
                    await reader

    async def _stop_reading(self, reader: asyncio.Task[None]) -> None:
        """End the channel-layer reader with a message to its channel rather than a cancel.

        channels-redis pops the frames of every socket of a process in one blocking read, done
        by whichever socket's receive holds its lock: cancelling that receive while a popped
        frame is on its way drops the frame, as likely meant for another tab (a tab closing
        beside 200 streams lost frames of other tabs: gaps, or a missing `generation.done`).
        The in-process layer loses nothing to a cancel, so there it is cancelled at once."""
        if not reader.done() and not isinstance(self.channel_layer, InMemoryChannelLayer):
            try:
                await self.channel_layer.send(self.channel_name, {"type": READER_EXIT})
                await asyncio.wait({reader}, timeout=READER_EXIT_TIMEOUT)
            except (asyncio.CancelledError, Exception):
                pass  # the layer is down, or a second cancel: cancel it after all
        reader.cancel()

    # --- socket handlers ------------------------------------------------------------------

    async def connect(self) -> None:
        self.user = _unwrapped(self.scope.get("user"))
        self.conversation_group: str | None = None
        self.conversation_id: str | None = None
        # message id → deltas held back until that message's snapshot arrives
        self.awaiting: dict[str, list[dict[str, Any]]] = {}
        self.snapshot_timers: dict[str, asyncio.Task[None]] = {}
        self.last_seq: dict[str, int] = {}
        if self.user is None or not await _allowed(self.user):
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.user_group = actions.user_group(self.user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        # Every process with tabs watches for generations whose process died, not only those
        # that run generations themselves.
        ensure_maintenance()
        await self.accept()
        # The model lists and the quota flag, before this tab's first question needs them, and
        # a connection to the model server its question will go to.
        await catalog.warm()
        await actions.warm()
        self.model_client = await catalog.tab_opened(self.user)

    async def disconnect(self, code: int) -> None:
        admission().socket_closed()
        if self.model_client is not None:
            self.model_client.tab_closed()
        for timer in self.snapshot_timers.values():
            timer.cancel()
        if getattr(self, "user_group", None):
            await self.channel_layer.group_discard(self.user_group, self.channel_name)
        if self.conversation_group:
            await self.channel_layer.group_discard(self.conversation_group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error(ClientError("invalid", _("Send JSON text frames.")))
            return
        if len(text_data) > MAX_FRAME_BYTES:
            await self._error(ClientError("too_large", _("The frame is too large.")))
            return
        try:
            content = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            await self._error(ClientError("invalid_json", _("The frame is not valid JSON.")))
            return
        ref = content.get("client_id") if isinstance(content, dict) else None
        try:
            frame = parse_frame(content)
            await getattr(self, f"do_{frame.type}")(**frame.data)
        except ClientError as exc:
            await self._error(exc, ref if isinstance(ref, str) else None)
        except Exception:
            logger.exception("chat frame failed")
            await self._error(ClientError("internal", _("Something went wrong. Try again.")), None)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler: a hop to the one
        # shared sync thread. Deltas and relayed frames touch no database and deltas arrive ~25
        # times a second per stream, so they skip it (at 200 streams the hops were most of the
        # latency).
        kind = message["type"]
        if kind == "generation.delta":
            await self.generation_delta(message)
        elif kind in RELAYED:
            await self.send_json(message)
        elif kind == "websocket.receive":
            if not _is_stop(message.get("text")):
                await admission().turn()
            global _connections_checked
            now = time.monotonic()
            if now - _connections_checked >= CONNECTION_CHECK_INTERVAL:
                _connections_checked = now
                await aclose_old_connections()
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    @classmethod
    async def encode_json(cls, content: dict[str, Any]) -> str:
        return orjson.dumps(content).decode()

    async def send_json(self, content: dict[str, Any], close: bool = False) -> None:
        data = orjson.dumps(content)
        if self.frames is None or not self.frames.send(data):
            await self.send(text_data=data.decode())
        if close:
            await self.close()

    async def _error(self, exc: ClientError, ref: str | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": exc.code, "detail": exc.detail}
        if ref:
            frame["ref"] = ref
        await self.send_json(frame)

    # --- command helpers ------------------------------------------------------------------

    async def do_subscribe(self, conversation: Any) -> None:
        if self.conversation_group:
            await self.channel_layer.group_discard(self.conversation_group, self.channel_name)
            self.conversation_group = self.conversation_id = None
        self.awaiting.clear()
        if conversation is None:
            return
        target = await actions.get_conversation(self.user, conversation)
        await self._join(target.group_name, str(target.uuid))
        async for message in Message.objects.filter(
            conversation=target, status=Message.Status.STREAMING
        ):
            message.conversation = target
            await self._resume(message)

    async def _join(self, group: str, conversation_id: str) -> None:
        self.conversation_group = group
        self.conversation_id = conversation_id
        await self.channel_layer.group_add(group, self.channel_name)

    async def _resume(self, message: Message) -> None:
        """Ask the runner (in any process) for everything so far; hold live deltas meanwhile."""
        message_id = str(message.uuid)
        runner = running(message_id)
        if runner is not None:  # in this process: its snapshot now, not through the layer
            self.awaiting[message_id] = []
            await self.generation_snapshot(runner.snapshot())
            return
        if message.is_stale:
            await mark_interrupted(message)  # its process died; the done frame reaches us too
            return
        self.awaiting[message_id] = []
        await self.channel_layer.group_send(
            message.conversation.control_group_name,
            {
                "type": "generation.snapshot_request",
                "message": message_id,
                "reply_to": self.channel_name,
            },
        )
        self.snapshot_timers[message_id] = asyncio.create_task(self._snapshot_fallback(message_id))

    async def _snapshot_fallback(self, message_id: str) -> None:
        """No runner answered: it finished meanwhile or its process died. Send what is stored."""
        await asyncio.sleep(SNAPSHOT_TIMEOUT)
        if message_id not in self.awaiting:
            return
        message = await Message.objects.filter(uuid=message_id).afirst()
        self.awaiting.pop(message_id, None)
        self.snapshot_timers.pop(message_id, None)
        if message is not None:
            await self.send_json(
                {"type": "message.updated", "conversation": self.conversation_id,
                 "message": serialize_message(message)}
            )  # fmt: skip

    async def do_send(
        self, conversation: Any, content: str, client_id: str, settings: dict[str, Any], parent: Any
    ) -> None:
        turn = await actions.send_message(
            self.user, conversation=conversation, content=content, client_id=client_id,
            settings=settings, parent=parent,
        )  # fmt: skip
        if self.conversation_id != str(turn.conversation.uuid):
            await self.do_subscribe(None)
            await self._join(turn.conversation.group_name, str(turn.conversation.uuid))
        await actions.run_turn(turn, client_id)

    async def do_stop(self, message: Any) -> None:
        await actions.stop_generation(self.user, message)

    async def do_regenerate(self, message: Any, settings: dict[str, Any]) -> None:
        turn = await actions.regenerate(self.user, message, settings)
        await actions.run_turn(turn)

    async def do_edit(self, message: Any, content: str, settings: dict[str, Any]) -> None:
        turn = await actions.edit(self.user, message, content, settings)
        await actions.run_turn(turn)

    async def do_switch(self, message: Any) -> None:
        await actions.switch_version(self.user, message)

    # --- channel-layer handlers -----------------------------------------------------------

    async def generation_delta(self, event: dict[str, Any]) -> None:
        message_id = event["message"]
        held = self.awaiting.get(message_id)
        if held is not None:
            held.append(event)
            return
        if event["seq"] <= self.last_seq.get(message_id, 0):
            return  # already in a snapshot
        self.last_seq[message_id] = event["seq"]
        await self.send_json(event)

    async def generation_snapshot(self, event: dict[str, Any]) -> None:
        message_id = event["message"]
        held = self.awaiting.pop(message_id, None)
        if held is None:
            return  # not asked for, or the fallback already answered
        timer = self.snapshot_timers.pop(message_id, None)
        if timer:
            timer.cancel()
        await self.send_json(event)
        self.last_seq[message_id] = event["seq"]
        for delta in held:
            if delta["seq"] > self.last_seq[message_id]:
                self.last_seq[message_id] = delta["seq"]
                await self.send_json(delta)

    async def generation_done(self, event: dict[str, Any]) -> None:
        message_id = event["message"]
        self.last_seq.pop(message_id, None)
        if self.awaiting.pop(message_id, None) is not None:
            timer = self.snapshot_timers.pop(message_id, None)
            if timer:
                timer.cancel()
            # Missed the live text: send the whole stored message instead.
            message = await Message.objects.filter(uuid=message_id).afirst()
            if message is not None:
                await self.send_json(
                    {"type": "message.updated", "conversation": self.conversation_id,
                     "message": serialize_message(message)}
                )  # fmt: skip
            return
        await self.send_json(event)

    async def forward(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    # The frames in RELAYED go out unchanged (see `dispatch`); these names keep Channels'
    # handler lookup honest for them.
    message_created = forward
    thread = forward
    conversation_created = forward
    conversation_updated = forward
    conversation_deleted = forward

    async def generation_stop(self, event: dict[str, Any]) -> None:
        pass  # meant for runners

    generation_snapshot_request = generation_stop

    async def user_revoked(self, event: dict[str, Any]) -> None:
        """Signed out, deactivated or password changed: this socket's session is over."""
        await self.close(code=CLOSE_REVOKED)


async def _after_frames(frames: sockets.FrameWriter, send: Any, message: dict[str, Any]) -> None:
    """Whatever goes through Daphne (accept, close, a frame the writer does not take) follows
    the frames the writer still holds."""
    frames.flush()
    await send(message)


def _is_stop(text: str | None) -> bool:
    """A Stop frame: taken at once, not behind a burst of questions (`admission`), which held it
    up to ~0.2 s while the answer it stops kept streaming. It only cancels a stream."""
    if not text or len(text) > STOP_FRAME_MAX or '"stop"' not in text:
        return False
    try:
        content = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(content, dict) and content.get("type") == "stop"


def _unwrapped(user: Any) -> Any:
    """The user itself rather than Channels' lazy wrapper (resolved by AuthMiddleware before
    `connect`): every attribute read through the wrapper is a proxied call, dozens per
    question."""
    if isinstance(user, LazyObject):
        if user._wrapped is empty:
            user._setup()
        return user._wrapped
    return user


async def _allowed(user: Any) -> bool:
    from asgiref.sync import sync_to_async

    return await sync_to_async(_can_chat)(user)
