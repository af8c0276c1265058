"""The chat socket through the real ASGI application, against the simulator over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

# (first, so Django's logging set-up, which importing the application runs, is not redone
# inside a test: it would take pytest's log capture off the root logger)
import r1chat.asgi  # noqa: F401
from conversations.models import Conversation, Message
from conversations.runner import generation
from conversations.simulator import Scenario
from conversations.turns import actions
from tests.chat_support import (  # noqa: F401 (autouse fixtures: they apply to this module)
    Tab,
    assemble,
    fresh_layer_and_clients,
    generations_end_before_the_database_is_emptied,
    make_backend,
    make_user,
    redis_url_or_skip,
    session_cookie,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def alice(sim):
    # Alice owns the conversations; Bob may see none of them.
    user = await sync_to_async(make_user)("alice")
    backend = await sync_to_async(make_backend)(sim.base_url)
    return user, backend


async def _send(tab: Tab, content: str = "How are mass and energy related?", **extra):
    frame = {"type": "send", "conversation": None, "content": content,
             "client_id": uuid.uuid4().hex, **extra}  # fmt: skip
    await tab.send(frame)
    created = await tab.until("conversation.created")
    user_msg = await tab.until("message.created")
    reply = await tab.until("message.created")
    assert user_msg["message"]["role"] == "user" and reply["message"]["role"] == "assistant"
    return created["conversation"]["id"], user_msg["message"]["id"], reply["message"]["id"]


# --- connecting ---------------------------------------------------------------------------


async def test_socket_without_sign_in_is_closed():
    from r1chat.asgi import application

    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await ws.connect()
    assert not connected
    assert code == 4401


async def test_foreign_origin_is_rejected(alice):
    user, _backend = alice
    with pytest.raises(AssertionError):
        await Tab.open(user, origin="http://evil.example")


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "accepted"),
    [
        ("http://localhost:8000", "localhost:8000", "ws", True),
        ("https://localhost", "localhost", "wss", True),
        ("http://localhost:8001", "localhost:8000", "ws", False),  # another port
        ("http://localhost", "localhost", "wss", False),  # http page, https site
        ("https://localhost:8000", "localhost:8000", "ws", False),
        ("http://localhost:8000", "evil.example:8000", "ws", False),  # not an allowed host
    ],
)
async def test_only_the_exact_origin_of_the_site_may_open_the_socket(
    alice, origin: str, host: str, scheme: str, accepted: bool
):
    from r1chat.asgi import application

    user, _backend = alice
    cookie = await sync_to_async(session_cookie)(user)
    headers = [(b"origin", origin.encode()), (b"host", host.encode()), (b"cookie", cookie.encode())]
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    ws.scope["scheme"] = scheme
    connected, _ = await ws.connect()
    assert connected is accepted
    await ws.disconnect()


async def test_missing_origin_is_rejected(alice):
    from r1chat.asgi import application

    ws = WebsocketCommunicator(application, "/ws/chat/", headers=[(b"host", b"localhost")])
    connected, _ = await ws.connect()
    assert not connected


# --- bad frames ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_json"),
        ("[1, 2]", "invalid"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "send", "conversation": null, "content": 5, "client_id": "a"}', "invalid"),
        ('{"type": "send", "conversation": null, "content": "  ", "client_id": "a"}', "empty"),
        ('{"type": "send", "conversation": null, "content": "hi"}', "invalid"),
        ('{"type": "send", "conversation": 7, "content": "hi", "client_id": "a"}', "invalid"),
        ('{"type": "stop", "message": "not-a-uuid"}', "not_found"),
        ('{"type": "send", "conversation": null, "content": "hi", "client_id": "a", '
         '"settings": {"temperature": "hot"}}', "invalid"),
        ('{"type": "send", "conversation": null, "content": "hi", "client_id": "a", '
         '"settings": {"temperature": 9}}', "invalid"),
        ('{"type": "send", "conversation": null, "content": "hi", "client_id": "a", '
         '"settings": {"evil": 1}}', "invalid"),
    ],
)  # fmt: skip
async def test_a_bad_frame_gets_an_error_and_the_socket_stays_open(alice, raw, code):
    user, _backend = alice
    tab = await Tab.open(user)
    await tab.ws.send_to(text_data=raw)
    error = await tab.until("error")
    assert error["code"] == code
    assert error["detail"]
    # Still serving: a good frame works afterwards.
    await tab.send({"type": "subscribe", "conversation": None})
    await tab.send({"type": "stop", "message": str(uuid.uuid4())})
    assert (await tab.until("error"))["code"] == "not_found"
    await tab.close()


async def test_an_oversized_message_is_refused_and_nothing_is_stored(alice):
    user, _backend = alice
    tab = await Tab.open(user)
    await tab.send(
        {"type": "send", "conversation": None, "content": "x" * 100_001, "client_id": "big"}
    )
    assert (await tab.until("error"))["code"] in {"too_long", "too_large"}
    assert await Message.objects.acount() == 0
    await tab.close()


# --- a whole generation ---------------------------------------------------------------------


async def test_send_streams_reasoning_then_answer_and_saves_it(alice, sim):
    user, _backend = alice
    tab = await Tab.open(user)
    conv_id, _user_msg, reply_id = await _send(tab)
    done = await tab.until("generation.done", message=reply_id)
    assert done["status"] == "complete"
    reasoning, answer, seqs = assemble(tab.frames, reply_id)
    assert (reasoning, answer) == sim.expected()
    assert seqs == list(range(1, len(seqs) + 1)), "frames carry consecutive sequence numbers"
    assert done["seq"] == seqs[-1] + 1
    assert "<math" in done["html"] and "highlight" in done["html"]
    message = await Message.objects.aget(uuid=reply_id)
    assert message.status == "complete"
    assert (message.reasoning, message.content) == sim.expected()
    assert message.html == done["html"]
    assert message.usage.get("completion_tokens")
    assert message.reasoning_started_at <= message.answer_started_at <= message.finished_at
    assert done["timings"]["thought_seconds"] is not None
    # Titled from the first message at once, then by the model in the background.
    created = next(f for f in tab.frames if f["type"] == "conversation.created")
    assert created["conversation"]["title"] == "How are mass and energy related?"
    updated = await tab.until("conversation.updated")
    assert updated["conversation"]["title"] == "Mass–energy equivalence ⚡"
    conversation = await Conversation.objects.aget(uuid=conv_id)
    assert conversation.title == "Mass–energy equivalence ⚡" and conversation.title_generated
    # Reasoning is never sent back to a model: the history went out as {role, content}.
    chat = next(r for r in sim.requests if r.path.endswith("/chat/completions"))
    assert chat.body["messages"] == [
        {"role": "user", "content": "How are mass and energy related?"}
    ]
    await tab.close()


async def test_a_follow_up_sends_the_history_without_reasoning(alice, sim):
    user, _backend = alice
    tab = await Tab.open(user)
    conv_id, _u, reply_id = await _send(tab)
    await tab.until("generation.done", message=reply_id)
    await tab.send({"type": "send", "conversation": conv_id, "content": "And for a kilogram?",
                    "client_id": "second"})  # fmt: skip
    second = await tab.until("message.created", conversation=conv_id)
    second = await tab.until("message.created", conversation=conv_id)
    await tab.until("generation.done", message=second["message"]["id"])
    # The follow-up's request (the background title request may come after it).
    chats = [r for r in sim.requests if r.path.endswith("/chat/completions")]
    sent = next(
        r.body["messages"]
        for r in chats
        if r.body["messages"][-1]["content"] == "And for a kilogram?"
    )
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == sim.expected()[1]
    assert all(set(m) == {"role", "content"} for m in sent)
    assert sim.expected()[0] not in str(sent)  # (the answer itself quotes a literal <think>)
    await tab.close()


async def test_a_question_sent_again_while_its_answer_streams_is_a_duplicate(alice, sim):
    user, _backend = alice
    sim.scenario = Scenario(token_rate=20)
    tab = await Tab.open(user)
    conv_id, _question, reply_id = await _send(tab)
    await tab.until("generation.done", message=reply_id, timeout=30)
    frame = {"type": "send", "conversation": conv_id, "content": "again", "client_id": "twice"}
    await tab.send(frame)
    await tab.until("message.created")  # the question; its answer streams now
    await tab.send(frame)  # (a tab unsure whether it arrived)
    error = await tab.until("error")
    assert (error["code"], error["ref"]) == ("duplicate", "twice")
    assert await Message.objects.filter(client_id="twice").acount() == 1
    await tab.close()


async def test_the_same_client_id_twice_makes_one_message(alice):
    user, _backend = alice
    tab = await Tab.open(user)
    frame = {"type": "send", "conversation": None, "content": "hello", "client_id": "once"}
    await tab.send(frame)
    await tab.send(frame)
    duplicate = await tab.until("error")
    assert duplicate["code"] == "duplicate" and duplicate["ref"] == "once"
    reply = None
    while reply is None:
        frame_in = await tab.until("message.created")
        if frame_in["message"]["role"] == "assistant":
            reply = frame_in["message"]["id"]
    await tab.until("generation.done", message=reply)
    assert await Message.objects.filter(role="user").acount() == 1
    assert await Message.objects.filter(role="assistant").acount() == 1
    assert await Conversation.objects.acount() == 1
    await tab.close()


async def test_a_burst_of_first_messages_is_stored_together(alice, sim):
    # The first tokens arrive together, so the eight new conversations come due together.
    sim.scenario = Scenario(first_token_delay=0.3)
    user, _backend = alice
    tabs = [await Tab.open(user) for _ in range(8)]
    sends = [
        {"type": "send", "conversation": None, "content": f"Question {i}",
         "client_id": uuid.uuid4().hex, "settings": {"temperature": 0.3}}
        for i in range(8)
    ]  # fmt: skip
    await asyncio.gather(*(tab.send(frame) for tab, frame in zip(tabs, sends, strict=True)))
    for tab in tabs:
        reply = None
        while reply is None:
            created = await tab.until("message.created")
            if created["message"]["role"] == "assistant":
                reply = created["message"]["id"]
        done = await tab.until("generation.done", message=reply)
        assert done["status"] == "complete"
    await asyncio.gather(*(tab.close() for tab in tabs))

    conversations = [c async for c in Conversation.objects.select_related("current_leaf__parent")]
    assert sorted(c.current_leaf.parent.content for c in conversations) == [
        f"Question {i}" for i in range(8)
    ]
    for conversation in conversations:
        assert conversation.current_leaf.status == "complete"
        assert conversation.current_leaf.conversation_id == conversation.pk
        assert conversation.current_leaf.parent.conversation_id == conversation.pk
        assert conversation.settings["temperature"] == 0.3


def _new_turn(user, i: int, owner_id: int | None = None):
    conversation = Conversation(owner=user, title=f"Question {i}")
    if owner_id is not None:
        conversation.owner_id = owner_id
    question = Message(
        conversation=conversation, role="user", content=f"Question {i}", created_at=timezone.now()
    )
    config = {"backend_id": None, "backend_name": "", "model": "m", "deep_think": True,
              "enhanced_reasoning": True, "temperature": 0.3, "max_tokens": 64,
              "stored": {"temperature": 0.3}}  # fmt: skip
    answer = actions._new_assistant(conversation, question, config)
    return actions.Turn(conversation, True, question, answer, config, history=[question],
                        user_versions=[question], assistant_versions=[answer])  # fmt: skip


async def test_stop_closes_the_upstream_connection_within_a_second(alice, sim):
    user, _backend = alice
    sim.scenario = Scenario(token_rate=20)
    tab = await Tab.open(user)
    _conv, _u, reply_id = await _send(tab)
    await tab.until("generation.delta", message=reply_id)
    stopped_at = asyncio.get_running_loop().time()
    await tab.send({"type": "stop", "message": reply_id})
    request = await sim.await_disconnect(1.0)
    assert request is not None and request.client_disconnected
    done = await tab.until("generation.done", message=reply_id)
    assert done["status"] == "stopped"
    assert asyncio.get_running_loop().time() - stopped_at < 1.0
    message = await Message.objects.aget(uuid=reply_id)
    assert message.status == "stopped" and message.reasoning  # partial text kept
    # A new prompt is accepted at once.
    conv_id = str((await Conversation.objects.aget()).uuid)
    sim.scenario = Scenario()
    await tab.send({"type": "send", "conversation": conv_id, "content": "again", "client_id": "2"})
    await tab.until("message.created", conversation=conv_id)
    await tab.close()


async def test_disconnecting_mid_stream_does_not_stop_the_generation(alice, sim):
    user, _backend = alice
    sim.scenario = Scenario(token_rate=400)
    tab = await Tab.open(user)
    _conv, _u, reply_id = await _send(tab)
    await tab.until("generation.delta", message=reply_id)
    await tab.close()
    for _ in range(100):
        # (A new conversation's rows are written once the model has answered: poll.)
        message = await Message.objects.filter(uuid=reply_id).afirst()
        if message is not None and message.status != "streaming":
            break
        await asyncio.sleep(0.1)
    assert message.status == "complete"
    assert (message.reasoning, message.content) == sim.expected()


async def test_a_tab_that_subscribes_mid_stream_gets_everything_once(alice, sim):
    user, _backend = alice
    sim.scenario = Scenario(token_rate=150)
    first = await Tab.open(user)
    conv_id, _u, reply_id = await _send(first)
    await first.until("generation.delta", message=reply_id)
    await asyncio.sleep(0.3)
    second = await Tab.open(user)
    await second.send({"type": "subscribe", "conversation": conv_id})
    snapshot = await second.until("generation.snapshot", message=reply_id)
    assert snapshot["seq"] >= 1 and snapshot["reasoning"]
    await second.until("generation.done", message=reply_id)
    await first.until("generation.done", message=reply_id)
    for tab in (first, second):
        reasoning, answer, seqs = assemble(tab.frames, reply_id)
        assert (reasoning, answer) == sim.expected()
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "no gap, no duplicate"
    await first.close()
    await second.close()


@sync_to_async
def _streaming_reply(user, backend, **times) -> tuple[str, str]:
    """A conversation whose answer is still `streaming` with some text (no runner behind it)."""
    conversation = Conversation.objects.create(owner=user, title="old")
    question = Message.objects.create(conversation=conversation, role="user", content="q")
    reply = Message.objects.create(
        conversation=conversation, parent=question, role="assistant", status="streaming",
        reasoning="I was thinking", content="Half an ans", backend=backend, **times,
    )  # fmt: skip
    return str(conversation.uuid), str(reply.uuid)


async def test_a_dead_generation_is_shown_as_interrupted_with_its_text(alice):
    """A generation whose process died (its heartbeat stops) is swept to `interrupted`, and a
    tab showing it gets the terminal frame with the text kept."""
    from conversations.runner.generation import sweep_stale

    user, backend = alice

    conv_id, reply_id = await _streaming_reply(user, backend, heartbeat_at=timezone.now())
    tab = await Tab.open(user)
    await tab.send({"type": "subscribe", "conversation": conv_id})
    # No runner answers the snapshot request: the stored text comes instead.
    shown = await tab.until("message.updated")
    assert shown["message"]["id"] == reply_id
    assert shown["message"]["status"] == "streaming"
    # Its process is gone: the heartbeat goes stale and the sweep (of any process) ends it.
    old = timezone.now() - dt.timedelta(minutes=5)
    await Message.objects.filter(uuid=reply_id).aupdate(heartbeat_at=old)
    await sweep_stale()
    done = await tab.until("generation.done", message=reply_id)
    assert done["status"] == "interrupted"
    assert done["error"]["retryable"] is True
    message = await Message.objects.aget(uuid=reply_id)
    assert message.status == "interrupted"
    assert (message.reasoning, message.content) == ("I was thinking", "Half an ans")
    await tab.close()


async def test_subscribing_to_a_dead_generation_ends_it(alice):
    """A tab that subscribes to a stale streaming message ends it itself (or finds it ended by
    the sweep, which a tab then learns through its reconcile request)."""
    user, backend = alice

    old = timezone.now() - dt.timedelta(minutes=5)
    conv_id, reply_id = await _streaming_reply(user, backend, heartbeat_at=old, created_at=old)
    tab = await Tab.open(user)
    await tab.send({"type": "subscribe", "conversation": conv_id})
    for _ in range(50):
        message = await Message.objects.aget(uuid=reply_id)
        if message.status != "streaming":
            break
        await asyncio.sleep(0.05)
    assert message.status == "interrupted"
    assert (message.reasoning, message.content) == ("I was thinking", "Half an ans")
    await tab.close()


# --- versions -------------------------------------------------------------------------------


async def test_regenerate_keeps_both_versions_and_switch_follows_the_chosen_one(alice, sim):
    user, _backend = alice
    tab = await Tab.open(user)
    conv_id, user_id, first_id = await _send(tab)
    await tab.until("generation.done", message=first_id)
    sim.scenario = Scenario(answer_text="A second answer.")
    await tab.send({"type": "regenerate", "message": first_id})
    created = await tab.until("message.created", conversation=conv_id)
    second_id = created["message"]["id"]
    assert created["message"]["parent"] == user_id
    assert created["message"]["versions"]["count"] == 2
    await tab.until("generation.done", message=second_id)
    await tab.send({"type": "switch", "message": first_id})
    thread = await tab.until("thread", conversation=conv_id)
    assert [m["id"] for m in thread["messages"]] == [user_id, first_id]
    assert thread["messages"][1]["versions"] == {
        "index": 1,
        "count": 2,
        "ids": [first_id, second_id],
    }
    await tab.send({"type": "switch", "message": second_id})
    thread = await tab.until("thread", conversation=conv_id)
    assert thread["messages"][1]["content"] == "A second answer."
    await tab.close()


async def test_edit_makes_a_new_version_of_the_question(alice, sim):
    user, _backend = alice
    tab = await Tab.open(user)
    conv_id, user_id, first_id = await _send(tab)
    await tab.until("generation.done", message=first_id)
    await tab.send({"type": "edit", "message": user_id, "content": "What about momentum?"})
    edited = await tab.until("message.created", conversation=conv_id)
    reply = await tab.until("message.created", conversation=conv_id)
    assert edited["message"]["content"] == "What about momentum?"
    assert edited["message"]["versions"]["count"] == 2
    await tab.until("generation.done", message=reply["message"]["id"])
    chats = [r for r in sim.requests if r.path.endswith("/chat/completions")]
    edited_request = [{"role": "user", "content": "What about momentum?"}]
    assert any(r.body["messages"] == edited_request for r in chats)
    await tab.send({"type": "switch", "message": user_id})
    thread = await tab.until("thread", conversation=conv_id)
    assert [m["id"] for m in thread["messages"]] == [user_id, first_id]
    await tab.close()


# --- other people's ids ---------------------------------------------------------------------


async def test_another_users_ids_are_not_found_everywhere(alice):
    user, _backend = alice
    tab = await Tab.open(user)
    conv_id, user_msg, reply_id = await _send(tab)
    await tab.until("generation.done", message=reply_id)
    bob = await sync_to_async(make_user)("bob")
    intruder = await Tab.open(bob)
    frames = [
        {"type": "subscribe", "conversation": conv_id},
        {"type": "send", "conversation": conv_id, "content": "mine now", "client_id": "x"},
        {
            "type": "send",
            "conversation": None,
            "content": "x",
            "client_id": "y",
            "parent": reply_id,
        },
        {"type": "stop", "message": reply_id},
        {"type": "regenerate", "message": reply_id},
        {"type": "edit", "message": user_msg, "content": "changed"},
        {"type": "switch", "message": reply_id},
    ]
    for frame in frames:
        await intruder.send(frame)
        error = await intruder.until("error")
        assert error["code"] == "not_found", frame
    assert await Message.objects.acount() == 2
    assert await Conversation.objects.filter(owner=bob).acount() == 0
    await intruder.close()
    await tab.close()


# --- backend failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "code"),
    [
        (Scenario(fault="http_error", http_status=401), "auth"),
        (Scenario(fault="http_error", http_status=402), "no_balance"),
        (Scenario(fault="http_error", http_status=429), "rate_limited"),
        (Scenario(fault="http_error", http_status=500), "server"),
        (Scenario(fault="http_error", http_status=503), "overloaded"),
        (Scenario(fault="http_error", http_status=404), "model_not_found"),
        (Scenario(fault="content_filter"), "content_filter"),
        (Scenario(fault="drop", fault_after_tokens=5), "truncated"),
        (Scenario(fault="midstream_error", fault_after_tokens=5), "stream"),
        (Scenario(fault="stall", fault_after_tokens=3, stall_seconds=5), "timeout"),
    ],
)
async def test_every_backend_failure_is_told_in_words(alice, sim, scenario, code):
    user, backend = alice
    backend.max_tries = 1
    backend.idle_timeout = 0.5
    await backend.asave()
    sim.scenario = scenario
    tab = await Tab.open(user)
    _conv, _u, reply_id = await _send(tab)
    done = await tab.until("generation.done", message=reply_id)
    assert done["status"] == "error"
    assert done["error"]["code"] == code
    assert len(done["error"]["message"]) > 20
    message = await Message.objects.aget(uuid=reply_id)
    assert message.status == "error" and message.error_code == code
    if scenario.fault in {"drop", "midstream_error", "stall"}:
        assert message.reasoning, "partial text is kept"
    await tab.close()


async def test_an_unreachable_backend_is_told_and_no_key_leaks(alice):
    user, backend = alice
    backend.base_url = "http://127.0.0.1:9"
    backend.api_key = "sk-very-secret-key-0123456789"
    backend.max_tries = 1
    await backend.asave()
    tab = await Tab.open(user)
    _conv, _u, reply_id = await _send(tab)
    done = await tab.until("generation.done", message=reply_id)
    assert done["error"]["code"] == "unreachable" and done["error"]["retryable"]
    assert all("sk-very-secret" not in str(frame) for frame in tab.frames)
    await tab.close()


async def test_a_model_that_cannot_think_says_so(alice, sim):
    user, backend = alice
    backend.kind = "ollama"
    backend.default_model = "llama3.2:sim"
    await backend.asave()
    tab = await Tab.open(user)
    _conv, _u, reply_id = await _send(tab, settings={"model": "llama3.2:sim", "deep_think": True})
    done = await tab.until("generation.done", message=reply_id)
    # The catalog knows the model cannot think, so Deep Think is off rather than an error.
    assert done["status"] == "complete"
    chat = [r for r in sim.requests if r.path == "/api/chat"][-1]
    assert chat.body.get("think") in (None, False)
    await tab.close()


# --- throttling and revocation -----------------------------------------------------------


async def test_a_flood_of_sends_is_throttled_with_a_visible_error(alice, settings):
    user, _backend = alice
    import conversations.turns.actions as actions

    limit = actions.SEND_RATE_PER_MINUTE
    actions.SEND_RATE_PER_MINUTE = 2
    try:
        tab = await Tab.open(user)
        conv_id, _u, reply_id = await _send(tab)
        await tab.until("generation.done", message=reply_id)
        await tab.send({"type": "send", "conversation": conv_id, "content": "2", "client_id": "2"})
        await tab.until("message.created", conversation=conv_id)
        await tab.until("generation.done")
        await tab.send({"type": "send", "conversation": conv_id, "content": "3", "client_id": "3"})
        assert (await tab.until("error"))["code"] == "throttled"
    finally:
        actions.SEND_RATE_PER_MINUTE = limit
    await tab.close()


async def test_one_generation_at_a_time_per_conversation(alice, sim):
    user, _backend = alice
    sim.scenario = Scenario(token_rate=30)
    tab = await Tab.open(user)
    conv_id, _u, reply_id = await _send(tab)
    await tab.send({"type": "send", "conversation": conv_id, "content": "more", "client_id": "b"})
    assert (await tab.until("error"))["code"] == "busy"
    await tab.send({"type": "stop", "message": reply_id})
    await tab.until("generation.done", message=reply_id)
    await tab.close()


async def test_a_revoked_session_closes_the_socket(alice):
    from channels.layers import get_channel_layer

    user, _backend = alice
    tab = await Tab.open(user)
    await get_channel_layer().group_send(f"user.{user.pk}", {"type": "user.revoked"})
    output = await tab.ws.receive_output(timeout=2)
    assert output["type"] == "websocket.close"


async def test_a_used_up_quota_blocks_the_next_generation_and_stores_nothing(alice):
    from review.models import UsageRecord, UserQuota

    user, _backend = alice
    await UserQuota.objects.acreate(user=user, daily_tokens=100)
    tab = await Tab.open(user)
    _conv, _u, reply_id = await _send(tab)
    await tab.until("generation.done", message=reply_id)
    record = await UsageRecord.objects.aget(message_uuid=reply_id)
    assert record.prompt_tokens + record.completion_tokens >= 100
    messages = await Message.objects.acount()
    await tab.send({"type": "send", "conversation": None, "content": "more", "client_id": "q2"})
    error = await tab.until("error")
    assert error["code"] == "quota"
    assert "quota" in error["detail"]
    assert await Message.objects.acount() == messages
    assert await Conversation.objects.acount() == 1
    await tab.close()


async def test_an_account_without_a_confirmed_address_cannot_open_the_socket():
    from django.contrib.auth import get_user_model

    from r1chat.asgi import application
    from tests.chat_support import session_cookie

    def make_unconfirmed() -> str:
        user = get_user_model().objects.create_user(
            username="carol", email="carol@example.com", password="a long password 123"
        )  # signed up, code never entered
        return session_cookie(user)

    cookie = await sync_to_async(make_unconfirmed)()
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", cookie.encode()),
    ]
    ws = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
    connected, code = await ws.connect()
    assert not connected
    assert code == 4401
    assert await Message.objects.acount() == 0


async def test_the_text_of_running_answers_is_stored_together(alice):
    user, _backend = alice
    turns = [_new_turn(user, i) for i in range(4)]
    await asyncio.gather(*(sync_to_async(actions._save_turn)(turn) for turn in turns))
    answers = [turn.assistant for turn in turns]
    await Message.objects.filter(pk=answers[3].pk).aupdate(status="complete", content="final")
    started = timezone.now()
    await asyncio.gather(
        *(
            generation._store_progress((m.pk, f"answer {i}", f"reasoning {i}", started, None))
            for i, m in enumerate(answers)
        )
    )
    stored = {m.pk: m async for m in Message.objects.filter(role="assistant")}
    for i, answer in enumerate(answers[:3]):
        row = stored[answer.pk]
        assert (row.content, row.reasoning, row.status) == (
            f"answer {i}",
            f"reasoning {i}",
            "streaming",
        )
        assert row.reasoning_started_at == started and row.answer_started_at is None
    # One write for all three: one heartbeat.
    assert len({stored[m.pk].heartbeat_at for m in answers[:3]}) == 1
    assert stored[answers[0].pk].heartbeat_at > answers[0].heartbeat_at
    # A message that already ended keeps its final text.
    assert (stored[answers[3].pk].content, stored[answers[3].pk].status) == ("final", "complete")


async def test_heartbeats_and_text_writes_of_the_same_answers_do_not_deadlock(alice):
    """Both lock the running answers' rows in one transaction each: in different orders, on
    PostgreSQL, they deadlocked every few seconds at 100 streams (the heartbeat locked them in
    the order it scanned them, the text writes in the order they were due)."""
    import random

    user, _backend = alice
    turns = [_new_turn(user, i) for i in range(60)]
    await asyncio.gather(*(sync_to_async(actions._save_turn)(turn) for turn in turns))
    answers = [turn.assistant for turn in turns]
    uuids = [m.uuid for m in answers]
    shuffled = random.Random(3)
    for round_ in range(15):
        due = answers[:]
        shuffled.shuffle(due)
        await asyncio.gather(
            generation._beat(uuids),
            *(generation._store_progress((m.pk, f"a{round_}", "r", None, None)) for m in due),
        )
    assert await Message.objects.filter(role="assistant", content="a14").acount() == 60


async def test_a_failed_text_write_is_made_good_by_the_next(alice, sim):
    """The database refuses a running answer's text write, and its retry (a restart): the next
    second's write stores it, and the writer (with the stream's later heartbeats) goes on."""
    from django.db import OperationalError

    from conversations.runner import db

    user, _backend = alice
    sim.scenario = Scenario(token_rate=25, reasoning_tokens=40, answer_tokens=40)
    refused: list[str] = []

    def refuse_twice(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if many and sql.startswith("UPDATE") and "heartbeat_at" in sql and len(refused) < 2:
            refused.append(sql)
            raise OperationalError("deadlock detected (a test)")
        return execute(sql, params, many, context)

    async def on_every_database_thread(change) -> None:  # type: ignore[no-untyped-def]
        workers = db._pool._max_workers
        everyone = threading.Barrier(workers, timeout=10)

        def run() -> None:
            from django.db import connection

            change(connection.execute_wrappers)
            everyone.wait()

        await asyncio.gather(*(asyncio.wrap_future(db._pool.submit(run)) for _ in range(workers)))

    await on_every_database_thread(lambda wrappers: wrappers.append(refuse_twice))
    try:
        tab = await Tab.open(user)
        _conv, _u, reply_id = await _send(tab)
        for _ in range(40):
            await asyncio.sleep(0.1)
            stored = await Message.objects.filter(uuid=reply_id).afirst()
            if len(refused) == 2 and stored is not None and stored.reasoning:
                break
        await tab.until("generation.done", message=reply_id)
    finally:
        await on_every_database_thread(lambda wrappers: wrappers.remove(refuse_twice))
    assert len(refused) == 2, "the text writes were not refused"
    assert stored is not None and stored.status == "streaming" and stored.reasoning
    await tab.close()


async def test_the_question_leaves_for_the_model_before_the_tabs_are_told(alice):
    """The request is on the model server's socket by the time message.created reaches the tab
    (a burst of questions is not held behind every announcement), and its text still never
    comes before it."""
    import socket

    user, backend = alice
    server = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers

    def list_models() -> None:  # the first connection only: the tab's model list
        conn, _addr = server.accept()
        with conn:
            conn.recv(65536)
            body = b'{"object": "list", "data": [{"id": "deepseek-v4-flash", "object": "model"}]}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close"
                         b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip

    lister = threading.Thread(target=list_models, daemon=True)
    lister.start()
    backend.base_url = f"http://127.0.0.1:{server.getsockname()[1]}"
    backend.max_tries = 1
    await backend.asave()
    tab = await Tab.open(user)
    try:
        await asyncio.to_thread(lister.join, 5)
        await _send(tab)  # up to the assistant's message.created
        server.setblocking(False)
        heads = []
        with contextlib.suppress(BlockingIOError):
            while True:  # every connection the kernel accepted since
                conn, _addr = server.accept()
                with conn, contextlib.suppress(BlockingIOError):
                    # Loopback hands written bytes to the peer within the write itself.
                    heads.append(conn.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        assert any(h.startswith(b"POST /chat/completions HTTP/1.1\r\n") for h in heads), heads
        assert not [f for f in tab.frames if f["type"].startswith("generation.")]
    finally:
        server.close()
        await tab.close()


# --- a burst of questions -------------------------------------------------------------------


async def test_in_a_burst_the_first_answers_stream_before_the_last_question_is_taken(sim):
    """Many questions ready at once are taken one per pass of the loop: the first streams'
    text reaches their tabs before the burst's last conversations are announced (handled in
    one pass, every question was taken and announced before any model's answer was read)."""
    from django.conf import settings

    if settings.CHANNEL_LAYERS["default"]["BACKEND"] != "r1chat.layers.LocalChannelLayer":
        pytest.skip("the order is the event loop's; through Redis, round trips blur it")
    sim.scenario = Scenario(token_rate=400.0, reasoning_tokens=40, answer_tokens=40)
    # The simulator serves from a thread of this process: its first token waits for the
    # interpreter, up to a switch interval (5 ms) at a time, while the loop takes questions.
    # 80 questions take ~30 ms here, 40 only ~15 (the first text then came 4 ms too late in
    # one CI run of the whole suite).
    count = 80
    users = [await sync_to_async(make_user)(f"burst{i}", password=None) for i in range(count)]
    await sync_to_async(make_backend)(sim.base_url)
    tabs = [await Tab.open(user) for user in users]
    loop = asyncio.get_running_loop()
    for tab in tabs:  # all ready in the same pass of the loop
        await tab.send(
            {"type": "send", "conversation": None, "content": "How are mass and energy related?",
             "client_id": uuid.uuid4().hex}
        )  # fmt: skip

    async def read(tab: Tab) -> dict[str, float]:
        seen: dict[str, float] = {}
        while True:
            frame = await tab.recv(timeout=20)
            seen.setdefault(frame["type"], loop.time())
            if frame["type"] == "generation.done":
                assert frame["status"] == "complete"
                return seen

    times = await asyncio.gather(*(read(tab) for tab in tabs))
    first_text = min(t["generation.delta"] for t in times)
    last_announced = max(t["conversation.created"] for t in times)
    assert first_text < last_announced
    reasoning, answer = sim.expected()
    for tab in tabs:
        message = next(f for f in tab.frames if f["type"] == "generation.done")["message"]
        shown_reasoning, shown_answer, seqs = assemble(tab.frames, message)
        assert (shown_reasoning, shown_answer) == (reasoning, answer)
        assert seqs == list(range(1, len(seqs) + 1))
        await tab.ws.disconnect()


# --- tabs closing beside others (the Redis channel layer) ------------------------------------


@pytest.fixture(params=["r1chat.layers.TeamChannelLayer"])
def redis_layer(request, settings):
    """The team's channel layer, on the Redis this machine runs."""
    url = redis_url_or_skip()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": request.param,
            "CONFIG": {"hosts": [url], "prefix": f"r1chat-churn-{uuid.uuid4().hex[:8]}",
                       "capacity": 10000},
        }
    }  # fmt: skip


async def test_tabs_closing_lose_no_frame_of_the_tabs_still_open(alice, redis_layer):
    """Tabs opening and closing beside a stream of frames to another tab (channels-redis's own
    layer drops a frame when a receive is cancelled with it in flight)."""
    from channels.layers import get_channel_layer

    user, _backend = alice
    bob = await sync_to_async(make_user)("bob")
    watcher = await Tab.open(user)
    layer = get_channel_layer()
    group, sent = actions.user_group(user.pk), 1500

    async def stream() -> None:
        for n in range(sent):
            frame = {"type": "conversation.updated", "conversation": {"n": n}}
            await layer.group_send(group, frame)
            if n % 10 == 0:
                await asyncio.sleep(0.002)

    async def churn() -> None:
        for _ in range(40):
            tab = await Tab.open(bob)
            await asyncio.sleep(0.01)
            await tab.close()

    await asyncio.gather(stream(), churn())
    # Then a last frame; frames to one socket keep their order.
    await layer.group_send(group, {"type": "conversation.updated", "conversation": {"n": -1}})
    seen: set[int] = set()
    while -1 not in seen:
        frame = await watcher.recv(timeout=10.0)
        if frame["type"] == "conversation.updated":
            seen.add(frame["conversation"]["n"])
    await watcher.close()
    await layer.flush()
    assert sorted(set(range(sent)) - seen) == []


async def test_a_permission_check_that_fails_refuses_the_socket(alice, caplog):
    """The check whether a user may chat fails closed: a database error (here its table of
    confirmed addresses is missing) is a "no", logged once, and the socket is refused like any
    other unauthorised one."""
    from django.db import connection

    from r1chat.asgi import application

    user, _backend = alice
    cookie = await sync_to_async(session_cookie)(user)

    def rename(old: str, new: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")

    await sync_to_async(rename)("account_emailaddress", "account_emailaddress_away")
    try:
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost"),
                   (b"cookie", cookie.encode())]  # fmt: skip
        ws = WebsocketCommunicator(application, "/ws/chat/", headers=headers)
        connected, code = await ws.connect()
    finally:
        await sync_to_async(rename)("account_emailaddress_away", "account_emailaddress")
    assert (connected, code) == (False, 4401)
    refusals = [r for r in caplog.records if "may chat" in r.getMessage()]
    assert len(refusals) == 1
    # Once the database answers again, the same user is let in.
    tab = await Tab.open(user)
    await tab.close()


async def test_a_gap_in_the_frames_is_answered_with_a_snapshot(alice, sim):
    """Frames lost between processes (a Redis restart) leave a gap in `seq`: the tab gets a
    fresh snapshot instead of text with a hole in it, then the live frames again."""
    from channels.layers import get_channel_layer

    user, _backend = alice
    sim.scenario = Scenario(token_rate=40, reasoning_tokens=80, answer_tokens=40)
    tab = await Tab.open(user)
    conversation, _question, reply_id = await _send(tab)
    delta = await tab.until("generation.delta", message=reply_id)
    group = (await Conversation.objects.aget(uuid=conversation)).group_name
    ahead = delta["seq"] + 50
    await get_channel_layer().group_send(
        group,
        {"type": "generation.delta", "message": reply_id, "seq": ahead + 5, "from_seq": ahead,
         "reasoning": "LOST"},
    )  # fmt: skip
    snapshot = await tab.until("generation.snapshot", message=reply_id)
    await tab.until("generation.done", message=reply_id, timeout=20)
    reasoning, answer, seqs = assemble(tab.frames[tab.frames.index(snapshot) :], reply_id)
    assert "LOST" not in reasoning
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert (reasoning, answer) == sim.expected()
    await tab.close()
