"""Deleted conversations: hidden at once (`Conversation.deleted_at`), kept for the Undo window
(R1CHAT_DELETE_UNDO_SECONDS), then purged by `purge_deleted` (at each delete, and by every
process's generation maintenance now and then)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import Conversation


def undo_window() -> timedelta:
    return timedelta(seconds=settings.R1CHAT_DELETE_UNDO_SECONDS)


async def purge_deleted() -> int:
    """Remove the conversations deleted longer ago than the Undo window; how many."""
    before = timezone.now() - undo_window()
    _total, by_model = await Conversation.all_objects.filter(deleted_at__lt=before).adelete()
    return by_model.get(Conversation._meta.label, 0)
