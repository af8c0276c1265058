"""Continue generating: an answer cut off at the maximum length goes on in the same message."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async

import r1chat.asgi  # noqa: F401  (Django's logging set up before any test, as elsewhere)
from conversations.models import Message
from conversations.simulator import DEFAULT_SCRIPT, Scenario
from tests.chat_support import (  # noqa: F401 (autouse fixtures: they apply to this module)
    Tab,
    fresh_layer_and_clients,
    generations_end_before_the_database_is_emptied,
    make_backend,
    make_user,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def alice(sim):
    # Alice owns the conversation; Bob may not continue her answers.
    user = await sync_to_async(make_user)("alice")
    backend = await sync_to_async(make_backend)(sim.base_url)
    return user, backend


def _chat_requests(sim):
    return [r for r in sim.requests if r.path.endswith("/chat/completions")]


async def _cut_off_answer(tab: Tab, backend, max_tokens: int = 12):
    """A question to deepseek-chat (no thinking) whose answer stops at the length limit."""
    await tab.send({
        "type": "send", "conversation": None, "content": "Mass and energy?",
        "client_id": uuid.uuid4().hex,
        "settings": {"backend": backend.pk, "model": "deepseek-chat", "deep_think": False,
                     "max_tokens": max_tokens},
    })  # fmt: skip
    created = await tab.until("conversation.created")
    await tab.until("message.created")
    reply = (await tab.until("message.created"))["message"]
    done = await tab.until("generation.done", message=reply["id"], timeout=15)
    return created["conversation"]["id"], reply["id"], done


async def test_continue_generating_appends_to_the_same_message(alice, sim):
    user, backend = alice
    tab = await Tab.open(user)
    # 113 answer tokens, 40 at a time: cut off twice, then whole.
    conversation, message_id, done = await _cut_off_answer(tab, backend, max_tokens=40)
    assert (done["status"], done["finish_reason"]) == ("complete", "length")
    cut = await Message.objects.aget(uuid=message_id)
    assert cut.content and len(cut.content) < len(DEFAULT_SCRIPT.answer)
    # A second tab on the conversation sees the continuation too.
    other = await Tab.open(user)
    await other.send({"type": "subscribe", "conversation": conversation})

    shown, reasons = cut.content, []
    for _ in range(2):
        await tab.send({"type": "continue", "message": message_id})
        for each in (tab, other):
            continued = await each.until("generation.continued", message=message_id)
            assert continued["answer"] == shown and continued["status"] == "streaming"
        deltas_from = len(tab.frames)
        finished = await tab.until("generation.done", message=message_id, timeout=15)
        seen = await other.until("generation.done", message=message_id, timeout=15)
        assert finished["status"] == seen["status"] == "complete"
        reasons.append(finished["finish_reason"])
        added = "".join(
            f.get("answer", "") for f in tab.frames[deltas_from:]
            if f["type"] == "generation.delta" and f["message"] == message_id
        )  # fmt: skip
        assert added  # only the new text travels; the tab keeps what it showed
        shown += added
    assert reasons == ["length", "stop"]

    # The same message holds the whole answer; no new message was made.
    assert await Message.objects.filter(conversation__uuid=conversation).acount() == 2
    whole = await Message.objects.aget(uuid=message_id)
    assert whole.content == shown == DEFAULT_SCRIPT.answer
    assert (whole.status, whole.finish_reason) == ("complete", "stop")
    assert whole.finished_at > cut.finished_at
    # Usage of the three requests together.
    assert whole.usage["completion_tokens"] == 113
    # The model was sent the thread with the answer so far as the last, assistant, message.
    request = _chat_requests(sim)[-1].body
    assert request["messages"][-1]["role"] == "assistant"
    assert DEFAULT_SCRIPT.answer.startswith(request["messages"][-1]["content"])
    assert len(request["messages"][-1]["content"]) > len(cut.content)
    assert request["messages"][-2] == {"role": "user", "content": "Mass and energy?"}
    assert request["max_tokens"] == 40
    await tab.close()
    await other.close()


async def test_a_finished_answer_cannot_be_continued(alice, sim):
    user, backend = alice
    tab = await Tab.open(user)
    _conversation, message_id, done = await _cut_off_answer(tab, backend, max_tokens=4000)
    assert done["finish_reason"] == "stop"
    await tab.send({"type": "continue", "message": message_id})
    error = await tab.until("error")
    assert error["code"] == "invalid"
    assert (await Message.objects.aget(uuid=message_id)).status == "complete"
    await tab.close()


async def test_another_users_answer_is_not_found(alice, sim):
    user, backend = alice
    tab = await Tab.open(user)
    _conversation, message_id, _done = await _cut_off_answer(tab, backend)
    bob = await sync_to_async(make_user)("bob")
    intruder = await Tab.open(bob)
    await intruder.send({"type": "continue", "message": message_id})
    assert (await intruder.until("error"))["code"] == "not_found"
    assert (await Message.objects.aget(uuid=message_id)).finish_reason == "length"
    await tab.close()
    await intruder.close()


async def test_a_continue_frame_needs_a_message_id(alice):
    user, _backend = alice
    tab = await Tab.open(user)
    await tab.send({"type": "continue", "message": 7})
    assert (await tab.until("error"))["code"] == "invalid"
    await tab.close()


def test_deepseek_gets_the_answer_so_far_as_a_prefix_on_its_beta_endpoint():
    from conversations.backends.base import ChatRequest
    from conversations.backends.openai import build_body, is_deepseek_host

    request = ChatRequest(
        model="deepseek-v4-flash",
        messages=[{"role": "user", "content": "Q"}, {"role": "assistant", "content": "The st"}],
        deep_think=False,
        continue_answer=True,
    )
    body = build_body(request, prefix=True)
    assert body["messages"][-1] == {"role": "assistant", "content": "The st", "prefix": True}
    assert body["thinking"] == {"type": "disabled"}
    # Other servers get the trailing assistant message as it is (they continue it).
    assert "prefix" not in build_body(request)["messages"][-1]
    assert is_deepseek_host("https://api.deepseek.com")
    assert is_deepseek_host("https://api.deepseek.com/v1")
    assert not is_deepseek_host("https://deepseek.com.example.org")
    assert not is_deepseek_host("http://127.0.0.1:8000")


@pytest.mark.django_db(transaction=True)
async def test_an_ollama_thinking_model_continues_its_answer_without_thinking_again(sim):
    from django.test import override_settings

    sim.scenario = Scenario(profile="ollama-modern")
    user = await sync_to_async(make_user)("alice")
    backend = await sync_to_async(make_backend)(sim.base_url, kind="ollama")
    tab = await Tab.open(user)
    with override_settings(R1CHAT_REASONING_ALLOWANCE=100):
        await tab.send({"type": "send", "conversation": None, "content": "Q",
                        "client_id": uuid.uuid4().hex,
                        "settings": {"backend": backend.pk, "model": "deepseek-r1:sim",
                                     "deep_think": True, "max_tokens": 30}})  # fmt: skip
        await tab.until("message.created")
        reply = (await tab.until("message.created"))["message"]
        done = await tab.until("generation.done", message=reply["id"], timeout=15)
        assert done["finish_reason"] == "length" and not done["reasoning_unterminated"]
        cut = await Message.objects.aget(uuid=reply["id"])
        await tab.send({"type": "continue", "message": reply["id"]})
        await tab.until("generation.done", message=reply["id"], timeout=15)
    body = [
        r.body for r in sim.requests
        if r.path == "/api/chat" and r.body["messages"][-1]["role"] == "assistant"
    ][-1]  # fmt: skip
    assert body["think"] is False  # the reasoning is done: the answer goes on
    assert body["messages"][-1] == {"role": "assistant", "content": cut.content}
    assert body["options"]["num_predict"] == 30
    whole = await Message.objects.aget(uuid=reply["id"])
    assert whole.reasoning == cut.reasoning  # the thought is kept as it was
    assert whole.content.startswith(cut.content) and len(whole.content) > len(cut.content)
    await tab.close()
