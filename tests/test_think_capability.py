"""Thinking capability is learned from what a model streams and remembered per backend and
model; the name (or the server's metadata) only seeds the first guess."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async

import r1chat.asgi  # noqa: F401
from conversations.models import Message, ModelCapability
from conversations.simulator import Scenario
from conversations.turns import catalog
from tests.chat_support import (  # noqa: F401 (autouse fixtures: they apply to this module)
    Tab,
    fresh_layer_and_clients,
    generations_end_before_the_database_is_emptied,
    make_backend,
    make_user,
)

pytestmark = pytest.mark.django_db(transaction=True)

# A GGUF import: /api/show lists no `thinking`, yet its template passes <think> through.
GGUF = "mymodel-q4_k_m:sim"


@pytest.fixture
def sim(simulator):
    simulator.reset()
    simulator.scenario = Scenario(
        profile="ollama-modern",
        ollama_models={GGUF: ["completion"], "llama3.2:sim": ["completion", "tools"]},
        inline_think_models=(GGUF,),
    )
    catalog.forget()
    catalog.forget_learned()
    yield simulator
    simulator.reset()
    catalog.forget_learned()


async def _models(client, user):
    await sync_to_async(client.force_login)(user)
    response = await sync_to_async(client.get)("/api/models")
    return {m["name"]: m for b in response.json()["backends"] for m in b["models"]}


async def _ask(tab, backend, model, conversation=None):
    settings = {"backend": backend.pk, "model": model, "deep_think": False}
    await tab.send({"type": "send", "conversation": conversation, "content": "Hi",
                    "client_id": uuid.uuid4().hex, "settings": settings})  # fmt: skip
    reply = None
    while reply is None:
        frame = await tab.until("message.created")
        if frame["message"]["role"] == "assistant":
            reply = frame["message"]
    done = await tab.until("generation.done", message=reply["id"], timeout=15)
    return reply, done


async def _learned(backend, model, timeout=5.0):
    for _ in range(int(timeout / 0.05)):
        row = await ModelCapability.objects.filter(backend=backend, model=model).afirst()
        if row is not None:
            return row.thinking
        await asyncio.sleep(0.05)
    return None


async def test_a_gguf_model_that_streams_reasoning_is_learned_to_think(sim, client):
    user = await sync_to_async(make_user)("alice")
    backend = await sync_to_async(make_backend)(sim.base_url, kind="ollama")
    # First guess from the server's metadata: it cannot think (Deep Think off and locked).
    assert (await _models(client, user))[GGUF]["thinking"] == "never"

    tab = await Tab.open(user)
    first, done = await _ask(tab, backend, GGUF)
    assert done["status"] == "complete"
    stored = await Message.objects.aget(uuid=first["id"])
    assert stored.reasoning and not stored.deep_think  # it thought, unasked
    assert await _learned(backend, GGUF) == "always"

    # After its first reply the picker shows it as a thinking model, in every process (the
    # row) and after this one forgets what it cached.
    catalog.forget_learned()
    assert (await _models(client, user))[GGUF]["thinking"] == "always"
    # The next answer is recorded as a thinking one (Deep Think on, locked).
    second, _done = await _ask(tab, backend, GGUF)
    assert (await Message.objects.aget(uuid=second["id"])).deep_think is True
    await tab.close()


async def test_a_model_that_streams_no_reasoning_is_not_marked(sim, client):
    user = await sync_to_async(make_user)("alice")
    backend = await sync_to_async(make_backend)(sim.base_url, kind="ollama")
    tab = await Tab.open(user)
    _reply, done = await _ask(tab, backend, "llama3.2:sim")
    assert done["status"] == "complete"
    await asyncio.sleep(0.3)
    assert not await ModelCapability.objects.filter(backend=backend).aexists()
    assert (await _models(client, user))["llama3.2:sim"]["thinking"] == "never"
    await tab.close()


async def test_what_is_learned_is_per_backend(sim, client):
    user = await sync_to_async(make_user)("alice")
    first = await sync_to_async(make_backend)(sim.base_url, kind="ollama")
    second = await sync_to_async(make_backend)(sim.base_url, kind="ollama")
    await ModelCapability.objects.acreate(backend=first, model=GGUF, thinking="always")
    catalog.forget_learned()
    await sync_to_async(client.force_login)(user)
    response = await sync_to_async(client.get)("/api/models")
    by_backend = {
        b["id"]: {m["name"]: m["thinking"] for m in b["models"]}
        for b in response.json()["backends"]
    }
    assert by_backend[first.pk][GGUF] == "always"
    assert by_backend[second.pk][GGUF] == "never"
