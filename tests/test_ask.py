"""`manage.py ask` against the simulator over both protocols, and against a closed port."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from conversations.simulator import Scenario, Simulator


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[Simulator]:
    simulator.reset()
    yield simulator
    simulator.reset()


def ask(*args: str) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("ask", *args, stdout=out)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


@pytest.mark.parametrize(
    ("kind", "profile", "model"),
    [("openai", "deepseek", "deepseek-v4-flash"), ("ollama", "ollama-modern", "deepseek-r1:sim")],
)
def test_ask_streams_reasoning_answer_and_timings(
    sim: Simulator, kind: str, profile: str, model: str
) -> None:
    sim.scenario = scenario = Scenario(profile=profile, reasoning_tokens=6, answer_tokens=6)
    out, error = ask("Which is bigger?", "--backend-url", sim.base_url, "--kind", kind,
                     "--model", model)  # fmt: skip
    assert error is None
    reasoning, answer = sim.expected(scenario, sim.requests[-1].body)
    assert reasoning in out and answer in out
    assert out.index(reasoning) < out.index(answer)
    assert "\x1b[" not in out  # not a terminal: no ANSI
    assert "first reasoning" in out and "first answer" in out and "tok/s" in out


@pytest.mark.parametrize(
    ("kind", "profile", "model"),
    [("openai", "vllm-new", "r1-distill-sim"), ("ollama", "ollama-modern", "qwen3:sim")],
)
def test_ask_json(sim: Simulator, kind: str, profile: str, model: str) -> None:
    sim.scenario = scenario = Scenario(profile=profile, reasoning_tokens=5, answer_tokens=5)
    out, error = ask("q", "--backend-url", sim.base_url, "--kind", kind, "--model", model,
                     "--json", "--temperature", "0.5", "--max-tokens", "100")  # fmt: skip
    assert error is None
    result = json.loads(out)
    assert set(result) >= {"reasoning", "answer", "finish_reason", "usage", "timings", "error"}
    assert (result["reasoning"], result["answer"]) == sim.expected(scenario, sim.requests[-1].body)
    assert result["finish_reason"] == "stop" and result["error"] is None
    assert result["usage"]["completion_tokens"] == 10
    assert result["timings"]["total_s"] > 0 and result["timings"]["first_answer_s"] is not None


def test_ask_no_think(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="deepseek", reasoning_tokens=4, answer_tokens=4)
    out, error = ask("q", "--backend-url", sim.base_url, "--kind", "openai", "--model",
                     "deepseek-v4-flash", "--no-think", "--json")  # fmt: skip
    assert error is None
    assert json.loads(out)["reasoning"] == ""
    assert sim.requests[-1].body["thinking"] == {"type": "disabled"}


def test_ask_json_reports_a_backend_error(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="deepseek", fault="http_error", http_status=402)
    out, error = ask("q", "--backend-url", sim.base_url, "--kind", "openai", "--model",
                     "deepseek-v4-flash", "--json")  # fmt: skip
    assert error is not None and error.returncode == 1
    result = json.loads(out)
    assert result["error"]["kind"] == "no_balance" and result["error"]["retryable"] is False


def test_ask_picks_the_first_model_when_none_given(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="ollama-modern", reasoning_tokens=2, answer_tokens=2)
    out, error = ask("q", "--backend-url", sim.base_url, "--kind", "ollama", "--json")
    assert error is None
    assert json.loads(out)["model"] == "deepseek-r1:sim"


def test_ask_env_backend_by_name(sim: Simulator, settings: object) -> None:
    settings.OLLAMA_BASE_URL = sim.base_url  # type: ignore[attr-defined]
    sim.scenario = Scenario(profile="ollama-modern", reasoning_tokens=2, answer_tokens=2)
    out, error = ask("q", "--backend", "ollama", "--model", "deepseek-r1:sim", "--json")
    assert error is None, error
    assert json.loads(out)["answer"]
    _, error = ask("q", "--backend", "no-such-backend")
    assert error is not None and "no-such-backend" in str(error)


@pytest.mark.parametrize("as_json", [False, True])
def test_ask_backend_down_is_one_clear_line(as_json: bool) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["q", "--backend-url", f"http://127.0.0.1:{port}", "--kind", "openai", "--model", "m"]
    out, error = ask(*args, *(["--json"] if as_json else []))
    assert error is not None
    message = str(error)
    assert message.startswith("unreachable: cannot connect to http://127.0.0.1:")
    assert "\n" not in message
    if as_json:
        assert json.loads(out)["error"]["kind"] == "unreachable"
