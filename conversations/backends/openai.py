"""DeepSeek and every OpenAI-compatible server (vLLM, llama.cpp, LM Studio, OpenRouter).

`POST {base}/chat/completions` with `stream: true`, read as SSE. Reasoning comes from
`reasoning_content` or `reasoning` (whichever is non-empty first, never both) or from inline
`<think>` tags in `content`; see docs/backend-protocols.md §1, §3 and §4.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson

from .base import (
    Answer,
    BackendError,
    ChatRequest,
    ErrorKind,
    Event,
    Finished,
    Health,
    ModelInfo,
    Reasoning,
    Usage,
)
from .body import open_body
from .retry import (
    HTTPBackend,
    StreamTimer,
    clean_history,
    error_message,
    name_always_thinks,
    stream_error,
)
from .streams import ChannelAssembler, SSEReader

# After `finish_reason` only the usage chunk and `[DONE]` may follow. Some servers then send
# keep-alives forever (DeepSeek's "complete message, never [DONE]"); the answer is complete,
# so stop waiting after this long instead of running into the no-data timeout.
FINISH_GRACE = 2.0

LEGACY_PAIR = ("deepseek-reasoner", "deepseek-chat")

# Finish reasons that mean the same thing under another name on some servers.
_FINISH_ALIASES = {
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "function_call": "tool_calls",
}


def is_deepseek_v4(model: str) -> bool:
    return model.lower().startswith("deepseek-v4")


def build_body(request: ChatRequest) -> dict[str, Any]:
    """The JSON body for one chat request, with Deep Think mapped onto the model's controls."""
    model = request.model
    body: dict[str, Any] = {
        "model": model,
        "messages": clean_history(request.messages),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if is_deepseek_v4(model):
        body["thinking"] = {"type": "enabled" if request.deep_think else "disabled"}
        if request.deep_think:
            body["reasoning_effort"] = "max" if request.enhanced_reasoning else "high"
    elif model.lower() in LEGACY_PAIR:
        # The pre-V4 pair: thinking is a choice of model, not a parameter.
        body["model"] = "deepseek-reasoner" if request.deep_think else "deepseek-chat"
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    return body


def infer_model_info(name: str, entry: dict[str, Any] | None = None) -> ModelInfo:
    """What a model can do, from its name (OpenAI-compatible servers do not say)."""
    low = name.lower()
    info = ModelInfo(name=name)
    if is_deepseek_v4(low):
        info.thinking = "on_off"
        info.effort_levels = ["low", "high", "max"]
        info.ignores_temperature_when_thinking = True
    elif low in LEGACY_PAIR:
        info.thinking = "on_off"
        info.ignores_temperature_when_thinking = True
    elif name_always_thinks(low):
        info.thinking = "always"
    if entry:
        # vLLM reports max_model_len, OpenRouter context_length.
        for key in ("context_length", "max_model_len", "context_window"):
            value = entry.get(key)
            if isinstance(value, int) and value > 0:
                info.context_length = value
                break
    return info


def usage_from(raw: dict[str, Any]) -> Usage:
    def num(value: Any) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    completion_details = raw.get("completion_tokens_details") or {}
    prompt_details = raw.get("prompt_tokens_details") or {}
    cached = num(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None
    if cached is None:
        cached = num(raw.get("prompt_cache_hit_tokens"))
    reasoning = (
        num(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else None
    )
    return Usage(
        prompt_tokens=num(raw.get("prompt_tokens")),
        completion_tokens=num(raw.get("completion_tokens")),
        reasoning_tokens=reasoning,
        cached_tokens=cached,
    )


class _ChunkState:
    """Per-stream interpretation of parsed chunks: text into events, usage, finish reason."""

    __slots__ = ("api_key", "asm", "finish", "usage")

    def __init__(self, assume_open: bool, api_key: str) -> None:
        self.asm = ChannelAssembler(assume_open)
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.api_key = api_key

    def handle(self, obj: Any) -> list[Reasoning | Answer]:
        if not isinstance(obj, dict):
            raise BackendError(ErrorKind.PROTOCOL, "stream event is not a JSON object")
        # An error inside a 200 stream: `{"error":{...}}`, `{"error":"..."}`, `{"object":"error"}`.
        if ("error" in obj or obj.get("object") == "error") and error_message(obj) is not None:
            raise stream_error(obj, self.api_key)
        usage = obj.get("usage")
        if usage and isinstance(usage, dict):
            self.usage = usage  # the last non-null one wins
        choices = obj.get("choices")
        if not choices or not isinstance(choices, list):
            return []  # the `choices: []` usage chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            return []
        delta = choice.get("delta")
        if delta is None:
            delta = choice.get("message")  # a non-streamed completion
        out: list[Reasoning | Answer] = []
        if isinstance(delta, dict):
            # Reasoning first, then content: a transition chunk carries both, in that order.
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if reasoning and isinstance(reasoning, str):
                out = self.asm.reasoning(reasoning)
            content = delta.get("content")
            if content and isinstance(content, str):
                if out:
                    out.extend(self.asm.content(content))
                else:
                    out = self.asm.content(content)
        reason = choice.get("finish_reason")
        if reason and isinstance(reason, str):
            self.finish = _FINISH_ALIASES.get(reason, reason)
        return out

    def terminal(self) -> list[Event]:
        """Events after the last chunk; raises for finish reasons that are failures."""
        events: list[Event] = list(self.asm.finish())
        if self.usage is not None:
            events.append(usage_from(self.usage))
        return events

    def finished(self) -> Finished:
        reason = self.finish or "stop"
        if reason == "content_filter":
            raise BackendError(
                ErrorKind.CONTENT_FILTER,
                "the server's content filter stopped the answer",
                retryable=False,
            )
        if reason == "insufficient_system_resource":
            raise BackendError(
                ErrorKind.OVERLOADED,
                "finish_reason insufficient_system_resource: the server ran out of capacity",
                retryable=True,
            )
        if reason == "error":  # OpenRouter's chunk-level failure
            raise BackendError(ErrorKind.STREAM, "the server reported an error (finish_reason)")
        return Finished(reason, reasoning_unterminated=self.asm.unterminated(reason))


class OpenAIBackend(HTTPBackend):
    """One OpenAI-compatible server; share it (see `get_backend`), it pools connections."""

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[Event]:
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        """Tries (see `HTTPBackend._retry_delay`) around one attempt each, all in this one
        generator: every event passes a single generator between the socket and the caller."""
        cfg = self.config
        deadline = asyncio.get_running_loop().time() + cfg.total_timeout
        failures = 0
        while True:
            text_sent = False
            try:
                body = build_body(request)
                state = _ChunkState(request.model in cfg.assume_open_think, cfg.api_key)
                response = await self._open("POST", "/chat/completions", body, deadline)
                try:
                    await self._raise_for_status(response, deadline)
                    if "application/json" in response.headers.get("content-type", ""):
                        # A server (or proxy) that ignored `stream: true`, or an error as 200.
                        raw = await response.aread()
                        try:
                            obj = orjson.loads(raw)
                        except orjson.JSONDecodeError:
                            raise BackendError(ErrorKind.PROTOCOL, "response is not JSON") from None
                        for event in state.handle(obj):
                            text_sent = True
                            yield event
                        if state.finish is None:
                            state.finish = "stop"
                    else:
                        # The SSE read loop is inline (no generator of its own).
                        reader = SSEReader()
                        timer = StreamTimer(cfg, deadline)
                        stream = open_body(response, timer)
                        handle = state.handle
                        loads = orjson.loads
                        reading = True
                        try:
                            while reading:
                                try:
                                    chunk = await stream.read()
                                except BackendError as exc:
                                    # After the finish reason the answer is whole; a server
                                    # that then hangs or drops the connection has lost us
                                    # nothing but maybe the usage.
                                    if state.finish is not None and exc.kind in (
                                        ErrorKind.TIMEOUT,
                                        ErrorKind.TRUNCATED,
                                    ):
                                        break
                                    raise
                                eof = chunk is None
                                sse_events = (
                                    reader.finish() if chunk is None else reader.feed(chunk)
                                )
                                if sse_events:
                                    timer.data_seen()
                                    for sse in sse_events:
                                        kind = sse.kind
                                        if kind == "done":
                                            if not eof:
                                                await stream.drain()
                                            reading = False
                                            break
                                        if kind == "error":
                                            try:
                                                payload: Any = loads(sse.data)
                                            except orjson.JSONDecodeError:
                                                payload = sse.data
                                            raise stream_error(payload, cfg.api_key)
                                        if not sse.data:
                                            continue
                                        try:
                                            obj = loads(sse.data)
                                        except orjson.JSONDecodeError:
                                            # The connection closed in the middle of an event.
                                            if eof:
                                                raise BackendError(
                                                    ErrorKind.TRUNCATED,
                                                    "the stream ended in the middle of an event",
                                                ) from None
                                            raise BackendError(
                                                ErrorKind.PROTOCOL,
                                                f"malformed stream event: {sse.data[:120]!r}",
                                            ) from None
                                        had_finish = state.finish is not None
                                        events = handle(obj)
                                        if events:
                                            text_sent = True
                                            for event in events:
                                                yield event
                                        if not had_finish and state.finish is not None:
                                            timer.cap = (
                                                asyncio.get_running_loop().time() + FINISH_GRACE
                                            )
                                    if not reading:
                                        break
                                if eof:
                                    if state.finish is None:
                                        raise BackendError(
                                            ErrorKind.TRUNCATED,
                                            "the connection closed before the model finished",
                                        )
                                    break
                        finally:
                            await stream.aclose()
                finally:
                    await response.aclose()
                for event in state.terminal():
                    if type(event) is Reasoning or type(event) is Answer:
                        text_sent = True
                    yield event
                yield state.finished()
                return
            except BackendError as exc:
                failures += 1
                delay = self._retry_delay(exc, failures, text_sent, deadline)
            await asyncio.sleep(delay)

    # --- metadata ---

    async def _models_payload(self) -> list[dict[str, Any]]:
        payload = await self._get_json("/models")
        data = payload.get("data") if isinstance(payload, dict) else payload
        if not isinstance(data, list):
            raise BackendError(ErrorKind.PROTOCOL, "/models did not return a model list")
        return [entry for entry in data if isinstance(entry, dict) and entry.get("id")]

    async def list_models(self) -> list[ModelInfo]:
        return [infer_model_info(str(e["id"]), e) for e in await self._models_payload()]

    async def model_info(self, model: str) -> ModelInfo:
        return infer_model_info(model)

    async def health(self) -> Health:
        start = time.perf_counter()
        try:
            entries = await self._models_payload()
        except BackendError as exc:
            return Health(
                reachable=exc.kind not in (ErrorKind.UNREACHABLE, ErrorKind.TIMEOUT),
                latency_ms=round((time.perf_counter() - start) * 1000, 1),
                error=f"{exc.kind.value}: {exc.detail}",
            )
        latency = round((time.perf_counter() - start) * 1000, 1)
        return Health(
            reachable=True,
            latency_ms=latency,
            version=await self._version(),
            models=[str(e["id"]) for e in entries],
        )

    async def _version(self) -> str | None:
        """vLLM (and some llama.cpp builds) answer GET /version at the server root."""
        parts = urlsplit(self.base_url)
        if parts.hostname and parts.hostname.endswith("deepseek.com"):
            return None  # the public API has no version endpoint
        root = self.base_url.removesuffix("/v1")
        try:
            payload = await self._get_json(root + "/version", timeout=3.0)
        except BackendError:
            return None
        if isinstance(payload, dict) and payload.get("version"):
            return str(payload["version"])
        return None
