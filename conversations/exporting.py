"""A conversation as an export: the r1chat JSON document and the Markdown of its visible thread.

One code path serves the single-conversation downloads (conversations/views.py), the admin
review's JSON (review/display.py) and the "export all" archive (transfer/archive.py). The JSON
holds every message of the tree (all versions, with their parents), the visible thread and the
conversation's settings, so `transfer` re-imports it without loss: titles, dates, the tree,
the current leaf, reasoning, timings, usage, settings and the questions' attached files.

Shape (``FORMAT``, ``VERSION``)::

    {"format": "r1chat", "version": 1, "id", "title", "title_generated", "pinned",
     "created_at", "updated_at", "settings", "current_leaf", "thread": [ids],
     "messages": [{"id", "parent", "role", "content", "reasoning", "status", "created_at",
                   ...questions with files: "attachments": [{"name", "kind", "content_type",
                   "size", "pages", "text", "data" (an image's bytes, base64)}],
                   ...answers: "model", "backend", "deep_think", "usage", "timings", ...}]}

and the all-conversations file: ``{"format": "r1chat", "version": 1, "exported_at",
"conversations": [document, ...]}``.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import unicodedata
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from .attachments import by_message
from .models import Attachment, Conversation, Message
from .turns.threads import Tree, thread_messages

FORMAT = "r1chat"
VERSION = 1

# The timestamps an answer keeps besides its creation (ISO 8601, or null).
TIMESTAMPS = ("reasoning_started_at", "reasoning_finished_at", "answer_started_at", "finished_at")


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# The attachments of a conversation's messages, by message id (attachments.by_message).
Files = dict[int, list[Attachment]]


def attachment_document(attachment: Attachment) -> dict[str, Any]:
    item: dict[str, Any] = {
        "name": attachment.name,
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "pages": attachment.pages,
        "text": attachment.text,
    }
    if attachment.kind == Attachment.Kind.IMAGE and attachment.data:
        item["data"] = base64.b64encode(bytes(attachment.data)).decode("ascii")
    return item


def message_files(tree: Tree) -> Files:
    """The files of a tree's messages, images' bytes included: one query."""
    return by_message(list(tree.by_id), with_data=True)


def message_document(
    message: Message, parent: Message | None, files: Files | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": str(message.uuid),
        "parent": str(parent.uuid) if parent else None,
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning or None,  # the model's thinking, kept apart
        "status": message.status,
        "created_at": message.created_at.isoformat(),
    }
    attached = (files or {}).get(message.pk)
    if attached:
        item["attachments"] = [attachment_document(a) for a in attached]
    if message.role == Message.Role.ASSISTANT:
        item.update(
            {
                "model": message.model or None,
                "backend": message.backend_name or None,
                "deep_think": message.deep_think,
                "enhanced_reasoning": message.enhanced_reasoning,
                "temperature": message.temperature,
                "max_tokens": message.max_tokens,
                "usage": message.usage or {},
                "timings": message.timings(),
                "finish_reason": message.finish_reason or None,
                "reasoning_unterminated": message.reasoning_unterminated,
                "error_code": message.error_code or None,
                "error_detail": message.error_detail or None,
                **{name: _iso(getattr(message, name)) for name in TIMESTAMPS},
            }
        )
    return item


def export_messages(queryset: Any) -> Any:
    """Messages with every field an export writes (not the cached HTML), in tree order."""
    return queryset.defer("html", "reasoning_html").order_by("created_at", "id")


def load_tree(conversation: Conversation) -> Tree:
    return Tree(list(export_messages(conversation.messages.all())))


def conversation_document(
    conversation: Conversation,
    tree: Tree | None = None,
    *,
    owner: bool = False,
    files: Files | None = None,
) -> dict[str, Any]:
    """The r1chat JSON of one conversation (a dict, ready for json.dumps); `files` as
    message_files() gives them (read here when not given)."""
    tree = tree or load_tree(conversation)
    files = message_files(tree) if files is None else files
    visible = thread_messages(conversation, tree)
    leaf = tree.by_id.get(conversation.current_leaf_id) if conversation.current_leaf_id else None
    document: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "id": str(conversation.uuid),
        "title": conversation.title,
        "title_generated": conversation.title_generated,
        "pinned": conversation.pinned,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "exported_at": timezone.now().isoformat(),
        "settings": conversation.settings or {},
        "current_leaf": str(leaf.uuid) if leaf else None,
        "thread": [str(m.uuid) for m in visible],
        "messages": [
            message_document(m, tree.by_id.get(m.parent_id) if m.parent_id else None, files)
            for m in tree.by_id.values()
        ],
    }
    if owner:
        document["owner"] = conversation.owner.get_username()
    return document


def _quote(text: str) -> str:
    return "\n".join(f"> {line}".rstrip() for line in text.strip("\n").split("\n"))


def conversation_markdown(
    conversation: Conversation,
    tree: Tree | None = None,
    request: Any = None,
    files: Files | None = None,
) -> str:
    """The visible thread as Markdown (templates/conversations/export.md); the questions'
    files are named under them."""
    tree = tree or load_tree(conversation)
    messages = thread_messages(conversation, tree)
    if files is None:
        files = by_message([m.pk for m in messages])
    return render_to_string(
        "conversations/export.md",
        {
            "conversation": conversation,
            "messages": [
                {
                    "message": m,
                    "reasoning_quoted": _quote(m.reasoning) if m.reasoning else "",
                    "files": files.get(m.pk, []),
                }
                for m in messages
            ],
            "exported_at": timezone.now(),
        },
        request,
    )


_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def file_stem(title: str, fallback: str = "conversation", limit: int = 80) -> str:
    """A file name from a title that keeps its letters, dashes ("–") and CJK: only what file
    systems or headers refuse (separators, control characters, reserved punctuation) goes."""
    name = unicodedata.normalize("NFC", title or "")
    name = _UNSAFE.sub(" ", name)
    name = " ".join(name.split()).strip(" .")
    return name[:limit].rstrip(" .") or fallback
