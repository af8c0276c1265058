"""The GenerationRunner: one assistant message from start to end, independent of any socket.

A runner is an asyncio task in the process that accepted the request. It reads the backend's
events, coalesces them into frames for the conversation's channel-layer group (the first text at
once, then at most one frame per FRAME_INTERVAL), renders the answer and the reasoning with
every frame, persists the text at most once a second and at the end, and ends in exactly one
terminal status. Tabs in any process reach it through the conversation's control group:
``generation.stop`` and ``generation.snapshot_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from review.usage import record_usage

from . import shutdown
from .admission import admission
from .backends import get_backend
from .backends.base import Answer, BackendError, ChatRequest, Finished, Reasoning, Usage
from .backends.transport import request_written
from .db import Batched, in_db_pool
from .errors import describe_error
from .models import HEARTBEAT_INTERVAL, STALE_AFTER, Backend, Conversation, Message
from .rendering import IncrementalRenderer

logger = logging.getLogger(__name__)

FRAME_INTERVAL = float(getattr(settings, "R1CHAT_FRAME_INTERVAL", 0.04))
PERSIST_INTERVAL = 1.0
# A runner's own message to its control channel that ends its listener (see _stop_listening).
LISTENER_EXIT = "generation.listener_exit"
LISTENER_EXIT_TIMEOUT = 2.0
# How long the first frame waits for the tabs to be told about its message (`announced`).
ANNOUNCED_AT_MOST = 2.0

# Runners alive in this process, by message uuid.
_running: dict[str, GenerationRunner] = {}
_maintenance: asyncio.Task[None] | None = None


def _now() -> dt.datetime:
    return timezone.now()


class GenerationRunner:
    def __init__(
        self,
        *,
        message: Message,
        conversation: Conversation,
        backend: Backend | None,
        request: ChatRequest | None,
        error_code: str | None = None,
        on_complete: Any = None,
        saved: asyncio.Task[None] | None = None,
        request_sent: asyncio.Event | None = None,
        announced: asyncio.Event | None = None,
    ) -> None:
        self.message = message
        self.message_id = str(message.uuid)
        self.conversation = conversation
        self.backend = backend
        self.request = request
        self.error_code = error_code  # a failure known before starting (no backend, quota)
        self.on_complete = on_complete
        # The background insert of a new conversation's rows: awaited before any update.
        self.saved = saved
        # Set once the request has been handed to the socket (or the runner could not send it).
        self.request_sent = request_sent or asyncio.Event()
        # Set once the tabs were told about the message: no frame of it goes out before.
        self.announced = announced
        self.internal_error = False
        self.layer = get_channel_layer()
        self.group = conversation.group_name
        self.seq = 0
        # Flushed text (what frames up to `seq` carried) and text not yet sent.
        self.reasoning_parts: list[str] = []
        self.answer_parts: list[str] = []
        self.pending_reasoning: list[str] = []
        self.pending_answer: list[str] = []
        self.phase = "waiting"
        self.renderer = IncrementalRenderer()
        self.unsent_append: list[str] = []
        self.tail_html = ""
        self.reasoning_renderer = IncrementalRenderer()
        self.reasoning_unsent_append: list[str] = []
        self.reasoning_tail_html = ""
        self.rendered_upto = 0  # flushed answer chars the renderer has been fed
        self.usage: dict[str, Any] = {}
        self.finish_reason = ""
        self.reasoning_unterminated = False
        self.reasoning_started_at: dt.datetime | None = None
        self.reasoning_finished_at: dt.datetime | None = None
        self.answer_started_at: dt.datetime | None = None
        self.stop_requested = False
        self.dirty = asyncio.Event()
        # Held while the flusher moves text into a delta and sends it (see _run's finally).
        self.sending = asyncio.Lock()
        self.changed_since_persist = False
        self.task: asyncio.Task[None] | None = None
        self.control_channel: str | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        shutdown.install()  # SIGTERM lets running generations finish within a grace period
        _running[self.message_id] = self
        ensure_maintenance()
        # Started eagerly: the runner runs up to its first real wait before start() returns, so
        # its request leaves for the model in this turn of the event loop, not after every
        # other question of a burst that is ready in the same turn.
        self.task = asyncio.eager_task_factory(
            asyncio.get_running_loop(), self._run(), name=f"generation {self.message_id}"
        )
        return self.task

    async def _run(self) -> None:
        listener: asyncio.Task[None] | None = None
        others: list[asyncio.Task[None]] = []
        status = Message.Status.COMPLETE
        error: dict[str, Any] | None = None
        try:
            if not isinstance(self.layer, InMemoryChannelLayer):
                # Tabs in other processes reach this runner through its control group; in
                # this process they find it in `_running` (the only way, with a layer of one
                # process). The default prefix, as the consumers' channels: channels-redis
                # keeps one Redis queue per prefix and a process-wide lock around the blocking
                # pop, so a second prefix made runners and sockets take turns holding the pop
                # for seconds.
                self.control_channel = await self.layer.new_channel()
                await self.layer.group_add(
                    self.conversation.control_group_name, self.control_channel
                )
                listener = asyncio.create_task(self._listen())
            others = [
                asyncio.create_task(self._flusher()),
                asyncio.create_task(self._persister()),
            ]
            if self.error_code:
                status, error = Message.Status.ERROR, describe_error(self.error_code)
            else:
                await self._stream()
        except asyncio.CancelledError:
            status = Message.Status.STOPPED if self.stop_requested else Message.Status.INTERRUPTED
            if self.internal_error:
                status, error = Message.Status.ERROR, describe_error("internal")
            elif status == Message.Status.INTERRUPTED:
                error = describe_error("interrupted")
        except BackendError as exc:
            status = Message.Status.ERROR
            error = describe_error(exc.kind.value)
            error["detail"] = exc.detail[:500]
        except Exception:
            logger.exception("generation %s failed", self.message_id)
            status = Message.Status.ERROR
            error = describe_error("internal")
        finally:
            self.request_sent.set()
            try:
                # Not while a delta is being sent: a group_send cancelled half-way (several
                # Redis round trips) drops the frame after its seq and text were taken, so tabs
                # saw a gap and lost that text.
                async with self.sending:
                    for helper in others:
                        helper.cancel()
            except asyncio.CancelledError:
                for helper in others:
                    helper.cancel()
            await self._stop_listening(listener)
            for helper in others:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await helper
            # Finishing must not be cut short by a second cancel (shutdown, a quick Stop).
            await asyncio.shield(self._finish(status, error))

    async def _stream(self) -> None:
        assert self.backend is not None and self.request is not None
        client = get_backend(self.backend.config())
        request_written.set(self.request_sent.set)  # (in this task's context only)
        stream = client.stream_chat(self.request)
        gate = admission()
        gate.expect()
        expected = True
        try:
            async for event in stream:
                if isinstance(event, Reasoning):
                    if not event.text:
                        continue
                    if self.reasoning_started_at is None:
                        self.reasoning_started_at = _now()
                        self.phase = "reasoning"
                    self.pending_reasoning.append(event.text)
                elif isinstance(event, Answer):
                    if not event.text:
                        continue
                    if self.answer_started_at is None:
                        self.answer_started_at = _now()
                        if self.reasoning_started_at is not None:
                            self.reasoning_finished_at = self.answer_started_at
                        self.phase = "answering"
                    self.pending_answer.append(event.text)
                elif isinstance(event, Usage):
                    self.usage = event.as_dict()
                    continue
                elif isinstance(event, Finished):
                    self.finish_reason = event.reason
                    self.reasoning_unterminated = event.reasoning_unterminated
                    continue
                if expected:
                    expected = False
                    gate.arrived()
                self.changed_since_persist = True
                self.dirty.set()
                if gate.waiting:  # (per token: no coroutine unless questions wait)
                    await gate.after_burst()
        finally:
            if expected:
                gate.arrived()
            await stream.aclose()  # closes the upstream connection at once

    async def _rows_saved(self) -> bool:
        if self.saved is None:
            return True
        try:
            # Shielded: cancelling a waiter (the persister at the end) must not cancel the insert.
            await asyncio.shield(self.saved)
        except asyncio.CancelledError:
            if not self.saved.cancelled():
                raise  # this waiter was cancelled, not the insert
            logger.error("the insert of generation %s was cancelled", self.message_id)
            return False
        except Exception:
            logger.exception("could not store the messages of generation %s", self.message_id)
            return False
        return True

    async def _finish(self, status: str, error: dict[str, Any] | None) -> None:
        _running.pop(self.message_id, None)
        try:
            await self._rows_saved()
            await self._until_announced()
            self._move_pending()
            if self._last_moved:
                # The rest of the text; its HTML comes complete in the done frame.
                try:
                    await self._send_delta(render=False)
                except Exception:
                    # The channel layer is down (Redis): store the message all the same (this
                    # used to skip the final write, and the sweep then marked it interrupted).
                    logger.warning("could not send the last delta of %s", self.message_id)
            answer = "".join(self.answer_parts)
            html = self.renderer.finish()
            reasoning_html = self.reasoning_renderer.finish()
            finished_at = _now()
            if self.reasoning_started_at and not self.reasoning_finished_at:
                self.reasoning_finished_at = finished_at
            fields = {
                "status": status,
                "content": answer,
                "reasoning": "".join(self.reasoning_parts),
                "html": html,
                "usage": self.usage,
                "finish_reason": self.finish_reason,
                "reasoning_unterminated": self.reasoning_unterminated,
                "reasoning_started_at": self.reasoning_started_at,
                "reasoning_finished_at": self.reasoning_finished_at,
                "answer_started_at": self.answer_started_at,
                "finished_at": finished_at,
                "heartbeat_at": finished_at,
                "error_code": error["code"] if error else "",
                "error_detail": (error or {}).get("detail", ""),
            }
            for key, value in fields.items():
                setattr(self.message, key, value)
            await _store_final(self.message, fields, self.conversation.owner_id)
            self.seq += 1
            frame = {
                "type": "generation.done",
                "message": self.message_id,
                "seq": self.seq,
                "status": status,
                "usage": self.usage,
                "timings": self.message.timings(),
                "html": html,
                "reasoning_html": reasoning_html,
                "finish_reason": self.finish_reason,
                "reasoning_unterminated": self.reasoning_unterminated,
                "error": {k: v for k, v in error.items() if k != "detail"} if error else None,
            }
            await self.layer.group_send(self.group, frame)
        except Exception:
            logger.exception("could not finish generation %s", self.message_id)
        finally:
            if self.control_channel:
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(
                        self.conversation.control_group_name, self.control_channel
                    )
        if self.on_complete is not None and status == Message.Status.COMPLETE:
            try:
                await self.on_complete(self)
            except Exception:
                logger.exception("after-generation hook failed for %s", self.message_id)

    # --- frames ---------------------------------------------------------------------------

    _last_moved: tuple[str, str] | None = None

    def _move_pending(self) -> None:
        reasoning = "".join(self.pending_reasoning)
        answer = "".join(self.pending_answer)
        self.pending_reasoning.clear()
        self.pending_answer.clear()
        if reasoning:
            self.reasoning_parts.append(reasoning)
            self.reasoning_renderer.feed(reasoning)
        if answer:
            self.answer_parts.append(answer)
            self.renderer.feed(answer)
        self._last_moved = (reasoning, answer) if (reasoning or answer) else None

    def _render(self) -> None:
        append, tail = self.renderer.render()
        if append:
            self.unsent_append.append(append)
        self.tail_html = tail

    def _render_reasoning(self) -> None:
        append, tail = self.reasoning_renderer.render()
        if append:
            self.reasoning_unsent_append.append(append)
        self.reasoning_tail_html = tail

    async def _send_delta(self, *, render: bool) -> None:
        reasoning, answer = self._last_moved or ("", "")
        self._last_moved = None
        self.seq += 1
        frame: dict[str, Any] = {
            "type": "generation.delta",
            "message": self.message_id,
            "seq": self.seq,
        }
        if reasoning:
            frame["reasoning"] = reasoning
        if answer:
            frame["answer"] = answer
        if render and (answer or self.unsent_append):
            self._render()
            frame["html_append"] = "".join(self.unsent_append)
            frame["html_tail"] = self.tail_html
            self.unsent_append.clear()
        if render and (reasoning or self.reasoning_unsent_append):
            self._render_reasoning()
            frame["reasoning_html_append"] = "".join(self.reasoning_unsent_append)
            frame["reasoning_html_tail"] = self.reasoning_tail_html
            self.reasoning_unsent_append.clear()
        await self.layer.group_send(self.group, frame)

    async def _until_announced(self) -> None:
        if self.announced is not None and not self.announced.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.announced.wait(), ANNOUNCED_AT_MOST)

    async def _flusher(self) -> None:
        await self._until_announced()  # (before text is moved: a snapshot meanwhile stays exact)
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            async with self.sending:
                self._move_pending()
                if self._last_moved or self.unsent_append or self.reasoning_unsent_append:
                    await self._send_delta(render=True)  # every frame the user sees is HTML
            await asyncio.sleep(FRAME_INTERVAL)

    async def _persister(self) -> None:
        if not await self._rows_saved():
            self.internal_error = True  # nothing can be stored: end it, visibly
            self.stop_requested = False
            if self.task is not None:
                self.task.cancel()
            return
        loop = asyncio.get_running_loop()
        while True:
            # On the whole seconds of the loop's clock, as every runner: their writes are due in
            # the same pass of the loop and go to the database together.
            await asyncio.sleep(PERSIST_INTERVAL - loop.time() % PERSIST_INTERVAL)
            if not self.changed_since_persist:
                continue
            # The text whose frames went out, not what waits for the next frame: stored text is
            # never ahead of what the tabs were sent (a process killed in between left a tab
            # on another process missing words the stored message had). The rest goes with the
            # next write.
            async with self.sending:
                row = (
                    self.message.pk,
                    "".join(self.answer_parts),
                    "".join(self.reasoning_parts),
                    self.reasoning_started_at,
                    self.answer_started_at,
                )
                self.changed_since_persist = bool(self.pending_answer or self.pending_reasoning)
            try:
                await _store_progress(row)
            except Exception as exc:
                # The database failed this once (a deadlock victim, a restart): the text goes
                # with the next write. The persister used to end here, and with it every later
                # write and heartbeat of the stream.
                logger.warning("could not store the text of %s so far: %s", self.message_id, exc)
                self.changed_since_persist = True

    # --- control --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the frames up to `seq` carried, for a tab that (re)subscribes."""
        self._render()  # the tail as of now; new final blocks go out with the next delta
        self._render_reasoning()
        unsent = sum(map(len, self.unsent_append))
        reasoning_stable = self.reasoning_renderer.stable_html
        reasoning_unsent = sum(map(len, self.reasoning_unsent_append))
        timings = {
            "first_reasoning": _since(self.message.created_at, self.reasoning_started_at),
            "first_answer": _since(self.message.created_at, self.answer_started_at),
        }
        return {
            "type": "generation.snapshot",
            "message": self.message_id,
            "seq": self.seq,
            "reasoning": "".join(self.reasoning_parts),
            "answer": "".join(self.answer_parts),
            "html": self.renderer.stable_html + self.tail_html,
            # The same HTML split where the next delta's html_append continues it: blocks the
            # last render finalised are not sent yet, so they belong to the replaceable tail.
            "html_stable": self.renderer.stable_html[: len(self.renderer.stable_html) - unsent],
            "html_tail": "".join(self.unsent_append) + self.tail_html,
            "reasoning_html_stable": reasoning_stable[: len(reasoning_stable) - reasoning_unsent],
            "reasoning_html_tail": "".join(self.reasoning_unsent_append) + self.reasoning_tail_html,
            "phase": self.phase,
            "status": "streaming",
            "timings": timings,
            "server_elapsed": _since(self.message.created_at, _now()),
        }

    async def _listen(self) -> None:
        assert self.control_channel is not None
        while True:
            event = await self.layer.receive(self.control_channel)
            if event.get("message") != self.message_id:
                continue
            kind = event.get("type")
            if kind == LISTENER_EXIT:
                return
            if kind == "generation.stop":
                self.stop()
            elif kind == "generation.snapshot_request" and event.get("reply_to"):
                await self.layer.send(event["reply_to"], self.snapshot())

    async def _stop_listening(self, listener: asyncio.Task[None] | None) -> None:
        """End the control listener with a message to its channel rather than a cancel.

        channels-redis pops every specific channel of a process from one Redis queue: a receive
        cancelled while its pop is in flight drops the popped message, which is as likely to be
        a frame for a socket of this process as a control message (a tab lost a delta or
        `message.created` at the end of every generation in its process).
        """
        if listener is None:
            return
        if not listener.done():
            try:
                await self.layer.send(
                    self.control_channel, {"type": LISTENER_EXIT, "message": self.message_id}
                )
                await asyncio.wait({listener}, timeout=LISTENER_EXIT_TIMEOUT)
            except (asyncio.CancelledError, Exception):
                pass  # the layer is down, or a second cancel: fall back to cancelling
            listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await listener

    def stop(self) -> None:
        self.stop_requested = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


# A running message's text so far: (pk, content, reasoning, reasoning_started_at,
# answer_started_at).
Progress = tuple[int, str, str, dt.datetime | None, dt.datetime | None]
_PROGRESS_FIELDS = ("content", "reasoning", "reasoning_started_at", "answer_started_at")


def _store_progress_of(rows: list[Progress]) -> None:
    """The text of many running messages, one statement run for each (`executemany`), with a
    fresh heartbeat. Only a message still streaming: a sweeper may have marked it interrupted,
    or its final write may have come first.

    In the order of their ids, as `_beat` locks them: on PostgreSQL the two, locking the same
    rows in different orders in one transaction each, deadlocked every few seconds at 100
    streams, and the victim's writes were lost."""
    meta, ops = Message._meta, connection.ops
    name = ops.quote_name
    columns = [meta.get_field(f).column for f in (*_PROGRESS_FIELDS, "heartbeat_at")]
    sql = (
        f"UPDATE {name(meta.db_table)} SET {', '.join(f'{name(c)} = %s' for c in columns)} "
        f"WHERE {name(meta.pk.column)} = %s AND {name(meta.get_field('status').column)} = %s"
    )
    at = ops.adapt_datetimefield_value
    beat = at(_now())
    params = [
        (content, reasoning, at(started), at(answered), beat, pk, Message.Status.STREAMING.value)
        for pk, content, reasoning, started, answered in sorted(rows, key=lambda row: row[0])
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, params)


_store_progress = Batched(_store_progress_of)


@in_db_pool
def _store_final(message: Message, fields: dict[str, Any], owner_id: int) -> None:
    Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(**fields)
    record_usage(message, owner_id)


@in_db_pool
def _beat(message_uuids: list[Any]) -> None:
    """A fresh heartbeat for the running messages; their rows locked in the order of their ids,
    as the text writes lock them (`_store_progress_of`)."""
    with transaction.atomic():
        ids = list(
            Message.objects.select_for_update()
            .filter(uuid__in=message_uuids, status=Message.Status.STREAMING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        Message.objects.filter(pk__in=ids).update(heartbeat_at=_now())


def _since(start: dt.datetime, moment: dt.datetime | None) -> float | None:
    return round((moment - start).total_seconds(), 3) if moment else None


def running(message_uuid: str) -> GenerationRunner | None:
    return _running.get(message_uuid)


# --- process maintenance: heartbeats and dead generations ------------------------------------


def ensure_maintenance() -> None:
    global _maintenance
    loop = asyncio.get_running_loop()
    if _maintenance is None or _maintenance.done() or _maintenance.get_loop() is not loop:
        _maintenance = asyncio.create_task(_maintain(), name="generation maintenance")


async def _maintain() -> None:
    while True:
        try:
            if _running:
                await _beat([r.message.uuid for r in list(_running.values())])
            await sweep_stale()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("generation maintenance failed")
        await asyncio.sleep(HEARTBEAT_INTERVAL.total_seconds())


async def sweep_stale() -> int:
    """Mark generations whose process died as interrupted, keeping their text; tell the tabs."""
    threshold = _now() - STALE_AFTER
    stale = [
        m
        async for m in Message.objects.filter(
            status=Message.Status.STREAMING, heartbeat_at__lt=threshold
        ).select_related("conversation")
    ]
    stale += [
        m
        async for m in Message.objects.filter(
            status=Message.Status.STREAMING, heartbeat_at__isnull=True, created_at__lt=threshold
        ).select_related("conversation")
    ]
    count = 0
    for message in stale:
        if str(message.uuid) in _running:
            continue
        if await mark_interrupted(message):
            count += 1
    return count


async def mark_interrupted(message: Message) -> bool:
    from .rendering import render_markdown

    html = render_markdown(message.content)
    now = _now()
    error = describe_error("interrupted")
    updated = await Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).aupdate(
        status=Message.Status.INTERRUPTED,
        html=html,
        finished_at=now,
        error_code="interrupted",
    )
    if not updated:
        return False
    message.status = Message.Status.INTERRUPTED
    message.html = html
    message.finished_at = now
    message.error_code = "interrupted"
    layer = get_channel_layer()
    await layer.group_send(
        message.conversation.group_name,
        {
            "type": "generation.done",
            "message": str(message.uuid),
            "seq": None,
            "status": Message.Status.INTERRUPTED,
            "usage": message.usage,
            "timings": message.timings(),
            "html": html,
            "finish_reason": "",
            "reasoning_unterminated": False,
            "error": error,
        },
    )
    return True
