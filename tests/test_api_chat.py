"""`/v1/models` and `/v1/chat/completions` driven by the official `openai` client against r1chat
served by Daphne, with the model simulator behind it: streamed and not, reasoning read from
`reasoning_content`, usage with reasoning tokens, parameters relayed to the model server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conversations.simulator import DEFAULT_SCRIPT, Scenario
from tests.api_support import *  # noqa: F403
from tests.api_support import client_for, key_for, wait_until
from tests.chat_support import make_user

pytestmark = pytest.mark.timeout(90)

QUESTION = [{"role": "user", "content": "How are mass and energy related?"}]


@pytest.fixture
def alice(api_backend: Any) -> Any:
    return make_user("alice")


def test_models_lists_the_simulators_models(api_server: Any, alice: Any) -> None:
    _key, token = key_for(alice)
    ids = [m.id for m in client_for(api_server, token).models.list()]
    assert "deepseek-v4-flash" in ids and "deepseek-reasoner" in ids


def test_one_model_is_retrieved_by_its_id(api_server: Any, alice: Any) -> None:
    import openai

    _key, token = key_for(alice, models=["deepseek-chat", "simulator/deepseek-reasoner"])
    client = client_for(api_server, token)
    model = client.models.retrieve("deepseek-chat")
    assert (model.id, model.object, model.owned_by) == ("deepseek-chat", "model", "Simulator")
    assert client.models.retrieve("simulator/deepseek-reasoner").id == "deepseek-reasoner"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("deepseek-v4-flash")  # outside the key's scope
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-17")


def test_a_streamed_answer_carries_reasoning_and_answer(api_server: Any, alice: Any) -> None:
    _key, token = key_for(alice)
    stream = client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning, answer, finish, usage, roles = "", "", None, None, []
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        roles.append(delta.role)
        reasoning += getattr(delta, "reasoning_content", None) or ""
        answer += delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    assert reasoning == DEFAULT_SCRIPT.reasoning
    assert answer == DEFAULT_SCRIPT.answer
    assert finish == "stop"
    assert roles[0] == "assistant"
    assert usage is not None and usage.completion_tokens > 0
    assert usage.completion_tokens_details.reasoning_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_whole_answer_has_reasoning_content(api_server: Any, alice: Any) -> None:
    _key, token = key_for(alice)
    completion = client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash", messages=QUESTION
    )
    message = completion.choices[0].message
    assert message.role == "assistant"
    assert message.reasoning_content == DEFAULT_SCRIPT.reasoning
    assert message.content == DEFAULT_SCRIPT.answer
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "deepseek-v4-flash"
    assert completion.usage.completion_tokens_details.reasoning_tokens > 0


def test_parameters_reach_the_model_server(api_server: Any, alice: Any, sim: Any) -> None:
    _key, token = key_for(alice)
    client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash",
        messages=[{"role": "system", "content": "Be brief."}, *QUESTION],
        temperature=0.3,
        top_p=0.9,
        max_tokens=4000,
        stop=["END"],
        extra_body={"thinking": {"type": "disabled"}},
    )
    body = [r for r in sim.requests if r.path.endswith("/chat/completions")][-1].body
    assert body["temperature"] == 0.3
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 4000
    assert body["stop"] == ["END"]
    assert body["thinking"] == {"type": "disabled"}
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, *QUESTION]


def test_max_tokens_ends_with_length(api_server: Any, alice: Any, sim: Any) -> None:
    sim.scenario = Scenario(fault="length_while_thinking")
    _key, token = key_for(alice)
    completion = client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash", messages=QUESTION, max_tokens=5
    )
    assert completion.choices[0].finish_reason == "length"


def test_an_error_mid_stream_reaches_the_client(api_server: Any, alice: Any, sim: Any) -> None:
    import openai

    sim.scenario = Scenario(fault="midstream_error", fault_after_tokens=5)
    _key, token = key_for(alice)
    stream = client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash", messages=QUESTION, stream=True
    )
    with pytest.raises(openai.APIError):
        for _chunk in stream:
            pass


def test_the_model_server_down_before_the_first_token_is_a_status(
    api_server: Any, alice: Any, sim: Any
) -> None:
    import openai

    sim.scenario = Scenario(fault="http_error", http_status=401)
    _key, token = key_for(alice)
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(api_server, token).chat.completions.create(
            model="deepseek-v4-flash", messages=QUESTION, stream=True
        )
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "auth"
    assert "Bearer" not in str(caught.value.body)


def test_usage_is_recorded_as_api(api_server: Any, alice: Any) -> None:
    from review.models import UsageRecord

    _key, token = key_for(alice)
    client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash", messages=QUESTION
    )
    record = wait_until(lambda: UsageRecord.objects.filter(user=alice).first())
    assert record is not None
    assert record.source == "api"
    assert record.model == "deepseek-v4-flash"
    assert record.completion_tokens > 0 and record.reasoning_tokens > 0


def test_the_raw_stream_is_server_sent_events_ending_with_done(api_server: Any, alice: Any) -> None:
    import httpx

    _key, token = key_for(alice)
    with httpx.stream(
        "POST",
        f"{api_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {token}"},
        json={"model": "deepseek-v4-flash", "messages": QUESTION, "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "no-cache" in response.headers["cache-control"]
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)  # not asked for
    assert [c["choices"][0]["finish_reason"] for c in chunks].count("stop") == 1
