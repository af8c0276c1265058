"""Retries before the first text, never after; timeouts by name. Real HTTP to the simulator."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from conversations.backends.base import BackendConfig, ErrorKind, Finished
from conversations.backends.openai import OpenAIBackend
from conversations.backends.retry import backoff_delay, parse_retry_after
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


@pytest.mark.parametrize("profile", ["deepseek", "vllm-old", "ollama-modern"])
async def test_503_then_success_gives_one_answer(sim: Simulator, profile: str) -> None:
    sim.scenario = scenario = Scenario(profile=profile, fail_first=1, http_status=503)
    got = await collect(make_backend(sim, profile), make_request(profile))
    assert got.error is None, got.error
    assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[-1].body)
    assert got.finished == Finished("stop")
    assert [r.status for r in chat_requests(sim)] == [503, 200]


@pytest.mark.parametrize("status", [429, 500, 502])
async def test_retryable_statuses_are_retried(sim: Simulator, status: int) -> None:
    sim.scenario = Scenario(profile="deepseek", fail_first=2, http_status=status)
    got = await collect(make_backend(sim, "deepseek"), make_request("deepseek"))
    assert got.error is None, got.error
    assert len(chat_requests(sim)) == 3


async def test_gives_up_after_max_tries(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="deepseek", fail_first=10, http_status=503)
    got = await collect(make_backend(sim, "deepseek", max_tries=3), make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.OVERLOADED
    assert got.error.retryable
    assert len(chat_requests(sim)) == 3


@pytest.mark.parametrize("status", [400, 401, 402, 404, 422])
async def test_client_errors_are_not_retried(sim: Simulator, status: int) -> None:
    sim.scenario = Scenario(profile="deepseek", fail_first=10, http_status=status)
    got = await collect(make_backend(sim, "deepseek"), make_request("deepseek"))
    assert got.error is not None and not got.error.retryable
    assert len(chat_requests(sim)) == 1


async def test_retry_after_is_honoured_and_capped(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="vllm-new", fail_first=1, http_status=429, retry_after=0.3)
    start = time.monotonic()
    got = await collect(make_backend(sim, "vllm-new", backoff_max=5), make_request("vllm-new"))
    assert got.error is None
    assert time.monotonic() - start >= 0.3
    # A huge Retry-After is capped by backoff_max.
    sim.reset()
    sim.scenario = Scenario(profile="vllm-new", fail_first=1, http_status=429, retry_after=60)
    start = time.monotonic()
    got = await collect(make_backend(sim, "vllm-new", backoff_max=0.2), make_request("vllm-new"))
    assert got.error is None
    assert time.monotonic() - start < 2


@pytest.mark.parametrize(
    "fault", ["drop", "reset", "midstream_error", "insufficient_system_resource"]
)
async def test_failure_after_the_first_token_is_not_retried(sim: Simulator, fault: str) -> None:
    sim.scenario = scenario = Scenario(profile="deepseek", fault=fault, fault_after_tokens=4)
    got = await collect(make_backend(sim, "deepseek"), make_request("deepseek"))
    assert got.error is not None
    assert got.reasoning == sim.expected(scenario, chat_requests(sim)[0].body)[0] != ""
    assert len(chat_requests(sim)) == 1


async def test_insufficient_system_resource_before_text_is_retried(sim: Simulator) -> None:
    sim.scenario = Scenario(
        profile="deepseek", fault="insufficient_system_resource", fault_after_tokens=0
    )
    got = await collect(make_backend(sim, "deepseek"), make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.OVERLOADED
    assert got.error.retryable
    assert got.reasoning == got.answer == ""
    assert len(chat_requests(sim)) == 3


async def test_content_filter_is_not_retried(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="deepseek", fault="content_filter", fault_after_tokens=0)
    got = await collect(make_backend(sim, "deepseek"), make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.CONTENT_FILTER
    assert not got.error.retryable
    assert len(chat_requests(sim)) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_is_retried_then_reported() -> None:
    config = BackendConfig(
        kind="openai", base_url=f"http://127.0.0.1:{_closed_port()}", backoff_base=0.01
    )
    backend = OpenAIBackend(config)
    got = await collect(backend, make_request("deepseek"))
    await backend.aclose()
    assert got.error is not None and got.error.kind is ErrorKind.UNREACHABLE
    assert "127.0.0.1" in got.error.detail


async def test_stall_hits_the_idle_timeout(sim: Simulator) -> None:
    sim.scenario = Scenario(
        profile="deepseek", fault="stall", stall_seconds=3, fault_after_tokens=2
    )
    start = time.monotonic()
    got = await collect(make_backend(sim, "deepseek", idle_timeout=0.3), make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.TIMEOUT
    assert got.error.detail.startswith("idle timeout")
    assert time.monotonic() - start < 1.5


async def test_slow_first_token_hits_the_idle_timeout_before_any_byte(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="vllm-new", first_token_delay=3)
    got = await collect(make_backend(sim, "vllm-new", idle_timeout=0.3), make_request("vllm-new"))
    assert got.error is not None and got.error.kind is ErrorKind.TIMEOUT


async def test_keepalives_rearm_idle_but_not_no_data(sim: Simulator) -> None:
    sim.scenario = Scenario(
        profile="deepseek", keepalives_before=8, keepalive_interval=0.1, reasoning_tokens=2,
        answer_tokens=2,
    )  # fmt: skip
    # 0.8 s of keep-alives: longer than idle (0.3 s) but comments re-arm it.
    got = await collect(
        make_backend(sim, "deepseek", idle_timeout=0.3, no_data_timeout=5), make_request("deepseek")
    )
    assert got.error is None, got.error
    sim.reset()
    sim.scenario = Scenario(profile="deepseek", fault="keepalive_only", keepalive_interval=0.1)
    got = await collect(
        make_backend(sim, "deepseek", idle_timeout=0.3, no_data_timeout=0.5),
        make_request("deepseek"),
    )
    assert got.error is not None and got.error.detail.startswith("no-data timeout")


def test_backoff_is_full_jitter_and_capped() -> None:
    config = BackendConfig(kind="openai", base_url="http://x", backoff_base=0.5, backoff_max=2)
    delays = [backoff_delay(config, 3, None) for _ in range(200)]
    assert all(0 <= d <= 2 for d in delays) and max(delays) > 1
    assert backoff_delay(config, 1, 30) == 2
    assert backoff_delay(config, 1, 0.5) == 0.5


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0


@pytest.mark.parametrize(("max_tries", "sent"), [(1, 1), (3, 3)])
async def test_a_request_the_server_read_is_sent_again_only_by_the_retry_policy(
    sim: Simulator, max_tries: int, sent: int
) -> None:
    """A server that reads the question and closes the connection without a byte of answer
    (as one closing an idle keep-alive connection just as the request arrives): the question
    is sent once per try of the retry policy, never once more underneath it."""
    backend = make_backend(sim, "deepseek", max_tries=max_tries)
    assert await backend.list_models()  # a keep-alive connection for the question to reuse
    sim.scenario = Scenario(profile="deepseek", fault="no_response")
    got = await collect(backend, make_request("deepseek"))
    chats = chat_requests(sim)
    assert len(chats) == sent
    assert got.error is not None and got.error.kind is ErrorKind.UNREACHABLE
    assert "without answering" in got.error.detail
    # The first try went over the connection the model list had used.
    assert chats[0].extra["peer"] == sim.requests[0].extra["peer"]
    await backend.aclose()


@pytest.mark.parametrize("status", [502, 504])
async def test_a_proxy_error_page_is_a_gateway_error_with_its_status(
    sim: Simulator, status: int
) -> None:
    """nginx or a load balancer in front of the model server answers with its own HTML page:
    a person is told a gateway got no answer (not that the model is overloaded), and the
    detail keeps the status."""
    from django.utils import translation

    from conversations.errors import describe_error

    sim.scenario = Scenario(
        profile="deepseek", fault="http_error", http_status=status, error_envelope="html"
    )
    got = await collect(make_backend(sim, "deepseek", max_tries=2), make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.GATEWAY
    assert got.error.status == status and got.error.detail.startswith(f"HTTP {status}: {status} ")
    assert "proxy or gateway" in got.error.detail and "<" not in got.error.detail
    assert len(chat_requests(sim)) == 2  # tried again, like any passing failure
    with translation.override("en"):
        described = describe_error(got.error.kind.value)
    assert described["retryable"] and "gateway" in str(described["message"])
