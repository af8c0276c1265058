"""Every change to conversations: validate, write, then tell the tabs. Views and the consumer
call these; nothing else writes and broadcasts by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import CHAT_DEFAULTS

from . import catalog, sendcache
from .admission import admission
from .backends.base import ChatRequest
from .db import Batched
from .errors import describe_error
from .generation import GenerationRunner, mark_interrupted, running
from .models import Conversation, Message, new_row
from .protocol import ClientError, not_found
from .threads import Tree, history_for, serialize_message, serialize_thread

logger = logging.getLogger(__name__)

# A new user's chat settings; what they save on the account page and per conversation wins.
DEFAULT_SETTINGS: dict[str, Any] = {**CHAT_DEFAULTS, "enhanced_reasoning": True}
SEND_RATE_PER_MINUTE = int(getattr(django_settings, "R1CHAT_SEND_RATE_PER_MINUTE", 30))
CLIENT_ID_SECONDS = 24 * 60 * 60
QUOTA_CACHE_SECONDS = 60
TITLE_CHARS = 60


# --- access: the one ownership check ------------------------------------------------------


# The background inserts of new conversations, by the uuids of their conversation and
# messages: a frame about one of them (a quick Stop, a second tab) waits for its rows.
_unsaved: dict[uuid.UUID, asyncio.Task[None]] = {}


async def _saved(key: uuid.UUID) -> None:
    task = _unsaved.get(key)
    if task is not None:
        await asyncio.shield(task)


async def get_conversation(user: Any, conversation_uuid: uuid.UUID) -> Conversation:
    await _saved(conversation_uuid)
    conversation = await Conversation.objects.filter(uuid=conversation_uuid, owner=user).afirst()
    if conversation is None:
        raise not_found()
    return conversation


async def get_message(user: Any, message_uuid: uuid.UUID) -> Message:
    await _saved(message_uuid)
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


def _refuse_while_shutting_down() -> None:
    from . import shutdown

    if shutdown.is_shutting_down():
        raise ClientError(
            "shutting_down", _("The server is restarting. Send your message again in a moment.")
        )


def _count_send(user: Any, client_id: str | None = None) -> sendcache.SendState:
    """At most SEND_RATE_PER_MINUTE sends a minute, in any process; the first send with a
    `client_id` claims it (see `sendcache`: what a question needs from the shared cache)."""
    state = sendcache.read(
        user.pk, client_id, limit=SEND_RATE_PER_MINUTE, claim_seconds=CLIENT_ID_SECONDS
    )
    if state.sends > SEND_RATE_PER_MINUTE:
        raise ClientError("throttled", _("You are sending messages too fast. Wait a minute."))
    if client_id is not None and not state.claimed:
        raise ClientError("duplicate", _("This message was already sent."))
    return state


def initial_title(content: str) -> str:
    line = " ".join(content.strip().split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


# --- creating turns -------------------------------------------------------------------------
#
# The first message of a new conversation is on the hot path of every chat: its rows are
# written in the background while the model already answers (nobody else can know the new
# conversation yet, so nothing can race it). Follow-ups, regenerations and edits read the
# history anyway; they check and write in one transaction before the model is asked.


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
    saved: asyncio.Task[None] | None = None  # the background insert of a new conversation
    # Set by the runner once its request is on the socket to the model (or the runner ended).
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once announce_turn told the tabs: the runner's frames wait for it (see run_turn).
    announced: asyncio.Event = field(default_factory=asyncio.Event)


def _busy(tree: Tree) -> bool:
    return any(m.status == Message.Status.STREAMING and not m.is_stale for m in tree.by_id.values())


def _new_assistant(conversation: Conversation, parent: Message, config: dict[str, Any]) -> Message:
    now = timezone.now()
    return new_row(
        Message,
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
    """Write the turn's new rows, the conversation's new leaf and settings, in one transaction."""
    conversation = turn.conversation
    with transaction.atomic():
        if turn.created:
            conversation.save(force_insert=True)
        for message in (turn.user_message, turn.assistant):
            if message is not None:  # (foreign keys to rows saved just before are filled in)
                message.save(force_insert=True)
        conversation.current_leaf = turn.assistant
        conversation.updated_at = timezone.now()
        conversation.settings = turn.config["stored"]
        conversation.save(update_fields=["current_leaf", "updated_at", "settings"])


def _save_new_turns(turns: list[Turn]) -> None:
    """Write several new conversations with their first two messages in one transaction: four
    statements in all (three multi-row inserts and one update) instead of five per turn."""
    if len(turns) == 1:
        _save_turn(turns[0])
        return
    now = timezone.now()
    for turn in turns:
        turn.conversation.updated_at = now
        turn.conversation.settings = turn.config["stored"]
    with transaction.atomic():
        Conversation.objects.bulk_create([turn.conversation for turn in turns])
        # (each message's foreign keys to the rows inserted just before are filled in here)
        Message.objects.bulk_create([turn.user_message for turn in turns if turn.user_message])
        Message.objects.bulk_create([turn.assistant for turn in turns])
        for turn in turns:
            turn.conversation.current_leaf = turn.assistant
        _set_leaves([turn.conversation for turn in turns])


def _set_leaves(conversations: list[Conversation]) -> None:
    """Point each conversation at its leaf in one statement run for every row: bulk_update
    builds a CASE of every row for it, ~0.15 ms of interpreter per row on the database thread
    (30 ms in a burst of 200 first messages, taken from the loop that relays their first
    tokens)."""
    meta = Conversation._meta
    connection = connections[router.db_for_write(Conversation)]
    quote = connection.ops.quote_name
    leaf, pk = meta.get_field("current_leaf").column, meta.pk.column
    sql = f"UPDATE {quote(meta.db_table)} SET {quote(leaf)} = %s WHERE {quote(pk)} = %s"
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(c.current_leaf_id, c.pk) for c in conversations])


# A burst of first messages is written in a few transactions, not in one per turn.
_insert_new_turn = Batched(_save_new_turns, _save_turn)

# How long a new conversation's insert waits for its request to leave for the model.
SAVE_AFTER_AT_MOST = 2.0


async def _save_once_sent(turn: Turn) -> None:
    """Insert a new conversation's rows once its request left for the model (or after
    SAVE_AFTER_AT_MOST).

    In a burst of first messages, the inserts would otherwise hold the interpreter while the
    requests to the model wait to be sent; the runner's first write waits for these rows. Not
    later than that: the tabs are told of the conversation then (run_turn), and a tab served
    by another process finds it only in the database."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(turn.sent.wait(), SAVE_AFTER_AT_MOST)
    await admission().after_burst(write=True)
    await _insert_new_turn(turn)


def _load_for_turn(user: Any, conversation_uuid: uuid.UUID) -> tuple[Conversation, Tree]:
    conversation = Conversation.objects.filter(uuid=conversation_uuid, owner=user).first()
    if conversation is None:
        raise not_found()
    return conversation, Tree.load(conversation)


def _check_and_save(turn: Turn) -> None:
    """For an existing conversation: nothing else generating, then write (one transaction)."""
    with transaction.atomic():
        Conversation.objects.select_for_update().filter(pk=turn.conversation.pk).first()
        streaming = Message.objects.filter(
            conversation=turn.conversation, status=Message.Status.STREAMING
        )
        if any(not m.is_stale for m in streaming):
            raise ClientError("busy", _("Wait for the answer to finish, or stop it first."))
        _save_turn(turn)


async def _resolve_config(
    user: Any, conversation: Conversation | None, chosen: dict[str, Any], backends_version: Any
) -> dict[str, Any]:
    merged = effective_settings(user, conversation, chosen)
    backend, model, info = await catalog.resolve(merged, backends_version)
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
    """Create the user's message and the assistant's (streaming); then `start_generation`."""
    _refuse_while_shutting_down()
    state = _count_send(user, client_id)
    try:
        await _check_quota(user, state.quotas_in_use)
        if conversation is None:
            if parent is not None:
                raise not_found()
            target = new_row(Conversation, owner=user, title=initial_title(content))
            tree, parent_message, created = Tree([]), None, True
        else:
            await _saved(conversation)
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
        config = await _resolve_config(
            user, None if created else target, settings, state.backends_version
        )
    except BaseException:
        sendcache.release(user.pk, client_id)  # refused: may be sent again
        raise
    user_message = new_row(
        Message, conversation=target, parent=parent_message, role=Message.Role.USER,
        content=content, client_id=client_id, created_at=timezone.now(),
    )  # fmt: skip
    assistant = _new_assistant(target, user_message, config)
    turn = Turn(
        target, created, user_message, assistant, config,
        history=[*tree.path_to(parent_message), user_message],
        user_versions=[*tree.children.get(parent_message.pk if parent_message else None, []),
                       user_message],
        assistant_versions=[assistant],
    )  # fmt: skip
    if created:
        turn.saved = task = asyncio.create_task(_save_once_sent(turn))
        keys = (target.uuid, user_message.uuid, assistant.uuid)
        for key in keys:
            _unsaved[key] = task
        task.add_done_callback(lambda _task: [_unsaved.pop(key, None) for key in keys])
    else:
        try:
            await sync_to_async(_check_and_save)(turn)
        except (ClientError, IntegrityError):
            sendcache.release(user.pk, client_id)
            raise
    return turn


async def _new_version(
    user: Any, message_uuid: uuid.UUID, content: str | None, settings: dict[str, Any]
) -> Turn:
    message = await get_message(user, message_uuid)
    if content is None and message.role != Message.Role.ASSISTANT:
        raise ClientError("invalid", _("Only an answer can be regenerated."))
    if content is not None and message.role != Message.Role.USER:
        raise ClientError("invalid", _("Only your own messages can be edited."))
    _refuse_while_shutting_down()
    state = _count_send(user)
    await _check_quota(user, state.quotas_in_use)
    conversation, tree = await sync_to_async(_load_for_turn)(user, message.conversation.uuid)
    if _busy(tree):
        raise ClientError("busy", _("Wait for the answer to finish, or stop it first."))
    config = await _resolve_config(user, conversation, settings, state.backends_version)
    if content is None:  # regenerate: a sibling answer to the same question
        question = tree.by_id.get(message.parent_id) if message.parent_id else None
        if question is None:
            raise ClientError("invalid", _("This message cannot be regenerated."))
        new_question = None
    else:  # edit: a sibling question, answered anew
        parent = tree.by_id.get(message.parent_id) if message.parent_id else None
        question = new_question = Message(
            conversation=conversation, parent=parent, role=Message.Role.USER, content=content,
            created_at=timezone.now(),
        )  # fmt: skip
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
        user_versions=user_versions, assistant_versions=assistant_versions,
    )  # fmt: skip
    await sync_to_async(_check_and_save)(turn)
    return turn


async def regenerate(user: Any, message_uuid: uuid.UUID, settings: dict[str, Any]) -> Turn:
    return await _new_version(user, message_uuid, None, settings)


async def edit(user: Any, message_uuid: uuid.UUID, content: str, settings: dict[str, Any]) -> Turn:
    return await _new_version(user, message_uuid, content, settings)


def _serialize_new(turn: Turn, message: Message) -> dict[str, Any]:
    siblings = turn.user_versions if message is turn.user_message else turn.assistant_versions
    item = serialize_message(message, siblings)
    item["parent"] = str(message.parent.uuid) if message.parent else None
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


async def start_generation(turn: Turn) -> GenerationRunner:
    assistant, config = turn.assistant, turn.config
    backend = config["backend"]
    request = None
    if backend is not None:
        request = ChatRequest(
            model=config["model"],
            messages=history_for(turn.history, config["system_prompt"]),
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
        error_code=None if backend is not None else "no_backend",
        on_complete=_after_generation,
        saved=turn.saved,
        request_sent=turn.sent,
        announced=turn.announced,
    )
    runner.start()
    return runner


# How long the tabs' news of a turn waits for its request to leave for the model.
ANNOUNCE_AFTER_AT_MOST = 0.15


async def run_turn(turn: Turn, client_id: str | None = None) -> GenerationRunner:
    """Ask the model, then tell the tabs (`announce_turn`), then let the answer's frames go.

    The question goes first: in a burst of questions at once, announcing every turn (three
    frames to each tab) before any runner had started kept every request waiting behind all the
    announcements, and the model server idle meanwhile. Now each request leaves as soon as its
    runner connects and the announcements are sent while the model thinks. They wait for the
    request at most ANNOUNCE_AFTER_AT_MOST (a slow connection to a remote server); the runner's
    first frame always waits for them, so every tab hears of a message before its text."""
    runner = await start_generation(turn)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runner.request_sent.wait(), ANNOUNCE_AFTER_AT_MOST)
        await announce_turn(turn, client_id)
    finally:
        turn.announced.set()
    return runner


async def _check_quota(user: Any, cached: bool | None) -> None:
    """Refuse before anything is stored once the user's daily token quota is used up.
    `cached`: whether quotas are in use as the shared cache said (None: not in it)."""
    if not await _quotas_in_use(cached):
        return
    from review.quota import aquota_error

    code = await aquota_error(user.pk)
    if code:
        raise ClientError(code, str(describe_error(code)["message"]))


_quota_lookup: asyncio.Task[bool] | None = None  # the lookup in flight (see _quotas_in_use)


async def _quotas_in_use(cached: bool | None) -> bool:
    """Whether any quota applies to anyone: read on every send, so cached until one changes.

    One lookup at a time per process: a burst of questions on a cold cache waits for the same
    query instead of queueing 200 of them on the one shared database thread."""
    global _quota_lookup
    if django_settings.R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA:
        return True
    if cached is not None:
        return cached
    loop = asyncio.get_running_loop()
    if _quota_lookup is None or _quota_lookup.done() or _quota_lookup.get_loop() is not loop:
        _quota_lookup = loop.create_task(_look_up_quotas())
    return await asyncio.shield(_quota_lookup)


async def _look_up_quotas() -> bool:
    from review.models import UserQuota

    in_use = await UserQuota.objects.filter(daily_tokens__gt=0).aexists()
    # (an integer: stored as it is, which `sendcache`'s script reads)
    cache.set(sendcache.QUOTAS_IN_USE_KEY, int(in_use), timeout=QUOTA_CACHE_SECONDS)
    return in_use


async def warm() -> None:
    """What every send reads, looked up before a tab's first question needs it."""
    in_use = cache.get(sendcache.QUOTAS_IN_USE_KEY)
    await _quotas_in_use(None if in_use is None else bool(in_use))


def quota_changed(**kwargs: Any) -> None:
    """Signal receiver: a user's quota was set or removed."""
    cache.delete(sendcache.QUOTAS_IN_USE_KEY)


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
