"""Daily token quotas, checked before a generation starts.

A user's own UserQuota.daily_tokens wins; blank falls back to R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA;
0 means no limit. "Today" is the local date in TIME_ZONE, the day usage records are filed under.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from .models import UserQuota
from .usage import tokens_used_on

QUOTA_ERROR = "quota"  # conversations.errors code: "You have used up your token quota for today."


def daily_quota(user_id: int) -> int | None:
    """Tokens per day this user may use, or None for no limit."""
    own = UserQuota.objects.filter(user_id=user_id).values_list("daily_tokens", flat=True).first()
    quota = own if own is not None else getattr(settings, "R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA", 0)
    return quota or None


def quota_error(user_id: int) -> str | None:
    """The error code "quota" once today's prompt + completion tokens reach the quota."""
    quota = daily_quota(user_id)
    if quota is None:
        return None
    return QUOTA_ERROR if tokens_used_on(user_id, timezone.localdate()) >= quota else None


async def aquota_error(user_id: int) -> str | None:
    return await sync_to_async(quota_error)(user_id)
