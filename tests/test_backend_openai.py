"""The OpenAI-compatible client: request mapping, usage, metadata, auth. Real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conversations.backends import close_all, get_backend
from conversations.backends.base import BackendConfig, ErrorKind, Finished, Usage
from conversations.backends.openai import OpenAIBackend, build_body, infer_model_info
from conversations.simulator import Scenario, Simulator
from tests.test_backend_scenarios import (
    chat_requests,
    close_made_backends,  # noqa: F401 (an autouse fixture: every backend made is closed)
    collect,
    make_backend,
    make_request,
)


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[Simulator]:
    simulator.reset()
    yield simulator
    simulator.api_key = None
    simulator.reset()


@pytest.mark.parametrize(
    ("deep_think", "enhanced", "thinking", "effort"),
    [
        (True, True, "enabled", "max"),
        (True, False, "enabled", "high"),
        (False, True, "disabled", None),
    ],
)
async def test_deepseek_v4_thinking_controls(
    sim: Simulator, deep_think: bool, enhanced: bool, thinking: str, effort: str | None
) -> None:
    sim.scenario = Scenario(profile="deepseek", reasoning_tokens=3, answer_tokens=3)
    request = make_request(
        "deepseek", deep_think=deep_think, enhanced_reasoning=enhanced, temperature=0.3,
        max_tokens=500,
    )  # fmt: skip
    got = await collect(make_backend(sim, "deepseek"), request)
    assert got.error is None
    body = chat_requests(sim)[0].body
    assert body["thinking"] == {"type": thinking}
    assert body.get("reasoning_effort") == effort
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3 and body["max_tokens"] == 500
    assert bool(got.reasoning) is deep_think


@pytest.mark.parametrize(
    ("deep_think", "model"), [(True, "deepseek-reasoner"), (False, "deepseek-chat")]
)
async def test_legacy_pair(sim: Simulator, deep_think: bool, model: str) -> None:
    sim.scenario = Scenario(profile="deepseek-legacy", reasoning_tokens=3, answer_tokens=3)
    for asked in ("deepseek-reasoner", "deepseek-chat"):
        sim.requests.clear()
        got = await collect(
            make_backend(sim, "deepseek-legacy"),
            make_request("deepseek-legacy", model=asked, deep_think=deep_think),
        )
        assert got.error is None
        body = chat_requests(sim)[0].body
        assert body["model"] == model
        assert "thinking" not in body and "reasoning_effort" not in body
        assert bool(got.reasoning) is deep_think


def test_other_models_get_nothing_special() -> None:
    body = build_body(make_request("vllm-new", model="r1-distill-sim", deep_think=False))
    assert set(body) == {"model", "messages", "stream", "stream_options"}


async def test_usage_from_the_finish_chunk_and_from_a_choices_empty_chunk(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="deepseek", reasoning_tokens=5, answer_tokens=4)
    got = await collect(make_backend(sim, "deepseek"), make_request("deepseek"))
    assert got.usage is not None
    assert got.usage.completion_tokens == 9 and got.usage.reasoning_tokens == 5
    assert got.usage.prompt_tokens and got.usage.cached_tokens is not None
    sim.reset()
    sim.scenario = Scenario(profile="vllm-new", reasoning_tokens=5, answer_tokens=4)
    got = await collect(make_backend(sim, "vllm-new"), make_request("vllm-new"))
    assert got.usage == Usage(
        prompt_tokens=got.usage.prompt_tokens if got.usage else None,
        completion_tokens=9,
        reasoning_tokens=5,
    )
    assert isinstance(got.events[-2], Usage) and isinstance(got.events[-1], Finished)


async def test_auth_error_never_contains_the_key(sim: Simulator) -> None:
    sim.api_key = "sk-right-key-1234"
    sim.scenario = Scenario(profile="deepseek")
    key = "sk-wrong-secret-key-5678"
    got = await collect(make_backend(sim, "deepseek", api_key=key), make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.AUTH
    assert key not in got.error.detail and key not in str(got.error)
    assert "Authentication Fails" in got.error.detail
    assert len(chat_requests(sim)) == 1
    got = await collect(
        make_backend(sim, "deepseek", api_key="sk-right-key-1234"), make_request("deepseek")
    )
    assert got.error is None
    assert chat_requests(sim)[-1].headers["authorization"] == "Bearer sk-right-key-1234"


async def test_unknown_model(sim: Simulator) -> None:
    got = await collect(make_backend(sim, "vllm-new"), make_request("vllm-new", model="nope"))
    assert got.error is not None and got.error.kind is ErrorKind.MODEL_NOT_FOUND
    assert "nope" in got.error.detail


async def test_list_models_model_info_and_health(sim: Simulator) -> None:
    backend = make_backend(sim, "deepseek")
    models = {m.name: m for m in await backend.list_models()}
    assert models["deepseek-v4-flash"].thinking == "on_off"
    assert models["deepseek-v4-flash"].effort_levels == ["low", "high", "max"]
    assert models["deepseek-v4-flash"].ignores_temperature_when_thinking
    assert models["deepseek-reasoner"].thinking == "on_off"
    assert models["r1-distill-sim"].thinking == "always"
    assert (await backend.model_info("llama-3-8b")).thinking == "never"
    assert infer_model_info("QwQ-32B").thinking == "always"
    health = await backend.health()
    assert health.reachable and health.error is None
    assert "deepseek-v4-flash" in health.models and health.latency_ms is not None
    await backend.aclose()


async def test_health_of_a_server_that_is_down() -> None:
    backend = OpenAIBackend(BackendConfig(kind="openai", base_url="http://127.0.0.1:9"))
    health = await backend.health()
    assert not health.reachable and health.error and health.error.startswith("unreachable")
    await backend.aclose()


async def test_get_backend_shares_one_pool_per_config(sim: Simulator) -> None:
    config = BackendConfig(kind="openai", base_url=sim.base_url, name="shared")
    one = get_backend(config)
    assert get_backend(BackendConfig(kind="openai", base_url=sim.base_url, name="shared")) is one
    assert one.client is one.client  # type: ignore[attr-defined]
    changed = get_backend(BackendConfig(kind="openai", base_url=sim.base_url, name="shared",
                                        idle_timeout=5))  # fmt: skip
    assert changed is not one
    ollama = get_backend(BackendConfig(kind="ollama", base_url=sim.base_url))
    assert type(ollama).__name__ == "OllamaBackend"
    await close_all()
    assert get_backend(config) is not one
    await close_all()


async def test_a_burst_gets_one_connection_per_request(sim: Simulator) -> None:
    """An idle keep-alive connection serves one request of a burst; the others each get a
    new connection at once (none queues behind another)."""
    import asyncio

    backend = make_backend(sim, "deepseek")
    await backend.list_models()  # leaves one idle connection
    sim.requests.clear()
    await asyncio.gather(*(backend.list_models() for _ in range(20)))
    burst = {r.extra.get("peer") for r in sim.requests}
    assert len(burst) == 20
    # Every one of them was kept alive: the next burst needs no new connection.
    sim.requests.clear()
    await asyncio.gather(*(backend.list_models() for _ in range(20)))
    assert {r.extra.get("peer") for r in sim.requests} == burst
    await backend.aclose()


async def test_streams_and_metadata_share_one_kept_alive_connection(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="deepseek", reasoning_tokens=3, answer_tokens=3)
    backend = make_backend(sim, "deepseek")
    for _ in range(3):
        got = await collect(backend, make_request("deepseek"))
        assert got.error is None and got.answer
    await backend.list_models()  # a Content-Length body on the same connection
    assert len(sim.requests) == 4 and len({r.extra["peer"] for r in sim.requests}) == 1


async def test_an_api_key_that_is_no_header_value_is_refused(sim: Simulator) -> None:
    backend = make_backend(sim, "deepseek", api_key="sk\r\nX-Evil: 1")
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.AUTH
    assert "cannot be sent in a header" in got.error.detail
    assert not sim.requests


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:9", "http://", "not a url"])
async def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    backend = OpenAIBackend(BackendConfig(kind="openai", base_url=url))
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.BAD_REQUEST
    assert "bad backend URL" in got.error.detail
    await backend.aclose()


async def test_a_stream_compressed_unasked_is_decoded() -> None:
    """r1chat asks for `identity`; a server (or proxy) that gzips the stream anyway is still
    read correctly."""
    import asyncio
    import gzip

    events = (
        b'data: {"choices":[{"index":0,"delta":{"content":"compressed hello"}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    body = gzip.compress(events)
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head)
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = OpenAIBackend(BackendConfig(kind="openai", base_url=f"http://127.0.0.1:{port}"))
    try:
        got = await collect(backend, make_request("deepseek"))
        assert got.error is None and got.answer == "compressed hello"
        assert b"\r\naccept-encoding: identity\r\n" in heads[0].lower()
    finally:
        await backend.aclose()
        server.close()
