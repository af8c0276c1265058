"""Making, revoking and continuing share links. The views only call these."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Conversation, Message
from conversations.rendering import render_markdown
from conversations.turns.actions import announce_conversation, count_this_minute
from conversations.turns.threads import Tree, thread_messages

from .models import TOKEN_MAX_LENGTH, SharedLink, SharedMessage

logger = logging.getLogger(__name__)

# Links one user may make, and shared chats they may continue, in a minute (each copies a
# whole thread).
SHARES_PER_MINUTE = 20
CONTINUES_PER_MINUTE = 20


class ShareError(Exception):
    """A share the user asked for that cannot be made; `detail` says why, translated."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


def own_conversation(user: Any, conversation_uuid: uuid.UUID) -> Conversation:
    """The user's conversation; another user's id is *not found*, never forbidden."""
    conversation = Conversation.objects.filter(uuid=conversation_uuid, owner=user).first()
    if conversation is None:
        raise Http404(_("That conversation does not exist."))
    return conversation


def _snapshot(link: SharedLink, messages: list[Message]) -> list[SharedMessage]:
    """The copies of the thread's messages; answers keep the renderer's cached HTML."""
    rows: list[SharedMessage] = []
    for message in messages:
        answer = message.role == Message.Role.ASSISTANT
        if answer and not message.content and not (link.include_reasoning and message.reasoning):
            continue  # a failed answer with nothing written: not part of the conversation
        status = Message.Status.INTERRUPTED if message.is_stale else message.status
        reasoning = message.reasoning if answer and link.include_reasoning else ""
        rows.append(
            SharedMessage(
                link=link,
                position=len(rows),
                role=message.role,
                content=message.content,
                html=(message.html or render_markdown(message.content)) if answer else "",
                reasoning=reasoning,
                reasoning_html=(message.reasoning_html or render_markdown(reasoning))
                if reasoning
                else "",
                thought_seconds=message.thought_seconds() if reasoning else None,
                status=status,
                model=message.model if answer else "",
                created_at=message.created_at,
            )
        )
    return rows


def share_conversation(
    user: Any, conversation_uuid: uuid.UUID, *, include_reasoning: bool = False
) -> SharedLink:
    """A new link to a snapshot of the conversation's visible thread as it is now."""
    conversation = own_conversation(user, conversation_uuid)
    if async_to_sync(count_this_minute)("shares", user.pk) > SHARES_PER_MINUTE:
        raise ShareError("throttled", _("You are making links too fast. Wait a minute."), 429)
    messages = thread_messages(conversation, Tree.load(conversation))
    if any(m.status == Message.Status.STREAMING and not m.is_stale for m in messages):
        raise ShareError(
            "busy", _("An answer is still being written. Share once it has finished."), 409
        )
    link = SharedLink(
        conversation=conversation,
        owner=user,
        title=conversation.title,
        include_reasoning=include_reasoning,
    )
    rows = _snapshot(link, messages)
    if not rows:
        raise ShareError("empty", _("This conversation has nothing to share yet."))
    link.message_count = len(rows)
    with transaction.atomic():
        link.save()
        for row in rows:
            row.link = link  # saved now: the rows take its id
        SharedMessage.objects.bulk_create(rows)
    return link


def get_link(token: str) -> SharedLink:
    """The link with this token; an unknown or revoked one, or one whose conversation is deleted
    (its Undo window included), is the same 404."""
    known = len(token) <= TOKEN_MAX_LENGTH
    live = SharedLink.objects.filter(token=token, conversation__deleted_at__isnull=True)
    link = live.first() if known else None
    if link is None:
        raise Http404
    return link


def revoke_link(user: Any, token: str) -> None:
    """Delete the user's link and its snapshot; anyone else's token is *not found*."""
    deleted, _rows = SharedLink.objects.filter(token=token, owner=user).delete()
    if not deleted:
        raise Http404


def revoke_all_links(user: Any) -> int:
    """Delete every link of the user; how many there were."""
    _total, deleted = SharedLink.objects.filter(owner=user).delete()
    return deleted.get(SharedLink._meta.label, 0)


def continue_conversation(user: Any, link: SharedLink) -> Conversation:
    """A new conversation of `user` holding a copy of the snapshot (reasoning only if it was
    shared), which they can go on with."""
    if async_to_sync(count_this_minute)("continues", user.pk) > CONTINUES_PER_MINUTE:
        raise ShareError("throttled", _("You are copying chats too fast. Wait a minute."), 429)
    shared = list(link.messages.all())
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=user,
            title=link.title,
            # The shared title is kept: the model is not asked for another one.
            title_generated=True,
            created_at=now,
            updated_at=now,
        )
        copies = []
        for index, item in enumerate(shared):
            at = now + dt.timedelta(microseconds=index)  # the thread's order, kept by time too
            answer = item.role == Message.Role.ASSISTANT
            thought = dt.timedelta(seconds=item.thought_seconds or 0)
            copies.append(
                Message(
                    conversation=conversation,
                    role=item.role,
                    content=item.content,
                    html=item.html,
                    reasoning=item.reasoning,
                    reasoning_html=item.reasoning_html,
                    status=item.status,
                    model=item.model,
                    deep_think=bool(item.reasoning),
                    created_at=at,
                    reasoning_started_at=at if item.reasoning else None,
                    reasoning_finished_at=at + thought if item.reasoning else None,
                    answer_started_at=at + thought if answer else None,
                    finished_at=at + thought if answer else None,
                )
            )
        Message.objects.bulk_create(copies)
        # Each message's parent is the one before it in time: one UPDATE for the whole chain
        # (per-row parents through bulk_update cost a CASE branch per message).
        earlier = Message.objects.filter(
            conversation=conversation, created_at__lt=OuterRef("created_at")
        ).order_by("-created_at")
        Message.objects.filter(conversation=conversation).update(
            parent=Subquery(earlier.values("pk")[:1])
        )
        if copies:
            conversation.current_leaf = copies[-1]
            conversation.save(update_fields=["current_leaf"])
    try:
        async_to_sync(announce_conversation)(conversation)  # the user's other tabs
    except Exception:
        # The copy is made and its page opens; a tab that missed this sees it on reload.
        logger.warning("Could not announce a continued conversation", exc_info=True)
    return conversation
