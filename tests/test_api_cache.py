"""The response cache: used at temperature 0, or when the caller opts in (the `X-R1chat-Cache: on`
header or `extra_body={"cache": true}`); a hit replays the reasoning and the answer, streamed or
not, without asking the model, is counted in usage as `cached`, and shows in the admin's hit
ratio."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from review.models import UsageRecord
from tests.api_support import *  # noqa: F403
from tests.api_support import client_for, key_for, wait_until
from tests.chat_support import make_user

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def token(api_backend: Any) -> str:
    return key_for(make_user("alice"))[1]


def _question() -> list[dict[str, str]]:
    # A question of its own in every test: the server's cache outlives the test.
    return [{"role": "user", "content": f"How are mass and energy related? ({uuid.uuid4()})"}]


def _chat_requests(sim: Any) -> int:
    return len([r for r in sim.requests if r.path.endswith("/chat/completions")])


def _ask(server: Any, token: str, messages: list[dict[str, str]], **extra: Any) -> Any:
    """(the completion, the X-R1chat-Cache header)"""
    raw = client_for(server, token).chat.completions.with_raw_response.create(
        model="deepseek-v4-flash", messages=messages, **extra
    )
    return raw.parse(), raw.headers.get("X-R1chat-Cache")


def _stream(server: Any, token: str, messages: list[dict[str, str]], **extra: Any) -> Any:
    """(reasoning, answer, usage, the X-R1chat-Cache header) of a streamed call"""
    raw = client_for(server, token).chat.completions.with_raw_response.create(
        model="deepseek-v4-flash",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
        **extra,
    )
    reasoning = answer = ""
    usage = None
    for chunk in raw.parse():
        usage = chunk.usage or usage
        if chunk.choices:
            delta = chunk.choices[0].delta
            reasoning += getattr(delta, "reasoning_content", None) or ""
            answer += delta.content or ""
    return reasoning, answer, usage, raw.headers.get("X-R1chat-Cache")


def _sources() -> list[str]:
    return sorted(UsageRecord.objects.values_list("source", flat=True))


def test_temperature_zero_is_answered_from_the_cache_the_second_time(
    api_server: Any, token: str, sim: Any
) -> None:
    question = _question()
    first, state = _ask(api_server, token, question, temperature=0)
    assert state == "miss"
    second, state = _ask(api_server, token, question, temperature=0)
    assert state == "hit"
    assert _chat_requests(sim) == 1
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.choices[0].message.reasoning_content == first.choices[0].message.reasoning_content
    assert second.usage.completion_tokens == first.usage.completion_tokens
    assert second.id != first.id
    # streamed, the hit replays the reasoning, then the answer
    reasoning, answer, usage, state = _stream(api_server, token, question, temperature=0)
    assert state == "hit"
    assert (reasoning, answer) == (
        first.choices[0].message.reasoning_content,
        first.choices[0].message.content,
    )
    assert usage.completion_tokens_details.reasoning_tokens > 0
    assert _chat_requests(sim) == 1
    assert wait_until(lambda: _sources() == ["api", "cached", "cached"])


def test_a_streamed_answer_is_cached_for_the_next_call(
    api_server: Any, token: str, sim: Any
) -> None:
    question = _question()
    reasoning, answer, _usage, state = _stream(api_server, token, question, temperature=0)
    assert state == "miss"
    wait_until(lambda: UsageRecord.objects.exists())
    again, state = _ask(api_server, token, question, temperature=0)
    assert state == "hit"
    assert again.choices[0].message.content == answer
    assert again.choices[0].message.reasoning_content == reasoning


def test_without_opting_in_a_sampled_answer_is_never_cached(
    api_server: Any, token: str, sim: Any
) -> None:
    question = _question()
    for _ in range(2):
        _completion, state = _ask(api_server, token, question, temperature=0.7)
        assert state is None
    _completion, state = _ask(api_server, token, question)  # (no temperature: the model's own)
    assert state is None
    assert _chat_requests(sim) == 3
    assert wait_until(lambda: _sources() == ["api", "api", "api"])


@pytest.mark.parametrize(
    "opt_in",
    [{"extra_headers": {"X-R1chat-Cache": "on"}}, {"extra_body": {"cache": True}}],
    ids=["header", "extra_body"],
)
def test_a_caller_may_opt_in(api_server: Any, token: str, sim: Any, opt_in: Any) -> None:
    question = _question()
    _first, state = _ask(api_server, token, question, temperature=0.7, **opt_in)
    assert state == "miss"
    _second, state = _ask(api_server, token, question, temperature=0.7, **opt_in)
    assert state == "hit"
    assert _chat_requests(sim) == 1


@pytest.mark.parametrize(
    "opt_out",
    [{"extra_headers": {"X-R1chat-Cache": "off"}}, {"extra_body": {"cache": False}}],
    ids=["header", "extra_body"],
)
def test_a_caller_may_opt_out(api_server: Any, token: str, sim: Any, opt_out: Any) -> None:
    question = _question()
    _ask(api_server, token, question, temperature=0)
    _completion, state = _ask(api_server, token, question, temperature=0, **opt_out)
    assert state is None
    assert _chat_requests(sim) == 2


def test_other_parameters_or_models_miss(api_server: Any, token: str, sim: Any) -> None:
    question = _question()
    _ask(api_server, token, question, temperature=0)
    assert _ask(api_server, token, question, temperature=0, max_tokens=3000)[1] == "miss"
    assert _ask(api_server, token, question, temperature=0, stop=["x"])[1] == "miss"
    raw = client_for(api_server, token).chat.completions.with_raw_response.create(
        model="deepseek-v4-pro", messages=question, temperature=0
    )
    assert raw.headers.get("X-R1chat-Cache") == "miss"
    assert _chat_requests(sim) == 4


def test_the_admin_usage_shows_sources_and_the_hit_ratio(
    api_server: Any, token: str, sim: Any
) -> None:
    from review.testing import make_person

    question = _question()
    for _ in range(4):
        _ask(api_server, token, question, temperature=0)
    assert wait_until(lambda: UsageRecord.objects.count() == 4)
    root = make_person("root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    page = client.get(reverse("admin:review_usagerecord_changelist")).content.decode()
    assert 'id="usage-sources"' in page
    assert "usage-source-api" in page and "usage-source-cached" in page
    assert "75 %" in page  # 3 of 4 API calls from the cache
