"""Whatever a client sends on the chat socket gets a clear answer and the socket stays usable:
malformed frames of every shape (fuzzed, with the seed printed), and throttling of every frame
type per socket and per user."""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.core.cache import cache

# (first, so Django's logging set-up, which importing the application runs, is not redone
# inside a test: it would take pytest's log capture off the root logger)
import r1chat.asgi  # noqa: F401
from tests.chat_support import Tab, make_user

pytestmark = pytest.mark.django_db(transaction=True)

FRAME_TYPES = ["subscribe", "send", "stop", "regenerate", "edit", "switch"]
BAD_SETTINGS = [
    ("temperature", [-1, 3, "hot", True, 1e308, [], {}]),
    ("max_tokens", [0, 1.5, 2**63 - 1, "x", False]),
    ("backend", [0, "1", 1.5, -5]),
    ("model", [1, "x" * 300, []]),
    ("deep_think", ["yes", 1, {}]),
    ("system_prompt", [5, "x" * 30_000]),
    ("nope", [1, "x"]),
]
FIELDS = ["conversation", "content", "client_id", "settings", "parent", "message", "type"]


@pytest.fixture(autouse=True)
def _fresh_layer():
    channel_layers.backends.clear()
    cache.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def unthrottled(settings):
    settings.R1CHAT_SOCKET_FRAME_BURST = 100_000
    settings.R1CHAT_USER_FRAMES_PER_MINUTE = 100_000


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63 - 1, -(2**63), 1.5, -0.0, 1e308, 3])
    if kind == 3:
        return rng.choice(["", "x" * rng.randrange(200), "\x00", "\ud7ff", "💥", str(uuid.uuid4())])
    if kind == 4:
        return rng.choice([*FRAME_TYPES, "", "Subscribe", "send ", "__class__", "do_send"])
    if kind == 5:
        return str(uuid.uuid4())
    if kind in (6, 7):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(FIELDS): _value(rng, depth + 1) for _ in range(rng.randrange(5))}


def _frame(rng: random.Random) -> str | bytes:
    """One frame as a misbehaving client might send it."""
    kind = rng.randrange(12)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 64))  # binary
    if kind == 1:
        return "[" * 5000 + "]" * 5000  # deep nesting
    if kind == 2:
        return '{"type": "send", "content": "x", "client_id": "a", "settings": {"max_tokens": '
    if kind == 3:
        return '{"type": "stop", "message": 1' + "0" * 400 + "}"  # a number of 400 digits
    if kind == 4:
        key, bad = rng.choice(BAD_SETTINGS)
        return json.dumps({"type": "send", "conversation": None, "content": "hi",
                           "client_id": "c", "settings": {key: rng.choice(bad)}})  # fmt: skip
    frame: dict[str, Any] = {"type": _value(rng) if kind == 5 else rng.choice(FRAME_TYPES)}
    for field in rng.sample(FIELDS[:-1], rng.randrange(len(FIELDS))):
        frame[field] = _value(rng)
    if frame.get("type") == "subscribe" and frame.get("conversation") is None:
        frame["conversation"] = "not an id"  # (a valid "leave" has no answer to wait for)
    if frame.get("type") == "send" and isinstance(frame.get("content"), str):
        frame["content"] = 12  # (a valid question would start a generation)
    return json.dumps(frame)


async def test_malformed_frames_get_an_error_frame_and_the_socket_stays_usable(
    unthrottled, caplog
) -> None:
    seed = int(os.environ.get("R1CHAT_FUZZ_SEED") or random.randrange(2**32))
    print(f"fuzz seed: {seed} (R1CHAT_FUZZ_SEED={seed} repeats it)")
    rng = random.Random(seed)
    user = await sync_to_async(make_user)("alice")
    tab = await Tab.open(user)
    caplog.set_level(logging.INFO)
    count = 2000
    for n in range(count):
        frame = _frame(rng)
        if isinstance(frame, bytes):
            await tab.ws.send_to(bytes_data=frame)
        else:
            await tab.ws.send_to(text_data=frame)
        answer = await tab.recv(timeout=5)
        assert answer["type"] == "error", f"seed {seed}, frame {n}: {frame!r} -> {answer}"
        assert answer["code"] and answer["detail"], f"seed {seed}, frame {n}: {frame!r}"
    # Nothing logged a traceback, and at most one short line a frame.
    assert not [r for r in caplog.records if r.exc_info], f"seed {seed}: a traceback was logged"
    assert len(caplog.records) <= count
    assert all(len(r.getMessage()) < 400 for r in caplog.records)
    # Still open and working.
    await tab.send({"type": "subscribe", "conversation": str(uuid.uuid4())})
    assert (await tab.recv())["code"] == "not_found"
    await tab.close()


LOGGED_BY_THE_APP = {"conversations", "r1chat", "accounts", "django", "channels", "daphne"}


@pytest.mark.parametrize(
    "text",
    ['{"type": []}', '{"type": {}}', '{"type": 1}', "[]", '"send"', "null", '{"type": null}'],
)
async def test_a_frame_whose_type_is_not_a_string_is_an_error(unthrottled, caplog, text) -> None:
    user = await sync_to_async(make_user)("alice")
    tab = await Tab.open(user)
    await tab.ws.send_to(text_data=text)
    assert (await tab.recv())["code"] == "invalid"
    # Nothing logged by the app or the servers under it. (asyncio's "Unclosed client session"
    # of a model-server client an earlier test left to the garbage collector may land here.)
    assert not [r for r in caplog.records if r.name.split(".")[0] in LOGGED_BY_THE_APP]
    await tab.close()


async def test_every_frame_type_is_throttled_per_socket(settings) -> None:
    settings.R1CHAT_SOCKET_FRAME_BURST = 20
    settings.R1CHAT_SOCKET_FRAME_RATE = 5.0
    user = await sync_to_async(make_user)("alice")
    tab = await Tab.open(user)
    started = time.monotonic()
    answers = []
    for n in range(300):
        kind = FRAME_TYPES[n % len(FRAME_TYPES)]
        await tab.send({"type": kind, "conversation": str(uuid.uuid4()),
                        "message": str(uuid.uuid4())})  # fmt: skip
        answers.append(await tab.recv())
    elapsed = time.monotonic() - started
    served = [a for a in answers if a.get("code") != "throttled"]
    throttled = [a for a in answers if a.get("code") == "throttled"]
    assert len(served) <= 20 + 5 * elapsed + 1
    assert len(throttled) >= 300 - len(served)
    assert throttled[0]["detail"]
    # The allowance comes back with time.
    await tab.ws.receive_nothing(0.5)
    await tab.send({"type": "subscribe", "conversation": str(uuid.uuid4())})
    assert (await tab.recv())["code"] == "not_found"
    await tab.close()


async def test_a_users_tabs_share_one_allowance(settings) -> None:
    settings.R1CHAT_SOCKET_FRAME_BURST = 1000
    settings.R1CHAT_USER_FRAMES_PER_MINUTE = 30
    user = await sync_to_async(make_user)("alice")
    other = await sync_to_async(make_user)("bob")
    tabs = [await Tab.open(user) for _ in range(3)]
    codes = []
    for n in range(45):
        tab = tabs[n % 3]
        await tab.send({"type": "subscribe", "conversation": str(uuid.uuid4())})
        codes.append((await tab.recv())["code"])
    assert codes.count("not_found") == 30
    assert codes[30:] == ["throttled"] * 15
    # Another user is not held back by them.
    bob = await Tab.open(other)
    await bob.send({"type": "subscribe", "conversation": str(uuid.uuid4())})
    assert (await bob.recv())["code"] == "not_found"
    for tab in [*tabs, bob]:
        await tab.close()
