"""One API call from the model (or the response cache) to the client.

The events come from the same backend clients as the web chat's (`conversations.backends`:
`get_backend(config).stream_chat(request)` yielding Reasoning, Answer, Usage and Finished, or
raising BackendError; retries before the first token happen inside), read the way the
generation runner reads them. A streamed call is sent as OpenAI's chunks, coalesced like the
runner's frames (the first text at once, then at most one write per FRAME_INTERVAL); a call
that is not streamed is one `chat.completion` object.

When the call ends (complete, failed, or the client went away), its usage is recorded with
the source `api` (`cached` for a cache hit), a complete answer is put in the response cache
when the call may use it, and with a key that records calls the exchange is saved as a
conversation, in the database threads of the runner (`in_db_pool`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from conversations.backends import get_backend
from conversations.backends.base import (
    Answer,
    BackendError,
    ChatRequest,
    Event,
    Finished,
    Reasoning,
    Usage,
)
from conversations.runner import shutdown
from conversations.runner.db import in_db_pool
from conversations.runner.generation import FRAME_INTERVAL
from r1chat.text import clean_text

from .history import save_exchange
from .offers import Offer
from .parsing import ChatCall

logger = logging.getLogger(__name__)

CACHE_SECONDS = settings.R1CHAT_API_CACHE_SECONDS
CACHE_PREFIX = "r1chat:api-cache:"
REPLAY_PIECE = 400  # characters per event when a cached answer is replayed
# Tasks that record a call after its client went away: kept referenced until they finish.
_finishing: set[asyncio.Task[None]] = set()


def cache_key(offer: Offer, call: ChatCall) -> str:
    """The backend, the model, the messages and every parameter that shapes the answer."""
    material = orjson.dumps(
        [offer.backend.pk, offer.model, call.messages, call.parameters()],
        option=orjson.OPT_SORT_KEYS,
    )
    return CACHE_PREFIX + hashlib.sha256(material).hexdigest()


def uses_cache(call: ChatCall, header: str) -> bool:
    """The caller opted in (header or body), or asked for temperature 0 and did not opt out."""
    if not CACHE_SECONDS:
        return False
    choice = header.strip().lower()
    if choice in ("off", "0", "false", "no") or call.cache is False:
        return False
    if choice in ("on", "1", "true", "yes") or call.cache is True:
        return True
    return call.temperature == 0


@dataclass
class Exchange:
    """One call and what came back."""

    user_id: int
    key_id: int
    record: bool
    offer: Offer
    call: ChatCall
    cache_key: str | None
    cached: dict[str, Any] | None = None  # the cache's entry for a hit
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))
    started_at: Any = field(default_factory=timezone.now)
    reasoning: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    finish_reason: str = ""
    reasoning_unterminated: bool = False
    reasoning_started_at: Any = None
    answer_started_at: Any = None
    status: str = "streaming"
    error: Exception | None = None  # a BackendError, or a failure of r1chat's own
    finished: bool = False

    @property
    def source(self) -> str:
        return "cached" if self.cached is not None else "api"

    def take(self, event: Event) -> None:
        """Keep what an event says (the whole text, usage and finish reason)."""
        if isinstance(event, Reasoning):
            if self.reasoning_started_at is None:
                self.reasoning_started_at = timezone.now()
            self.reasoning.append(event.text)
        elif isinstance(event, Answer):
            if self.answer_started_at is None:
                self.answer_started_at = timezone.now()
            self.answer.append(event.text)
        elif isinstance(event, Usage):
            self.usage = event.as_dict()
        elif isinstance(event, Finished):
            self.finish_reason = event.reason
            self.reasoning_unterminated = event.reasoning_unterminated

    # --- the events -------------------------------------------------------------------------

    def events(self) -> AsyncIterator[Event]:
        if self.cached is not None:
            return _replay(self.cached)
        request = ChatRequest(
            model=self.offer.model,
            messages=self.call.messages,
            deep_think=_deep_think(self.offer, self.call),
            enhanced_reasoning=self.call.enhanced_reasoning,
            temperature=self.call.temperature,
            max_tokens=self.call.max_tokens,
            top_p=self.call.top_p,
            stop=self.call.stop or None,
        )
        return get_backend(self.offer.backend.config()).stream_chat(request)

    # --- the end ----------------------------------------------------------------------------

    async def finish(self, status: str) -> None:
        """Record the call once: usage, the cache, the history."""
        if self.finished:
            return
        self.finished = True
        self.status = status
        try:
            if (
                status == "complete"
                and self.cache_key
                and self.cached is None
                and self.finish_reason in ("stop", "length")
            ):
                await cache.aset(self.cache_key, self.entry(), CACHE_SECONDS)
        except Exception as exc:  # the cache being down costs only the next hit
            logger.warning("could not store an API answer in the cache: %s", exc)
        try:
            await _store(self)
        except Exception:
            logger.exception("could not record API call %s", self.id)

    def finish_later(self, status: str) -> None:
        """`finish` in a task of its own (the request's task is being cancelled)."""
        task = asyncio.ensure_future(self.finish(status))
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)

    def entry(self) -> dict[str, Any]:
        return {
            "reasoning": "".join(self.reasoning),
            "answer": "".join(self.answer),
            "usage": self.usage,
            "finish_reason": self.finish_reason,
        }

    # --- OpenAI's shapes --------------------------------------------------------------------

    def usage_object(self) -> dict[str, Any]:
        prompt = int(self.usage.get("prompt_tokens") or 0)
        completion = self.usage.get("completion_tokens")
        if completion is None:  # the server said nothing: estimated as usage records are
            from review.usage import CHARS_PER_TOKEN

            length = sum(map(len, self.reasoning)) + sum(map(len, self.answer))
            completion = -(-length // CHARS_PER_TOKEN)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": int(completion),
            "total_tokens": prompt + int(completion),
            "prompt_tokens_details": {"cached_tokens": int(self.usage.get("cached_tokens") or 0)},
            "completion_tokens_details": {
                "reasoning_tokens": int(self.usage.get("reasoning_tokens") or 0)
            },
        }

    def completion(self) -> dict[str, Any]:
        reasoning = "".join(self.reasoning)
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.offer.id,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(self.answer),
                        "reasoning_content": reasoning or None,
                    },
                    "logprobs": None,
                    "finish_reason": _finish_reason(self.finish_reason),
                }
            ],
            "usage": self.usage_object(),
            "system_fingerprint": None,
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.offer.id,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.call.include_usage:
            body["usage"] = None
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def usage_chunk(self) -> bytes:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.offer.id,
            "system_fingerprint": None,
            "choices": [],
            "usage": self.usage_object(),
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"


def _finish_reason(reason: str) -> str:
    return reason if reason in ("stop", "length", "content_filter") else "stop"


def _deep_think(offer: Offer, call: ChatCall) -> bool:
    if offer.info.thinking == "never":
        return False
    if offer.info.thinking == "always":
        return True
    return call.deep_think


async def _replay(entry: dict[str, Any]) -> AsyncIterator[Event]:
    """A cached answer as the events a model would send."""
    for kind, text in ((Reasoning, entry.get("reasoning") or ""), (Answer, entry["answer"])):
        for start in range(0, len(text), REPLAY_PIECE):
            yield kind(text[start : start + REPLAY_PIECE])
    usage = entry.get("usage") or {}
    yield Usage(**{k: v for k, v in usage.items() if k in Usage.__slots__})
    yield Finished(entry.get("finish_reason") or "stop")


@in_db_pool
def _store(exchange: Exchange) -> None:
    from review.usage import record_usage

    message = save_exchange(exchange) if exchange.record else None
    if message is None:
        message = _Unsaved(exchange)
    message.source = exchange.source
    record_usage(message, exchange.user_id)


class _Unsaved:
    """The fields of a message that `record_usage` reads, for a call not saved in the history."""

    role = "assistant"

    def __init__(self, exchange: Exchange) -> None:
        self.uuid = uuid.uuid4()
        self.usage = exchange.usage
        self.content = "".join(exchange.answer)
        self.reasoning = "".join(exchange.reasoning)
        self.created_at = exchange.started_at
        self.backend_name = exchange.offer.backend.name
        self.model = exchange.offer.model
        self.source = exchange.source


# --- streaming ------------------------------------------------------------------------------


class Upstream:
    """The events of one call read by a task of their own, so the client's writes can be
    coalesced without holding the model's stream up."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.events = exchange.events()
        self.pending: list[Event] = []
        self.ended = False
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def first(self) -> None:
        """Wait for the first event: a failure before it is still an HTTP status."""
        try:
            event = await anext(self.events)
        except StopAsyncIteration:
            self.ended = True
            return
        except BaseException:
            await self.close()
            raise
        self.exchange.take(event)
        self.pending.append(event)

    def start(self) -> None:
        if not self.ended:
            self.task = asyncio.create_task(self._pump(), name=f"api {self.exchange.id}")
            shutdown.track(self.task)  # SIGTERM lets it finish within the grace period
        self.wake.set()

    async def _pump(self) -> None:
        try:
            async for event in self.events:
                self.exchange.take(event)
                self.pending.append(event)
                self.wake.set()
        except BackendError as exc:
            self.exchange.error = exc
        except Exception as exc:
            logger.exception("API call %s failed", self.exchange.id)
            self.exchange.error = exc
        finally:
            self.ended = True
            self.wake.set()
            await self.events.aclose()  # closes the upstream connection at once

    async def close(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        with contextlib.suppress(Exception):
            await self.events.aclose()


async def sse(upstream: Upstream, error_body: Any) -> AsyncIterator[bytes]:
    """The call as server-sent events: `data: {chunk}` …, then `data: [DONE]`.

    `error_body(exc)` is the OpenAI-shaped error sent when the model fails mid-answer."""
    exchange = upstream.exchange
    role_sent = False
    status = "stopped"  # unless it ends otherwise: the client went away
    try:
        upstream.start()
        while True:
            await upstream.wake.wait()
            upstream.wake.clear()
            events, upstream.pending = upstream.pending, []
            out: list[bytes] = []
            kind: type | None = None
            texts: list[str] = []
            for event in [*events, None]:
                event_kind = type(event) if isinstance(event, Reasoning | Answer) else None
                if texts and event_kind is not kind:
                    field_name = "reasoning_content" if kind is Reasoning else "content"
                    delta: dict[str, Any] = {field_name: clean_text("".join(texts))}
                    if not role_sent:
                        delta = {"role": "assistant", **delta}
                        role_sent = True
                    out.append(exchange.chunk(delta))
                    texts = []
                kind = event_kind
                if event_kind is not None:
                    texts.append(event.text)  # type: ignore[union-attr]
            if upstream.ended and not upstream.pending:
                if exchange.error is not None:
                    out.append(b"data: " + orjson.dumps(error_body(exchange.error)) + b"\n\n")
                    status = "error"
                else:
                    if not role_sent:
                        out.append(exchange.chunk({"role": "assistant", "content": ""}))
                    out.append(exchange.chunk({}, _finish_reason(exchange.finish_reason)))
                    if exchange.call.include_usage:
                        out.append(exchange.usage_chunk())
                    out.append(b"data: [DONE]\n\n")
                    status = "complete"
                yield b"".join(out)
                return
            if out:
                yield b"".join(out)
                await asyncio.sleep(FRAME_INTERVAL)
    finally:
        if status == "complete" or status == "error":
            exchange.finish_later(status)
        else:
            await upstream.close()
            exchange.finish_later(status)
