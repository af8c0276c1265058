"""The GenerationRunner: one assistant message from start to end, independent of any socket.

A runner is an asyncio task in the process that accepted the request. It reads the backend's
events, coalesces them into frames (the first text at once, then at most one frame per
FRAME_INTERVAL), renders the answer and the reasoning on every frame (each finished block once,
the open last block again), persists the text at most once a second and at the end, and ends in
exactly one terminal status.

Every frame goes to the tabs of this process (`group_send_local`); tabs in other processes get
the same text coalesced every REMOTE_INTERVAL (`group_send_remote`, a delta spanning `from_seq`
to `seq`). Tabs in any process reach the runner through the conversation's control group:
``generation.stop`` and ``generation.snapshot_request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from r1chat.groups import user_group
from r1chat.text import clean_text
from review.usage import record_usage

from ..backends import get_backend
from ..backends.base import Answer, BackendError, ChatRequest, Finished, Reasoning, Usage
from ..deletion import purge_deleted
from ..errors import describe_error
from ..models import HEARTBEAT_INTERVAL, STALE_AFTER, Backend, Conversation, Message
from ..rendering import IncrementalRenderer
from . import shutdown
from .db import Batched, in_db_pool

logger = logging.getLogger(__name__)

FRAME_INTERVAL = float(getattr(settings, "R1CHAT_FRAME_INTERVAL", 0.04))
# Rendering a text's open last block again takes at most this share of one core per stream
# (its next rendering waits its CPU time / RENDER_SHARE), and the page's HTML of a text is never
# older than RENDER_AT_LEAST_EVERY. A short paragraph (~0.1 ms) is rendered ~10 times a second,
# a long table less often; finished blocks are rendered once whatever their size.
RENDER_SHARE = settings.R1CHAT_RENDER_SHARE
RENDER_AT_LEAST_EVERY = 0.25
REMOTE_INTERVAL = float(getattr(settings, "R1CHAT_REMOTE_FRAME_INTERVAL", 0.2))
PERSIST_INTERVAL = 1.0
# Liveness: every LIVE_INTERVAL each process marks its running generations alive in the shared
# cache for LIVE_TTL. A `streaming` message with no mark, quiet for longer than LIVE_TTL, belongs
# to a process that died: it is shown as interrupted within about LIVE_TTL + LIVE_INTERVAL of the
# death (the heartbeat rule, STALE_AFTER, stays as the fallback when the cache is unreachable).
LIVE_INTERVAL = float(getattr(settings, "R1CHAT_LIVENESS_INTERVAL", 1.0))
LIVE_TTL = 3 * LIVE_INTERVAL
# Deleted conversations past their Undo window are purged this often (turns.actions).
PURGE_INTERVAL = 30.0

# Runners alive in this process, by message uuid.
_running: dict[str, GenerationRunner] = {}
_maintenance: asyncio.Task[None] | None = None
_liveness: asyncio.Task[None] | None = None


def _now() -> dt.datetime:
    return timezone.now()


class Rendered:
    """One text of a streaming message (the answer or the reasoning): what frames carried, what
    waits for the next frame, and its incremental rendering."""

    def __init__(self) -> None:
        self.parts: list[str] = []  # sent
        self.size = 0  # characters sent
        self.pending: list[str] = []  # not sent yet
        self.renderer = IncrementalRenderer()
        self.tail_html = ""
        self.render_due = 0.0  # (time.perf_counter)
        self.unrendered = False  # text was taken whose rendering was not due yet

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def take(self) -> tuple[str, tuple[str, str] | None] | None:
        """The pending text and, when a rendering is due, (HTML of the blocks finished since
        the last one, HTML of the open last block); None if there is neither."""
        text = "".join(self.pending)
        if text:
            self.pending.clear()
            self.parts.append(text)
            self.size += len(text)
            self.renderer.feed(text)
            self.unrendered = True
        if not self.unrendered:
            return None
        now = time.perf_counter()
        if now < self.render_due:
            return (text, None) if text else None
        cpu = time.thread_time()
        append, self.tail_html = self.renderer.render()
        self.unrendered = False
        cost = time.thread_time() - cpu
        self.render_due = now + min(cost / RENDER_SHARE, RENDER_AT_LEAST_EVERY)
        return text, (append, self.tail_html)

    def prefill(self, text: str) -> None:
        """Start from text already shown and stored (a continued answer): the tabs have its
        rendering, so the next frame carries only what follows."""
        if not text:
            return
        self.parts.append(text)
        self.size += len(text)
        self.renderer.feed(text)
        _append, self.tail_html = self.renderer.render()

    def wait(self) -> float | None:
        """Seconds until the text taken but not rendered yet is due; None if there is none."""
        if not self.unrendered:
            return None
        return max(0.0, self.render_due - time.perf_counter())

    def finish(self) -> str:
        self.tail_html = ""
        return self.renderer.finish()


class RemoteDelta:
    """The frames not yet sent to other processes, merged into one delta."""

    def __init__(self) -> None:
        self.frame: dict[str, Any] | None = None
        self.sent_at = 0.0

    def add(self, frame: dict[str, Any]) -> None:
        merged = self.frame
        if merged is None:
            self.frame = {**frame, "from_seq": frame["seq"]}
            return
        merged["seq"] = frame["seq"]
        for key in ("reasoning", "answer", "html_append", "reasoning_html_append"):
            if key in frame:
                merged[key] = merged.get(key, "") + frame[key]
        for key in ("html_tail", "reasoning_html_tail"):
            if key in frame:
                merged[key] = frame[key]

    def take(self) -> dict[str, Any] | None:
        frame, self.frame = self.frame, None
        self.sent_at = time.monotonic()
        return frame


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
        thinking_guess: str | None = None,
        continuing: bool = False,
    ) -> None:
        self.message = message
        self.message_id = str(message.uuid)
        self.conversation = conversation
        self.backend = backend
        self.request = request
        self.error_code = error_code  # a failure known before starting (no backend, quota)
        self.on_complete = on_complete
        self.layer = get_channel_layer()
        self.remote = bool(getattr(self.layer, "remote", False))
        self.group = conversation.group_name
        self.seq = 0
        self.answer = Rendered()
        self.reasoning = Rendered()
        self.remote_delta = RemoteDelta()
        # How much of each text went to other processes (all of it with one process): what is
        # stored while the answer runs is never ahead of what any tab was sent.
        self.shared = (0, 0)
        self.phase = "waiting"
        self.usage: dict[str, Any] = {}
        self.finish_reason = ""
        self.reasoning_unterminated = False
        self.reasoning_started_at: dt.datetime | None = None
        self.reasoning_finished_at: dt.datetime | None = None
        self.answer_started_at: dt.datetime | None = None
        self.stop_requested = False
        self.dirty = asyncio.Event()
        # Held while text moves into a frame and the frame is sent: the snapshot, the
        # persister and the end see whole frames only.
        self.sending = asyncio.Lock()
        self.changed_since_persist = False
        self.task: asyncio.Task[None] | None = None
        self.control_channel: str | None = None
        # What the catalog guessed about the model's thinking: the reply may teach otherwise.
        self.thinking_guess = thinking_guess
        self.streamed_reasoning = False
        # A continued answer (Continue generating): the same message, its text so far kept,
        # the new text appended; its usage adds up.
        self.continuing = continuing
        self.usage_before: dict[str, Any] = {}
        if continuing:
            self.answer.prefill(message.content)
            self.reasoning.prefill(message.reasoning)
            self.shared = (self.answer.size, self.reasoning.size)
            self.reasoning_started_at = message.reasoning_started_at
            self.reasoning_finished_at = message.reasoning_finished_at
            self.answer_started_at = message.answer_started_at
            self.phase = "answering"
            self.usage_before = dict(message.usage or {})

    def continued_frame(self) -> dict[str, Any]:
        """`generation.continued`: the message streams again, from what it shows now."""
        return {**self.snapshot(), "type": "generation.continued",
                "conversation": str(self.conversation.uuid)}  # fmt: skip

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        _running[self.message_id] = self
        ensure_maintenance()
        self.task = asyncio.create_task(self._run(), name=f"generation {self.message_id}")
        shutdown.track(self.task)  # SIGTERM lets it finish within a grace period
        return self.task

    async def _run(self) -> None:
        helpers: list[asyncio.Task[None]] = []
        status = Message.Status.COMPLETE
        error: dict[str, Any] | None = None
        try:
            if self.remote:
                # Tabs in other processes reach this runner through its control group; in
                # this process they find it in `_running`.
                self.control_channel = await self.layer.new_channel()
                await self.layer.group_add(
                    self.conversation.control_group_name, self.control_channel
                )
                helpers.append(asyncio.create_task(self._listen()))
            helpers += [
                asyncio.create_task(self._flusher()),
                asyncio.create_task(self._persister()),
                # (beside the request to the model, not before it)
                asyncio.create_task(self._announce_start()),
            ]
            if self.error_code:
                status, error = Message.Status.ERROR, describe_error(self.error_code)
            else:
                await self._stream()
        except asyncio.CancelledError:
            if self.stop_requested:
                status = Message.Status.STOPPED
            else:
                status, error = Message.Status.INTERRUPTED, describe_error("interrupted")
        except BackendError as exc:
            status = Message.Status.ERROR
            error = describe_error(exc.kind.value)
            error["detail"] = exc.detail[:500]
        except Exception:
            logger.exception("generation %s failed", self.message_id)
            status = Message.Status.ERROR
            error = describe_error("internal")
        finally:
            try:
                async with self.sending:  # (not in the middle of a frame)
                    for helper in helpers:
                        helper.cancel()
            except asyncio.CancelledError:
                for helper in helpers:
                    helper.cancel()
            for helper in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await helper
            # Finishing must not be cut short by a second cancel (shutdown, a quick Stop).
            await asyncio.shield(self._finish(status, error))

    async def _announce_start(self) -> None:
        await mark_alive([self.message_id])
        await announce_generating(self.conversation, True)

    async def _stream(self) -> None:
        assert self.backend is not None and self.request is not None
        client = get_backend(self.backend.config())
        stream = client.stream_chat(self.request)
        try:
            async for event in stream:
                if isinstance(event, Reasoning):
                    self.streamed_reasoning = self.streamed_reasoning or bool(event.text.strip())
                    self._reasoning(clean_text(event.text))
                elif isinstance(event, Answer):
                    self._answer(clean_text(event.text))
                elif isinstance(event, Usage):
                    self.usage = event.as_dict()
                elif isinstance(event, Finished):
                    self.finish_reason = event.reason
                    self.reasoning_unterminated = event.reasoning_unterminated
        finally:
            await stream.aclose()  # closes the upstream connection at once

    def _reasoning(self, text: str) -> None:
        if not text:
            return
        if self.reasoning_started_at is None:
            self.reasoning_started_at = _now()
            self.phase = "reasoning"
        self.reasoning.pending.append(text)
        self.changed_since_persist = True
        self.dirty.set()

    def _answer(self, text: str) -> None:
        if not text:
            return
        if self.answer_started_at is None:
            self.answer_started_at = _now()
            if self.reasoning_started_at is not None:
                self.reasoning_finished_at = self.answer_started_at
            self.phase = "answering"
        self.answer.pending.append(text)
        self.changed_since_persist = True
        self.dirty.set()

    async def _finish(self, status: str, error: dict[str, Any] | None) -> None:
        _running.pop(self.message_id, None)
        try:
            try:
                await self._send_delta()  # the rest of the text
                await self._send_remote()
            except Exception:
                # The channel layer is down (Redis): the message is stored all the same.
                logger.warning("could not send the last delta of %s", self.message_id)
            html = self.answer.finish()
            reasoning_html = self.reasoning.finish()
            if self.continuing:
                self.usage = _added_usage(self.usage_before, self.usage)
            finished_at = _now()
            if self.reasoning_started_at and not self.reasoning_finished_at:
                self.reasoning_finished_at = finished_at
            fields = {
                "status": status,
                "content": self.answer.text,
                "reasoning": self.reasoning.text,
                "html": html,
                "reasoning_html": reasoning_html,
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
            await announce_generating(self.conversation, False)
        except Exception:
            logger.exception("could not finish generation %s", self.message_id)
        finally:
            if self.control_channel:
                with contextlib.suppress(Exception):
                    await self.layer.group_discard(
                        self.conversation.control_group_name, self.control_channel
                    )
        await self._learn()
        if self.on_complete is not None and status == Message.Status.COMPLETE:
            try:
                await self.on_complete(self)
            except Exception:
                logger.exception("after-generation hook failed for %s", self.message_id)

    async def _learn(self) -> None:
        """A model that streamed reasoning is a thinking model, whatever was guessed."""
        if self.backend is None or self.request is None or self.thinking_guess is None:
            return
        from ..turns import catalog

        learned = catalog.learned_from_stream(self.thinking_guess, self.streamed_reasoning)
        if learned is None:
            return
        try:
            await catalog.learn_thinking(self.backend.pk, self.request.model, learned)
        except Exception:
            logger.exception("could not remember what %s can do", self.request.model)

    # --- frames ---------------------------------------------------------------------------

    async def _send_delta(self) -> None:
        """Move the pending text into one rendered frame and send it to this process's tabs
        (and into the next remote delta)."""
        reasoning, answer = self.reasoning.take(), self.answer.take()
        if reasoning is None and answer is None:
            return
        self.seq += 1
        frame: dict[str, Any] = {
            "type": "generation.delta",
            "message": self.message_id,
            "seq": self.seq,
        }
        if reasoning is not None:
            text, html = reasoning
            if text:
                frame["reasoning"] = text
            if html is not None:
                frame.update(reasoning_html_append=html[0], reasoning_html_tail=html[1])
        if answer is not None:
            text, html = answer
            if text:
                frame["answer"] = text
            if html is not None:
                frame.update(html_append=html[0], html_tail=html[1])
        await self.layer.group_send_local(self.group, frame)
        if self.remote:
            self.remote_delta.add(frame)
        else:
            self.shared = (self.answer.size, self.reasoning.size)

    async def _send_remote(self) -> None:
        frame = self.remote_delta.take()
        sizes = (self.answer.size, self.reasoning.size)

        def sent() -> None:
            self.shared = (max(self.shared[0], sizes[0]), max(self.shared[1], sizes[1]))

        if frame is None:
            sent()
        else:
            try:
                await self.layer.group_send_remote(self.group, frame, on_sent=sent)
            except Exception as exc:
                # Redis is down: tabs elsewhere resubscribe and take a snapshot once it is back.
                logger.info("could not send a delta of %s to other processes: %s",
                            self.message_id, exc)  # fmt: skip

    async def _flusher(self) -> None:
        while True:
            waits = [w for w in (self.reasoning.wait(), self.answer.wait()) if w is not None]
            if waits:  # a rendering is due then, even if no text comes meanwhile
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.dirty.wait(), min(waits))
            else:
                await self.dirty.wait()
            self.dirty.clear()
            async with self.sending:
                await self._send_delta()
                if self.remote and time.monotonic() - self.remote_delta.sent_at >= REMOTE_INTERVAL:
                    await self._send_remote()
            await asyncio.sleep(FRAME_INTERVAL)
            if self.remote and self.remote_delta.frame is not None and not self.dirty.is_set():
                self.dirty.set()  # (the rest goes to other processes within REMOTE_INTERVAL)

    async def _persister(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # On the whole seconds of the loop's clock, as every runner: their writes are due in
            # the same pass of the loop and go to the database together.
            await asyncio.sleep(PERSIST_INTERVAL - loop.time() % PERSIST_INTERVAL)
            if not self.changed_since_persist:
                continue
            # The text whose frames went out, not what waits for the next frame: stored text is
            # never ahead of what the tabs were sent. The rest goes with the next write.
            async with self.sending:
                answer, reasoning = self.answer.text, self.reasoning.text
                row = (
                    self.message.pk,
                    answer[: self.shared[0]],
                    reasoning[: self.shared[1]],
                    self.reasoning_started_at,
                    self.answer_started_at,
                )
                self.changed_since_persist = self.shared != (len(answer), len(reasoning)) or bool(
                    self.answer.pending or self.reasoning.pending
                )
            try:
                await _store_progress(row)
            except Exception as exc:
                # The database failed this once (a deadlock victim, a restart): the text goes
                # with the next write.
                logger.warning("could not store the text of %s so far: %s", self.message_id, exc)
                self.changed_since_persist = True

    # --- control --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the frames up to `seq` carried, for a tab that (re)subscribes."""
        timings = {
            "first_reasoning": _since(self.message.created_at, self.reasoning_started_at),
            "first_answer": _since(self.message.created_at, self.answer_started_at),
        }
        return {
            "type": "generation.snapshot",
            "message": self.message_id,
            "seq": self.seq,
            "reasoning": self.reasoning.text,
            "answer": self.answer.text,
            "html_stable": self.answer.renderer.stable_html,
            "html_tail": self.answer.tail_html,
            "reasoning_html_stable": self.reasoning.renderer.stable_html,
            "reasoning_html_tail": self.reasoning.tail_html,
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
            if kind == "generation.stop":
                self.stop()
            elif kind == "generation.snapshot_request" and event.get("reply_to"):
                async with self.sending:
                    # What went to other processes so far goes first, so the snapshot (taken
                    # at the same point) is where their next delta continues.
                    await self._send_remote()
                    await self.layer.send(event["reply_to"], self.snapshot())

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


def _added_usage(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The usage of an answer and of its continuation together: every count added."""
    total = dict(before)
    for key, value in after.items():
        if isinstance(value, (int, float)) and isinstance(total.get(key), (int, float)):
            total[key] = total[key] + value
        else:
            total[key] = value
    return total


def _since(start: dt.datetime, moment: dt.datetime | None) -> float | None:
    return round((moment - start).total_seconds(), 3) if moment else None


def running(message_uuid: str) -> GenerationRunner | None:
    return _running.get(message_uuid)


async def stop(message: Message) -> None:
    """Stop a running answer wherever it runs: its runner in this process, or through its
    conversation's control group in another (`message.conversation` loaded)."""
    if message.status != Message.Status.STREAMING:
        return  # already finished: stopping is a no-op
    local = running(str(message.uuid))
    if local is not None:
        local.stop()
        return
    if message.is_stale or await is_dead(message):
        await mark_interrupted(message)
        return
    await get_channel_layer().group_send(
        message.conversation.control_group_name,
        {"type": "generation.stop", "message": str(message.uuid)},
    )


# --- process maintenance: heartbeats and dead generations ------------------------------------


def ensure_maintenance() -> None:
    global _maintenance, _liveness
    loop = asyncio.get_running_loop()
    if _maintenance is None or _maintenance.done() or _maintenance.get_loop() is not loop:
        _maintenance = asyncio.create_task(_maintain(), name="generation maintenance")
    if _liveness is None or _liveness.done() or _liveness.get_loop() is not loop:
        _liveness = asyncio.create_task(_keep_alive(), name="generation liveness")


async def _maintain() -> None:
    purged_at = 0.0
    while True:
        try:
            if _running:
                await _beat([r.message.uuid for r in list(_running.values())])
            await sweep_stale()
            if time.monotonic() - purged_at >= PURGE_INTERVAL:
                purged_at = time.monotonic()
                await purge_deleted()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("generation maintenance failed")
        await asyncio.sleep(HEARTBEAT_INTERVAL.total_seconds())


# When the cache last failed (time.monotonic): a cache that comes back may have lost every
# mark (a restarted Redis), so nothing is judged dead until each process has marked its own again.
_cache_failed_at = float("-inf")


def _cache_trusted() -> bool:
    return time.monotonic() - _cache_failed_at > LIVE_TTL


async def _keep_alive() -> None:
    """Mark this process's generations alive, then interrupt the ones nobody marks."""
    global _cache_failed_at
    while True:
        try:
            if _running:
                await cache.aset_many({_live_key(m): 1 for m in _running}, timeout=LIVE_TTL)
            if _cache_trusted():
                await sweep_dead()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # (the cache or the database is down: the next round)
            _cache_failed_at = time.monotonic()
            logger.warning("generation liveness check failed: %s", exc)
        await asyncio.sleep(LIVE_INTERVAL)


def _live_key(message_uuid: Any) -> str:
    return f"r1chat:live:{message_uuid}"


async def mark_alive(message_uuids: list[str]) -> None:
    """Mark running generations alive for LIVE_TTL (the shared cache: every process sees it)."""
    try:
        await cache.aset_many({_live_key(m): 1 for m in message_uuids}, timeout=LIVE_TTL)
    except Exception as exc:
        logger.warning("could not mark generations alive: %s", exc)


def _quiet_since() -> dt.datetime:
    return _now() - dt.timedelta(seconds=LIVE_TTL)


async def _unmarked(messages: list[Message]) -> list[Message]:
    """Those of `messages` that no process marks alive (and that do not run here)."""
    candidates = [m for m in messages if str(m.uuid) not in _running]
    if not candidates:
        return []
    marked = await cache.aget_many([_live_key(m.uuid) for m in candidates])
    return [m for m in candidates if _live_key(m.uuid) not in marked]


async def is_dead(message: Message) -> bool:
    """Whether a `streaming` message's process has died: quiet for LIVE_TTL and unmarked."""
    if message.status != Message.Status.STREAMING or str(message.uuid) in _running:
        return False
    if (message.heartbeat_at or message.created_at) >= _quiet_since():
        return False  # (just created: its runner is about to mark it)
    if not _cache_trusted():
        return message.is_stale
    try:
        return bool(await _unmarked([message]))
    except Exception:
        return message.is_stale


async def sweep_dead() -> int:
    """Mark generations whose process died as interrupted, seconds after the death."""
    since = _quiet_since()
    quiet = [
        m
        async for m in Message.objects.filter(
            status=Message.Status.STREAMING, heartbeat_at__lt=since
        ).select_related("conversation")
    ]
    count = 0
    for message in await _unmarked(quiet):
        if await mark_interrupted(message):
            count += 1
    return count


async def announce_generating(conversation: Conversation, generating: bool) -> None:
    """The sidebar's mark: tell every tab of the owner, in every process, that an answer
    started or ended in this conversation."""
    frame = {
        "type": "conversation.generating",
        "conversation": str(conversation.uuid),
        "generating": generating,
    }
    try:
        await get_channel_layer().group_send(user_group(conversation.owner_id), frame)
    except Exception as exc:  # (the channel layer is down: tabs refresh on reconnect)
        logger.info("could not announce generation state: %s", exc)


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
    from ..rendering import render_markdown

    html = render_markdown(message.content)
    reasoning_html = render_markdown(message.reasoning)
    now = _now()
    error = describe_error("interrupted")
    updated = await Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).aupdate(
        status=Message.Status.INTERRUPTED,
        html=html,
        reasoning_html=reasoning_html,
        finished_at=now,
        error_code="interrupted",
    )
    if not updated:
        return False
    message.status = Message.Status.INTERRUPTED
    message.html = html
    message.reasoning_html = reasoning_html
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
            "reasoning_html": reasoning_html,
            "finish_reason": "",
            "reasoning_unterminated": False,
            "error": error,
        },
    )
    await announce_generating(message.conversation, False)
    return True
