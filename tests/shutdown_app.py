"""The real ASGI application plus a test-only route, for Daphne processes in tests/test_shutdown.

`GET /_test/generate?message=<uuid>&tokens=<n>&delay=<s>` starts a GenerationRunner for an
existing `streaming` assistant message, fed by a fake model that says `t0 t1 …` one word every
`delay` seconds. Everything else goes to r1chat.asgi.application.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from r1chat.asgi import application as r1chat_application  # sets Django up first

# isort: split
from conversations.backends.base import Answer, ChatRequest, Finished, Reasoning
from conversations.models import Message
from conversations.runner import generation


def words(tokens: int) -> list[str]:
    return [f"t{i} " for i in range(tokens)]


class FakeModel:
    def __init__(self, tokens: int, delay: float) -> None:
        self.tokens = tokens
        self.delay = delay

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[Any]:
        yield Reasoning("thinking ")
        for word in words(self.tokens):
            await asyncio.sleep(self.delay)
            yield Answer(word)
        yield Finished("stop")


_models: dict[str, FakeModel] = {}


def fake_get_backend(config: Any) -> FakeModel:
    return _models[config.name]


generation.get_backend = fake_get_backend  # type: ignore[assignment]


async def _start(query: dict[str, list[str]]) -> dict[str, Any]:
    message = await Message.objects.select_related("conversation", "backend").aget(
        uuid=query["message"][0]
    )
    assert message.backend is not None
    _models[message.backend.name] = FakeModel(int(query["tokens"][0]), float(query["delay"][0]))
    runner = generation.GenerationRunner(
        message=message,
        conversation=message.conversation,
        backend=message.backend,
        request=ChatRequest(model="fake", messages=[{"role": "user", "content": "hi"}]),
    )
    runner.start()
    from conversations.runner import shutdown

    # GenerationRunner.start() installs the hook (tests/test_shutdown.py checks that); calling
    # it again is a no-op, and lets this test the mechanism on its own.
    return {"started": runner.message_id, "shutdown_hook": shutdown.install()}


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/_test/generate":
        body = await _start(parse_qs(scope["query_string"].decode()))
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        return
    await r1chat_application(scope, receive, send)
