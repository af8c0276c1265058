"""The chat WebSocket protocol (`/ws/chat/`): every frame, in one place.

One socket per tab, JSON text frames, each an object with a `type`.

Client → server
---------------
- ``subscribe {conversation}`` — show this conversation in this tab (uuid, or null to leave).
  The server answers with ``generation.snapshot`` for a message still streaming, then live frames.
- ``send {conversation|null, content, client_id, settings?, parent?, attachments?}`` — a new
  user message; a null conversation starts one. ``parent`` (a message uuid) continues from that
  message instead of the current leaf. A repeated ``client_id`` in the same conversation is a
  no-op. ``attachments``: the ids of files uploaded beforehand (``POST /api/attachments``), at
  most ``MAX_ATTACHMENTS``; with one, ``content`` may be empty. An id that is unknown, another
  user's or already sent is an ``attachment_not_found`` error and nothing is sent; an image for
  a model that does not accept images is ``images_unsupported``.
- ``stop {message}`` — stop a running generation (from any tab or process).
- ``regenerate {message, settings?}`` — a new version of an assistant message.
- ``edit {message, content, settings?}`` — a new version of a user message, answered anew; it
  keeps the files attached to the message it edits.
- ``switch {message}`` — show this version (a message id) and the thread below it.
- ``continue {message}`` — "Continue generating": an answer that stopped at the maximum
  length (``finish_reason`` ``length``, not while thinking) goes on in the same message. The
  model is sent the thread with the answer so far as the last, assistant, message (DeepSeek:
  ``prefix: true`` on its beta endpoint); its new text is appended. Anything else is
  ``invalid``; a conversation already generating is ``busy``.

``settings``: ``{backend: int, model: str, deep_think: bool, enhanced_reasoning: bool,
temperature: float 0.1–1.0, max_tokens: int, system_prompt: str, preset: int (0: none),
reasoning_expanded: bool}``, every key optional. ``max_tokens`` is the answer's maximum
length: where the server's limit counts the reasoning too, the request adds room for it
(turns/budget.py). ``preset`` names the user's saved preset the settings came from (the
conversation remembers it); ``reasoning_expanded`` is a display preference, only saved with
the user's defaults.

Server → client
---------------
- ``conversation.created {conversation, title, client_id}`` — to every tab of the user.
- ``conversation.updated {conversation, title?, pinned?, updated_at?, deleted?}`` — to every
  tab of the user (the sidebar).
- ``conversation.deleted {conversation}`` — to tabs showing a conversation that was deleted.
- ``conversation.generating {conversation, generating}`` — to every tab of the user: an answer
  started (true) or ended (false) in that conversation, in any process (the sidebar's mark).
- ``message.created {conversation, message}`` — a serialised message (see
  ``serialize_message``); the user's message and the assistant's (status ``streaming``).
- ``message.updated {conversation, message}`` — a whole stored message, replacing what the tab
  shows (a resumed generation that ended before its snapshot arrived).
- ``thread {conversation, messages}`` — the whole visible thread, after ``switch``.
- ``generation.snapshot {message, seq, reasoning, answer, html_stable, html_tail,
  reasoning_html_stable, reasoning_html_tail, phase, status, timings}`` — everything so far,
  for a tab that (re)subscribes mid-stream; live deltas follow with ``seq`` greater than the
  snapshot's. The next delta's ``html_append`` goes after ``html_stable`` and its ``html_tail``
  replaces ``html_tail`` (the same for the reasoning's).
- ``generation.delta {message, seq, from_seq?, reasoning?, answer?, html_append?, html_tail?,
  reasoning_html_append?, reasoning_html_tail?}`` — new text since the previous delta, rendered:
  ``*_html_append`` is final HTML to add, ``*_html_tail`` replaces the rendering of the
  still-open last block (every frame is rendered markdown, never raw text). A delta covers the
  frames ``from_seq`` (default ``seq``) to ``seq``; the server sends a tab each ``seq`` once, in
  order, and answers a gap (frames lost between processes) with a fresh snapshot.
  The first delta with ``answer`` marks the end of the reasoning phase. A key that is absent
  means unchanged. The raw ``reasoning`` and ``answer`` text is for bookkeeping (copy,
  lengths): what a tab shows is the HTML.
- ``generation.continued {conversation, message, seq, ...}`` — a finished answer streams again
  ("Continue generating"): the fields of ``generation.snapshot`` (its text so far, rendered);
  live deltas follow from ``seq`` + 1 and end with ``generation.done``.
- ``generation.done {message, seq, status, usage, timings, html, reasoning_html, finish_reason,
  reasoning_unterminated, error?}`` — the terminal frame: ``status`` is ``complete``,
  ``stopped``, ``error`` or ``interrupted``; ``error`` is ``{code, message, retryable}``.
- ``error {code, detail, ref?}`` — a bad client frame; the socket stays open. ``ref`` echoes the
  frame's ``client_id`` when there was one. ``throttled``: too many frames (every type counts,
  per socket and per user).

Close codes: 4401 not signed in or may not chat, 4403 signed out or deactivated elsewhere,
4503 the server lost its link to the other processes (Redis): reconnect with backoff, then
subscribe again (a snapshot brings the tab up to date).

Every client frame is validated here before anything else runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from r1chat.text import clean_text

MAX_CONTENT_CHARS = 100_000
MAX_SYSTEM_PROMPT_CHARS = 20_000
# The longest frame read (in characters): room for the longest valid question and system prompt
# even when a client escapes every character (``\u6c49``: six for one), so a long question
# always gets its own clear answer (`too_long`), never a bare `too_large`. Daphne refuses
# anything over 1 MiB (deploy/: --websocket-max-message-size).
MAX_FRAME_BYTES = 6 * (MAX_CONTENT_CHARS + MAX_SYSTEM_PROMPT_CHARS) + 64 * 1024
MAX_CLIENT_ID_CHARS = 64
MAX_ATTACHMENTS = 10
TEMPERATURE_RANGE = (0.0, 2.0)
MAX_TOKENS_RANGE = (1, 1_000_000)


class ClientError(Exception):
    """A client mistake, answered with an ``error`` frame."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail


def not_found() -> ClientError:
    # Another user's id and a missing id get the same answer (no enumeration).
    return ClientError("not_found", _("That conversation or message does not exist."))


def attachments_not_found() -> ClientError:
    # Another user's file, a file already sent and an unknown id get the same answer.
    return ClientError(
        "attachment_not_found", _("An attached file was not found. Attach it again.")
    )


@dataclass(slots=True)
class Frame:
    type: str
    data: dict[str, Any]


def _uuid(value: Any, field: str, *, nullable: bool = False) -> uuid.UUID | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise ClientError("invalid", _("“%(field)s” must be an id.") % {"field": field})
    try:
        return uuid.UUID(value)
    except ValueError:
        raise not_found() from None


def _attachment_ids(value: Any) -> list[uuid.UUID]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ClientError("invalid", _("“attachments” must be a list of ids."))
    if len(value) > MAX_ATTACHMENTS:
        raise ClientError(
            "too_many_files",
            _("Attach at most %(limit)d files to one message.") % {"limit": MAX_ATTACHMENTS},
        )
    try:
        return list(dict.fromkeys(uuid.UUID(item) for item in value))
    except ValueError:
        raise attachments_not_found() from None


def _content(value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ClientError("invalid", _("The message must be text."))
    if allow_empty and not value.strip():
        return ""  # (files attached: they are the message)
    if len(value) > MAX_CONTENT_CHARS:
        raise ClientError(
            "too_long",
            _("The message is too long (%(count)d characters; the limit is %(limit)d).")
            % {"count": len(value), "limit": MAX_CONTENT_CHARS},
        )
    if not value.strip():
        raise ClientError("empty", _("The message is empty."))
    return clean_text(value)  # (the tabs are shown what is stored)


def _number(value: Any, field: str, low: float, high: float, *, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ClientError("invalid", _("“%(field)s” must be a number.") % {"field": field})
    if integer and int(value) != value:
        raise ClientError("invalid", _("“%(field)s” must be a whole number.") % {"field": field})
    if not low <= value <= high:
        raise ClientError(
            "invalid",
            _("“%(field)s” must be between %(low)s and %(high)s.")
            % {"field": field, "low": low, "high": high},
        )
    return int(value) if integer else float(value)


def clean_settings(value: Any) -> dict[str, Any]:
    """Validate a ``settings`` object; unknown keys are an error, every key optional."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClientError("invalid", _("“settings” must be an object."))
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            continue
        if key == "backend":
            cleaned[key] = _number(item, key, 1, 2**31, integer=True)
        elif key == "model":
            if not isinstance(item, str) or len(item) > 200:
                raise ClientError("invalid", _("“model” must be a model name."))
            cleaned[key] = item
        elif key == "preset":  # (0: none)
            cleaned[key] = _number(item, key, 0, 2**31, integer=True)
        elif key in {"deep_think", "enhanced_reasoning", "reasoning_expanded"}:
            if not isinstance(item, bool):
                raise ClientError(
                    "invalid", _("“%(field)s” must be true or false.") % {"field": key}
                )
            cleaned[key] = item
        elif key == "temperature":
            cleaned[key] = _number(item, key, *TEMPERATURE_RANGE, integer=False)
        elif key == "max_tokens":
            cleaned[key] = _number(item, key, *MAX_TOKENS_RANGE, integer=True)
        elif key == "system_prompt":
            if not isinstance(item, str) or len(item) > MAX_SYSTEM_PROMPT_CHARS:
                raise ClientError("invalid", _("The system prompt is too long."))
            cleaned[key] = item
        else:
            raise ClientError(
                "invalid", _("Unknown setting “%(field)s”.") % {"field": str(key)[:40]}
            )
    return cleaned


def _client_id(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_CLIENT_ID_CHARS:
        raise ClientError("invalid", _("“client_id” must be a short string."))
    return value


def parse_frame(content: Any) -> Frame:
    """Validate one decoded client frame; raise ``ClientError`` for anything else."""
    if not isinstance(content, dict):
        raise ClientError("invalid", _("A frame must be a JSON object."))
    kind = content.get("type")
    if not isinstance(kind, str):
        raise ClientError("invalid", _("A frame needs a “type”."))
    if kind == "subscribe":
        return Frame(
            kind,
            {"conversation": _uuid(content.get("conversation"), "conversation", nullable=True)},
        )
    if kind == "send":
        files = _attachment_ids(content.get("attachments"))
        data: dict[str, Any] = {
            "conversation": _uuid(content.get("conversation"), "conversation", nullable=True),
            "content": _content(content.get("content"), allow_empty=bool(files)),
            "client_id": _client_id(content.get("client_id")),
            "settings": clean_settings(content.get("settings")),
            "parent": _uuid(content.get("parent"), "parent", nullable=True),
        }
        if files:
            data["attachments"] = files
        return Frame(kind, data)
    if kind in {"stop", "switch", "continue"}:
        return Frame(kind, {"message": _uuid(content.get("message"), "message")})
    if kind == "regenerate":
        return Frame(
            kind,
            {
                "message": _uuid(content.get("message"), "message"),
                "settings": clean_settings(content.get("settings")),
            },
        )
    if kind == "edit":
        return Frame(
            kind,
            {
                "message": _uuid(content.get("message"), "message"),
                "content": _content(content.get("content")),
                "settings": clean_settings(content.get("settings")),
            },
        )
    raise ClientError("unknown_type", _("Unknown frame type."))
