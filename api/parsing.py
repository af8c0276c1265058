"""The one validation of a `POST /v1/chat/completions` body: every field checked, unknown fields
refused, sizes bounded. A mistake is an ApiError (400) naming the field in `param`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from .errors import ApiError, invalid

MAX_MESSAGES = settings.R1CHAT_API_MAX_MESSAGES
MAX_CHARS = settings.R1CHAT_API_MAX_CHARS
MAX_STOP = 4
MAX_STOP_CHARS = 200
MAX_TOKENS = 1_000_000
ROLES = {"system", "developer", "user", "assistant"}
EFFORTS = {"low", "medium", "high", "max", "xhigh"}
KNOWN = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "max_tokens",
    "max_completion_tokens", "stop", "n", "user", "thinking", "reasoning_effort", "cache",
}  # fmt: skip
MESSAGE_FIELDS = {"role", "content", "name", "reasoning_content"}


@dataclass
class ChatCall:
    """A checked request."""

    model: str
    # {role, content}: system prompts first as given, reasoning dropped (never sent to a model).
    messages: list[dict[str, str]]
    stream: bool = False
    include_usage: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    deep_think: bool = True
    enhanced_reasoning: bool = True
    cache: bool | None = None  # the caller's choice; None: only at temperature 0

    def parameters(self) -> dict[str, Any]:
        """What shapes the answer besides the model and messages (part of the cache key)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            "deep_think": self.deep_think,
            "enhanced_reasoning": self.enhanced_reasoning,
        }


def _bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid(_("'%(name)s' must be true or false.") % {"name": name}, name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(
            _("'%(name)s' must be a number from %(low)s to %(high)s.")
            % {"name": name, "low": low, "high": high},
            name,
        )
    return float(value)


def _integer(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
        raise invalid(
            _("'%(name)s' must be a whole number from 1 to %(high)s.")
            % {"name": name, "high": MAX_TOKENS},
            name,
        )
    return value


def _text(content: Any, param: str) -> str:
    """A message's content: a string, or a list of text parts (joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for number, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                where = f"{param}[{number}]"
                raise invalid(_("Only text content is supported."), where, "unsupported_content")
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(_("A text part needs a 'text' string."), f"{param}[{number}].text")
            pieces.append(text)
        return "".join(pieces)
    raise invalid(_("A message's content must be a string."), param)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise invalid(_("'messages' must be a non-empty list."), "messages")
    if len(value) > MAX_MESSAGES:
        raise invalid(
            _("Too many messages: %(count)s; the limit is %(limit)s.")
            % {"count": len(value), "limit": MAX_MESSAGES},
            "messages",
            "too_many_messages",
        )
    out: list[dict[str, str]] = []
    total = 0
    for number, message in enumerate(value):
        where = f"messages[{number}]"
        if not isinstance(message, dict):
            raise invalid(_("A message must be an object."), where)
        unknown = sorted(set(message) - MESSAGE_FIELDS)
        if unknown:
            raise invalid(
                _("Unsupported message field '%(name)s'.") % {"name": unknown[0]},
                f"{where}.{unknown[0]}",
                "unknown_parameter",
            )
        role = message.get("role")
        if role not in ROLES:
            raise invalid(_("A message's role must be system, user or assistant."), f"{where}.role")
        content = _text(message.get("content"), f"{where}.content")
        total += len(content)
        if total > MAX_CHARS:
            raise invalid(
                _("The messages are too long: the limit is %(limit)s characters in all.")
                % {"limit": MAX_CHARS},
                "messages",
                "context_too_long",
            )
        out.append({"role": "system" if role == "developer" else role, "content": content})
    if out[-1]["role"] == "assistant":
        raise invalid(_("The last message must not be the assistant's."), "messages")
    if not any(m["role"] == "user" for m in out):
        raise invalid(_("At least one message must be the user's."), "messages")
    return out


def parse(raw: bytes) -> ChatCall:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, _("The body is not valid JSON."), code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, _("The body must be a JSON object."), code="invalid_json")
    unknown = sorted(set(body) - KNOWN)
    if unknown:
        raise invalid(
            _("Unrecognized request argument supplied: %(name)s") % {"name": unknown[0]},
            unknown[0],
            "unknown_parameter",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 300:
        raise invalid(_("'model' must name a model (GET /v1/models lists them)."), "model")
    call = ChatCall(model=model.strip(), messages=_messages(body.get("messages")))
    call.stream = bool(_bool(body, "stream"))
    options = body.get("stream_options")
    if options is not None:
        if not call.stream:
            raise invalid(
                _("'stream_options' is only allowed with 'stream': true."), "stream_options"
            )
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise invalid(_("'stream_options' may only hold 'include_usage'."), "stream_options")
        call.include_usage = bool(_bool(options, "include_usage"))
    call.temperature = _number(body, "temperature", 0, 2)
    call.top_p = _number(body, "top_p", 0, 1)
    call.max_tokens = _integer(body, "max_completion_tokens") or _integer(body, "max_tokens")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise invalid(_("Only one choice ('n': 1) is supported."), "n")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise invalid(_("'user' must be a string."), "user")
    call.stop = _stop(body.get("stop"))
    thinking = body.get("thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind not in ("enabled", "disabled") or set(thinking) - {"type"}:
            raise invalid(_("'thinking' must be {'type': 'enabled'} or 'disabled'."), "thinking")
        call.deep_think = kind == "enabled"
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in EFFORTS:
            raise invalid(
                _("'reasoning_effort' must be low, medium, high or max."), "reasoning_effort"
            )
        call.enhanced_reasoning = effort in ("max", "xhigh")
    call.cache = _bool(body, "cache")
    return call


def _stop(value: Any) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or len(items) > MAX_STOP
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in items)
    ):
        raise invalid(
            _("'stop' must be a string or a list of at most %(count)s strings.")
            % {"count": MAX_STOP},
            "stop",
        )
    return list(items)
