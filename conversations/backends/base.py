"""What every model backend speaks: requests in, one event sequence out, typed errors.

A backend turns its server's stream into `Reasoning`, `Answer`, `Usage` and a final `Finished`
(or raises `BackendError`). Callers never see the wire format.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class ErrorKind(enum.StrEnum):
    UNREACHABLE = "unreachable"  # connect refused, DNS, TLS
    AUTH = "auth"  # 401/403, bad or missing key
    NO_BALANCE = "no_balance"  # 402
    RATE_LIMITED = "rate_limited"  # 429
    OVERLOADED = "overloaded"  # 503, insufficient_system_resource
    GATEWAY = "gateway"  # 502/504: a proxy or gateway in front of the server got no answer
    SERVER = "server"  # 500 and other 5xx
    MODEL_NOT_FOUND = "model_not_found"  # 404 / unknown model
    NO_THINKING = "no_thinking"  # the model cannot think (Ollama 400 "does not support thinking")
    BAD_REQUEST = "bad_request"  # 400/422
    CONTENT_FILTER = "content_filter"  # finish_reason content_filter
    PROTOCOL = "protocol"  # malformed stream, non-JSON line
    TRUNCATED = "truncated"  # connection ended without a terminal event
    TIMEOUT = "timeout"  # connect/idle/no-data/total deadline
    STREAM = "stream"  # an error reported inside a 200 stream


RETRYABLE_KINDS = frozenset(
    {
        ErrorKind.UNREACHABLE,
        ErrorKind.RATE_LIMITED,
        ErrorKind.OVERLOADED,
        ErrorKind.GATEWAY,
        ErrorKind.SERVER,
    }
)


class BackendError(Exception):
    """A failure with a kind a person can be told about, and whether trying again may help."""

    def __init__(
        self,
        kind: ErrorKind,
        detail: str = "",
        *,
        retryable: bool | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind
        self.detail = detail
        self.retryable = kind in RETRYABLE_KINDS if retryable is None else retryable
        self.status = status
        self.retry_after = retry_after


# --- Events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reasoning:
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # includes reasoning tokens where the server says so
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    # Server-side timings where the protocol reports them (Ollama's nanosecond metrics).
    load_seconds: float | None = None
    prompt_seconds: float | None = None
    generation_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}


FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str  # "stop", "length", "tool_calls", ... as normalised by the backend
    # The stream ended inside the reasoning (typically `length` while thinking).
    reasoning_unterminated: bool = False


Event = Reasoning | Answer | Usage | Finished


# --- Requests and metadata ------------------------------------------------------------------


@dataclass(slots=True)
class ChatRequest:
    model: str
    # History as {role, content} only: reasoning is never sent back to a model. A user turn
    # may add `images`: [{content_type, data (base64)}], for models that accept images.
    messages: list[dict[str, Any]]
    deep_think: bool = True
    enhanced_reasoning: bool = True  # highest effort level where the model offers levels
    temperature: float | None = None
    max_tokens: int | None = None
    # The last message is the assistant's answer so far, cut off at the length limit: the
    # model continues it ("Continue generating"). DeepSeek marks it `prefix: true` on its beta
    # endpoint; other servers continue a trailing assistant message or answer after it.
    continue_answer: bool = False
    top_p: float | None = None
    stop: list[str] | None = None  # sequences that end the answer (the API's `stop`)


@dataclass(slots=True)
class ModelInfo:
    name: str
    # "on_off": thinking can be switched; "always": the model always thinks (R1 distills);
    # "never": it cannot think.
    thinking: Literal["on_off", "always", "never"] = "never"
    effort_levels: list[str] = field(default_factory=list)  # e.g. ["low", "high", "max"]
    ignores_temperature_when_thinking: bool = False
    max_output_tokens: int | None = None
    context_length: int | None = None
    vision: bool = False  # accepts images (Ollama's "vision" capability)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "vision": self.vision,
            "thinking": self.thinking,
            "effort_levels": list(self.effort_levels),
            "ignores_temperature_when_thinking": self.ignores_temperature_when_thinking,
            "max_output_tokens": self.max_output_tokens,
            "context_length": self.context_length,
        }


@dataclass(slots=True)
class Health:
    reachable: bool
    latency_ms: float | None = None
    version: str | None = None
    models: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "reachable": self.reachable,
            "latency_ms": self.latency_ms,
            "version": self.version,
            "models": list(self.models),
            "error": self.error,
        }


@dataclass(slots=True)
class BackendConfig:
    """Everything a backend client needs; built from a `conversations.Backend` row or by hand."""

    kind: Literal["openai", "ollama"]
    base_url: str
    api_key: str = ""
    name: str = ""
    connect_timeout: float = 10.0
    idle_timeout: float = 60.0  # no byte at all for this long (comments re-arm it)
    no_data_timeout: float = 600.0  # no data event (comments do not count) for this long
    total_timeout: float = 1800.0  # the whole generation
    max_tries: int = 3  # tries before the first token, for retryable failures
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    model_allowlist: list[str] = field(default_factory=list)
    # Models whose output starts inside an implicit <think> (pre-opened templates).
    assume_open_think: list[str] = field(default_factory=list)


class ModelBackend(Protocol):
    config: BackendConfig

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[Event]:
        """Yield events until `Finished`; raise `BackendError` on failure.

        Retries (before the first text only) happen inside. Closing the iterator (or
        cancelling the task consuming it) closes the upstream connection at once.
        """
        ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def model_info(self, model: str) -> ModelInfo: ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...
