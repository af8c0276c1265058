"""The OpenAI-compatible client: request mapping, usage, metadata, auth. Real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conversations.backends import close_all, get_backend
from conversations.backends.base import BackendConfig, ErrorKind, Finished, Usage
from conversations.backends.openai import OpenAIBackend, build_body, infer_model_info
from conversations.simulator import Scenario, Simulator
from tests.test_backend_scenarios import chat_requests, collect, make_backend, make_request


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


async def test_get_backend_shares_one_client_per_config(sim: Simulator) -> None:
    config = BackendConfig(kind="openai", base_url=sim.base_url, name="shared")
    one = get_backend(config)
    assert get_backend(BackendConfig(kind="openai", base_url=sim.base_url, name="shared")) is one
    assert one.client is one.client  # type: ignore[attr-defined]
    limits = one.client._transport._pool  # type: ignore[attr-defined]
    assert limits._max_connections is None or limits._max_connections >= 256
    changed = get_backend(BackendConfig(kind="openai", base_url=sim.base_url, name="shared",
                                        idle_timeout=5))  # fmt: skip
    assert changed is not one
    ollama = get_backend(BackendConfig(kind="ollama", base_url=sim.base_url))
    assert type(ollama).__name__ == "OllamaBackend"
    await close_all()
    assert get_backend(config) is not one
    await close_all()


async def test_a_burst_gets_one_connection_per_request(sim: Simulator) -> None:
    """An idle keep-alive connection is handed to one request of a burst, not to all of them
    (httpcore's pool handed it to every request that arrived before the first had taken it;
    they then queued on it and went back for new connections one after another)."""
    import asyncio

    import httpx

    from conversations.backends.transport import make_transport

    transport = make_transport(httpx.Limits(max_connections=None, max_keepalive_connections=64))
    async with httpx.AsyncClient(transport=transport, base_url=sim.base_url) as client:
        assert (await client.get("/models")).status_code == 200  # leaves one idle connection
        pool = transport._pool
        tasks = [asyncio.create_task(client.get("/models")) for _ in range(20)]
        await asyncio.sleep(0)  # every request is in the pool and assigned
        assigned = [r.connection for r in pool._requests if r.connection is not None]
        assert len(assigned) == 20
        assert len({id(c) for c in assigned}) == 20
        assert all(r.status_code == 200 for r in await asyncio.gather(*tasks))
        assert len(pool.connections) == 20  # the idle one reused, 19 opened, all kept


async def test_the_pool_keeps_its_keepalive_limit_and_its_connection_limit(sim: Simulator) -> None:
    import asyncio

    import httpx

    from conversations.backends.transport import make_transport

    transport = make_transport(httpx.Limits(max_connections=6, max_keepalive_connections=3))
    async with httpx.AsyncClient(transport=transport, base_url=sim.base_url) as client:
        pool = transport._pool
        tasks = [asyncio.create_task(client.get("/models")) for _ in range(10)]
        await asyncio.sleep(0)
        assigned = [r.connection for r in pool._requests if r.connection is not None]
        assert len(assigned) == len({id(c) for c in assigned}) == 6  # four wait their turn
        assert all(r.status_code == 200 for r in await asyncio.gather(*tasks))
        assert len(pool.connections) == 3  # idle beyond the keep-alive limit: closed
        assert all(c.is_idle() for c in pool.connections)
        # The idle ones serve the next requests; no new connection is opened.
        kept = set(pool.connections)
        assert all(r.status_code == 200 for r in await asyncio.gather(
            *(client.get("/models") for _ in range(3))
        ))  # fmt: skip
        assert set(pool.connections) == kept
