"""Who may chat, and closing a user's open WebSockets. Used by the chat view and consumer.

- ``can_chat(user)``: signed in, active, approved (in approval mode) and at least one of the
  email address or phone number confirmed by a code.
- ``chat_redirect_url(user)``: where to send someone who cannot chat (sign-in, waiting page).
- ``close_user_sockets(user_id)``: every socket of that user (any process) gets
  ``{"type": "user.revoked"}`` through the channel-layer group ``user.<id>``; the chat consumer
  joins that group and closes on it. Called on sign-out, deactivation, password change or
  reset, "sign out everywhere" and account deletion.
- ``close_user_sockets(user_id, stop_generations=True)`` (deactivation, one account or a
  queryset at once): the user's running answers are stopped too, as Stop in a tab stops them
  (``conversations.runner.generation.stop``: the runner in this process, or in another one
  through the conversation's control group).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.urls import reverse

from r1chat.groups import user_group

from .signup_modes import APPROVAL, signup_mode

logger = logging.getLogger(__name__)

REVOKED_EVENT = "user.revoked"
_pending: set[asyncio.Task[Any]] = set()


def has_verified_contact(user: Any) -> bool:
    """Whether the email address or the phone number of ``user`` was confirmed by a code."""
    if getattr(user, "phone", None) and getattr(user, "phone_verified", False):
        return True
    if getattr(user, "email", None):
        from allauth.account.models import EmailAddress

        return EmailAddress.objects.filter(
            user_id=user.pk, email__iexact=user.email, verified=True
        ).exists()
    return False


def needs_approval(user: Any) -> bool:
    return (
        signup_mode() == APPROVAL
        and not getattr(user, "approved", True)
        and not getattr(user, "is_staff", False)
    )


def can_chat(user: Any) -> bool:
    """Authenticated, active, approved when approval mode is on, and a confirmed address.

    Superusers made with ``createsuperuser`` have no confirmed address and may chat anyway.
    """
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if not user.is_active or needs_approval(user):
        return False
    return bool(user.is_superuser) or has_verified_contact(user)


acan_chat = database_sync_to_async(can_chat)


def chat_redirect_url(user: Any) -> str | None:
    """Where the chat page should send a user who cannot chat (None when they can)."""
    if can_chat(user):
        return None
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return reverse("account_login")
    if needs_approval(user):
        return reverse("accounts:waiting")
    return reverse("accounts:verify_required")


def _message() -> dict[str, str]:
    return {"type": REVOKED_EVENT}


def _running_answers(user_id: int) -> list[Any]:
    """This user's answers still streaming."""
    from conversations.models import Message

    return list(
        Message.objects.filter(
            conversation__owner_id=user_id, status=Message.Status.STREAMING
        ).select_related("conversation")
    )


async def _revoke(layer: Any, user_id: int, answers: list[Any]) -> None:
    await layer.group_send(user_group(user_id), _message())
    if not answers:
        return
    from conversations.runner.generation import stop

    for message in answers:
        # What Stop in a tab does: the runner in this process, or its control group elsewhere.
        try:
            await stop(message)
        except Exception:
            logger.exception("Could not stop an answer of user %s", user_id)


def close_user_sockets(user_id: int, *, stop_generations: bool = False) -> None:
    """Tell every open socket of this user to close (sync; safe inside an event loop too).

    With ``stop_generations`` (deactivation), the user's running answers are stopped as well
    (looked up in the database, so only from sync code: not inside an event loop).
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    try:
        if loop is None:
            answers = _running_answers(user_id) if stop_generations else []
            # (From a request's thread under ASGI this runs on the server's loop, where the
            # runners of this process live.)
            async_to_sync(_revoke)(layer, user_id, answers)
        else:  # called from async code: schedule rather than block the loop
            task = loop.create_task(_revoke(layer, user_id, []))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
    except Exception:  # the layer being down must not break sign-out or deletion
        logger.exception("Could not close the sockets of user %s", user_id)


async def aclose_user_sockets(user_id: int) -> None:
    """Async variant of :func:`close_user_sockets`."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(user_group(user_id), _message())
    except Exception:
        logger.exception("Could not close the sockets of user %s", user_id)
