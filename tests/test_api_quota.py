"""One budget per user for the chat page and the API: the daily token quota counts both, and
the questions a minute are counted together; past either the API answers 429 with
Retry-After (the `openai` package's RateLimitError)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from django.utils import timezone

from review.models import UsageRecord, UserQuota
from review.quota import quota_error
from tests.api_support import *  # noqa: F403
from tests.api_support import ApiServer, client_for, key_for, start_api_server, wait_until
from tests.chat_support import make_user, session_cookie
from tests.processes import WsTab

pytestmark = pytest.mark.timeout(120)

QUESTION = [{"role": "user", "content": "How are mass and energy related?"}]


@pytest.fixture
def alice(api_backend: Any) -> Any:
    return make_user("alice")


def _ask(server: Any, token: str) -> Any:
    return client_for(server, token).chat.completions.create(
        model="deepseek-v4-flash", messages=QUESTION
    )


def test_tokens_used_on_the_chat_page_count_for_the_api(
    api_server: Any, alice: Any, sim: Any
) -> None:
    UserQuota.objects.create(user=alice, daily_tokens=100)
    UsageRecord.objects.create(
        user=alice, day=timezone.localdate(), model="deepseek-v4-flash", prompt_tokens=60,
        completion_tokens=60, source="web",
    )  # fmt: skip
    _key, token = key_for(alice)
    with pytest.raises(openai.RateLimitError) as caught:
        _ask(api_server, token)
    assert caught.value.body["code"] == "insufficient_quota"
    assert int(caught.value.response.headers["Retry-After"]) > 0
    assert not [r for r in sim.requests if r.path.endswith("/chat/completions")]


def test_tokens_used_by_the_api_count_for_the_chat_page(api_server: Any, alice: Any) -> None:
    UserQuota.objects.create(user=alice, daily_tokens=50)
    _key, token = key_for(alice)
    _ask(api_server, token)  # under the quota when asked; over it once answered
    assert wait_until(lambda: quota_error(alice.pk) == "quota")
    with pytest.raises(openai.RateLimitError):
        _ask(api_server, token)


# --- questions a minute -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_server(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ApiServer]:
    """A server that allows 3 questions a minute per user."""
    yield from start_api_server(django_db_blocker, "rate", R1CHAT_SEND_RATE_PER_MINUTE="3")


def _same_minute() -> None:
    """Start well inside a minute: the count is per minute of the clock."""
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def _fresh_user(name: str) -> Any:
    """A user whose id no other test's user had: the server counts questions by user id for a
    minute, beyond the flush that ends a test (which lets SQLite reuse ids)."""
    return make_user(name, id=random.randint(10**6, 10**9))


def test_questions_a_minute_are_limited(slow_server: Any, api_backend: Any) -> None:
    _key, token = key_for(_fresh_user("bob"))
    _same_minute()
    for _ in range(3):
        _ask(slow_server, token)
    with pytest.raises(openai.RateLimitError) as caught:
        _ask(slow_server, token)
    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert 1 <= int(caught.value.response.headers["Retry-After"]) <= 60


def test_a_tab_and_the_api_share_the_count(slow_server: Any, api_backend: Any) -> None:
    carol = _fresh_user("carol")
    _key, token = key_for(carol)
    cookie = session_cookie(carol)
    _same_minute()
    _ask(slow_server, token)
    _ask(slow_server, token)

    async def question_from_a_tab() -> dict[str, Any]:
        tab = await WsTab.open(slow_server.port, cookie)
        try:
            await tab.send({
                "type": "send", "conversation": None, "content": "Hello",
                "client_id": "rate-1", "settings": {},
            })  # fmt: skip
            return await tab.until("conversation.created")
        finally:
            await tab.close()

    asyncio.run(question_from_a_tab())  # the third question this minute
    with pytest.raises(openai.RateLimitError):
        _ask(slow_server, token)
