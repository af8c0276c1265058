"""Ollama's native API: `POST /api/chat` streamed as NDJSON (docs/backend-protocols.md §2).

`think` goes only to models whose `/api/show` capabilities list `thinking` (older servers
answer 400 otherwise); reasoning arrives in `message.thinking`, or as inline `<think>` tags in
`message.content` on servers and models that do not split it out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

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
    name_always_thinks,
    stream_error,
)
from .streams import ChannelAssembler, NDJSONReader

# Ollama's default context is 2048 on old servers and VRAM-dependent on new ones (§2.1);
# an explicit value makes a conversation behave the same on every server.
DEFAULT_NUM_CTX = 8192
# Model families that take a reasoning level ("low"/"medium"/"high"/"max") for `think`.
LEVEL_FAMILIES = ("gpt-oss", "qwen3")
# How long the server version is trusted before asking again (upgrades are rare).
VERSION_TTL = 300.0
# Context kept for the prompt beyond `num_predict` when the context is sized for a request.
PROMPT_ROOM = 4096
MAX_LEVEL_SINCE = (0, 21, 3)  # `think: "max"` exists from this version on
CHAT_PATH = "/api/chat"


def parse_version(text: str | None) -> tuple[int, ...]:
    """ "0.12.5" -> (0, 12, 5); anything unparsable compares as very old."""
    if not text:
        return ()
    parts: list[int] = []
    for piece in text.strip().lstrip("v").split("-")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def takes_levels(model: str) -> bool:
    low = model.lower()
    return any(family in low for family in LEVEL_FAMILIES)


def usage_from(line: dict[str, Any]) -> Usage | None:
    def num(key: str) -> int | None:
        value = line.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def seconds(key: str) -> float | None:
        ns = num(key)
        return ns / 1e9 if ns is not None else None

    usage = Usage(
        prompt_tokens=num("prompt_eval_count"),
        completion_tokens=num("eval_count"),
        load_seconds=seconds("load_duration"),
        prompt_seconds=seconds("prompt_eval_duration"),
        generation_seconds=seconds("eval_duration"),
    )
    return usage if usage.as_dict() else None


async def _lines(body: TimedBody, api_key: str) -> AsyncIterator[dict[str, Any]]:
    """The NDJSON lines of a body as objects, up to the done line or the body's end; an
    error line raises."""
    reader = NDJSONReader()
    while True:
        chunk = await body.read()
        lines = reader.feed(chunk) if chunk is not None else reader.finish()
        if lines:
            body.data_seen()
        for line in lines:
            obj = _parse_line(line, chunk is None, api_key)
            yield obj
            if obj.get("done"):
                return
        if chunk is None:
            return


def _parse_line(line: bytes, eof: bool, api_key: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        if eof:  # the connection closed in the middle of a line
            raise BackendError(
                ErrorKind.TRUNCATED, "the stream ended in the middle of a line"
            ) from None
        raise BackendError(ErrorKind.PROTOCOL, f"malformed stream line: {line[:120]!r}") from None
    if not isinstance(obj, dict):
        raise BackendError(ErrorKind.PROTOCOL, "stream line is not an object")
    if obj.get("error"):
        raise stream_error(obj, api_key)
    return obj


def _context_length(show: dict[str, Any]) -> int | None:
    model_info = show.get("model_info")
    if isinstance(model_info, dict):
        for key, value in model_info.items():
            if key.endswith(".context_length") and isinstance(value, int) and value > 0:
                return value
    return None


def _message_events(line: dict[str, Any], asm: ChannelAssembler) -> list[Reasoning | Answer]:
    """The text of one line: thinking first, as a transition line can carry both."""
    message = line.get("message")
    if not isinstance(message, dict):
        return []
    out: list[Reasoning | Answer] = []
    thinking = message.get("thinking")
    if thinking and isinstance(thinking, str):
        out = asm.reasoning(thinking)
    content = message.get("content")
    if content and isinstance(content, str):
        out.extend(asm.content(content))
    return out


class OllamaBackend(HTTPBackend):
    """One Ollama server; share it (see `get_backend`), it pools connections and caches
    each model's capabilities."""

    num_ctx = DEFAULT_NUM_CTX

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # model -> (capabilities or None for a server too old to report them, raw show)
        self._show: dict[str, tuple[list[str] | None, dict[str, Any]]] = {}
        self._version: tuple[float, str | None] | None = None

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[Event]:
        return self._retrying(request)

    # --- metadata with caches ---

    async def _model_show(self, model: str) -> tuple[list[str] | None, dict[str, Any]]:
        cached = self._show.get(model)
        if cached is not None:
            return cached
        payload = await self._get_json("/api/show", {"model": model})
        if not isinstance(payload, dict):
            raise BackendError(ErrorKind.PROTOCOL, "/api/show did not return an object")
        caps = payload.get("capabilities")
        entry = ([str(c) for c in caps] if isinstance(caps, list) else None, payload)
        self._show[model] = entry
        return entry

    async def capabilities(self, model: str) -> list[str] | None:
        """The model's capabilities, or None when unknown (old server, /api/show failed).

        A model the server does not have raises MODEL_NOT_FOUND right here; other failures
        of /api/show are not fatal: the chat request will tell what is wrong."""
        try:
            return (await self._model_show(model))[0]
        except BackendError as exc:
            if exc.kind in (ErrorKind.MODEL_NOT_FOUND, ErrorKind.UNREACHABLE, ErrorKind.AUTH):
                raise
            return None

    async def context_length(self, model: str) -> int | None:
        """The model's context length from /api/show's `model_info`, when it reports one."""
        try:
            _caps, show = await self._model_show(model)
        except BackendError:
            return None
        return _context_length(show)

    async def server_version(self) -> str | None:
        now = time.monotonic()
        if self._version is not None and now - self._version[0] < VERSION_TTL:
            return self._version[1]
        try:
            payload = await self._get_json("/api/version", timeout=5.0)
            version = str(payload.get("version")) if isinstance(payload, dict) else None
        except BackendError:
            version = None
        self._version = (now, version)
        return version

    async def think_value(self, request: ChatRequest) -> bool | str | None:
        """What to send as `think` (None: leave it out)."""
        caps = await self.capabilities(request.model)
        if caps is None or "thinking" not in caps:
            return None  # a non-thinking model, or one whose abilities are unknown
        if not request.deep_think or request.continue_answer:
            return False  # (a continuation goes on with the answer: the thinking is done)
        if request.enhanced_reasoning and takes_levels(request.model):
            version = parse_version(await self.server_version())
            if version and version < (0, 11):
                return True  # string levels arrived with gpt-oss (~v0.11)
            return "max" if version >= MAX_LEVEL_SINCE else "high"
        return True

    async def build_body(self, request: ChatRequest) -> dict[str, Any]:
        num_ctx = self.num_ctx
        if request.max_tokens is not None:
            # `num_predict` counts the thinking too (the caller sized it for both): make the
            # context hold it and a prompt, up to what the model supports.
            wanted = request.max_tokens + PROMPT_ROOM
            limit = await self.context_length(request.model)
            num_ctx = max(num_ctx, min(wanted, limit) if limit else num_ctx)
        options: dict[str, Any] = {"num_ctx": num_ctx}
        if request.temperature is not None:
            options["temperature"] = request.temperature
        if request.max_tokens is not None:
            options["num_predict"] = request.max_tokens
        if request.top_p is not None:
            options["top_p"] = request.top_p
        if request.stop:
            options["stop"] = list(request.stop)
        body: dict[str, Any] = {
            "model": request.model,
            # (Ollama takes a user turn's images as a list of base64 strings)
            "messages": [
                {**m, "images": [i["data"] for i in m["images"]]} if m.get("images") else m
                for m in clean_history(request.messages)
            ],
            "stream": True,
            "options": options,
        }
        think = await self.think_value(request)
        if think is not None:
            body["think"] = think
        return body

    # --- streaming ---

    async def _attempt(self, request: ChatRequest, deadline: float) -> AsyncIterator[Event]:
        """One try: send the question, read the answer up to its done line, then the
        terminal events."""
        body = await self.build_body(request)
        asm = ChannelAssembler(
            request.model in self.config.assume_open_think, request.continue_answer
        )
        async with self._exchange("POST", CHAT_PATH, body, deadline) as reader:
            done: dict[str, Any] = {}
            async for line in _lines(reader, self.config.api_key):
                for event in _message_events(line, asm):  # the done line may carry text too
                    yield event
                done = line
            if not done.get("done"):
                raise BackendError(
                    ErrorKind.TRUNCATED, "the connection closed before the model finished"
                )
        for event in asm.finish():
            yield event
        usage = usage_from(done)
        if usage is not None:
            yield usage
        reason = str(done.get("done_reason") or "stop")
        if reason in ("load", "unload"):
            reason = "stop"
        yield Finished(reason, reasoning_unterminated=asm.unterminated(reason))

    # --- metadata ---

    async def _tags(self) -> list[str]:
        payload = await self._get_json("/api/tags")
        models = payload.get("models") if isinstance(payload, dict) else None
        if not isinstance(models, list):
            raise BackendError(ErrorKind.PROTOCOL, "/api/tags did not return a model list")
        return [str(m.get("name") or m.get("model")) for m in models if isinstance(m, dict)]

    async def list_models(self) -> list[ModelInfo]:
        names = await self._tags()
        limit = asyncio.Semaphore(8)  # /api/show per model, a few at a time

        async def one(name: str) -> ModelInfo:
            async with limit:
                return await self.model_info(name)

        return list(await asyncio.gather(*(one(name) for name in names)))

    async def model_info(self, model: str) -> ModelInfo:
        info = ModelInfo(name=model)
        try:
            caps, show = await self._model_show(model)
        except BackendError as exc:
            if exc.kind is ErrorKind.MODEL_NOT_FOUND:
                raise
            caps, show = None, {}
        if caps is None:
            # A server from before capabilities: it passes tags through in content.
            info.thinking = "always" if name_always_thinks(model) else "never"
        elif "thinking" in caps:
            info.thinking = "on_off"
            if takes_levels(model):
                info.effort_levels = ["low", "medium", "high"]
                if parse_version(await self.server_version()) >= MAX_LEVEL_SINCE:
                    info.effort_levels.append("max")
        info.vision = bool(caps and "vision" in caps)
        info.context_length = _context_length(show)
        return info

    async def health(self) -> Health:
        start = time.perf_counter()
        try:
            payload = await self._get_json("/api/version", timeout=5.0)
            latency = round((time.perf_counter() - start) * 1000, 1)
            version = str(payload.get("version")) if isinstance(payload, dict) else None
            self._version = (time.monotonic(), version)
            models = await self._tags()
        except BackendError as exc:
            return Health(
                reachable=exc.kind not in (ErrorKind.UNREACHABLE, ErrorKind.TIMEOUT),
                latency_ms=round((time.perf_counter() - start) * 1000, 1),
                error=f"{exc.kind.value}: {exc.detail}",
            )
        return Health(reachable=True, latency_ms=latency, version=version, models=models)
