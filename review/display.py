"""A conversation as a reviewer sees it: the visible thread, every other version, and exports.

The HTML is the cached `Message.html` from the chat's renderer (rendered by it when missing),
so a reviewer reads exactly what the user read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from conversations.attachments import by_message
from conversations.exporting import conversation_document
from conversations.models import Attachment, Conversation, Message
from conversations.rendering import render_plain_text
from conversations.turns.threads import Tree, serialize_message, thread_messages

from .models import Feedback


@dataclass
class ShownMessage:
    message: Message
    data: dict[str, Any]
    # HTML already sanitised by the renderer (answer) or escaped here (user text, reasoning).
    body_html: SafeString
    reasoning_html: SafeString
    feedback: list[Feedback] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)  # with their extracted text

    @property
    def version(self) -> dict[str, int]:
        return self.data["versions"]


@dataclass
class Branch:
    """A run of messages starting at another version of some message."""

    label: str
    items: list[ShownMessage]


@dataclass
class ThreadItem:
    shown: ShownMessage
    other_versions: list[Branch]


def _show(
    message: Message,
    tree: Tree,
    feedback: dict[int, list[Feedback]],
    files: dict[int, list[Attachment]] | None = None,
) -> ShownMessage:
    data = serialize_message(message, tree.siblings(message))
    if message.role == Message.Role.ASSISTANT:
        body = mark_safe(data.get("html") or "")  # sanitised by the renderer
    else:
        body = mark_safe(render_plain_text(message.content))  # escaped
    reasoning = mark_safe(render_plain_text(message.reasoning)) if message.reasoning else ""
    return ShownMessage(
        message=message,
        data=data,
        body_html=body,
        reasoning_html=reasoning,  # type: ignore[arg-type]
        feedback=feedback.get(message.pk, []),
        attachments=(files or {}).get(message.pk, []),
    )


def _along_newest(tree: Tree, start: Message) -> list[Message]:
    path = [start]
    while tree.children.get(path[-1].pk):
        path.append(tree.children[path[-1].pk][-1])
    return path


def _excerpt(text: str, length: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


def _other_versions(
    tree: Tree,
    message: Message,
    covered: set[int],
    feedback: dict[int, list[Feedback]],
    files: dict[int, list[Attachment]] | None = None,
) -> list[Branch]:
    """Every branch hanging off `message`'s siblings, flattened, each message exactly once."""
    branches: list[Branch] = []
    queue = [s for s in tree.siblings(message) if s.pk not in covered]
    while queue:
        start = queue.pop(0)
        if start.pk in covered:
            continue
        path = _along_newest(tree, start)
        covered.update(m.pk for m in path)
        siblings = tree.siblings(start)
        index = next(i for i, m in enumerate(siblings) if m.pk == start.pk) + 1
        parent = tree.by_id.get(start.parent_id) if start.parent_id else None
        if start.parent_id == message.parent_id:
            label = _("Version %(index)d of %(count)d") % {"index": index, "count": len(siblings)}
        else:
            label = _("Version %(index)d of %(count)d of the reply to “%(parent)s”") % {
                "index": index,
                "count": len(siblings),
                "parent": _excerpt(parent.content if parent else ""),
            }
        branches.append(Branch(label=label, items=[_show(m, tree, feedback, files) for m in path]))
        for member in path:
            queue.extend(s for s in tree.siblings(member) if s.pk not in covered)
    return branches


def review_thread(conversation: Conversation) -> tuple[list[ThreadItem], int]:
    """The visible thread with, at each message, its other versions; and the message count."""
    tree = Tree.load(conversation)
    feedback: dict[int, list[Feedback]] = {}
    for entry in Feedback.objects.filter(message__conversation=conversation).select_related("user"):
        feedback.setdefault(entry.message_id, []).append(entry)
    files = by_message(list(tree.by_id))  # every version's files, in one query
    visible = thread_messages(conversation, tree)
    covered = {m.pk for m in visible}
    items = [
        ThreadItem(
            shown=_show(message, tree, feedback, files),
            other_versions=_other_versions(tree, message, covered, feedback, files),
        )
        for message in visible
    ]
    # What no version of a visible message reaches: replies below a current leaf set mid-tree.
    for message in tree.by_id.values():
        if message.pk not in covered and items:
            items[-1].other_versions.extend(
                _other_versions(tree, message, covered, feedback, files)
            )
    return items, len(tree.by_id)


# --- Exports ------------------------------------------------------------------------------


def export_json(conversation: Conversation) -> str:
    """The r1chat JSON (conversations.exporting: every version, the visible thread), with the
    owner's name."""
    return json.dumps(conversation_document(conversation, owner=True), ensure_ascii=False, indent=2)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.strip("\n").split("\n"))


def export_markdown(conversation: Conversation) -> str:
    """The visible thread as Markdown; reasoning as a quote above each answer."""
    tree = Tree.load(conversation)
    lines = [
        f"# {conversation.title or _('Untitled conversation')}",
        "",
        f"- {_('Owner')}: {conversation.owner.get_username()}",
        f"- {_('Created')}: {conversation.created_at.isoformat()}",
        f"- {_('Conversation id')}: {conversation.uuid}",
        "",
    ]
    for message in thread_messages(conversation, tree):
        siblings = tree.siblings(message)
        version = ""
        if len(siblings) > 1:
            index = next(i for i, m in enumerate(siblings) if m.pk == message.pk) + 1
            version = " · " + _("version %(index)d of %(count)d") % {
                "index": index,
                "count": len(siblings),
            }
        if message.role == Message.Role.USER:
            lines += [f"## {_('User')}{version}", "", message.content, ""]
            continue
        lines += [f"## {_('Assistant')} · {message.model or '?'}{version}", ""]
        if message.reasoning:
            seconds = message.thought_seconds()
            heading = (
                _("Thought for %(seconds)d s") % {"seconds": round(seconds)}
                if seconds is not None
                else _("Thinking")
            )
            lines += [_quote(f"**{heading}**\n\n{message.reasoning}"), ""]
        lines += [message.content or f"_({message.get_status_display()})_", ""]
        usage = message.usage or {}
        if usage:
            lines += [
                "_"
                + _("%(prompt)s prompt tokens, %(completion)s completion tokens")
                % {
                    "prompt": usage.get("prompt_tokens", "?"),
                    "completion": usage.get("completion_tokens", "?"),
                }
                + "_",
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"
