"""DeepSeek and every OpenAI-compatible server (vLLM, llama.cpp, LM Studio, OpenRouter).

`POST {base}/chat/completions` with `stream: true`, read as SSE. Reasoning comes from
`reasoning_content` or `reasoning` (whichever is non-empty first, never both) or from inline
`<think>` tags in `content`; see docs/backend-protocols.md §1, §3 and §4.
"""

from __future__ import annotations

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
from .retry import (
    HTTPBackend,
    TimedBody,
    clean_history,
    error_message,
    name_always_thinks,
    stream_error,
)
from .streams import ChannelAssembler, SSEEvent, SSEReader

# After `finish_reason` only the usage chunk and `[DONE]` may follow. Some servers then send
# keep-alives forever (DeepSeek's "complete message, never [DONE]"); the answer is complete,
# so stop waiting after this long instead of running into the no-data timeout.
FINISH_GRACE = 2.0

LEGACY_PAIR = ("deepseek-reasoner", "deepseek-chat")
CHAT_PATH = "/chat/completions"
# DeepSeek's chat prefix completion (beta): the last message is the assistant's with
# `"prefix": true`, sent to the beta base URL (api-docs.deepseek.com, "Chat Prefix Completion").
DEEPSEEK_BETA_CHAT_PATH = "/beta/chat/completions"
# Documented limits of DeepSeek's models (docs/backend-protocols.md §1.3): the legacy pair's
# context is 128K; deepseek-chat writes at most 8K, deepseek-reasoner 64K reasoning included.
DEEPSEEK_CONTEXT = 131072
DEEPSEEK_MAX_OUTPUT = {"deepseek-chat": 8192, "deepseek-reasoner": 65536}

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


def _with_image_parts(message: dict[str, Any]) -> dict[str, Any]:
    """A user turn with images as OpenAI's content parts: the text, then each image as a
    `data:` URL."""
    images = message.pop("images", None)
    if not images:
        return message
    parts: list[dict[str, Any]] = [{"type": "text", "text": message["content"]}]
    for image in images:
        url = f"data:{image['content_type']};base64,{image['data']}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return {**message, "content": parts}


def is_deepseek_host(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    return host == "deepseek.com" or host.endswith(".deepseek.com")


def build_body(request: ChatRequest, *, prefix: bool = False) -> dict[str, Any]:
    """The JSON body for one chat request, with Deep Think mapped onto the model's controls.

    `prefix`: a continuation marks the trailing assistant message as a prefix to complete
    (DeepSeek's beta)."""
    model = request.model
    messages = [_with_image_parts(m) for m in clean_history(request.messages)]
    if request.continue_answer and prefix and messages and messages[-1]["role"] == "assistant":
        messages[-1] = {**messages[-1], "prefix": True}  # type: ignore[dict-item]
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
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
    if request.top_p is not None:
        body["top_p"] = request.top_p
    if request.stop:
        body["stop"] = list(request.stop)
    return body


def infer_model_info(name: str, entry: dict[str, Any] | None = None) -> ModelInfo:
    """What a model can do, from its name (OpenAI-compatible servers do not say)."""
    low = name.lower()
    info = ModelInfo(name=name)
    if is_deepseek_v4(low):
        info.thinking = "on_off"
        info.effort_levels = ["low", "high", "max"]
        info.ignores_temperature_when_thinking = True
        info.context_length = DEEPSEEK_CONTEXT  # (V4's own limits are not documented yet)
    elif low in LEGACY_PAIR:
        info.thinking = "on_off"
        info.ignores_temperature_when_thinking = True
        info.context_length = DEEPSEEK_CONTEXT
        info.max_output_tokens = DEEPSEEK_MAX_OUTPUT["deepseek-reasoner"]
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


def _is_whole_json(body: TimedBody) -> bool:
    """A server (or proxy) that ignored `stream: true`, or an error sent with status 200."""
    return "application/json" in body.headers.get("content-type", "")


async def _read_json(body: TimedBody) -> Any:
    try:
        return orjson.loads(await body.read_all())
    except orjson.JSONDecodeError:
        raise BackendError(ErrorKind.PROTOCOL, "response is not JSON") from None


class _ChunkState:
    """Per-stream interpretation of SSE events and parsed chunks: text into events, usage,
    finish reason, and whether the stream is over."""

    __slots__ = ("api_key", "asm", "done", "finish", "usage")

    def __init__(self, assume_open: bool, api_key: str, answer_only: bool = False) -> None:
        self.asm = ChannelAssembler(assume_open, answer_only)
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.api_key = api_key
        self.done = False  # `[DONE]` or the end of the body came

    def take(self, sse: SSEEvent, eof: bool) -> list[Reasoning | Answer]:
        """The text events of one SSE event (`eof`: the body ended after its chunk)."""
        if sse.kind == "done":
            self.done = True
            return []
        if sse.kind == "error":
            raise stream_error(_json_or_text(sse.data), self.api_key)
        if not sse.data:
            return []
        return self.handle(_parse_event(sse.data, eof))

    def body_ended(self) -> None:
        """The body ended: complete if the model had finished, else cut off."""
        if self.finish is None:
            raise BackendError(
                ErrorKind.TRUNCATED, "the connection closed before the model finished"
            )
        self.done = True

    def answer_is_whole(self, exc: BackendError) -> bool:
        """After the finish reason the answer is whole: a server that then hangs or drops the
        connection has lost nothing but maybe the usage."""
        return self.finish is not None and exc.kind in (ErrorKind.TIMEOUT, ErrorKind.TRUNCATED)

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


def _json_or_text(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data


def _parse_event(data: str, eof: bool) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        if eof:  # the connection closed in the middle of an event
            raise BackendError(
                ErrorKind.TRUNCATED, "the stream ended in the middle of an event"
            ) from None
        raise BackendError(ErrorKind.PROTOCOL, f"malformed stream event: {data[:120]!r}") from None


class OpenAIBackend(HTTPBackend):
    """One OpenAI-compatible server; share it (see `get_backend`), it pools connections."""

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[Event]:
        return self._retrying(request)

    async def _attempt(self, request: ChatRequest, deadline: float) -> AsyncIterator[Event]:
        """One try: send the question, read the answer, then the terminal events."""
        state = _ChunkState(
            request.model in self.config.assume_open_think,
            self.config.api_key,
            request.continue_answer,
        )
        path, prefix = CHAT_PATH, False
        if request.continue_answer and is_deepseek_host(self.base_url):
            parts = urlsplit(self.base_url)
            path, prefix = f"{parts.scheme}://{parts.netloc}{DEEPSEEK_BETA_CHAT_PATH}", True
        payload = build_body(request, prefix=prefix)
        async with self._exchange("POST", path, payload, deadline) as body:
            if _is_whole_json(body):
                for event in state.handle(await _read_json(body)):
                    yield event
                state.finish = state.finish or "stop"
            else:
                async for event in self._read_sse(body, state):
                    yield event
        for event in state.terminal():
            yield event
        yield state.finished()

    async def _read_sse(self, body: TimedBody, state: _ChunkState) -> AsyncIterator[Event]:
        """The events of an SSE body, until `[DONE]` or its end."""
        reader = SSEReader()
        try:
            while not state.done:
                chunk = await body.read()
                sse_events = reader.feed(chunk) if chunk is not None else reader.finish()
                if sse_events:
                    body.data_seen()
                for sse in sse_events:
                    for event in state.take(sse, eof=chunk is None):
                        yield event
                    if state.done:
                        return
                if chunk is None:
                    state.body_ended()
                elif state.finish is not None:
                    body.grace(FINISH_GRACE)
        except BackendError as exc:
            if not state.answer_is_whole(exc):
                raise

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
