"""Token usage: one UsageRecord per generation, and the per-day tables built from them.

`record_usage(message)` is called by the generation runner when a generation ends (whatever its
status). Records outlive their conversations, so deleting a chat does not reset a quota.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Count, Q, Sum
from django.utils import timezone

from .models import UsageRecord

# Rough characters per token, for servers that report no usage (estimates are flagged).
CHARS_PER_TOKEN = 4


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def record_usage(message: Any, user_id: int | None = None) -> UsageRecord | None:
    """Store (or update) the usage of one assistant message; idempotent per message."""
    if getattr(message, "role", "assistant") != "assistant":
        return None
    if user_id is None:
        from conversations.models import Conversation

        user_id = (
            Conversation.objects.filter(pk=message.conversation_id)
            .values_list("owner_id", flat=True)
            .first()
        )
        if user_id is None:
            return None
    usage = message.usage if isinstance(message.usage, dict) else {}
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    reasoning = _int(usage.get("reasoning_tokens"))
    estimated = False
    if usage.get("completion_tokens") is None:
        text_length = len(message.content or "") + len(message.reasoning or "")
        if text_length:
            completion = -(-text_length // CHARS_PER_TOKEN)
            estimated = True
    if not prompt and not completion:
        return None  # nothing reached a model (no backend, quota, refused before streaming)
    moment = getattr(message, "created_at", None) or timezone.now()
    record, _created = UsageRecord.objects.update_or_create(
        message_uuid=message.uuid,
        defaults={
            "user_id": user_id,
            "day": timezone.localdate(moment),
            "backend_name": (message.backend_name or "")[:80],
            "model": (message.model or "")[:200],
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "reasoning_tokens": reasoning,
            "estimated": estimated,
            "source": getattr(message, "source", None) or UsageRecord.Source.WEB,
        },
    )
    return record


async def arecord_usage(message: Any, user_id: int | None = None) -> UsageRecord | None:
    return await sync_to_async(record_usage)(message, user_id)


def tokens_used_on(user_id: int, day: dt.date) -> int:
    totals = UsageRecord.objects.filter(user_id=user_id, day=day).aggregate(
        prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
    )
    return (totals["prompt"] or 0) + (totals["completion"] or 0)


@dataclass
class UsageRow:
    day: dt.date
    user_id: int
    username: str
    backend_name: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    messages: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _period(start: dt.date, end: dt.date, *, user_id: int | None, model: str) -> Q:
    """The usage records between `start` and `end` (inclusive), of one user and model if given."""
    query = Q(day__gte=start, day__lte=end)
    if user_id:
        query &= Q(user_id=user_id)
    if model:
        query &= Q(model=model)
    return query


def usage_rows(
    start: dt.date, end: dt.date, *, user_id: int | None = None, model: str = ""
) -> list[UsageRow]:
    """Tokens per day, user, backend and model between `start` and `end` (inclusive)."""
    query = _period(start, end, user_id=user_id, model=model)
    grouped = (
        UsageRecord.objects.filter(query)
        .values("day", "user_id", "user__username", "backend_name", "model")
        .annotate(
            prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), messages=Count("id")
        )
        .order_by("-day", "user__username", "backend_name", "model")
    )
    return [
        UsageRow(
            day=row["day"],
            user_id=row["user_id"],
            username=row["user__username"],
            backend_name=row["backend_name"],
            model=row["model"],
            prompt_tokens=row["prompt"] or 0,
            completion_tokens=row["completion"] or 0,
            messages=row["messages"],
        )
        for row in grouped
    ]


@dataclass
class SourceRow:
    source: str
    label: str
    prompt_tokens: int
    completion_tokens: int
    messages: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def usage_by_source(
    start: dt.date, end: dt.date, *, user_id: int | None = None, model: str = ""
) -> list[SourceRow]:
    """Tokens and calls per source (chat page, API, API from the response cache)."""
    query = _period(start, end, user_id=user_id, model=model)
    grouped = {
        row["source"]: row
        for row in UsageRecord.objects.filter(query)
        .values("source")
        .annotate(
            prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), messages=Count("id")
        )
        .order_by()
    }
    return [
        SourceRow(
            source=source,
            label=str(label),
            prompt_tokens=grouped[source]["prompt"] or 0,
            completion_tokens=grouped[source]["completion"] or 0,
            messages=grouped[source]["messages"],
        )
        for source, label in UsageRecord.Source.choices
        if source in grouped
    ]


def cache_hit_ratio(rows: list[SourceRow]) -> float | None:
    """The share of API calls answered from the response cache (None without API calls)."""
    calls = {row.source: row.messages for row in rows}
    api = calls.get(UsageRecord.Source.API, 0) + calls.get(UsageRecord.Source.CACHED, 0)
    return calls.get(UsageRecord.Source.CACHED, 0) / api if api else None
