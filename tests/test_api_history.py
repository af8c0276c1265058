"""Recording API calls in the owner's history: a setting per key, off by default; a recorded
call is a conversation like any chat (its question, the answer with its reasoning, rendered)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from conversations.models import Conversation, Message
from conversations.simulator import DEFAULT_SCRIPT
from review.models import UsageRecord
from tests.api_support import *  # noqa: F403
from tests.api_support import client_for, key_for, wait_until
from tests.chat_support import make_user

pytestmark = pytest.mark.timeout(90)

MESSAGES = [
    {"role": "system", "content": "Answer like a physicist."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi! What would you like to know?"},
    {"role": "user", "content": "How are mass and energy related?"},
]


@pytest.fixture
def alice(api_backend: Any) -> Any:
    return make_user("alice")


def test_calls_are_not_recorded_by_default(api_server: Any, alice: Any) -> None:
    _key, token = key_for(alice)
    client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash", messages=MESSAGES
    )
    assert wait_until(lambda: UsageRecord.objects.exists())
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize("stream", [False, True])
def test_a_recording_key_saves_the_call_as_a_chat(
    api_server: Any, alice: Any, stream: bool
) -> None:
    _key, token = key_for(alice, record=True)
    result = client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash", messages=MESSAGES, stream=stream
    )
    if stream:
        list(result)
    conversation = wait_until(lambda: Conversation.objects.filter(owner=alice).first())
    assert conversation is not None
    assert conversation.title == "How are mass and energy related?"
    assert conversation.settings["system_prompt"] == "Answer like a physicist."
    thread = list(Message.objects.filter(conversation=conversation).order_by("id"))
    assert [m.role for m in thread] == ["user", "assistant", "user", "assistant"]
    assert [m.parent_id for m in thread[1:]] == [m.pk for m in thread[:-1]]
    answer = thread[-1]
    assert conversation.current_leaf_id == answer.pk
    assert answer.status == Message.Status.COMPLETE
    assert answer.content == DEFAULT_SCRIPT.answer
    assert answer.reasoning == DEFAULT_SCRIPT.reasoning
    assert "<h2>" in answer.html and answer.reasoning_html
    assert answer.model == "deepseek-v4-flash" and answer.usage["completion_tokens"] > 0
    record = UsageRecord.objects.get(user=alice)
    assert record.message_uuid == answer.uuid and record.source == "api"
    # the owner opens it on the chat page like any conversation
    client = Client()
    client.force_login(alice)
    page = client.get(f"/c/{conversation.uuid}/")
    assert page.status_code == 200
    assert "Mass–energy equivalence" in page.content.decode()


def test_a_refused_call_records_nothing(api_server: Any, alice: Any) -> None:
    import openai

    _key, token = key_for(alice, record=True)
    with pytest.raises(openai.BadRequestError):
        client_for(api_server, token).chat.completions.create(
            model="deepseek-v4-flash", messages=MESSAGES, temperature=9
        )
    assert not Conversation.objects.exists()


def test_a_client_that_goes_away_stops_the_model_and_keeps_what_it_used(
    api_server: Any, alice: Any, sim: Any
) -> None:
    import httpx

    from conversations.simulator import Scenario

    sim.scenario = Scenario(token_rate=20, reasoning_tokens=200, answer_tokens=200)
    _key, token = key_for(alice, record=True)
    with httpx.stream(
        "POST",
        f"{api_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "deepseek-v4-flash", "messages": MESSAGES, "stream": True},
        timeout=30,
    ) as response:
        lines = response.iter_lines()
        seen = [next(lines) for _ in range(6)]
    assert any("reasoning_content" in line for line in seen)
    gone = sim.wait_for_disconnect(timeout=10)
    assert gone is not None and gone.path.endswith("/chat/completions")
    answer = wait_until(lambda: Message.objects.filter(role="assistant", status="stopped").last())
    assert answer is not None and answer.content == ""
    record = UsageRecord.objects.get(user=alice)
    assert record.message_uuid == answer.uuid
    assert record.completion_tokens > 0 and record.estimated
