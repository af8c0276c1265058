"""Daily token quotas from usage records; record_usage as the generation runner calls it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from review.models import UsageRecord, UserQuota
from review.quota import aquota_error, daily_quota, quota_error
from review.testing import make_conversation, make_personas
from review.usage import arecord_usage, record_usage, tokens_used_on

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


def test_no_quota_by_default(people: dict[str, Any]) -> None:
    usage = {"prompt_tokens": 10**6, "completion_tokens": 10**6}
    _, _, answer = make_conversation(people["alice"], usage=usage)
    record_usage(answer)
    assert daily_quota(people["alice"].pk) is None
    assert quota_error(people["alice"].pk) is None


async def test_the_default_quota_blocks_once_reached(people: dict[str, Any], settings: Any) -> None:
    settings.R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA = 100
    alice = people["alice"]
    from asgiref.sync import sync_to_async

    _, _, answer = await sync_to_async(make_conversation)(
        alice, usage={"prompt_tokens": 40, "completion_tokens": 59}
    )
    await arecord_usage(answer)
    assert await aquota_error(alice.pk) is None  # 99 < 100
    _, _, more = await sync_to_async(make_conversation)(
        alice, usage={"prompt_tokens": 1, "completion_tokens": 0}
    )
    await arecord_usage(more, alice.pk)
    assert await aquota_error(alice.pk) == "quota"
    assert await aquota_error(people["bob"].pk) is None  # per user


def test_a_users_own_quota_wins_and_zero_means_no_limit(
    people: dict[str, Any], settings: Any
) -> None:
    settings.R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA = 10
    alice = people["alice"]
    _, _, answer = make_conversation(alice, usage={"prompt_tokens": 20, "completion_tokens": 20})
    record_usage(answer)
    assert quota_error(alice.pk) == "quota"
    UserQuota.objects.create(user=alice, daily_tokens=1000)
    assert quota_error(alice.pk) is None
    UserQuota.objects.filter(user=alice).update(daily_tokens=0)
    assert quota_error(alice.pk) is None
    UserQuota.objects.filter(user=alice).update(daily_tokens=40)
    assert quota_error(alice.pk) == "quota"
    UserQuota.objects.filter(user=alice).update(daily_tokens=None)  # back to the default
    assert daily_quota(alice.pk) == 10


def test_yesterdays_tokens_do_not_count(people: dict[str, Any], settings: Any) -> None:
    settings.R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA = 50
    alice = people["alice"]
    _, _, answer = make_conversation(alice, usage={"prompt_tokens": 60, "completion_tokens": 0})
    record_usage(answer)
    UsageRecord.objects.update(day=timezone.localdate() - dt.timedelta(days=1))
    assert quota_error(alice.pk) is None


def test_deleting_the_conversation_does_not_reset_the_quota(
    people: dict[str, Any], settings: Any
) -> None:
    settings.R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA = 50
    conversation, _, answer = make_conversation(
        people["alice"], usage={"prompt_tokens": 30, "completion_tokens": 30}
    )
    record_usage(answer)
    conversation.delete()
    assert quota_error(people["alice"].pk) == "quota"


def test_record_usage_is_idempotent_per_message(people: dict[str, Any]) -> None:
    _, asked, answer = make_conversation(
        people["alice"], usage={"prompt_tokens": 5, "completion_tokens": 7, "reasoning_tokens": 3}
    )
    record_usage(answer)
    record_usage(answer)
    record = UsageRecord.objects.get()
    assert (record.user, record.model, record.backend_name) == (
        people["alice"],
        "deepseek-v4-flash",
        "Simulator",
    )
    assert (record.prompt_tokens, record.completion_tokens, record.reasoning_tokens) == (5, 7, 3)
    assert record.day == timezone.localdate(answer.created_at)
    assert tokens_used_on(people["alice"].pk, record.day) == 12
    assert record_usage(asked) is None  # only answers


def test_usage_is_estimated_when_the_server_reports_none(people: dict[str, Any]) -> None:
    _, _, answer = make_conversation(people["alice"], answer="x" * 40, reasoning="", usage={})
    record = record_usage(answer)
    assert record is not None and record.estimated
    assert record.completion_tokens == 10


def test_a_generation_that_never_reached_a_model_records_nothing(
    people: dict[str, Any],
) -> None:
    _, _, answer = make_conversation(
        people["alice"], answer="", reasoning="", usage={}, status="error"
    )
    assert record_usage(answer) is None
    assert not UsageRecord.objects.exists()


def test_the_quota_message_is_the_errors_module_one() -> None:
    from conversations.errors import describe_error

    assert "quota" in str(describe_error("quota")["message"])
