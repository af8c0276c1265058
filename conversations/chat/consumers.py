"""`/ws/chat/`: one socket per tab. Frames are documented in `protocol.py`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from autobahn.exception import Disconnected
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils.translation import gettext as _

from ..models import Message
from ..runner.generation import ensure_maintenance, is_dead, mark_interrupted, running
from ..turns import actions, catalog
from ..turns.threads import serialize_message
from .protocol import MAX_FRAME_BYTES, ClientError, parse_frame

logger = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT = 2.0
# Channel-layer frames sent to the socket as they are.
RELAYED = frozenset(
    {"message.created", "thread", "conversation.created", "conversation.updated",
     "conversation.deleted", "conversation.generating", "generation.continued"}
)  # fmt: skip
CLOSE_UNAUTHORIZED = 4401
CLOSE_REVOKED = 4403
CLOSE_TRY_AGAIN = 4503  # the channel layer (Redis) is down: the tab reconnects with backoff


def _limits() -> tuple[int, float, int]:
    """Frames a tab may send: a burst of R1CHAT_SOCKET_FRAME_BURST, then
    R1CHAT_SOCKET_FRAME_RATE a second; and a user's tabs together
    R1CHAT_USER_FRAMES_PER_MINUTE (every process: the shared cache)."""
    return (
        settings.R1CHAT_SOCKET_FRAME_BURST,
        settings.R1CHAT_SOCKET_FRAME_RATE,
        settings.R1CHAT_USER_FRAMES_PER_MINUTE,
    )


def _can_chat(user: Any) -> bool:
    """Whether `user` may chat; any failure of the check is a "no" (logged once)."""
    try:
        from accounts.access import can_chat

        return bool(user.is_authenticated and user.is_active and can_chat(user))
    except Exception:
        logger.exception("could not check whether user %s may chat", getattr(user, "pk", None))
        return False


class ChatConsumer(AsyncJsonWebsocketConsumer):
    # --- socket handlers ------------------------------------------------------------------

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        self.conversation_group: str | None = None
        self.conversation_id: str | None = None
        # message id → deltas held back until that message's snapshot arrives
        self.awaiting: dict[str, list[dict[str, Any]]] = {}
        self.snapshot_timers: dict[str, asyncio.Task[None]] = {}
        self.last_seq: dict[str, int] = {}
        self.burst, self.rate, self.user_limit = _limits()
        self.allowance = float(self.burst)
        self.allowance_at = time.monotonic()
        self.user_group = ""
        if self.user is None or not await sync_to_async(_can_chat)(self.user):
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        try:
            if getattr(self.channel_layer, "down", False):
                raise ConnectionError("Redis is unreachable")
            await self.channel_layer.group_add(actions.user_group(self.user.pk), self.channel_name)
        except Exception as exc:
            # Accepted, then closed with "try again later": the page reconnects with backoff.
            logger.warning("chat socket closed: the channel layer failed: %s", exc)
            await self.accept()
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        self.user_group = actions.user_group(self.user.pk)
        # Every process with tabs watches for generations whose process died, not only those
        # that run generations themselves.
        ensure_maintenance()
        await self.accept()
        try:
            await catalog.warm()  # the model lists, before this tab's first question needs them
        except Exception as exc:  # (the shared cache is down: a question will say so)
            logger.warning("could not look up the model lists: %s", exc)

    async def disconnect(self, code: int) -> None:
        for timer in self.snapshot_timers.values():
            timer.cancel()
        for group in (self.user_group, self.conversation_group):
            if group:
                try:
                    await self.channel_layer.group_discard(group, self.channel_name)
                except Exception as exc:  # (the layer is down: its memberships lapse)
                    logger.info("could not leave %s: %s", group, exc)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        ref: str | None = None
        try:
            content = self._decode(text_data)
            if isinstance(content, dict) and isinstance(content.get("client_id"), str):
                ref = content["client_id"][:64]
            await self._throttle()
            frame = parse_frame(content)
            await getattr(self, f"do_{frame.type}")(**frame.data)
        except ClientError as exc:
            await self._error(exc, ref)
        except Exception as exc:
            logger.warning("chat frame failed: %s: %s", type(exc).__name__, str(exc)[:200])
            await self._error(ClientError("internal", _("Something went wrong. Try again.")), ref)

    def _decode(self, text_data: str | None) -> Any:
        if text_data is None:
            raise ClientError("invalid", _("Send JSON text frames."))
        if len(text_data) > MAX_FRAME_BYTES:
            raise ClientError("too_large", _("The frame is too large."))
        try:
            return orjson.loads(text_data)
        except orjson.JSONDecodeError:
            raise ClientError("invalid_json", _("The frame is not valid JSON.")) from None

    async def _throttle(self) -> None:
        """Every frame type counts: per socket (a token bucket) and per user (all tabs)."""
        now = time.monotonic()
        self.allowance = min(
            float(self.burst), self.allowance + (now - self.allowance_at) * self.rate
        )
        self.allowance_at = now
        if self.allowance < 1:
            raise ClientError("throttled", _("Too many requests. Slow down and try again."))
        self.allowance -= 1
        if await actions.count_this_minute("frames", self.user.pk) > self.user_limit:
            raise ClientError("throttled", _("Too many requests. Slow down and try again."))

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler: a hop to the one
        # shared sync thread. Deltas and relayed frames touch no database, and deltas arrive
        # ~25 times a second per stream, so they skip it.
        kind = message["type"]
        if kind == "generation.delta":
            await self.generation_delta(message)
        elif kind in RELAYED:
            await self.send_json(message)
        else:
            await super().dispatch(message)

    @classmethod
    async def encode_json(cls, content: dict[str, Any]) -> str:
        return orjson.dumps(content).decode()

    async def send_json(self, content: dict[str, Any], close: bool = False) -> None:
        # (a tab that has just gone: its disconnect is on its way to this consumer)
        with contextlib.suppress(Disconnected):
            await super().send_json(content, close)

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
        if message.is_stale or await is_dead(message):
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
        self, conversation: Any, content: str, client_id: str, settings: dict[str, Any],
        parent: Any, attachments: list[Any] | None = None,
    ) -> None:  # fmt: skip
        turn = await actions.send_message(
            self.user, conversation=conversation, content=content, client_id=client_id,
            settings=settings, parent=parent, attachments=attachments,
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

    async def do_continue(self, message: Any) -> None:
        await actions.continue_generation(self.user, message)

    # --- channel-layer handlers -----------------------------------------------------------

    async def generation_delta(self, event: dict[str, Any]) -> None:
        message_id = event["message"]
        held = self.awaiting.get(message_id)
        if held is not None:
            held.append(event)
            return
        seq = event["seq"]
        expected = self.last_seq.get(message_id, 0) + 1
        if seq < expected:
            return  # already in a snapshot
        if event.get("from_seq", seq) != expected:
            # Frames were lost on their way from another process (Redis restarted): take a
            # fresh snapshot instead of showing text with a hole in it.
            await self._resync(message_id)
            return
        self.last_seq[message_id] = seq
        await self.send_json(event)

    async def _resync(self, message_id: str) -> None:
        message = await (
            Message.objects.select_related("conversation")
            .filter(uuid=message_id, conversation__owner=self.user)
            .afirst()
        )
        if message is None or message.status != Message.Status.STREAMING:
            return
        await self._resume(message)

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
    conversation_generating = forward
    generation_continued = forward

    async def generation_stop(self, event: dict[str, Any]) -> None:
        pass  # meant for runners

    generation_snapshot_request = generation_stop

    async def layer_down(self, event: dict[str, Any]) -> None:
        """Redis is unreachable: close, so the tab reconnects with backoff and, once Redis is
        back, catches up from a snapshot."""
        await self._error(
            ClientError("unavailable", _("The connection to the server was lost. Reconnecting…"))
        )
        await self.close(code=CLOSE_TRY_AGAIN)

    async def user_revoked(self, event: dict[str, Any]) -> None:
        """Signed out, deactivated or password changed: this socket's session is over."""
        await self.close(code=CLOSE_REVOKED)
