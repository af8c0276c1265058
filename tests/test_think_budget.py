"""The maximum length is the answer's: where a server's limit counts the reasoning too, the
request makes room for it (turns/budget.py), and the slider reaches the model's limit."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

import r1chat.asgi  # noqa: F401
from conversations.backends.base import ModelInfo
from conversations.simulator import Scenario
from conversations.turns import catalog
from conversations.turns.budget import request_max_tokens
from tests.chat_support import (  # noqa: F401 (autouse fixtures: they apply to this module)
    Tab,
    fresh_layer_and_clients,
    generations_end_before_the_database_is_emptied,
    make_backend,
    make_user,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sim(simulator):
    simulator.reset()
    catalog.forget()
    yield simulator
    simulator.reset()


async def _ask(user, backend, **settings):
    tab = await Tab.open(user)
    await tab.send({"type": "send", "conversation": None, "content": "Hi",
                    "client_id": uuid.uuid4().hex,
                    "settings": {"backend": backend.pk, **settings}})  # fmt: skip
    await tab.until("message.created")
    reply = (await tab.until("message.created"))["message"]
    done = await tab.until("generation.done", message=reply["id"], timeout=15)
    await tab.close()
    return reply, done


def _last_chat(sim):
    """The last request that asked the question (not a title for the conversation)."""
    return [
        r for r in sim.requests
        if r.path.endswith(("/chat/completions", "/api/chat"))
        and r.body["messages"] == [{"role": "user", "content": "Hi"}]
    ][-1]  # fmt: skip


async def test_a_thinking_deepseek_request_adds_room_for_the_reasoning(sim):
    user = await sync_to_async(make_user)("alice")
    backend = await sync_to_async(make_backend)(sim.base_url)
    _reply, done = await _ask(user, backend, model="deepseek-v4-flash", deep_think=True)
    assert done["status"] == "complete"
    # V4's max_tokens counts the chain of thought: the answer's 2048 plus the allowance.
    assert _last_chat(sim).body["max_tokens"] == 2048 + 8192


async def test_without_thinking_the_answer_length_is_sent_as_it_is(sim):
    user = await sync_to_async(make_user)("alice")
    backend = await sync_to_async(make_backend)(sim.base_url)
    await _ask(user, backend, model="deepseek-v4-flash", deep_think=False, max_tokens=3000)
    assert _last_chat(sim).body["max_tokens"] == 3000
    # deepseek-chat writes at most 8K: a longer answer is asked for within it.
    await _ask(user, backend, model="deepseek-chat", deep_think=False, max_tokens=20000)
    assert _last_chat(sim).body["max_tokens"] == 8192


@override_settings(R1CHAT_REASONING_ALLOWANCE=1000)
async def test_ollama_num_predict_covers_the_thinking_and_the_context_holds_it(sim):
    sim.scenario = Scenario(profile="ollama-modern")
    user = await sync_to_async(make_user)("alice")
    backend = await sync_to_async(make_backend)(sim.base_url, kind="ollama")
    _reply, done = await _ask(user, backend, model="deepseek-r1:sim", max_tokens=9000)
    assert done["status"] == "complete"
    options = _last_chat(sim).body["options"]
    assert options["num_predict"] == 9000 + 1000
    assert options["num_ctx"] >= options["num_predict"] + 4096  # (the model has 131072)
    # A model that cannot think gets the answer's length alone.
    await _ask(user, backend, model="llama3.2:sim", max_tokens=9000)
    assert _last_chat(sim).body["options"]["num_predict"] == 9000


def test_the_request_stays_within_the_models_limits():
    info = ModelInfo("m", thinking="always", max_output_tokens=12000, context_length=32768)
    assert request_max_tokens(2048, model="m", info=info, thinking=True) == 10240
    assert request_max_tokens(8000, model="m", info=info, thinking=True) == 12000
    small = ModelInfo("m", thinking="always", context_length=4096)
    assert request_max_tokens(2048, model="m", info=small, thinking=True) == 4096
    assert request_max_tokens(None, model="m", info=info, thinking=True) is None


async def test_the_picker_reports_each_models_context_length(sim, client):
    user = await sync_to_async(make_user)("alice")
    await sync_to_async(make_backend)(sim.base_url, kind="ollama")
    await sync_to_async(client.force_login)(user)
    response = await sync_to_async(client.get)("/api/models")
    models = {m["name"]: m for b in response.json()["backends"] for m in b["models"]}
    # Ollama's /api/show model_info: the slider's range reaches it.
    assert models["deepseek-r1:sim"]["context_length"] == 131072
