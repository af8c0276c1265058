"""Who may review users' conversations: the R1CHAT_REVIEW_ACCESS setting, in one place."""

from __future__ import annotations

from typing import Any

from django.conf import settings

PERMISSION = "review.review_conversations"


def can_review(user: Any) -> bool:
    """superusers: active superusers; permission: active staff holding the permission; nobody."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    mode = getattr(settings, "R1CHAT_REVIEW_ACCESS", "superusers")
    if mode == "superusers":
        return bool(user.is_superuser)
    if mode == "permission":
        return bool(user.is_staff and user.has_perm(PERMISSION))
    return False
