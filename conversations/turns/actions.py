"""Every change to conversations: validate, write, then tell the tabs. Views and the consumer
call these; nothing else writes and broadcasts by itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import CHAT_DEFAULTS
from r1chat.groups import user_group

from .. import attachments as files
from ..backends.base import ChatRequest
from ..chat.protocol import ClientError, not_found
from ..deletion import purge_deleted, undo_window
from ..errors import describe_error
from ..models import Attachment, ChatPreset, Conversation, Message
from ..runner.generation import GenerationRunner, stop
from . import budget, catalog
from .threads import Tree, history_for, serialize_message, serialize_thread
from .titles import generate_title

logger = logging.getLogger(__name__)

# A new user's chat settings; what they save on the account page and per conversation wins.
DEFAULT_SETTINGS: dict[str, Any] = {**CHAT_DEFAULTS, "enhanced_reasoning": True}
SEND_RATE_PER_MINUTE = django_settings.R1CHAT_SEND_RATE_PER_MINUTE
QUOTA_CACHE_SECONDS = 60
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
        .filter(uuid=message_uuid, conversation__owner=user, conversation__deleted_at=None)
        .afirst()
    )
    if message is None:
        raise not_found()
    return message


# --- broadcasting ---------------------------------------------------------------------------


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


def _refuse_while_shutting_down() -> None:
    from ..runner import shutdown

    if shutdown.is_shutting_down():
        raise ClientError(
            "shutting_down", _("The server is restarting. Send your message again in a moment.")
        )


async def count_this_minute(name: str, user_id: int) -> int:
    """Count one more `name` for this user in this minute, in the shared cache (every process),
    with its async API; the count so far, this one included."""
    key = f"r1chat:{name}:{user_id}:{int(time.time() // 60)}"
    if await cache.aadd(key, 1, timeout=120):
        return 1
    try:
        return await cache.aincr(key)
    except ValueError:  # expired just now
        return 1 if await cache.aadd(key, 1, timeout=120) else await cache.aincr(key)


async def _throttle(user: Any) -> None:
    """At most SEND_RATE_PER_MINUTE questions a minute per user."""
    if await count_this_minute("sends", user.pk) > SEND_RATE_PER_MINUTE:
        raise ClientError("throttled", _("You are sending messages too fast. Wait a minute."))


def initial_title(content: str) -> str:
    line = " ".join(content.strip().split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


# --- creating turns -------------------------------------------------------------------------
#
# A turn's rows (a new conversation, the question, the assistant's `streaming` answer) are
# committed in one transaction before the model is asked: a crash at any moment after that
# keeps the question, and the answer is shown as interrupted with a Retry.


@dataclass
class Turn:
    conversation: Conversation
    created: bool  # a new conversation
    user_message: Message | None  # None for a regeneration
    assistant: Message
    config: dict[str, Any]
    history: list[Message]  # the thread up to and including the question answered
    user_versions: list[Message]  # the new question and its siblings (‹ 1/2 ›)
    assistant_versions: list[Message]
    attachments: list[Attachment] = field(default_factory=list)  # the new question's files
    files: dict[int, list[Attachment]] = field(default_factory=dict)  # the history's, by message


def _busy(tree: Tree) -> bool:
    return any(m.status == Message.Status.STREAMING and not m.is_stale for m in tree.by_id.values())


def _new_assistant(conversation: Conversation, parent: Message, config: dict[str, Any]) -> Message:
    now = timezone.now()
    return Message(
        conversation=conversation,
        parent=parent,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        backend_id=config["backend_id"],
        backend_name=config["backend_name"],
        model=config["model"],
        deep_think=config["deep_think"],
        enhanced_reasoning=config["enhanced_reasoning"],
        temperature=config["temperature"],
        max_tokens=config["max_tokens"],
        created_at=now,
        heartbeat_at=now,
    )


def _save_turn(turn: Turn) -> None:
    """Write the turn's new rows, the conversation's new leaf and settings, in one transaction.
    For an existing conversation, first check (with its row locked) that nothing else is
    generating in it. A question whose `client_id` its sender used before is refused by the
    database's unique constraint, in any process."""
    conversation = turn.conversation
    try:
        with transaction.atomic():
            if turn.created:
                conversation.save(force_insert=True)
            else:
                Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
                streaming = Message.objects.filter(
                    conversation=conversation, status=Message.Status.STREAMING
                )
                if any(not m.is_stale for m in streaming):
                    raise ClientError("busy", _("Wait for the answer to finish, or stop it first."))
            for message in (turn.user_message, turn.assistant):
                if message is not None:  # (foreign keys to rows saved just before are filled in)
                    message.save(force_insert=True)
            if turn.user_message is not None:
                files.claim(turn.attachments, turn.user_message)
            conversation.current_leaf = turn.assistant
            conversation.updated_at = timezone.now()
            conversation.settings = turn.config["stored"]
            conversation.save(update_fields=["current_leaf", "updated_at", "settings"])
    except IntegrityError:
        if (
            turn.user_message is not None
            and turn.user_message.client_id
            and Message.objects.filter(
                sender=turn.user_message.sender_id, client_id=turn.user_message.client_id
            ).exists()
        ):
            raise ClientError("duplicate", _("This message was already sent.")) from None
        raise


def _load_for_turn(user: Any, conversation_uuid: uuid.UUID) -> tuple[Conversation, Tree]:
    conversation = Conversation.objects.filter(uuid=conversation_uuid, owner=user).first()
    if conversation is None:
        raise not_found()
    return conversation, Tree.load(conversation)


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
    stored = {
        k: merged[k] for k in (*DEFAULT_SETTINGS, "backend", "model", "preset") if k in merged
    }
    if "preset" in chosen or conversation is None:  # (a send without one leaves it as it was)
        preset = chosen.get("preset") or None
        mine = ChatPreset.objects.filter(pk=preset, owner=user)
        if preset is not None and not await mine.aexists():
            preset = None  # another user's or a deleted preset: none
        stored["preset"] = preset
    accepts_images = files.accepts_images(backend, model, info)
    if backend is not None:
        stored.update({"backend": backend.pk, "model": model})
    return {
        "backend": backend,
        "info": info,
        "backend_id": backend.pk if backend else None,
        "backend_name": backend.name if backend else "",
        "model": model,
        "deep_think": deep_think,
        "enhanced_reasoning": bool(merged.get("enhanced_reasoning", True)),
        "temperature": merged.get("temperature"),
        "max_tokens": merged.get("max_tokens"),
        "system_prompt": merged.get("system_prompt") or "",
        "accepts_images": accepts_images,
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
    attachments: list[uuid.UUID] | None = None,
) -> Turn:
    """Store the user's message (with the files uploaded for it) and the assistant's
    (streaming); then `run_turn`."""
    _refuse_while_shutting_down()
    await _throttle(user)
    if await Message.objects.filter(sender=user, client_id=client_id).aexists():
        # (a tab sending again what it is not sure arrived: not "busy" with its own answer)
        raise ClientError("duplicate", _("This message was already sent."))
    await check_quota(user)
    attached = await files.for_send(user, attachments or [])
    if conversation is None:
        if parent is not None:
            raise not_found()
        target = Conversation(owner=user, title=initial_title(content or attached[0].name))
        tree, parent_message, created = Tree([]), None, True
    else:
        target, tree = await sync_to_async(_load_for_turn)(user, conversation)
        if _busy(tree):
            raise ClientError("busy", _("Wait for the answer to finish, or stop it first."))
        if parent is not None:
            parent_message = next((m for m in tree.by_id.values() if m.uuid == parent), None)
            if parent_message is None:
                raise not_found()
        else:
            leaf = tree.by_id.get(target.current_leaf_id) if target.current_leaf_id else None
            parent_message = leaf or tree.default_leaf()
        created = False
    config = await _resolve_config(user, None if created else target, settings)
    files.check_images(attached, config)
    user_message = Message(
        conversation=target, parent=parent_message, role=Message.Role.USER, content=content,
        sender=user, client_id=client_id, created_at=timezone.now(),
    )  # fmt: skip
    assistant = _new_assistant(target, user_message, config)
    turn = Turn(
        target, created, user_message, assistant, config,
        history=[*tree.path_to(parent_message), user_message],
        user_versions=[*tree.children.get(parent_message.pk if parent_message else None, []),
                       user_message],
        assistant_versions=[assistant], attachments=attached,
    )  # fmt: skip
    await sync_to_async(_save_turn)(turn)
    await _load_files(turn)
    return turn


async def _load_files(turn: Turn) -> None:
    """The files of the questions the model is sent (image bytes only for a model that sees
    them)."""
    turn.files = await sync_to_async(files.by_message)(
        files.user_message_ids(turn.history), with_data=turn.config["accepts_images"]
    )


async def _new_version(
    user: Any, message_uuid: uuid.UUID, content: str | None, settings: dict[str, Any]
) -> Turn:
    message = await get_message(user, message_uuid)
    if content is None and message.role != Message.Role.ASSISTANT:
        raise ClientError("invalid", _("Only an answer can be regenerated."))
    if content is not None and message.role != Message.Role.USER:
        raise ClientError("invalid", _("Only your own messages can be edited."))
    _refuse_while_shutting_down()
    await _throttle(user)
    await check_quota(user)
    conversation, tree = await sync_to_async(_load_for_turn)(user, message.conversation.uuid)
    if _busy(tree):
        raise ClientError("busy", _("Wait for the answer to finish, or stop it first."))
    config = await _resolve_config(user, conversation, settings)
    if content is None:  # regenerate: a sibling answer to the same question
        question = tree.by_id.get(message.parent_id) if message.parent_id else None
        if question is None:
            raise ClientError("invalid", _("This message cannot be regenerated."))
        new_question = None
    else:  # edit: a sibling question, answered anew
        parent = tree.by_id.get(message.parent_id) if message.parent_id else None
        question = new_question = Message(
            conversation=conversation, parent=parent, role=Message.Role.USER, content=content,
            sender=user, created_at=timezone.now(),
        )  # fmt: skip
    copies = await files.copies_for(message) if new_question is not None else []
    files.check_images(copies, config)
    assistant = _new_assistant(conversation, question, config)
    if new_question is None:  # regenerate
        history = tree.path_to(question)
        user_versions: list[Message] = []
        assistant_versions = [*tree.children.get(question.pk, []), assistant]
    else:
        history = [*tree.path_to(question.parent), question]
        user_versions = [*tree.children.get(message.parent_id, []), question]
        assistant_versions = [assistant]
    turn = Turn(
        conversation, False, new_question, assistant, config, history=history,
        user_versions=user_versions, assistant_versions=assistant_versions, attachments=copies,
    )  # fmt: skip
    await sync_to_async(_save_turn)(turn)
    await _load_files(turn)
    return turn


async def regenerate(user: Any, message_uuid: uuid.UUID, settings: dict[str, Any]) -> Turn:
    return await _new_version(user, message_uuid, None, settings)


async def edit(user: Any, message_uuid: uuid.UUID, content: str, settings: dict[str, Any]) -> Turn:
    return await _new_version(user, message_uuid, content, settings)


def _serialize_new(turn: Turn, message: Message) -> dict[str, Any]:
    siblings = turn.user_versions if message is turn.user_message else turn.assistant_versions
    item = serialize_message(message, siblings)
    item["parent"] = str(message.parent.uuid) if message.parent else None
    if message is turn.user_message:
        item["attachments"] = [files.chip(a) for a in turn.attachments]
    return item


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
    for message in (turn.user_message, turn.assistant):
        if message is not None:
            await _to_conversation(
                conversation,
                {
                    "type": "message.created",
                    "conversation": str(conversation.uuid),
                    "message": _serialize_new(turn, message),
                },
            )


def start_generation(turn: Turn) -> GenerationRunner:
    assistant, config = turn.assistant, turn.config
    backend = config["backend"]
    request = None
    if backend is not None:
        request = ChatRequest(
            model=config["model"],
            messages=history_for(
                turn.history, config["system_prompt"], turn.files, images=config["accepts_images"]
            ),
            deep_think=config["deep_think"],
            enhanced_reasoning=config["enhanced_reasoning"],
            temperature=config["temperature"],
            # The stored maximum is the answer's; the request makes room for the reasoning.
            max_tokens=budget.request_max_tokens(
                config["max_tokens"],
                model=config["model"],
                info=config.get("info"),
                thinking=config["deep_think"],
            ),
        )
    runner = GenerationRunner(
        message=assistant,
        conversation=turn.conversation,
        backend=backend,
        request=request,
        error_code=None if backend is not None else "no_backend",
        on_complete=_after_generation,
        thinking_guess=_thinking_guess(config.get("info")),
    )
    runner.start()
    return runner


def _thinking_guess(info: Any) -> str | None:
    return getattr(info, "thinking", None)


# --- continue generating ------------------------------------------------------------------


def _can_continue(message: Message) -> bool:
    """An answer cut off at the length limit, with some answer text to go on from."""
    return (
        message.role == Message.Role.ASSISTANT
        and message.status == Message.Status.COMPLETE
        and message.finish_reason == "length"
        and not message.reasoning_unterminated
        and bool(message.content)
    )


def _reopen(message: Message, tree: Tree) -> list[Message]:
    """Mark a cut-off answer as streaming again (with its conversation's row locked, nothing
    else generating in it); the thread up to its question."""
    with transaction.atomic():
        Conversation.objects.select_for_update().filter(pk=message.conversation_id).first()
        if any(
            m.status == Message.Status.STREAMING and not m.is_stale
            for m in Message.objects.filter(conversation_id=message.conversation_id)
        ):
            raise ClientError("busy", _("Wait for the answer to finish, or stop it first."))
        now = timezone.now()
        reopened = Message.objects.filter(
            pk=message.pk, status=Message.Status.COMPLETE, finish_reason="length"
        ).update(status=Message.Status.STREAMING, heartbeat_at=now, finish_reason="")
        if not reopened:
            raise ClientError("invalid", _("This answer cannot be continued."))
        Conversation.objects.filter(pk=message.conversation_id).update(updated_at=now)
    message.status = Message.Status.STREAMING
    message.heartbeat_at = now
    message.finish_reason = ""
    question = tree.by_id.get(message.parent_id) if message.parent_id else None
    return tree.path_to(question)


async def continue_generation(user: Any, message_uuid: uuid.UUID) -> GenerationRunner:
    """Continue an answer that stopped at the length limit, in the same message: the model
    gets the thread with the answer so far as the last (assistant) message and its new text
    is appended; every tab sees the message stream again."""
    message = await get_message(user, message_uuid)
    if not _can_continue(message):
        raise ClientError("invalid", _("This answer cannot be continued."))
    _refuse_while_shutting_down()
    await _throttle(user)
    await check_quota(user)
    conversation, tree = await sync_to_async(_load_for_turn)(user, message.conversation.uuid)
    message.conversation = conversation  # (every field loaded: the tree's rows are partial)
    history = await sync_to_async(_reopen)(message, tree)
    chosen = {"model": message.model}
    if message.backend_id:
        chosen["backend"] = message.backend_id
    config = await _resolve_config(user, conversation, chosen)
    backend = config["backend"]
    request = None
    if backend is not None:
        thinks_anyway = getattr(config.get("info"), "thinking", None) == "always"
        request = ChatRequest(
            model=config["model"],
            messages=[
                *history_for(history, config["system_prompt"]),
                {"role": "assistant", "content": message.content},
            ],
            # The reasoning is done: the model goes on with the answer.
            deep_think=False,
            enhanced_reasoning=message.enhanced_reasoning,
            temperature=message.temperature,
            max_tokens=budget.request_max_tokens(
                message.max_tokens, model=config["model"], info=config.get("info"),
                thinking=thinks_anyway,
            ),
            continue_answer=True,
        )  # fmt: skip
    runner = GenerationRunner(
        message=message,
        conversation=conversation,
        backend=backend,
        request=request,
        error_code=None if backend is not None else "no_backend",
        on_complete=_after_generation,
        continuing=True,
    )
    await _to_conversation(conversation, runner.continued_frame())
    runner.start()
    return runner


async def run_turn(turn: Turn, client_id: str | None = None) -> GenerationRunner:
    """Tell the tabs about the stored turn, then ask the model: every tab hears of a message
    before its first frame."""
    await announce_turn(turn, client_id)
    return start_generation(turn)


QUOTAS_IN_USE_KEY = "r1chat:quotas-in-use"


async def check_quota(user: Any) -> None:
    """Refuse before anything is stored once the user's daily token quota is used up."""
    if not await _quotas_in_use():
        return
    from review.quota import aquota_error

    code = await aquota_error(user.pk)
    if code:
        raise ClientError(code, str(describe_error(code)["message"]))


async def _quotas_in_use() -> bool:
    """Whether any quota applies to anyone: read on every send, so kept in the shared cache
    until one changes (`quota_changed`) or for QUOTA_CACHE_SECONDS."""
    if django_settings.R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA:
        return True
    cached = await cache.aget(QUOTAS_IN_USE_KEY)
    if cached is not None:
        return bool(cached)
    from review.models import UserQuota

    in_use = await UserQuota.objects.filter(daily_tokens__gt=0).aexists()
    await cache.aset(QUOTAS_IN_USE_KEY, in_use, timeout=QUOTA_CACHE_SECONDS)
    return in_use


def quota_changed(**kwargs: Any) -> None:
    """Signal receiver: a user's quota was set or removed."""
    cache.delete(QUOTAS_IN_USE_KEY)


async def _after_generation(runner: GenerationRunner) -> None:
    conversation = runner.conversation
    await Conversation.objects.filter(pk=conversation.pk).aupdate(updated_at=timezone.now())
    if (
        not conversation.title_generated
        and runner.backend is not None
        and await generate_title(conversation, runner)
    ):
        await announce_conversation(conversation)


# --- stop, switch, rename, pin, delete ----------------------------------------------------


async def stop_generation(user: Any, message_uuid: uuid.UUID) -> None:
    await stop(await get_message(user, message_uuid))


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
    """Hide the conversation everywhere at once and stop its answers; its rows stay for
    R1CHAT_DELETE_UNDO_SECONDS (`restore_conversation`), then `purge_deleted` removes them."""
    conversation = await get_conversation(user, conversation_uuid)
    async for message in Message.objects.filter(
        conversation=conversation, status=Message.Status.STREAMING
    ):
        await stop_generation(user, message.uuid)
    item = sidebar_item(conversation)
    await Conversation.objects.filter(pk=conversation.pk).aupdate(deleted_at=timezone.now())
    await _to_user(user.pk, {"type": "conversation.updated", "conversation": item, "deleted": True})
    await _to_conversation(
        conversation, {"type": "conversation.deleted", "conversation": str(conversation_uuid)}
    )
    await purge_deleted()


async def restore_conversation(user: Any, conversation_uuid: uuid.UUID) -> Conversation:
    """Undo a delete within its window; after it the conversation is not found."""
    since = timezone.now() - undo_window()
    conversation = await Conversation.all_objects.filter(
        uuid=conversation_uuid, owner=user, deleted_at__gte=since
    ).afirst()
    if conversation is None:
        raise not_found()
    restored = await Conversation.all_objects.filter(
        pk=conversation.pk, deleted_at__isnull=False
    ).aupdate(deleted_at=None)
    if not restored:
        raise not_found()
    conversation.deleted_at = None
    await _to_user(
        user.pk, {"type": "conversation.updated", "conversation": sidebar_item(conversation)}
    )
    return conversation
