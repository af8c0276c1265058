"""The API's `top_p` and `stop` on their way to each kind of model server (the backends' own
request bodies; tests/test_api_chat.py follows them through the whole API)."""

from __future__ import annotations

from typing import Any

from conversations.backends.base import BackendConfig, ChatRequest
from conversations.backends.ollama import OllamaBackend
from conversations.backends.openai import build_body
from conversations.simulator import Scenario

QUESTION = [{"role": "user", "content": "Hello"}]


def test_an_openai_compatible_server_gets_top_p_and_stop() -> None:
    body = build_body(
        ChatRequest(model="deepseek-v4-flash", messages=QUESTION, top_p=0.5, stop=["END", "##"])
    )
    assert body["top_p"] == 0.5 and body["stop"] == ["END", "##"]
    plain = build_body(ChatRequest(model="deepseek-v4-flash", messages=QUESTION))
    assert "top_p" not in plain and "stop" not in plain


async def test_ollama_gets_them_as_options(simulator: Any) -> None:
    simulator.reset()
    simulator.scenario = Scenario(profile="ollama-modern")
    backend = OllamaBackend(BackendConfig(kind="ollama", base_url=simulator.base_url))
    try:
        body = await backend.build_body(
            ChatRequest(model="deepseek-r1:sim", messages=QUESTION, top_p=0.25, stop=["END"])
        )
    finally:
        await backend.aclose()
        simulator.reset()
    assert body["options"]["top_p"] == 0.25
    assert body["options"]["stop"] == ["END"]
