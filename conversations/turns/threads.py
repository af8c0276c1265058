"""The message tree: the visible thread, versions, and how messages are serialised."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..errors import describe_error
from ..models import Conversation, Message
from ..rendering import render_markdown, render_partial

# Fields a thread needs; `html` is the cached rendering, so opening a conversation renders
# nothing that was rendered before.
THREAD_FIELDS = (
    "id", "uuid", "parent_id", "role", "content", "reasoning", "status", "error_code",
    "finish_reason", "reasoning_unterminated", "backend_name", "model", "deep_think",
    "usage", "created_at", "reasoning_started_at", "reasoning_finished_at",
    "answer_started_at", "finished_at", "heartbeat_at", "html", "reasoning_html",
    "conversation_id",
)  # fmt: skip


class Tree:
    """All messages of a conversation, loaded in one query."""

    def __init__(self, messages: list[Message]) -> None:
        self.by_id = {m.pk: m for m in messages}
        self.children: dict[int | None, list[Message]] = defaultdict(list)
        for message in messages:  # already in creation order
            self.children[message.parent_id].append(message)

    @classmethod
    def load(cls, conversation: Conversation) -> Tree:
        return cls(list(conversation.messages.only(*THREAD_FIELDS).order_by("created_at", "id")))

    def latest_leaf(self, message: Message) -> Message:
        """The newest message at the end of `message`'s newest branch."""
        while self.children.get(message.pk):
            message = self.children[message.pk][-1]
        return message

    def path_to(self, leaf: Message | None) -> list[Message]:
        path: list[Message] = []
        node = leaf
        while node is not None:
            path.append(node)
            node = self.by_id.get(node.parent_id) if node.parent_id else None
        path.reverse()
        return path

    def default_leaf(self) -> Message | None:
        roots = self.children.get(None)
        return self.latest_leaf(roots[-1]) if roots else None

    def siblings(self, message: Message) -> list[Message]:
        return self.children.get(message.parent_id, [])


def thread_messages(conversation: Conversation, tree: Tree | None = None) -> list[Message]:
    tree = tree or Tree.load(conversation)
    leaf = tree.by_id.get(conversation.current_leaf_id) if conversation.current_leaf_id else None
    return tree.path_to(leaf or tree.default_leaf())


def serialize_message(message: Message, siblings: list[Message] | None = None) -> dict[str, Any]:
    """A message as the page and the frames carry it (msgpack-safe: no datetimes)."""
    siblings = siblings or [message]
    status = message.status
    if message.is_stale:
        status = Message.Status.INTERRUPTED  # the sweeper will store it; show it at once
    # A message still being written shows its unfinished end as the live frames do.
    render = render_partial if status == Message.Status.STREAMING else render_markdown
    html = message.html
    if message.role == Message.Role.ASSISTANT and not html and message.content:
        html = render(message.content)
        if status != Message.Status.STREAMING:
            message.html = html
    data: dict[str, Any] = {
        "id": str(message.uuid),
        "parent": None,
        "role": message.role,
        "content": message.content,
        "status": status,
        "created_at": message.created_at.isoformat(),
        "versions": {
            "index": next((i for i, m in enumerate(siblings) if m.pk == message.pk), 0) + 1,
            "count": len(siblings),
            "ids": [str(m.uuid) for m in siblings],
        },
    }
    if message.role == Message.Role.ASSISTANT:
        data.update(
            {
                "html": html,
                "reasoning": message.reasoning,
                # (cached when the answer ends; rendered here for answers from before that)
                "reasoning_html": message.reasoning_html or render(message.reasoning or ""),
                "model": message.model,
                "backend": message.backend_name,
                "deep_think": message.deep_think,
                "usage": message.usage or {},
                "timings": message.timings(),
                "finish_reason": message.finish_reason,
                "reasoning_unterminated": message.reasoning_unterminated,
                "error": describe_error(message.error_code) if message.error_code else None,
            }
        )
    return data


def serialize_thread(conversation: Conversation, tree: Tree | None = None) -> list[dict[str, Any]]:
    from ..attachments import by_message, chip, user_message_ids

    tree = tree or Tree.load(conversation)
    out = []
    messages = thread_messages(conversation, tree)
    attached = by_message(user_message_ids(messages))  # one query for the whole thread
    for message in messages:
        item = serialize_message(message, tree.siblings(message))
        parent = tree.by_id.get(message.parent_id) if message.parent_id else None
        item["parent"] = str(parent.uuid) if parent else None
        if message.role == Message.Role.USER:
            item["attachments"] = [chip(a) for a in attached.get(message.pk, [])]
        out.append(item)
    return out


def history_for(
    path: list[Message],
    system_prompt: str = "",
    files: dict[int, list[Any]] | None = None,
    *,
    images: bool = False,
) -> list[dict[str, Any]]:
    """What the model is sent: {role, content} only, never reasoning; roles alternate. A
    question's attached files (`files`: message id → Attachment) are in its content in the
    one template of `conversations.attachments`; with `images`, its images go along too."""
    from ..attachments import image_payloads, with_files

    history: list[dict[str, Any]] = []
    if system_prompt.strip():
        history.append({"role": "system", "content": system_prompt})
    for message in path:
        attached = (files or {}).get(message.pk, []) if message.pk is not None else []
        content = with_files(message.content, attached, images=images)
        if not content:
            continue  # a failed or empty answer is not part of the dialogue
        pictures = image_payloads(attached) if images and attached else []
        if history and history[-1]["role"] == message.role:
            history[-1]["content"] += "\n\n" + content  # servers reject repeated roles
            if pictures:
                history[-1]["images"] = [*history[-1].get("images", []), *pictures]
        else:
            history.append({"role": message.role, "content": content})
            if pictures:
                history[-1]["images"] = pictures
    return history
