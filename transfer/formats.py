"""The export formats r1chat imports, read into one shape (`Conv` of `Msg`s).

Each reader takes one conversation of the file (already parsed JSON) and returns a `Conv`, or
raises `Unreadable` with a reason the summary shows; one bad conversation never stops the rest.
`detect` names the format from the content, never from the file name.

ChatGPT (Settings → Data controls → Export data: a zip with ``conversations.json``): a list of
conversations ``{id|conversation_id, title, create_time, update_time (epoch seconds), mapping,
current_node}``; ``mapping`` is a tree of nodes ``{id, parent, children, message}`` whose
message is ``{author: {role}, create_time, content: {content_type, parts | thoughts | text},
recipient, metadata: {model_slug, is_visually_hidden_from_conversation}}``. Reasoning models
store their thinking as separate assistant nodes of content type ``thoughts``
(``thoughts: [{summary, content}]``) followed by a ``reasoning_recap`` node; they become the
reasoning of the answer below them. System, tool and hidden nodes, and assistant messages
addressed to a tool (``recipient`` other than ``all``), are left out; their children hang from
the nearest message that is kept.

DeepSeek (chat.deepseek.com → Settings → Data → Export: a zip with ``conversations.json``). Our
reading of the published shape (checked against third-party exporters and readers of it, as
DeepSeek documents no schema): a list of ``{id, title, inserted_at, updated_at (ISO 8601),
mapping}`` whose ``mapping`` is a tree like ChatGPT's, rooted at a node ``"root"`` with a null
message; each message is ``{model, inserted_at, files, fragments: [{type, content}]}`` where a
``REQUEST`` fragment is the user's text, ``THINK`` the reasoning (``elapsed_secs`` when given)
and ``RESPONSE`` the answer (``SEARCH`` results are left out). There is no current-node field:
the newest branch is shown, as DeepSeek does. Messages in the older API shape
(``role: USER|ASSISTANT, content, thinking_content, thinking_elapsed_secs``) are read too.

Open WebUI (Settings → Chats → Export chats, ``chat-export-<time>.json``; a single chat's
"Export chat (.json)" has the same shape): a list of ``{id, title, created_at, updated_at
(epoch seconds), pinned, chat: {title, history: {messages: {id: {id, parentId, childrenIds,
role, content, timestamp, model}}, currentId}}}``. Reasoning is inside the answer's text, as
``<details type="reasoning" duration="N">…</details>`` (each line quoted with "> ") or as
``<think>…</think>``; it is taken out into the reasoning.

r1chat: the JSON of conversations.exporting, one conversation or ``{"conversations": [...]}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations import exporting

CHATGPT = "chatgpt"
DEEPSEEK = "deepseek"
OPENWEBUI = "openwebui"
R1CHAT = "r1chat"


class Unreadable(Exception):
    """A file or one conversation of it that cannot be imported; the message says why."""


@dataclass
class Msg:
    key: str
    parent: str | None
    role: str  # "user" | "assistant"
    content: str
    reasoning: str = ""
    created_at: dt.datetime | None = None
    model: str = ""
    # Further Message fields (r1chat's own export: status, usage, timings…).
    fields: dict[str, Any] = field(default_factory=dict)
    # A question's files (r1chat's own export): conversations.exporting.attachment_document.
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Conv:
    source_id: str
    title: str
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    messages: list[Msg]  # parents before their children
    current: str | None = None  # the key of the shown leaf
    pinned: bool = False
    title_generated: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    # r1chat's own ids: kept when no other conversation or message has them.
    uuid: str | None = None


# --- the file ---------------------------------------------------------------------------------


def detect(data: Any) -> str:
    """The format of a parsed export, from its content."""
    if isinstance(data, dict):
        if data.get("format") == exporting.FORMAT:
            return R1CHAT
        raise Unreadable(
            _("This JSON is not an export r1chat knows (ChatGPT, DeepSeek, Open WebUI or r1chat).")
        )
    if not isinstance(data, list):
        raise Unreadable(_("The file holds a single JSON value, not a list of conversations."))
    items = [item for item in data[:50] if isinstance(item, dict)]
    if data and not items:
        raise Unreadable(_("The file's list holds no conversations (its entries are not objects)."))
    if not items:
        raise Unreadable(_("The file holds no conversations."))
    for item in items:
        if isinstance(item.get("chat"), dict) and (
            "history" in item["chat"] or "messages" in item["chat"]
        ):
            return OPENWEBUI
        mapping = item.get("mapping")
        if isinstance(mapping, dict):
            messages = [n.get("message") for n in mapping.values() if isinstance(n, dict)]
            messages = [m for m in messages if isinstance(m, dict)]
            if any("fragments" in m for m in messages) or "inserted_at" in item:
                return DEEPSEEK
            if any("author" in m for m in messages) or "create_time" in item:
                return CHATGPT
    raise Unreadable(
        _("This JSON is not an export r1chat knows (ChatGPT, DeepSeek, Open WebUI or r1chat).")
    )


def raw_conversations(data: Any, source: str) -> list[Any]:
    if source == R1CHAT:
        if "conversations" in data:
            found = data["conversations"]
            if not isinstance(found, list):
                raise Unreadable(_("The r1chat file's “conversations” is not a list."))
            return found
        return [data]
    return list(data)


def read(source: str, raw: Any) -> Conv:
    """One conversation of the file in the common shape, checked against the limits."""
    if not isinstance(raw, dict):
        raise Unreadable(_("This entry is not a conversation (not a JSON object)."))
    conv = READERS[source](raw)
    _check_limits(conv)
    return conv


def title_of(raw: Any) -> str:
    """A conversation's title for the summary, before (or without) reading it."""
    if isinstance(raw, dict):
        for value in (
            raw.get("title"),
            (raw.get("chat") or {}).get("title") if isinstance(raw.get("chat"), dict) else None,
        ):
            if isinstance(value, str) and value.strip():
                return value.strip()[:200]
    return ""


def _check_limits(conv: Conv) -> None:
    max_messages = settings.R1CHAT_IMPORT_MAX_MESSAGES
    if len(conv.messages) > max_messages:
        raise Unreadable(
            _("It has %(count)d messages; at most %(limit)d are imported per conversation.")
            % {"count": len(conv.messages), "limit": max_messages}
        )
    max_chars = settings.R1CHAT_IMPORT_MAX_MESSAGE_CHARS
    for message in conv.messages:
        files = sum(len(f["text"]) + len(f["data"]) for f in message.attachments)
        if len(message.content) + len(message.reasoning) + files > max_chars:
            raise Unreadable(
                _("A message is longer than %(limit)d characters.") % {"limit": max_chars}
            )


# --- shared helpers ---------------------------------------------------------------------------


def moment(value: Any) -> dt.datetime | None:
    """Epoch seconds (or milliseconds) or an ISO 8601 string as an aware datetime, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        if seconds > 1e14:  # microseconds
            seconds /= 1e6
        elif seconds > 1e11:  # milliseconds (Open WebUI's chat.timestamp)
            seconds /= 1e3
        try:
            return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            parsed = parse_datetime(text)
        except ValueError:
            return None
        if parsed is None:
            try:
                return moment(float(text))
            except ValueError:
                return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _order(messages: dict[str, Msg], order: list[str]) -> list[Msg]:
    """Parents before children, siblings in `order`; a loop or a missing parent is refused."""
    children: dict[str | None, list[str]] = {}
    for key in order:
        parent = messages[key].parent
        if parent is not None and parent not in messages:
            raise Unreadable(_("A message names a parent that is not in the file."))
        children.setdefault(parent, []).append(key)
    out: list[Msg] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        key = stack.pop()
        out.append(messages[key])
        stack.extend(reversed(children.get(key, [])))
    if len(out) != len(messages):
        raise Unreadable(_("Its message tree has a loop."))
    return out


def _newest_leaf(messages: list[Msg]) -> str | None:
    """The leaf at the end of the newest branch (the last child at each step)."""
    children: dict[str | None, list[str]] = {}
    for message in messages:
        children.setdefault(message.parent, []).append(message.key)
    node = children.get(None, [None])[-1]
    while node is not None and children.get(node):
        node = children[node][-1]
    return node


def _resolve(key: Any, alias: dict[str, str | None]) -> str | None:
    """The kept message a source node stands for (itself, or its nearest kept ancestor)."""
    seen = 0
    while isinstance(key, str) and key in alias and seen < 100_000:
        target = alias[key]
        if target == key:
            return key
        key = target
        seen += 1
    return None


def _tree_walk(mapping: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], str | None]]:
    """The nodes of a ChatGPT/DeepSeek mapping, parents first: (key, node, parent key)."""
    roots = [
        k
        for k, n in mapping.items()
        if isinstance(n, dict) and (n.get("parent") is None or n.get("parent") not in mapping)
    ]
    if not roots and mapping:
        raise Unreadable(_("Its message tree has no root."))
    stack = [(k, None) for k in reversed(roots)]
    seen: set[str] = set()
    while stack:
        key, parent = stack.pop()
        if key in seen:
            raise Unreadable(_("Its message tree has a loop."))
        seen.add(key)
        node = mapping.get(key)
        if not isinstance(node, dict):
            raise Unreadable(_("A node of its message tree is not an object."))
        yield key, node, parent
        kids = node.get("children") or []
        if not isinstance(kids, list):
            raise Unreadable(_("A node's children are not a list."))
        stack.extend((k, key) for k in reversed(kids) if isinstance(k, str) and k in mapping)


class _TreeBuilder:
    """Kept messages of a walked tree, and what every source node stands for."""

    def __init__(self) -> None:
        self.messages: dict[str, Msg] = {}
        self.order: list[str] = []
        self.alias: dict[str, str | None] = {}
        self.pending_reasoning: dict[str, tuple[str, dt.datetime | None]] = {}

    def skip(self, key: str, parent: str | None) -> None:
        self.alias[key] = self.alias.get(parent) if parent else None
        if parent in self.pending_reasoning:
            self.pending_reasoning[key] = self.pending_reasoning[parent]

    def think(self, key: str, parent: str | None, text: str, at: dt.datetime | None) -> None:
        """A node that only holds reasoning: it goes to the next answer below it."""
        self.skip(key, parent)
        before, started = self.pending_reasoning.get(parent or "", ("", None))
        joined = f"{before}\n\n{text}".strip() if before else text
        self.pending_reasoning[key] = (joined, started or at)

    def keep(self, key: str, parent: str | None, message: Msg) -> None:
        kept_parent = self.alias.get(parent) if parent else None
        message.parent = kept_parent
        reasoning, started = self.pending_reasoning.get(parent or "", ("", None))
        if message.role == "assistant" and reasoning:
            message.reasoning = f"{reasoning}\n\n{message.reasoning}".strip()
            if started:
                message.fields.setdefault("reasoning_started_at", started)
                if message.created_at and message.created_at >= started:
                    message.fields.setdefault("answer_started_at", message.created_at)
        above = self.messages.get(kept_parent) if kept_parent else None
        if (
            message.role == "assistant"
            and above is not None
            and above.role == "assistant"
            and not above.fields.get("_has_child")
        ):
            # One answer written in several nodes (text, a tool call, more text): one message.
            above.content = "\n\n".join(t for t in (above.content, message.content) if t)
            if message.reasoning:
                above.reasoning = "\n\n".join(t for t in (above.reasoning, message.reasoning) if t)
            self.alias[key] = kept_parent
            return
        if above is not None:
            above.fields["_has_child"] = True
        self.messages[key] = message
        self.order.append(key)
        self.alias[key] = key

    def result(self) -> list[Msg]:
        for message in self.messages.values():
            message.fields.pop("_has_child", None)
        return _order(self.messages, self.order)


# --- ChatGPT ----------------------------------------------------------------------------------


def _chatgpt_text(content: dict[str, Any]) -> str:
    kind = content.get("content_type")
    if kind in {"text", "multimodal_text"}:
        texts = []
        images = 0
        for part in content.get("parts") or []:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    texts.append(part["text"])
                else:
                    images += 1
        text = "\n".join(t for t in texts if t)
        if not text.strip() and images:
            text = ngettext(
                "[%(count)d image not imported]", "[%(count)d images not imported]", images
            ) % {"count": images}
        return text
    if kind == "code" and isinstance(content.get("text"), str):
        language = content.get("language") or ""
        language = language if isinstance(language, str) and language != "unknown" else ""
        return f"```{language}\n{content['text']}\n```"
    return ""


def _chatgpt_thoughts(content: dict[str, Any]) -> str:
    pieces = []
    for thought in content.get("thoughts") or []:
        if not isinstance(thought, dict):
            continue
        summary = _text(thought.get("summary")).strip()
        body = _text(thought.get("content")).strip()
        if summary and body and not body.startswith(summary):
            pieces.append(f"**{summary}**\n\n{body}")
        elif body or summary:
            pieces.append(body or summary)
    return "\n\n".join(pieces)


def read_chatgpt(raw: dict[str, Any]) -> Conv:
    mapping = raw.get("mapping")
    if not isinstance(mapping, dict):
        raise Unreadable(_("It has no message tree (“mapping”)."))
    tree = _TreeBuilder()
    for key, node, parent in _tree_walk(mapping):
        message = node.get("message")
        if not isinstance(message, dict):
            tree.skip(key, parent)
            continue
        author = message.get("author") if isinstance(message.get("author"), dict) else {}
        role = author.get("role")
        content = message.get("content") if isinstance(message.get("content"), dict) else {}
        metadata = message.get("metadata") if isinstance(message.get("metadata"), dict) else {}
        created = moment(message.get("create_time"))
        kind = content.get("content_type")
        if role == "assistant" and kind == "thoughts":
            tree.think(key, parent, _chatgpt_thoughts(content), created)
            continue
        hidden = metadata.get("is_visually_hidden_from_conversation")
        to_tool = message.get("recipient") not in (None, "all")
        if role not in {"user", "assistant"} or hidden or to_tool:
            tree.skip(key, parent)
            continue
        text = _chatgpt_text(content)
        if not text.strip():  # e.g. the custom instructions (user_editable_context)
            tree.skip(key, parent)
            continue
        model = metadata.get("model_slug") or metadata.get("default_model_slug") or ""
        tree.keep(
            key,
            parent,
            Msg(key, None, role, text, created_at=created, model=_text(model)),
        )
    messages = tree.result()
    current = _resolve(raw.get("current_node"), tree.alias) or _newest_leaf(messages)
    source_id = raw.get("conversation_id") or raw.get("id") or ""
    return Conv(
        source_id=_text(source_id),
        title=_text(raw.get("title")),
        created_at=moment(raw.get("create_time")),
        updated_at=moment(raw.get("update_time")),
        messages=messages,
        current=current,
    )


# --- DeepSeek ---------------------------------------------------------------------------------


def _deepseek_parts(message: dict[str, Any]) -> tuple[str, str, str, float | None]:
    """(role, content, reasoning, thinking seconds) of a DeepSeek message."""
    fragments = message.get("fragments")
    if isinstance(fragments, list):
        asked, answer, thought = [], [], []
        seconds: float | None = None
        for fragment in fragments:
            if not isinstance(fragment, dict):
                continue
            kind = str(fragment.get("type") or "").upper()
            text = _text(fragment.get("content"))
            if kind == "REQUEST":
                asked.append(text)
            elif kind == "THINK":
                thought.append(text)
                elapsed = fragment.get("elapsed_secs")
                if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
                    seconds = (seconds or 0.0) + float(elapsed)
            elif kind == "RESPONSE":
                answer.append(text)
        if asked:
            return "user", "\n\n".join(asked), "", None
        return "assistant", "".join(answer), "".join(thought), seconds
    role = str(message.get("role") or "").lower()
    elapsed = message.get("thinking_elapsed_secs")
    seconds = float(elapsed) if isinstance(elapsed, int | float) else None
    return (
        role,
        _text(message.get("content")),
        _text(message.get("thinking_content")),
        seconds,
    )


def read_deepseek(raw: dict[str, Any]) -> Conv:
    mapping = raw.get("mapping")
    if not isinstance(mapping, dict):
        raise Unreadable(_("It has no message tree (“mapping”)."))
    tree = _TreeBuilder()
    for key, node, parent in _tree_walk(mapping):
        message = node.get("message")
        if not isinstance(message, dict):
            tree.skip(key, parent)
            continue
        role, content, reasoning, seconds = _deepseek_parts(message)
        if role not in {"user", "assistant"}:
            tree.skip(key, parent)
            continue
        created = moment(message.get("inserted_at"))
        msg = Msg(key, None, role, content, reasoning, created, _text(message.get("model")))
        if reasoning and created:
            msg.fields["reasoning_started_at"] = created
            if seconds is not None:
                msg.fields["reasoning_finished_at"] = created + dt.timedelta(seconds=seconds)
        tree.keep(key, parent, msg)
    messages = tree.result()
    current = _resolve(raw.get("current_node") or raw.get("current_message_id"), tree.alias)
    return Conv(
        source_id=_text(raw.get("id")),
        title=_text(raw.get("title")),
        created_at=moment(raw.get("inserted_at")),
        updated_at=moment(raw.get("updated_at")),
        messages=messages,
        current=current or _newest_leaf(messages),
    )


# --- Open WebUI -------------------------------------------------------------------------------

_DETAILS = re.compile(
    r'<details\s+type="reasoning"(?P<attrs>[^>]*)>\s*(?:<summary>.*?</summary>)?(?P<body>.*?)</details>\s*',
    re.DOTALL,
)
_DURATION = re.compile(r'duration="(\d+(?:\.\d+)?)"')
_THINK = re.compile(r"^\s*<think>(?P<body>.*?)(?:</think>\s*|$)", re.DOTALL)


def split_openwebui_reasoning(text: str) -> tuple[str, str, float | None]:
    """(answer, reasoning, seconds): Open WebUI keeps reasoning inside the answer's text."""
    thoughts: list[str] = []
    seconds: float | None = None

    def take(match: re.Match[str]) -> str:
        nonlocal seconds
        body = html.unescape(match.group("body")).strip("\n")
        lines = [re.sub(r"^> ?", "", line) for line in body.split("\n")]
        thoughts.append("\n".join(lines).strip())
        found = _DURATION.search(match.group("attrs"))
        if found:
            seconds = (seconds or 0.0) + float(found.group(1))
        return ""

    text = _DETAILS.sub(take, text)
    think = _THINK.match(text)
    if think:
        thoughts.append(think.group("body").strip())
        text = text[think.end() :]
    return text.strip("\n"), "\n\n".join(t for t in thoughts if t), seconds


def read_openwebui(raw: dict[str, Any]) -> Conv:
    chat = raw.get("chat")
    if not isinstance(chat, dict):
        raise Unreadable(_("It has no “chat” object."))
    history = chat.get("history") if isinstance(chat.get("history"), dict) else {}
    nodes = history.get("messages")
    if not isinstance(nodes, dict):
        # Older exports: only the shown thread, as a list.
        listed = chat.get("messages")
        if not isinstance(listed, list):
            raise Unreadable(_("It has no messages (“chat.history.messages”)."))
        nodes = {}
        previous = None
        for index, item in enumerate(listed):
            if isinstance(item, dict):
                key = _text(item.get("id")) or f"m{index}"
                nodes[key] = {**item, "id": key, "parentId": previous}
                previous = key
    messages: dict[str, Msg] = {}
    order: list[str] = []
    skipped_parent: dict[str, str | None] = {}
    for key, item in nodes.items():
        if not isinstance(item, dict):
            raise Unreadable(_("A message is not an object."))
        parent = item.get("parentId")
        parent = parent if isinstance(parent, str) and parent in nodes else None
        role = item.get("role")
        if role not in {"user", "assistant"}:
            skipped_parent[key] = parent
            continue
        content, reasoning, seconds = _text(item.get("content")), "", None
        if role == "assistant":
            content, reasoning, seconds = split_openwebui_reasoning(content)
        created = moment(item.get("timestamp"))
        msg = Msg(key, parent, role, content, reasoning, created, _text(item.get("model")))
        if isinstance(item.get("usage"), dict):
            msg.fields["usage"] = item["usage"]
        if reasoning and created and seconds is not None:
            msg.fields["reasoning_started_at"] = created - dt.timedelta(seconds=seconds)
            msg.fields["reasoning_finished_at"] = created
        messages[key] = msg
        order.append(key)
    for msg in messages.values():  # a system message in between: hang from its parent
        hops = 0
        while msg.parent in skipped_parent and hops < len(skipped_parent) + 1:
            msg.parent = skipped_parent[msg.parent]
            hops += 1
    order.sort(key=lambda k: (messages[k].created_at is None, messages[k].created_at or 0, 0))
    ordered = _order(messages, order)
    current = history.get("currentId") or history.get("current_id")
    current = current if isinstance(current, str) and current in messages else None
    return Conv(
        source_id=_text(raw.get("id")) or _text(chat.get("id")),
        title=_text(raw.get("title")) or _text(chat.get("title")),
        created_at=moment(raw.get("created_at")) or moment(chat.get("timestamp")),
        updated_at=moment(raw.get("updated_at")),
        messages=ordered,
        current=current or _newest_leaf(ordered),
        pinned=raw.get("pinned") is True,
    )


# --- r1chat -----------------------------------------------------------------------------------

_R1CHAT_FIELDS = {
    "status": str,
    "backend": str,
    "deep_think": bool,
    "enhanced_reasoning": bool,
    "temperature": (int, float),
    "max_tokens": int,
    "usage": dict,
    "finish_reason": str,
    "reasoning_unterminated": bool,
    "error_code": str,
    "error_detail": str,
}


_FILE_KINDS = {"text", "pdf", "image"}


def _r1chat_files(listed: Any) -> list[dict[str, Any]]:
    """A message's files as exporting.attachment_document wrote them, checked."""
    if listed is None:
        return []
    if not isinstance(listed, list):
        raise Unreadable(_("A message's attached files are not a list."))
    files = []
    for item in listed:
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or item.get("kind") not in _FILE_KINDS
            or not isinstance(item.get("text", ""), str)
            or not isinstance(item.get("data", ""), str)
        ):
            raise Unreadable(_("An attached file has no name, a wrong kind or no text."))
        try:
            data = base64.b64decode(item.get("data", ""), validate=True)
        except ValueError as error:
            raise Unreadable(_("An attached image's data is not base64.")) from error
        pages, size = item.get("pages"), item.get("size")
        files.append(
            {
                "name": item["name"][:255],
                "kind": item["kind"],
                "content_type": _text(item.get("content_type"))[:100],
                "size": size if isinstance(size, int) and size >= 0 else len(data),
                "pages": pages if isinstance(pages, int) and pages >= 0 else None,
                "text": item.get("text", ""),
                "data": data if item["kind"] == "image" else b"",
            }
        )
    return files


def read_r1chat(raw: dict[str, Any]) -> Conv:
    listed = raw.get("messages")
    if not isinstance(listed, list):
        raise Unreadable(_("It has no message list (“messages”)."))
    messages: dict[str, Msg] = {}
    order: list[str] = []
    for item in listed:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise Unreadable(_("A message is not an object with an id."))
        if item.get("role") not in {"user", "assistant"}:
            raise Unreadable(_("A message has an unknown role."))
        key = item["id"]
        parent = item.get("parent")
        msg = Msg(
            key,
            parent if isinstance(parent, str) else None,
            item["role"],
            _text(item.get("content")),
            _text(item.get("reasoning")),
            moment(item.get("created_at")),
            _text(item.get("model")),
        )
        for name, kind in _R1CHAT_FIELDS.items():
            value = item.get(name)
            if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
                msg.fields[name] = value
        for name in exporting.TIMESTAMPS:
            if item.get(name):
                msg.fields[name] = moment(item[name])
        msg.attachments = _r1chat_files(item.get("attachments"))
        messages[key] = msg
        order.append(key)
    current = raw.get("current_leaf")
    ordered = _order(messages, order)
    settings_value = raw.get("settings")
    return Conv(
        source_id=_text(raw.get("id")),
        title=_text(raw.get("title")),
        created_at=moment(raw.get("created_at")),
        updated_at=moment(raw.get("updated_at")),
        messages=ordered,
        current=current if isinstance(current, str) and current in messages else None,
        pinned=raw.get("pinned") is True,
        title_generated=raw.get("title_generated") is True,
        settings=settings_value if isinstance(settings_value, dict) else {},
        uuid=_text(raw.get("id")) or None,
    )


READERS = {
    CHATGPT: read_chatgpt,
    DEEPSEEK: read_deepseek,
    OPENWEBUI: read_openwebui,
    R1CHAT: read_r1chat,
}
