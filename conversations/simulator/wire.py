"""The bytes each simulated server sends: request checks, token plans, frames, error bodies.

Everything here is pure (no sockets, no clocks except through `Ctx`), so the server, `expected()`
and `render_body()` share one source of truth. Frames are assembled from pre-encoded byte
templates: per token the work is one cached JSON string encoding and a few concatenations.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from .scenario import (
    DEFAULT_OLLAMA_PROFILE,
    DEFAULT_OPENAI_PROFILE,
    DEFAULT_SCRIPT,
    LINE_ENDINGS,
    OLLAMA_PROFILES,
    OPENAI_MODELS_ALL,
    OPENAI_PROFILES,
    Scenario,
    make_tokens,
    tokenize,
)

# (delay before this write in seconds, bytes to write, end mode or None). End modes: "ok" (end the
# body properly), "drop" (FIN without terminator), "reset" (RST), "forever" (write `bytes` every
# `delay` seconds until the client leaves).
Step = tuple[float, bytes, str | None]

# Faults that strike at a point inside the token sequence (a marker unit is placed there).
_MARKER_FAULTS = frozenset(
    {"stall", "malformed_line", "midstream_error", "drop", "reset", "cut_mid_line"}
)
_TRUNCATING_FAULTS = frozenset({"midstream_error", "drop", "reset", "cut_mid_line"})
# Servers whose reasoning parser emits the transition chunk carrying both channels.
_MERGE_PROFILES = frozenset({"vllm-old", "vllm-new", "dual-field", "ollama-modern"})
# vLLM's deepseek_r1 parser passes R1's own newlines through: "\nOkay…" and "\n\nThe answer…".
_NEWLINE_PROFILES = frozenset({"vllm-old", "vllm-new", "dual-field"})
_COMMENTS = {
    "llamacpp": b": ping\n\n",
    "openrouter": b": OPENROUTER PROCESSING\n\n",
}
_DEFAULT_COMMENT = b": keep-alive\n\n"

OLLAMA_MIDSTREAM_ERROR = "an error was encountered while running the model"
OPENAI_MIDSTREAM_ERROR = "The server had an error while processing your request. Sorry about that!"


@functools.lru_cache(maxsize=16384)
def _js(text: str) -> bytes:
    return orjson.dumps(text)


def protocol_of(path: str) -> str | None:
    if path in ("/chat/completions", "/v1/chat/completions"):
        return "openai"
    if path == "/api/chat":
        return "ollama"
    return None


def profile_for(scenario: Scenario, protocol: str) -> str:
    """The scenario's profile if it speaks `protocol`, else that protocol's default."""
    if protocol == "ollama":
        return scenario.profile if scenario.profile in OLLAMA_PROFILES else DEFAULT_OLLAMA_PROFILE
    return scenario.profile if scenario.profile in OPENAI_PROFILES else DEFAULT_OPENAI_PROFILE


def version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.lstrip("v").split("-")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


# --- Replies --------------------------------------------------------------------------------


@dataclass
class Reply:
    """A whole response: a fixed body, or `steps` streamed with chunked transfer encoding."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    steps: Iterator[Step] | None = None
    delay: float = 0.0  # before the status line (a non-streaming server thinking)


def json_reply(status: int, payload: Any, extra: list[tuple[str, str]] | None = None) -> Reply:
    headers = [("Content-Type", "application/json; charset=utf-8"), *(extra or [])]
    return Reply(status, headers, orjson.dumps(payload))


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "OK" if status < 300 else "Error")


# DeepSeek's texts where known (docs/backend-protocols.md §1.5); the rest keep its envelope.
_OPENAI_ERRORS: dict[int, tuple[str, str]] = {
    400: ("Invalid Format", "invalid_request_error"),
    401: ("Authentication Fails (no such user)", "authentication_error"),
    402: ("Insufficient Balance", "unknown_error"),
    404: ("Not Found", "invalid_request_error"),
    422: ("Invalid Parameters", "invalid_request_error"),
    429: ("Rate Limit Reached", "rate_limit_error"),
    500: ("Server Error", "server_error"),
    502: ("Bad Gateway", "server_error"),
    503: ("Server Overloaded", "server_error"),
}
_OLLAMA_ERRORS: dict[int, str] = {
    400: "invalid request",
    401: "unauthorized",
    402: "payment required",
    404: "model not found",
    422: "invalid parameters",
    429: "too many requests",
    500: OLLAMA_MIDSTREAM_ERROR,
    502: "bad gateway",
    503: "server busy, please try again.  maximum pending requests exceeded",
}
_VLLM_TYPES = {400: "BadRequestError", 404: "NotFoundError", 422: "BadRequestError"}
_HTML_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def default_envelope(profile: str) -> str:
    if profile in OLLAMA_PROFILES:
        return "string"
    if profile == "vllm-old":
        return "object"
    return "openai"


def error_reply(
    profile: str,
    status: int,
    *,
    message: str | None = None,
    envelope: str | None = None,
    retry_after: float | None = None,
    error_type: str | None = None,
    code: str | None = None,
) -> Reply:
    """An HTTP error in the shape the server behind `profile` uses (or the forced envelope)."""
    envelope = envelope or default_envelope(profile)
    extra: list[tuple[str, str]] = []
    if retry_after is not None:
        value = int(retry_after) if float(retry_after).is_integer() else retry_after
        extra.append(("Retry-After", str(value)))
    if envelope == "html":
        page = _HTML_PAGE.format(status=status, reason=reason_phrase(status))
        return Reply(status, [("Content-Type", "text/html"), *extra], page.encode())
    if profile in OLLAMA_PROFILES:
        text = message or _OLLAMA_ERRORS.get(status, reason_phrase(status).lower())
        kind = error_type or "api_error"
    else:
        default_text, kind = _OPENAI_ERRORS.get(status, (reason_phrase(status), "api_error"))
        text = message or default_text
        kind = error_type or kind
    payload: dict[str, Any]
    if envelope == "string":
        payload = {"error": text}
    elif envelope == "object":
        payload = {
            "object": "error",
            "message": text,
            "type": _VLLM_TYPES.get(status, error_type or "InternalServerError"),
            "param": None,
            "code": status,
        }
    elif profile == "openrouter":
        payload = {"error": {"code": status, "message": text, "metadata": {}}}
    elif profile == "llamacpp":
        payload = {"error": {"code": status, "message": text, "type": kind}}
    else:
        err_code = code or ("invalid_request_error" if status < 500 else "server_error")
        payload = {"error": {"message": text, "type": kind, "param": None, "code": err_code}}
    return json_reply(status, payload, extra)


# --- Request checks and the token plan ------------------------------------------------------


@dataclass
class Plan:
    """What the model will emit for one request, and what a correct client keeps from it."""

    reasoning: tuple[str, ...]  # reasoning tokens that will be sent
    answer: tuple[str, ...]
    style: str  # "fields" | "tags" | "preopened" | "empty" | "plain" (no reasoning at all)
    finish: str | None  # finish reason; None when the stream never finishes
    closed: bool  # the reasoning was terminated (the model moved on to the answer)
    fault: str | None
    at: int  # token index where a marker fault strikes
    prompt_tokens: int
    cache_hit: int
    kept: tuple[str, str]  # (reasoning, answer) after §4.3's whitespace rules


@dataclass
class Chat:
    """A validated chat request."""

    protocol: str  # "openai" | "ollama"
    profile: str
    model: str
    stream: bool
    include_usage: bool
    plan: Plan
    body: dict[str, Any] = field(default_factory=dict)


def _prompt_tokens(messages: Any) -> int:
    total = 2
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content", "") if isinstance(message, dict) else message
            text = content if isinstance(content, str) else orjson.dumps(content).decode()
            total += 4 + len(tokenize(text))
    return total


def _openai_thinking(model: str, body: dict[str, Any]) -> bool:
    if model == "deepseek-chat":
        return False
    if model in ("deepseek-reasoner", "r1-distill-sim"):
        return True  # these always think, whatever the request says
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") == "disabled":
        return False
    template = body.get("chat_template_kwargs")  # vLLM / llama.cpp style switch
    if isinstance(template, dict) and (
        template.get("enable_thinking") is False or template.get("thinking") is False
    ):
        return False
    reasoning = body.get("reasoning")  # OpenRouter style switch
    if isinstance(reasoning, dict) and (
        reasoning.get("enabled") is False or reasoning.get("exclude") is True
    ):
        return False
    return body.get("reasoning_effort") != "none"


def _legacy_history_error(model: str, messages: list[Any]) -> str | None:
    """R1-era DeepSeek rejections of the history (docs §1.4)."""
    if model != "deepseek-reasoner":
        return None
    previous: str | None = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        if "reasoning_content" in message:
            # The exact text is unverified [U]; the status and envelope are.
            return "The `reasoning_content` field is not allowed in input messages."
        role = message.get("role")
        if role in ("user", "assistant") and role == previous:
            return (
                "deepseek-reasoner does not support successive user or assistant messages "
                f"(messages[{index - 1}] and messages[{index}] in your input). You should "
                "interleave the user/assistant messages in the message sequence."
            )
        previous = role if role in ("user", "assistant") else previous
    return None


def continuation(scenario: Scenario, messages: Any) -> Scenario | None:
    """A request whose last message is the assistant's (a cut-off answer to continue, e.g.
    DeepSeek's `prefix: true`): the model goes on with the script's answer after that text,
    without reasoning. None for an ordinary request."""
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return None
    prefix = last.get("content") if isinstance(last.get("content"), str) else ""
    text = scenario.answer_text if scenario.answer_text is not None else DEFAULT_SCRIPT.answer
    full = _join(make_tokens(text, scenario.answer_tokens))
    rest = full[len(prefix) :] if prefix and full.startswith(prefix) else full
    return dataclasses.replace(
        scenario, answer_text=rest, answer_tokens=None, reasoning_text="", reasoning_tokens=None
    )


def prepare_openai(scenario: Scenario, body: Any) -> Chat | Reply:
    profile = profile_for(scenario, "openai")
    if not isinstance(body, dict):
        return error_reply(profile, 400, message="Failed to parse the request body as JSON")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error_reply(
            profile,
            422,
            message="Failed to deserialize the JSON body into the target type: "
            "missing field `model`",
        )
    if model not in OPENAI_MODELS_ALL:
        return error_reply(
            profile,
            404,
            message=f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_reply(profile, 400, message="Empty input messages")
    if profile == "deepseek-legacy":
        problem = _legacy_history_error(model, messages)
        if problem is None and model == "deepseek-reasoner" and body.get("logprobs"):
            problem = "deepseek-reasoner does not support the parameter `logprobs`"  # [U] text
        if problem:
            return error_reply(profile, 400, message=problem)
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        return error_reply(
            profile, 422, message=f"Invalid max_tokens value: {max_tokens!r} (must be >= 1)"
        )
    thinking = _openai_thinking(model, body)
    if (continued := continuation(scenario, messages)) is not None:
        scenario, thinking = continued, False
    style = {"raw-tags": "tags", "raw-tags-preopened": "preopened"}.get(profile, "fields")
    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    plan = build_plan(
        scenario, "openai", style if thinking else "plain", max_tokens, _prompt_tokens(messages)
    )
    return Chat("openai", profile, model, body.get("stream") is True, include_usage, plan, body)


def _think_levels(version: tuple[int, ...]) -> tuple[str, ...]:
    return ("high", "medium", "low", "max") if version >= (0, 21, 3) else ("high", "medium", "low")


def prepare_ollama(scenario: Scenario, body: Any) -> Chat | Reply:
    profile = profile_for(scenario, "ollama")
    if body is None:
        return error_reply(profile, 400, message="missing request body")
    if not isinstance(body, dict):
        return error_reply(profile, 400, message="invalid request body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return error_reply(profile, 400, message="model is required")
    capabilities = scenario.models.get(model)
    if capabilities is None:
        return error_reply(profile, 404, message=f"model '{model}' not found")
    version = version_tuple(scenario.ollama_version)
    can_think = "thinking" in capabilities
    think = body.get("think")
    if profile != "ollama-legacy":  # servers before v0.9 do not know `think` at all
        levels = _think_levels(version)
        if (isinstance(think, str) and think not in levels) or not isinstance(
            think, (bool, str, type(None))
        ):
            allowed = ", ".join(f'"{level}"' for level in levels)
            shown = orjson.dumps(think).decode()
            return error_reply(
                profile,
                400,
                message=f"invalid think value: {shown} (must be {allowed}, true, or false)",
            )
        if not can_think:
            if version >= (0, 12, 5):
                if think is not None and think is not False:
                    shown = orjson.dumps(model).decode()  # Go's %q of the requested name
                    return error_reply(profile, 400, message=f"{shown} does not support thinking")
            elif think is not None:
                return error_reply(
                    profile,
                    400,
                    message=f"registry.ollama.ai/library/{model} does not support thinking",
                )
    if (continued := continuation(scenario, body.get("messages"))) is not None:
        scenario, can_think = continued, False
    if not can_think:
        style = "tags" if model in scenario.inline_think_models and not continued else "plain"
    elif profile == "ollama-legacy":
        style = "tags"
    elif profile == "ollama-prefilled":
        style = "preopened"
    elif profile == "ollama-nothink-empty":
        style = "empty"
    elif think is False:
        style = "plain"
    elif think is None and version < (0, 12, 4):
        style = "tags"  # before v0.12.4 an unset `think` meant no parser: tags stay in content
    else:
        style = "fields"
    options = body.get("options")
    num_predict = options.get("num_predict") if isinstance(options, dict) else None
    max_tokens = (
        num_predict
        if isinstance(num_predict, int) and not isinstance(num_predict, bool) and num_predict > 0
        else None
    )
    plan = build_plan(scenario, "ollama", style, max_tokens, _prompt_tokens(body.get("messages")))
    return Chat("ollama", profile, model, body.get("stream") is not False, False, plan, body)


def _join(tokens: tuple[str, ...] | list[str]) -> str:
    return "".join(tokens)


def build_plan(
    scenario: Scenario, protocol: str, style: str, max_tokens: int | None, prompt_tokens: int
) -> Plan:
    reasoning_all: tuple[str, ...] = ()
    if style not in ("plain", "empty"):
        reasoning_all = make_tokens(
            scenario.reasoning_text
            if scenario.reasoning_text is not None
            else DEFAULT_SCRIPT.reasoning,
            scenario.reasoning_tokens,
        )
    answer_all = make_tokens(
        scenario.answer_text if scenario.answer_text is not None else DEFAULT_SCRIPT.answer,
        scenario.answer_tokens,
    )
    if not reasoning_all and style != "empty":
        style = "plain"
    reasoning, answer = reasoning_all, answer_all
    finish: str | None = "stop"
    if max_tokens is not None and max_tokens < len(reasoning) + len(answer):
        # The limit counts reasoning too (V4 and every local server), so it may strike mid-thought.
        finish = "length"
        reasoning = reasoning[:max_tokens]
        answer = answer[: max(0, max_tokens - len(reasoning))]
    fault = scenario.fault
    if fault in ("http_error", "no_response") or (
        protocol == "ollama" and fault in ("content_filter", "insufficient_system_resource")
    ):
        fault = None  # these never reach a plan; Ollama has no such finish reasons
    at = max(0, scenario.fault_after_tokens)
    total = len(reasoning) + len(answer)
    kept_r, kept_a = reasoning, answer
    if fault == "keepalive_only":
        reasoning, answer, finish = (), (), None
        kept_r, kept_a = (), ()
    elif fault == "length_while_thinking":
        finish = "length"
        if reasoning:
            reasoning, answer = reasoning[: min(at, len(reasoning) - 1)], ()
        else:
            answer = answer[:at]
        kept_r, kept_a = reasoning, answer
    elif fault in ("content_filter", "insufficient_system_resource") or fault in _TRUNCATING_FAULTS:
        at = min(at, total)
        reasoning, answer = reasoning[:at], answer[: max(0, at - len(reasoning[:at]))]
        finish = fault if fault in ("content_filter", "insufficient_system_resource") else None
        kept_r, kept_a = reasoning, answer
    elif fault == "malformed_line":
        at = min(at, total)
        # A correct client stops at the protocol error: it keeps only what came before.
        kept_r, kept_a = reasoning[:at], answer[: max(0, at - len(reasoning))]
    elif fault == "stall":
        at = min(at, total)
    closed = bool(answer) or (
        finish == "stop" and len(reasoning) == len(reasoning_all) and not answer_all
    )
    if style == "empty":
        closed = True
    cache_hit = (prompt_tokens // 64) * 64 if prompt_tokens > 64 else 0
    return Plan(
        reasoning=reasoning,
        answer=answer,
        style=style,
        finish=finish,
        closed=closed,
        fault=fault,
        at=at,
        prompt_tokens=prompt_tokens,
        cache_hit=cache_hit,
        kept=(_join(kept_r).strip(), _join(kept_a).lstrip()),
    )


def _units(
    plan: Plan, profile: str, split_tags: bool, carry_last: bool = False
) -> Iterator[tuple[str, Any]]:
    """The frame-sized pieces of output in order: ("r"|"a"|"c", text), ("m", (r, a)), ("x", None).

    "c" is text carried in the content field that is not a token of either channel (inline tags),
    "m" the transition frame carrying both channels, "x" where a marker fault strikes. Lazy, so a
    burst of long streams costs nothing up front. `carry_last` leaves out the final token (the
    caller puts it on Ollama's done line; see `_carried`).
    """
    reasoning, answer = plan.reasoning, plan.answer
    if carry_last:
        reasoning, answer = (reasoning, answer[:-1]) if answer else (reasoning[:-1], answer)
    style = plan.style
    inline = style in ("tags", "preopened", "empty")
    r_kind, a_kind = ("c", "c") if inline else ("r", "a")
    open_tag = ("<th", "ink>") if split_tags else ("<think>",)
    close_tag = ("</thi", "nk>") if split_tags else ("</think>",)
    closing = ("\n", *close_tag, "\n\n") if style in ("tags", "preopened") else ()
    newlines = style == "fields" and profile in _NEWLINE_PROFILES
    marker = plan.at if plan.fault in _MARKER_FAULTS else None
    n_r = len(reasoning)
    # The transition frame: the last reasoning token and the first answer token together, unless
    # a fault strikes between them (Ollama keeps a separate final token for its done line).
    merge = (
        style == "fields"
        and profile in _MERGE_PROFILES
        and n_r > 0
        and len(answer) > 0
        and marker != n_r
        and (profile != "ollama-modern" or len(plan.answer) >= 2)
    )
    if style == "tags":
        for tag in (*open_tag, "\n"):
            yield ("c", tag)
    elif style == "empty":
        for tag in (*open_tag, "\n\n", *close_tag, "\n\n"):
            yield ("c", tag)
    last_r = n_r - 1 if merge else n_r
    for index in range(last_r):
        if index == marker:
            yield ("x", None)
        token = reasoning[index]
        yield (r_kind, "\n" + token if newlines and index == 0 else token)
    index = last_r
    answer_from = 0
    if merge:
        if index == marker:
            yield ("x", None)
        r_token, a_token = reasoning[-1], answer[0]
        if newlines:
            r_token = "\n" + r_token if n_r == 1 else r_token
            a_token = "\n\n" + a_token
        yield ("m", (r_token, a_token))
        index, answer_from = n_r + 1, 1
    for position in range(answer_from, len(answer)):
        if index == marker:
            yield ("x", None)
        if position == 0:
            for tag in closing:
                yield ("c", tag)
        token = answer[position]
        yield (a_kind, "\n\n" + token if newlines and position == 0 else token)
        index += 1
    if marker is not None and index <= marker:
        yield ("x", None)
    if plan.closed and not answer and not carry_last:
        for tag in closing:
            yield ("c", tag)


def _carried(plan: Plan, profile: str) -> tuple[str, str] | None:
    """The final token modern Ollama copies into its done line, if this stream has one."""
    if (
        profile != "ollama-modern"
        or plan.style not in ("fields", "plain")
        or plan.finish is None
        or plan.fault == "complete_then_keepalive"
        or (plan.fault in _MARKER_FAULTS and plan.at >= len(plan.reasoning) + len(plan.answer))
    ):
        return None
    if plan.answer:
        return ("a", plan.answer[-1])
    if plan.reasoning:
        return ("r", plan.reasoning[-1])
    return None


# --- Streams --------------------------------------------------------------------------------


@dataclass
class Ctx:
    """Per-response constants: ids and clocks differ between a live stream and `render_body`."""

    scenario: Scenario
    chat: Chat
    request_id: str
    created: int
    created_at: Callable[[], str]  # Ollama's RFC 3339 timestamp for "now"


def live_ctx(scenario: Scenario, chat: Chat) -> Ctx:
    return Ctx(scenario, chat, uuid.uuid4().hex, int(time.time()), rfc3339_now)


def fixed_ctx(scenario: Scenario, chat: Chat) -> Ctx:
    return Ctx(
        scenario,
        chat,
        "0e9642e99af64eb18c13bc90d6b13ef3",
        1764042665,
        lambda: "2026-03-09T20:20:30.22491889Z",
    )


def rfc3339_now() -> str:
    now = time.time_ns()
    seconds, nanos = divmod(now, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def _openai_usage(chat: Chat) -> dict[str, Any]:
    plan = chat.plan
    completion = len(plan.reasoning) + len(plan.answer)
    prompt = plan.prompt_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if chat.profile in ("deepseek", "deepseek-legacy"):
        usage["prompt_tokens_details"] = {"cached_tokens": plan.cache_hit}
        usage["completion_tokens_details"] = {"reasoning_tokens": len(plan.reasoning)}
        usage["prompt_cache_hit_tokens"] = plan.cache_hit
        usage["prompt_cache_miss_tokens"] = prompt - plan.cache_hit
    elif chat.profile in ("openrouter", "vllm-new", "dual-field") and plan.reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": len(plan.reasoning)}
    return usage


class _OpenAIFrames:
    """Pre-encoded SSE frame templates for one response of an OpenAI-compatible profile."""

    def __init__(self, ctx: Ctx) -> None:
        chat = ctx.chat
        self.profile = profile = chat.profile
        self.fields = chat.plan.style == "fields"
        model = _js(chat.model)
        created = str(ctx.created).encode()
        rid = ctx.request_id
        self.comment = _COMMENTS.get(profile, _DEFAULT_COMMENT)
        self.done = b"data: [DONE]\n" if profile == "llamacpp" else b"data: [DONE]\n\n"
        usage = _openai_usage(chat)
        self.usage = orjson.dumps(usage)
        self.completion = usage["completion_tokens"]
        self.tail = b""  # after "]" on non-final chunks
        if profile in ("deepseek", "deepseek-legacy"):
            ident = f"{rid[:8]}-{rid[8:12]}-{rid[12:16]}-{rid[16:20]}-{rid[20:32]}".encode()
            self.pre = (
                b'data: {"id":"' + ident + b'","object":"chat.completion.chunk","created":'
                + created + b',"model":' + model
                + b',"system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache",'
                b'"choices":[{"index":0,"delta":'
            )  # fmt: skip
            self.mid = b',"logprobs":null,"finish_reason":'
            self.post = b"}]"
            if profile == "deepseek":
                self.tail = b',"usage":null'  # V4 captures carry it on every non-final chunk
        elif profile == "llamacpp":
            # nlohmann::json sorts keys, so llama.cpp's chunks come out alphabetised.
            self.pre = b'data: {"choices":[{"delta":'
            self.mid = b',"finish_reason":'
            self.post = (
                b',"index":0}],"created":' + created + b',"id":"chatcmpl-' + rid[:32].encode()
                + b'","model":' + model
                + b',"object":"chat.completion.chunk","system_fingerprint":"b9554-d403f00ec"'
            )  # fmt: skip
        elif profile == "openrouter":
            self.pre = (
                b'data: {"id":"gen-' + created + b"-" + rid[:20].encode()
                + b'","provider":"DeepSeek","model":' + model
                + b',"object":"chat.completion.chunk","created":' + created
                + b',"choices":[{"index":0,"delta":'
            )  # fmt: skip
            self.mid = b',"finish_reason":'
            self.post = b',"logprobs":null}]'
        else:  # vLLM and friends
            self.pre = (
                b'data: {"id":"chatcmpl-' + rid[:32].encode()
                + b'","object":"chat.completion.chunk","created":' + created
                + b',"model":' + model + b',"choices":[{"index":0,"delta":'
            )  # fmt: skip
            self.mid = b',"logprobs":null,"finish_reason":'
            self.post = b"}]"
        self.head = self.pre[: self.pre.index(b',"choices"')] if profile != "llamacpp" else b""
        self._deltas()

    def _deltas(self) -> None:
        profile, fields = self.profile, self.fields
        # Each is (prefix, suffix) around the JSON-encoded token.
        self.r: Callable[[bytes], bytes]
        self.a: Callable[[bytes], bytes]
        self.m: Callable[[bytes, bytes], bytes] = lambda r, a: b'{"content":' + a + b"}"
        if profile in ("deepseek", "deepseek-legacy"):
            self.role = (
                b'{"role":"assistant","content":null,"reasoning_content":""}'
                if fields
                else b'{"role":"assistant","content":""}'
            )
            self.r = lambda t: b'{"content":null,"reasoning_content":' + t + b"}"
            if fields:
                self.a = lambda t: b'{"content":' + t + b',"reasoning_content":null}'
            else:
                self.a = lambda t: b'{"content":' + t + b"}"
            self.final = b'{"content":"","reasoning_content":null}' if fields else b'{"content":""}'
        elif profile == "llamacpp":
            self.role = b'{"content":null,"role":"assistant"}'
            self.r = lambda t: b'{"reasoning_content":' + t + b"}"
            self.a = lambda t: b'{"content":' + t + b"}"
            self.final = b"{}"
        elif profile == "openrouter":
            self.role = b""
            self.r = lambda t: (
                b'{"role":"assistant","content":"","reasoning":' + t
                + b',"reasoning_details":[{"type":"reasoning.text","text":' + t
                + b',"format":"unknown","index":0}]}'
            )  # fmt: skip
            self.a = lambda t: b'{"role":"assistant","content":' + t + b',"reasoning":null}'
            self.final = b'{"role":"assistant","content":"","reasoning":null}'
        else:
            self.role = b'{"role":"assistant","content":""}'
            self.final = b'{"content":""}'
            self.a = lambda t: b'{"content":' + t + b"}"
            if profile == "vllm-old":
                self.r = lambda t: b'{"reasoning_content":' + t + b"}"
                self.a = lambda t: b'{"content":' + t + b',"reasoning_content":null}'
                self.m = lambda r, a: b'{"reasoning_content":' + r + b',"content":' + a + b"}"
            elif profile == "vllm-new":
                self.r = lambda t: b'{"reasoning":' + t + b"}"
                self.m = lambda r, a: b'{"reasoning":' + r + b',"content":' + a + b"}"
            elif profile == "dual-field":
                self.r = lambda t: b'{"reasoning":' + t + b',"reasoning_content":' + t + b"}"
                self.a = lambda t: (
                    b'{"content":' + t + b',"reasoning":null,"reasoning_content":null}'
                )
                self.m = lambda r, a: (
                    b'{"reasoning":' + r + b',"reasoning_content":' + r + b',"content":' + a + b"}"
                )
            else:  # raw tags: no reasoning parser, everything is content
                self.r = self.a

    def frame(self, delta: bytes, finish: bytes = b"null", tail: bytes | None = None) -> bytes:
        end = self.tail if tail is None else tail
        return self.pre + delta + self.mid + finish + self.post + end + b"}\n\n"

    def unit(self, kind: str, value: Any) -> bytes:
        if kind == "r":
            return self.frame(self.r(_js(value)))
        if kind == "m":
            return self.frame(self.m(_js(value[0]), _js(value[1])))
        return self.frame(self.a(_js(value)))

    def usage_chunk(self) -> bytes:
        return self.head + b',"choices":[],"usage":' + self.usage + b"}\n\n"

    def finish(self, reason: str, include_usage: bool) -> list[bytes]:
        finish = _js(reason)
        if self.profile in ("deepseek", "deepseek-legacy"):
            return [self.frame(self.final, finish, b',"usage":' + self.usage)]
        if self.profile == "llamacpp":
            timings = orjson.dumps(
                {
                    "prompt_n": 16,
                    "prompt_ms": 12.5,
                    "prompt_per_second": 1280.0,
                    "predicted_n": self.completion,
                    "predicted_ms": 1000.0,
                    "predicted_per_second": 50.0,
                }
            )
            tail = b',"timings":' + timings + b',"usage":' + self.usage
            return [self.frame(self.final, finish, tail)]
        frames = [self.frame(self.final, finish)]
        if self.profile == "openrouter" or include_usage:
            frames.append(self.usage_chunk())
        return frames

    def error(self, message: str, old_field: bool) -> list[bytes]:
        if self.profile == "llamacpp":
            payload = {"code": 500, "message": message, "type": "server_error"}
            if old_field:  # builds before PR #16109 used a non-standard `error:` SSE field
                return [b"error: " + orjson.dumps(payload) + b"\n\n", self.done]
            return [b"data: " + orjson.dumps({"error": payload}) + b"\n\n", self.done]
        if self.profile == "openrouter":
            error = orjson.dumps(
                {"code": 502, "message": message, "metadata": {"provider_name": "DeepSeek"}}
            )
            return [
                self.head + b',"error":' + error + b',"choices":[{"index":0,"delta":'
                b'{"content":""},"finish_reason":"error"}]}\n\n'
            ]
        payload = {
            "message": message,
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
        frames = [b"data: " + orjson.dumps({"error": payload}) + b"\n\n"]
        if self.profile in ("vllm-old", "vllm-new", "dual-field"):
            frames.append(self.done)
        return frames


def _steps(
    ctx: Ctx,
    units: Iterator[tuple[str, Any]],
    *,
    comment: bytes,
    start: list[bytes],
    render_unit: Callable[[str, Any], bytes],
    finish: Callable[[], list[bytes]],
    terminator: list[bytes],
    error: Callable[[], list[bytes]],
    malformed: bytes,
    line_ending: bytes,
) -> Iterator[Step]:
    """The timed writes of one stream; the protocol-specific bytes come in as callables."""
    scenario, plan = ctx.scenario, ctx.chat.plan
    fix: Callable[[bytes], bytes] = (
        (lambda b: b) if line_ending == b"\n" else (lambda b: b.replace(b"\n", line_ending))
    )
    between = comment if scenario.comments_between else b""
    interval = 1.0 / scenario.token_rate if scenario.token_rate > 0 else 0.0
    for _ in range(scenario.keepalives_before):
        yield (scenario.keepalive_interval, fix(comment), None)
    if plan.fault == "keepalive_only":
        yield (scenario.keepalive_interval, fix(comment), "forever")
        return
    pending = scenario.first_token_delay  # added to the next data frame's delay
    first = True
    for frame in start:
        yield (pending, fix(between + frame), None)
        pending, first = 0.0, False
    for kind, value in units:
        if kind == "x":
            fault = plan.fault
            if fault == "stall":
                pending += scenario.stall_seconds
            elif fault == "malformed_line":
                yield (pending, fix(between + malformed), None)
                pending = 0.0
            elif fault == "midstream_error":
                for frame in error():
                    yield (pending, fix(between + frame), None)
                    pending = 0.0
                yield (0.0, b"", "ok")
                return
            elif fault == "drop":
                yield (pending, b"", "drop")
                return
            elif fault == "reset":
                yield (pending, b"", "reset")
                return
            elif fault == "cut_mid_line":
                following = next((u for u in units if u[0] != "x"), None)
                whole = render_unit(*following) if following else finish()[0]
                yield (pending or interval, fix(whole[: len(whole) // 2]), None)
                yield (0.0, b"", "drop")
                return
            continue
        delay = pending if first else interval + pending
        yield (delay, fix(between + render_unit(kind, value)), None)
        pending, first = 0.0, False
    if plan.finish is None:
        yield (pending, b"", "ok")  # defensive: every truncating fault returned above
        return
    for frame in finish():
        yield (pending, fix(between + frame), None)
        pending = 0.0
    if plan.fault == "complete_then_keepalive":
        yield (scenario.keepalive_interval, fix(comment), "forever")
        return
    for frame in terminator:
        yield (0.0, fix(between + frame), None)
    yield (0.0, b"", "ok")


def openai_stream(ctx: Ctx) -> Iterator[Step]:
    chat, scenario = ctx.chat, ctx.scenario
    frames = _OpenAIFrames(ctx)
    units = _units(chat.plan, chat.profile, scenario.split_tags)
    start = [frames.frame(frames.role)] if frames.role else []
    message = scenario.error_message or OPENAI_MIDSTREAM_ERROR
    return _steps(
        ctx,
        units,
        comment=frames.comment,
        start=start,
        render_unit=frames.unit,
        finish=lambda: frames.finish(chat.plan.finish or "stop", chat.include_usage),
        terminator=[frames.done],
        error=lambda: frames.error(message, scenario.old_error_field),
        malformed=b"data: {upstream hiccup: <not json>\n\n",
        line_ending=LINE_ENDINGS[scenario.line_ending],
    )


def _ollama_metrics(ctx: Ctx) -> bytes:
    plan, scenario = ctx.chat.plan, ctx.scenario
    count = len(plan.reasoning) + len(plan.answer)
    load = int(scenario.first_token_delay * 1e9) + 1_334_875
    prompt = plan.prompt_tokens * 210_000
    per_token = 1e9 / scenario.token_rate if scenario.token_rate > 0 else 1_000_000
    generation = int(count * per_token)
    return orjson.dumps(
        {
            "total_duration": load + prompt + generation + 812_000,
            "load_duration": load,
            "prompt_eval_count": plan.prompt_tokens,
            "prompt_eval_duration": prompt,
            "eval_count": count,
            "eval_duration": generation,
        }
    )[1:-1]


def ollama_stream(ctx: Ctx) -> Iterator[Step]:
    chat, scenario, plan = ctx.chat, ctx.scenario, ctx.chat.plan
    model = _js(chat.model)
    pre = b'{"model":' + model + b',"created_at":"'
    mid = b'","message":{"role":"assistant","content":'

    def head() -> bytes:
        return pre + ctx.created_at().encode() + mid

    def render(kind: str, value: Any) -> bytes:
        if kind == "r":
            return head() + b'"","thinking":' + _js(value) + b'},"done":false}\n'
        if kind == "m":
            return head() + _js(value[1]) + b',"thinking":' + _js(value[0]) + b'},"done":false}\n'
        return head() + _js(value) + b'},"done":false}\n'

    carry = _carried(plan, chat.profile)
    units = _units(plan, chat.profile, scenario.split_tags, carry_last=carry is not None)

    def finish() -> list[bytes]:
        if plan.fault == "complete_then_keepalive":
            return []  # the message is complete, but no done line ever comes
        content, thinking = b'""', b""
        if carry is not None and carry[0] == "a":
            content = _js(carry[1])
        elif carry is not None:
            thinking = b',"thinking":' + _js(carry[1])
        reason = _js(plan.finish or "stop")
        return [
            head() + content + thinking + b'},"done_reason":' + reason + b',"done":true,'
            + _ollama_metrics(ctx) + b"}\n"
        ]  # fmt: skip

    message = scenario.error_message or OLLAMA_MIDSTREAM_ERROR
    return _steps(
        ctx,
        units,
        comment=b"\n",  # NDJSON has no comments; blank lines are the nearest keep-alive
        start=[],
        render_unit=render,
        finish=finish,
        terminator=[],
        error=lambda: [orjson.dumps({"error": message}) + b"\n"],
        malformed=b"<html>upstream hiccup</html>\n",
        line_ending=b"\n",
    )


# --- Whole bodies (stream: false) -----------------------------------------------------------


def _inline(plan: Plan) -> tuple[str, str]:
    """(reasoning, content) as a server without a parser reports them in one message."""
    reasoning, answer = _join(plan.reasoning), _join(plan.answer)
    if plan.style == "empty":
        return "", "<think>\n\n</think>\n\n" + answer
    if plan.style not in ("tags", "preopened"):
        return reasoning, answer
    opened = "<think>\n" if plan.style == "tags" else ""
    closing = "\n</think>\n\n" if plan.closed else ""
    return "", opened + reasoning + closing + answer


def openai_body(ctx: Ctx) -> bytes:
    chat, plan = ctx.chat, ctx.chat.plan
    reasoning, content = _inline(plan)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if plan.style == "fields":
        if chat.profile in ("vllm-new", "openrouter"):
            message["reasoning"] = reasoning
        elif chat.profile == "dual-field":
            message["reasoning"] = message["reasoning_content"] = reasoning
        else:
            message["reasoning_content"] = reasoning
    rid = ctx.request_id
    payload = {
        "id": rid if chat.profile not in ("deepseek", "deepseek-legacy") else str(uuid.UUID(rid)),
        "object": "chat.completion",
        "created": ctx.created,
        "model": chat.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": plan.finish or "stop",
            }
        ],
        "usage": _openai_usage(chat),
    }
    if chat.profile in ("deepseek", "deepseek-legacy"):
        payload["system_fingerprint"] = "fp_ffc7281d48_prod0820_fp8_kvcache"
    return orjson.dumps(payload)


def ollama_body(ctx: Ctx) -> bytes:
    chat, plan = ctx.chat, ctx.chat.plan
    reasoning, content = _inline(plan)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["thinking"] = reasoning
    head = orjson.dumps(
        {
            "model": chat.model,
            "created_at": ctx.created_at(),
            "message": message,
            "done_reason": plan.finish or "stop",
            "done": True,
        }
    )
    return head[:-1] + b"," + _ollama_metrics(ctx) + b"}"
