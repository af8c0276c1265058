"""Every change to conversations: validate, write, then tell the tabs. Views and the consumer
call these; nothing else writes and broadcasts by itself.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import catalog
from .backends.base import ChatRequest
from .errors import describe_error
from .generation import GenerationRunner, mark_interrupted, running
from .models import Conversation, Message
from .protocol import ClientError, not_found
from .threads import Tree, history_for, serialize_message, serialize_thread

logger = logging.getLogger(__name__)

DEFAULT_SETTINGS: dict[str, Any] = {
    "deep_think": True,
    "enhanced_reasoning": True,
    "temperature": 0.6,
    "max_tokens": 2048,
    "system_prompt": "",
}
SEND_RATE_PER_MINUTE = int(getattr(django_settings, "R1CHAT_SEND_RATE_PER_MINUTE", 30))
TITLE_CHARS = 60


# --- access: the one ownership check ------------------------------------------------------


async def get_conversation(user: Any, conversation_uuid: uuid.UUID) -> Conversation:
    conversation = await Conversation.objects.filter(uuid=conversation_uuid, owner=user).afirst()
    if conversation is None:
        raise not_found()
    return conversation


async def get_message(user: Any, message_uuid: uuid.UUID) -> Message:
    message = await (
        Message.objects.select_related("conversation")
        .filter(uuid=message_uuid, conversation__owner=user)
        .afirst()
    )
    if message is None:
        raise not_found()
    return message


# --- broadcasting ---------------------------------------------------------------------------


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def sidebar_item(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.uuid),
        "title": conversation.title,
        "pinned": conversation.pinned,
        "updated_at": conversation.updated_at.isoformat(),
    }


async def _to_user(user_id: int, frame: dict[str, Any]) -> None:
    await get_channel_layer().group_send(user_group(user_id), frame)


async def _to_conversation(conversation: Conversation, frame: dict[str, Any]) -> None:
    await get_channel_layer().group_send(conversation.group_name, frame)


async def announce_conversation(conversation: Conversation, **extra: Any) -> None:
    await _to_user(
        conversation.owner_id,
        {"type": "conversation.updated", "conversation": sidebar_item(conversation), **extra},
    )


# --- settings -------------------------------------------------------------------------------


def effective_settings(
    user: Any, conversation: Conversation | None, chosen: dict[str, Any]
) -> dict[str, Any]:
    merged = dict(DEFAULT_SETTINGS)
    merged.update(getattr(user, "chat_defaults", None) or {})
    if conversation is not None:
        merged.update(conversation.settings or {})
    merged.update(chosen)
    return merged


def _throttle(user: Any) -> None:
    key = f"r1chat:sends:{user.pk}:{int(timezone.now().timestamp() // 60)}"
    count = cache.get_or_set(key, 0, timeout=120)
    if count >= SEND_RATE_PER_MINUTE:
        raise ClientError("throttled", _("You are sending messages too fast. Wait a minute."))
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=120)


def initial_title(content: str) -> str:
    line = " ".join(content.strip().split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


# --- creating turns -------------------------------------------------------------------------


@dataclass
class Turn:
    conversation: Conversation
    created: bool  # a new conversation
    user_message: Message | None
    assistant: Message
    duplicate: bool = False


def _busy(conversation: Conversation) -> bool:
    streaming = list(
        Message.objects.filter(conversation=conversation, status=Message.Status.STREAMING)
    )
    return any(not m.is_stale for m in streaming)


def _new_assistant(conversation: Conversation, parent: Message, config: dict[str, Any]) -> Message:
    now = timezone.now()
    return Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        backend_id=config.get("backend_id"),
        backend_name=config.get("backend_name", ""),
        model=config.get("model", ""),
        deep_think=config.get("deep_think", True),
        enhanced_reasoning=config.get("enhanced_reasoning", True),
        temperature=config.get("temperature"),
        max_tokens=config.get("max_tokens"),
        created_at=now,
        heartbeat_at=now,
    )


@transaction.atomic
def _create_send(
    user: Any,
    conversation_uuid: uuid.UUID | None,
    content: str,
    client_id: str,
    parent_uuid: uuid.UUID | None,
    config: dict[str, Any],
) -> Turn:
    created = False
    if conversation_uuid is None:
        previous = (
            Message.objects.select_related("conversation")
            .filter(conversation__owner=user, client_id=client_id, role=Message.Role.USER)
            .first()
        )
        if previous is not None:  # the same send again: nothing new
            return _duplicate(previous)
        conversation = Conversation.objects.create(
            owner=user, title=initial_title(content), settings=config["stored"]
        )
        created = True
    else:
        conversation = (
            Conversation.objects.select_for_update()
            .filter(uuid=conversation_uuid, owner=user)
            .first()
        )
        if conversation is None:
            raise not_found()
        previous = Message.objects.filter(conversation=conversation, client_id=client_id).first()
        if previous is not None:
            return _duplicate(previous)
        if _busy(conversation):
            raise ClientError("busy", _("Wait for the answer to finish, or stop it first."))
    tree = Tree.load(conversation)
    if parent_uuid is not None:
        parent = next((m for m in tree.by_id.values() if m.uuid == parent_uuid), None)
        if parent is None:
            raise not_found()
    else:
        leaf = (
            tree.by_id.get(conversation.current_leaf_id) if conversation.current_leaf_id else None
        )
        parent = leaf or tree.default_leaf()
    user_message = Message.objects.create(
        conversation=conversation, parent=parent, role=Message.Role.USER, content=content,
        client_id=client_id,
    )  # fmt: skip
    assistant = _new_assistant(conversation, user_message, config)
    conversation.current_leaf = assistant
    conversation.updated_at = timezone.now()
    conversation.settings = config["stored"]
    conversation.save(update_fields=["current_leaf", "updated_at", "settings"])
    return Turn(conversation, created, user_message, assistant)


def _duplicate(previous: Message) -> Turn:
    conversation = previous.conversation
    reply = previous.children.order_by("created_at").first()
    return Turn(conversation, False, previous, reply or previous, duplicate=True)


async def _resolve_config(
    user: Any, conversation: Conversation | None, chosen: dict[str, Any]
) -> dict[str, Any]:
    merged = effective_settings(user, conversation, chosen)
    backend, model, info = await catalog.resolve(merged)
    deep_think = bool(merged.get("deep_think", True))
    if info is not None and info.thinking == "never":
        deep_think = False
    elif info is not None and info.thinking == "always":
        deep_think = True
    stored = {k: merged[k] for k in (*DEFAULT_SETTINGS, "backend", "model") if k in merged}
    if backend is not None:
        stored.update({"backend": backend.pk, "model": model})
    return {
        "backend": backend,
        "backend_id": backend.pk if backend else None,
        "backend_name": backend.name if backend else "",
        "model": model,
        "deep_think": deep_think,
        "enhanced_reasoning": bool(merged.get("enhanced_reasoning", True)),
        "temperature": merged.get("temperature"),
        "max_tokens": merged.get("max_tokens"),
        "system_prompt": merged.get("system_prompt") or "",
        "stored": stored,
    }


async def send_message(
    user: Any,
    *,
    conversation: uuid.UUID | None,
    content: str,
    client_id: str,
    settings: dict[str, Any],
    parent: uuid.UUID | None = None,
) -> Turn:
    """Create the user's message and the assistant's (streaming); the caller then `start`s."""
    _throttle(user)
    existing = await get_conversation(user, conversation) if conversation else None
    await _check_quota(user)
    config = await _resolve_config(user, existing, settings)
    try:
        turn = await sync_to_async(_create_send)(
            user, conversation, content, client_id, parent, config
        )
    except IntegrityError:  # the same client_id raced in from another tab
        previous = await Message.objects.select_related("conversation").aget(
            conversation__owner=user, client_id=client_id, role=Message.Role.USER
        )
        return await sync_to_async(_duplicate)(previous)
    turn.assistant._r1chat_config = config  # type: ignore[attr-defined]
    return turn


@transaction.atomic
def _create_version(message: Message, content: str | None, config: dict[str, Any]) -> Turn:
    conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
    if _busy(conversation):
        raise ClientError("busy", _("Wait for the answer to finish, or stop it first."))
    user_message: Message | None
    if message.role == Message.Role.ASSISTANT:  # regenerate: a sibling answer
        if message.parent_id is None:
            raise ClientError("invalid", _("This message cannot be regenerated."))
        user_message = Message.objects.get(pk=message.parent_id)
    else:  # edit: a sibling question, answered anew
        assert content is not None
        user_message = Message.objects.create(
            conversation=conversation, parent_id=message.parent_id, role=Message.Role.USER,
            content=content,
        )  # fmt: skip
    assistant = _new_assistant(conversation, user_message, config)
    conversation.current_leaf = assistant
    conversation.updated_at = timezone.now()
    conversation.settings = config["stored"]
    conversation.save(update_fields=["current_leaf", "updated_at", "settings"])
    return Turn(conversation, False, user_message if content is not None else None, assistant)


async def regenerate(user: Any, message_uuid: uuid.UUID, settings: dict[str, Any]) -> Turn:
    message = await get_message(user, message_uuid)
    if message.role != Message.Role.ASSISTANT:
        raise ClientError("invalid", _("Only an answer can be regenerated."))
    _throttle(user)
    await _check_quota(user)
    config = await _resolve_config(user, message.conversation, settings)
    turn = await sync_to_async(_create_version)(message, None, config)
    turn.assistant._r1chat_config = config  # type: ignore[attr-defined]
    return turn


async def edit(user: Any, message_uuid: uuid.UUID, content: str, settings: dict[str, Any]) -> Turn:
    message = await get_message(user, message_uuid)
    if message.role != Message.Role.USER:
        raise ClientError("invalid", _("Only your own messages can be edited."))
    _throttle(user)
    await _check_quota(user)
    config = await _resolve_config(user, message.conversation, settings)
    turn = await sync_to_async(_create_version)(message, content, config)
    turn.assistant._r1chat_config = config  # type: ignore[attr-defined]
    return turn


async def announce_turn(turn: Turn, client_id: str | None = None) -> None:
    """Tell every tab about the new conversation (sidebar) and messages (thread)."""
    conversation = turn.conversation
    if turn.created:
        await _to_user(
            conversation.owner_id,
            {
                "type": "conversation.created",
                "conversation": sidebar_item(conversation),
                "client_id": client_id,
            },
        )
    else:
        await announce_conversation(conversation)
    tree = await sync_to_async(Tree.load)(conversation)
    for message in (turn.user_message, turn.assistant):
        if message is None:
            continue
        item = serialize_message(tree.by_id.get(message.pk, message), tree.siblings(message))
        parent = tree.by_id.get(message.parent_id) if message.parent_id else None
        item["parent"] = str(parent.uuid) if parent else None
        await _to_conversation(
            conversation,
            {"type": "message.created", "conversation": str(conversation.uuid), "message": item},
        )


async def start_generation(turn: Turn) -> GenerationRunner | None:
    assistant = turn.assistant
    config = getattr(assistant, "_r1chat_config", None)
    if turn.duplicate or config is None or assistant.status != Message.Status.STREAMING:
        return None
    backend = config["backend"]
    request = None
    error_code = None
    if backend is None:
        error_code = "no_backend"
    else:
        tree = await sync_to_async(Tree.load)(turn.conversation)
        user_message = tree.by_id[assistant.parent_id]
        request = ChatRequest(
            model=config["model"],
            messages=history_for(tree, user_message, config["system_prompt"]),
            deep_think=config["deep_think"],
            enhanced_reasoning=config["enhanced_reasoning"],
            temperature=config["temperature"],
            max_tokens=config["max_tokens"],
        )
    runner = GenerationRunner(
        message=assistant,
        conversation=turn.conversation,
        backend=backend,
        request=request,
        error_code=error_code,
        on_complete=_after_generation,
    )
    runner.start()
    return runner


async def _check_quota(user: Any) -> None:
    """Refuse before anything is stored once the user's daily token quota is used up."""
    from review.quota import aquota_error

    code = await aquota_error(user.pk)
    if code:
        raise ClientError(code, str(describe_error(code)["message"]))


async def _after_generation(runner: GenerationRunner) -> None:
    conversation = runner.conversation
    await Conversation.objects.filter(pk=conversation.pk).aupdate(updated_at=timezone.now())
    if not conversation.title_generated and runner.backend is not None:
        from .titles import generate_title

        await generate_title(conversation, runner)


# --- stop, switch, rename, pin, delete ----------------------------------------------------


async def stop_generation(user: Any, message_uuid: uuid.UUID) -> None:
    message = await get_message(user, message_uuid)
    if message.status != Message.Status.STREAMING:
        return  # already finished: stopping is a no-op
    local = running(str(message.uuid))
    if local is not None:
        local.stop()
        return
    if message.is_stale:
        await mark_interrupted(message)
        return
    await get_channel_layer().group_send(
        message.conversation.control_group_name,
        {"type": "generation.stop", "message": str(message.uuid)},
    )


@transaction.atomic
def _switch(message: Message) -> Conversation:
    conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
    tree = Tree.load(conversation)
    conversation.current_leaf = tree.latest_leaf(tree.by_id[message.pk])
    conversation.save(update_fields=["current_leaf"])
    return conversation


async def switch_version(user: Any, message_uuid: uuid.UUID) -> list[dict[str, Any]]:
    message = await get_message(user, message_uuid)
    conversation = await sync_to_async(_switch)(message)
    thread = await sync_to_async(serialize_thread)(conversation)
    await _to_conversation(
        conversation, {"type": "thread", "conversation": str(conversation.uuid), "messages": thread}
    )
    return thread


async def rename_conversation(user: Any, conversation_uuid: uuid.UUID, title: str) -> Conversation:
    title = " ".join(title.split())[:200]
    if not title:
        raise ClientError("empty", _("The title is empty."))
    conversation = await get_conversation(user, conversation_uuid)
    conversation.title = title
    conversation.title_generated = True  # a person's title is never replaced by the model's
    await conversation.asave(update_fields=["title", "title_generated"])
    await announce_conversation(conversation)
    return conversation


async def pin_conversation(user: Any, conversation_uuid: uuid.UUID, pinned: bool) -> Conversation:
    conversation = await get_conversation(user, conversation_uuid)
    conversation.pinned = pinned
    await conversation.asave(update_fields=["pinned"])
    await announce_conversation(conversation)
    return conversation


async def delete_conversation(user: Any, conversation_uuid: uuid.UUID) -> None:
    conversation = await get_conversation(user, conversation_uuid)
    async for message in Message.objects.filter(
        conversation=conversation, status=Message.Status.STREAMING
    ):
        await stop_generation(user, message.uuid)
    item = sidebar_item(conversation)
    await conversation.adelete()
    await _to_user(user.pk, {"type": "conversation.updated", "conversation": item, "deleted": True})
    await _to_conversation(
        conversation, {"type": "conversation.deleted", "conversation": str(conversation_uuid)}
    )
