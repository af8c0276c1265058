"""The Ollama client: `think` by capability and version, options, metrics, errors, metadata."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conversations.backends.base import ErrorKind, Finished
from conversations.backends.ollama import OllamaBackend, parse_version
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
    simulator.reset()


@pytest.mark.parametrize(
    ("model", "deep_think", "enhanced", "version", "think"),
    [
        ("deepseek-r1:sim", True, True, "0.12.5", True),
        ("deepseek-r1:sim", False, True, "0.12.5", False),
        ("qwen3:sim", True, True, "0.12.5", "high"),
        ("qwen3:sim", True, True, "0.21.3", "max"),
        ("qwen3:sim", True, False, "0.21.3", True),
        ("qwen3:sim", False, True, "0.21.3", False),
        ("llama3.2:sim", True, True, "0.12.5", None),  # no thinking capability: no `think`
    ],
)
async def test_think_value(
    sim: Simulator, model: str, deep_think: bool, enhanced: bool, version: str, think: object
) -> None:
    sim.scenario = Scenario(profile="ollama-modern", ollama_version=version, reasoning_tokens=3,
                            answer_tokens=3)  # fmt: skip
    backend = make_backend(sim, "ollama-modern")
    request = make_request(
        "ollama-modern", model=model, deep_think=deep_think, enhanced_reasoning=enhanced,
        temperature=0.2, max_tokens=400,
    )  # fmt: skip
    got = await collect(backend, request)
    assert got.error is None, got.error
    body = chat_requests(sim)[0].body
    assert body.get("think") == think and ("think" in body) is (think is not None)
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.2, "num_predict": 400}
    assert bool(got.reasoning) is (think not in (None, False))
    # Capabilities are cached per model: one /api/show however many chats.
    await collect(backend, request)
    assert [r.path for r in sim.requests].count("/api/show") == 1


async def test_metrics_become_usage_and_text_on_the_done_line_is_kept(sim: Simulator) -> None:
    sim.scenario = scenario = Scenario(profile="ollama-modern", token_rate=0)
    got = await collect(make_backend(sim, "ollama-modern"), make_request("ollama-modern"))
    assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[0].body)
    usage = got.usage
    assert usage is not None and usage.prompt_tokens and usage.completion_tokens
    assert usage.load_seconds is not None and usage.load_seconds < 1
    assert usage.generation_seconds is not None and usage.prompt_seconds is not None
    assert got.finished == Finished("stop")


async def test_unknown_model_is_model_not_found(sim: Simulator) -> None:
    got = await collect(
        make_backend(sim, "ollama-modern"), make_request("ollama-modern", model="nope:1b")
    )
    assert got.error is not None and got.error.kind is ErrorKind.MODEL_NOT_FOUND
    assert "nope:1b" in got.error.detail


async def test_does_not_support_thinking_is_no_thinking(sim: Simulator) -> None:
    # The capability check normally prevents this; a stale cache (a re-pulled model) does not.
    sim.scenario = Scenario(profile="ollama-modern")
    backend = make_backend(sim, "ollama-modern")
    assert isinstance(backend, OllamaBackend)
    backend._show["llama3.2:sim"] = (["completion", "thinking"], {})
    got = await collect(backend, make_request("ollama-modern", model="llama3.2:sim"))
    assert got.error is not None and got.error.kind is ErrorKind.NO_THINKING
    assert not got.error.retryable


async def test_busy_server_is_overloaded_and_retried(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="ollama-modern", fail_first=1, http_status=503)
    got = await collect(make_backend(sim, "ollama-modern"), make_request("ollama-modern"))
    assert got.error is None
    sim.reset()
    sim.scenario = Scenario(profile="ollama-modern", fault="http_error", http_status=503)
    got = await collect(make_backend(sim, "ollama-modern"), make_request("ollama-modern"))
    assert got.error is not None and got.error.kind is ErrorKind.OVERLOADED
    assert "server busy" in got.error.detail


async def test_old_server_without_think_parser_gets_tags_split(sim: Simulator) -> None:
    sim.scenario = scenario = Scenario(profile="ollama-modern", ollama_version="0.9.0")
    got = await collect(make_backend(sim, "ollama-modern"), make_request("ollama-modern"))
    assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[0].body)
    assert got.reasoning


async def test_list_models_model_info_and_health(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="ollama-modern", ollama_version="0.21.3")
    backend = make_backend(sim, "ollama-modern")
    models = {m.name: m for m in await backend.list_models()}
    assert models["deepseek-r1:sim"].thinking == "on_off"
    assert models["deepseek-r1:sim"].context_length == 131072
    assert models["qwen3:sim"].effort_levels == ["low", "medium", "high", "max"]
    assert models["llama3.2:sim"].thinking == "never"
    health = await backend.health()
    assert health.reachable and health.version == "0.21.3"
    assert set(health.models) == set(models)
    await backend.aclose()


def test_parse_version() -> None:
    assert parse_version("0.12.5") == (0, 12, 5)
    assert parse_version("v0.21.3-rc1") == (0, 21, 3)
    assert parse_version(None) == ()
    assert parse_version("0.12.5") >= (0, 12, 4)
