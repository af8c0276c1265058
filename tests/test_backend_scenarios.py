"""docs/backend-protocols.md §5 "Scenarios every client must pass", over every profile.

Every test talks real HTTP on loopback to the bundled simulator through the real backend
clients; nothing inside the pipeline is patched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from conversations.backends.base import (
    Answer,
    BackendConfig,
    BackendError,
    ChatRequest,
    ErrorKind,
    Event,
    Finished,
    Reasoning,
    Usage,
)
from conversations.backends.ollama import OllamaBackend
from conversations.backends.openai import OpenAIBackend, build_body
from conversations.simulator import OLLAMA_PROFILES, OPENAI_PROFILES, Scenario, Simulator

ALL_PROFILES = sorted(OPENAI_PROFILES) + sorted(OLLAMA_PROFILES)
PREOPENED = {"raw-tags-preopened", "ollama-prefilled"}
# Short scripts keep the every-offset fuzz fast while still carrying multi-byte characters.
SHORT_REASONING = "Hmm 🤔 yes."
SHORT_ANSWER = "大 <think>"


def model_for(profile: str) -> str:
    if profile in OLLAMA_PROFILES:
        return "deepseek-r1:sim"
    if profile == "deepseek":
        return "deepseek-v4-flash"
    if profile == "deepseek-legacy":
        return "deepseek-reasoner"
    return "r1-distill-sim"


_made: list[OpenAIBackend | OllamaBackend] = []


@pytest.fixture(autouse=True)
async def close_made_backends() -> AsyncIterator[None]:
    """Each backend `make_backend` made is closed after its test, on the test's loop."""
    yield
    while _made:
        await _made.pop().aclose()


def make_backend(sim: Simulator, profile: str, **config: Any) -> OpenAIBackend | OllamaBackend:
    model = model_for(profile)
    settings: dict[str, Any] = {
        "base_url": sim.base_url,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "assume_open_think": [model] if profile in PREOPENED else [],
    }
    settings.update(config)
    backend: OpenAIBackend | OllamaBackend
    if profile in OLLAMA_PROFILES:
        backend = OllamaBackend(BackendConfig(kind="ollama", **settings))
    else:
        backend = OpenAIBackend(BackendConfig(kind="openai", **settings))
    _made.append(backend)
    return backend


def make_request(profile: str, **fields: Any) -> ChatRequest:
    return ChatRequest(
        model=fields.pop("model", model_for(profile)),
        messages=fields.pop(
            "messages", [{"role": "user", "content": "Which is greater, 9.11 or 9.8?"}]
        ),
        **fields,
    )


@dataclass
class Outcome:
    events: list[Event] = field(default_factory=list)
    error: BackendError | None = None

    @property
    def reasoning(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Reasoning))

    @property
    def answer(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, Answer))

    @property
    def finished(self) -> Finished | None:
        done = [e for e in self.events if isinstance(e, Finished)]
        return done[-1] if done else None

    @property
    def usage(self) -> Usage | None:
        usage = [e for e in self.events if isinstance(e, Usage)]
        return usage[-1] if usage else None

    def check_order(self) -> None:
        """Reasoning never follows answer text; Finished is last; no empty text events."""
        kinds = [type(e) for e in self.events]
        for event in self.events:
            if isinstance(event, Reasoning | Answer):
                assert event.text
        if Answer in kinds:
            assert Reasoning not in kinds[kinds.index(Answer) :]
        if Finished in kinds:
            assert kinds.index(Finished) == len(kinds) - 1


async def collect(backend: OpenAIBackend | OllamaBackend, request: ChatRequest) -> Outcome:
    outcome = Outcome()
    try:
        async for event in backend.stream_chat(request):
            outcome.events.append(event)
    except BackendError as exc:
        outcome.error = exc
    outcome.check_order()
    return outcome


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[Simulator]:
    simulator.reset()
    yield simulator
    simulator.reset()


def chat_requests(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.path in ("/chat/completions", "/api/chat")]


# --- 1. Fragmentation fuzz ------------------------------------------------------------------

# A few profiles also exercise other line endings (a \r|\n split is among the offsets).
LINE_ENDING = {"deepseek": "crlf", "vllm-new": "cr", "llamacpp": "crlf"}
# Every byte offset is a cut in exactly one request: request j cuts at j, j+STRIDE, j+2*STRIDE…
# so the body arrives in many pieces per request and all offsets are covered in STRIDE
# requests instead of len(body) (cuts are ≥ STRIDE bytes apart, so each one still lands alone).
STRIDE = 61


@pytest.fixture
def fast_thread_switch() -> Iterator[None]:
    """The simulator runs in a thread of this process: with the default 5 ms GIL switch
    interval every small write/read ping-pong waits for it, which is what makes thousands of
    requests slow, not the code under test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(scope="module")
def sim_pool(simulator: Simulator) -> Iterator[list[Simulator]]:
    """More instances of the same simulator, so a sweep's requests run in parallel: a
    scenario (and so a cut list) belongs to a whole simulator, and each cut costs a timer
    tick on the server side, so thousands of them in a row are slow, not hard."""
    extra = [Simulator() for _ in range(FUZZ_WORKERS - 1)]
    for one in extra:
        one.start_in_thread()
    yield [simulator, *extra]
    for one in extra:
        one.stop()


FUZZ_WORKERS = 4


def _fuzz_scenario(profile: str, **fields: Any) -> Scenario:
    return Scenario(
        profile=profile,
        reasoning_text=SHORT_REASONING,
        answer_text=SHORT_ANSWER,
        line_ending=LINE_ENDING.get(profile, "lf"),
        split_tags=True,
        split_pause=0.0002,
        **fields,
    )


async def _fuzz(sims: list[Simulator], profile: str, one_cut_per_request: bool = False) -> int:
    backend = make_backend(sims[0], profile)
    request = make_request(profile)
    base = _fuzz_scenario(profile)
    if isinstance(backend, OllamaBackend):
        body = await backend.build_body(request)
    else:
        body = build_body(request)
    await backend.aclose()
    raw = sims[0].render_body(base, body)
    expected = sims[0].expected(base, body)
    assert expected[1], "the script has an answer"
    if one_cut_per_request:
        cut_sets = [[k] for k in range(1, len(raw))]
    else:
        cut_sets = [list(range(j, len(raw), STRIDE)) for j in range(1, STRIDE + 1)]
    covered: set[int] = set()

    async def worker(sim: Simulator, share: list[list[int]]) -> None:
        client = make_backend(sim, profile)  # one client per simulator, reused throughout
        try:
            sim.scenario = base
            whole = await collect(client, request)
            assert whole.error is None, whole.error
            assert (whole.reasoning, whole.answer) == expected
            for cuts in share:
                sim.scenario = dataclasses.replace(base, split_at=cuts)
                got = await collect(client, request)
                where = [raw[max(0, k - 12) : k + 12] for k in cuts[:3]]
                assert got.error is None, (cuts[:3], where, got.error)
                assert (got.reasoning, got.answer) == expected, (cuts[:3], where)
                assert got.finished is not None and got.finished.reason == "stop"
                covered.update(cuts)
        finally:
            await client.aclose()
            sim.reset()

    n = len(sims)
    await asyncio.gather(*(worker(sims[i], cut_sets[i::n]) for i in range(n)))
    assert covered >= set(range(1, len(raw)))
    return len(raw)


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_fragmentation_at_every_byte_offset(
    sim_pool: list[Simulator], profile: str, fast_thread_switch: None
) -> None:
    await _fuzz(sim_pool, profile)


async def test_fragmentation_one_cut_per_request(
    sim_pool: list[Simulator], fast_thread_switch: None
) -> None:
    # The literal form on the hardest profile (tags split mid-tag, emoji, CJK): one request
    # per byte offset, the body in exactly two pieces.
    assert await _fuzz(sim_pool, "raw-tags", one_cut_per_request=True) > 1000


# --- 2. Comments and blank lines between every frame ----------------------------------------


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_comments_between_every_frame(sim: Simulator, profile: str) -> None:
    sim.scenario = scenario = Scenario(
        profile=profile, comments_between=True, keepalives_before=3, keepalive_interval=0.01
    )
    backend = make_backend(sim, profile)
    got = await collect(backend, make_request(profile))
    assert got.error is None, got.error
    assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[0].body)
    assert got.finished == Finished("stop")
    # The script's answer has a literal <think>; it stays answer text (scenario 7).
    assert "<think>" in got.answer


# --- 3. Slow tokens, silence, keep-alive only -----------------------------------------------


@pytest.mark.parametrize("profile", ["deepseek", "llamacpp", "ollama-modern", "raw-tags"])
async def test_slow_tokens_below_the_idle_limit_do_not_time_out(
    sim: Simulator, profile: str
) -> None:
    sim.scenario = Scenario(
        profile=profile, token_rate=8, reasoning_tokens=3, answer_tokens=3,
        first_token_delay=0.2,
    )  # fmt: skip
    backend = make_backend(sim, profile, idle_timeout=0.5, no_data_timeout=0.6)
    got = await collect(backend, make_request(profile))
    assert got.error is None, got.error
    assert got.answer and got.finished == Finished("stop")


@pytest.mark.parametrize("profile", ["deepseek", "vllm-new", "ollama-modern", "raw-tags"])
async def test_silence_longer_than_the_idle_limit_times_out(sim: Simulator, profile: str) -> None:
    sim.scenario = Scenario(profile=profile, fault="stall", fault_after_tokens=4, stall_seconds=3)
    backend = make_backend(sim, profile, idle_timeout=0.3)
    start = time.monotonic()
    got = await collect(backend, make_request(profile))
    assert got.error is not None and got.error.kind is ErrorKind.TIMEOUT
    assert "idle" in got.error.detail
    assert time.monotonic() - start < 2
    assert got.reasoning or got.answer  # the partial text stays
    assert len(chat_requests(sim)) == 1  # never retried after text


@pytest.mark.parametrize("profile", ["deepseek", "llamacpp", "openrouter"])
async def test_keepalive_only_hits_the_no_data_timeout(sim: Simulator, profile: str) -> None:
    sim.scenario = Scenario(profile=profile, fault="keepalive_only", keepalive_interval=0.05)
    backend = make_backend(sim, profile, idle_timeout=0.3, no_data_timeout=0.6)
    start = time.monotonic()
    got = await collect(backend, make_request(profile))
    assert got.error is not None and got.error.kind is ErrorKind.TIMEOUT
    assert "no-data" in got.error.detail
    assert 0.5 < time.monotonic() - start < 2


async def test_keepalive_only_hits_the_total_deadline_first_when_shorter(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="deepseek", fault="keepalive_only", keepalive_interval=0.05)
    backend = make_backend(sim, "deepseek", idle_timeout=5, no_data_timeout=5, total_timeout=0.4)
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.TIMEOUT
    assert "total" in got.error.detail


@pytest.mark.parametrize("profile", ["deepseek", "vllm-new", "llamacpp"])
async def test_complete_then_keepalive_forever_is_a_complete_answer(
    sim: Simulator, profile: str
) -> None:
    # DeepSeek's harness bug (§1.2): the message is complete, then comments, never [DONE].
    sim.scenario = scenario = Scenario(
        profile=profile, fault="complete_then_keepalive", keepalive_interval=0.05
    )
    backend = make_backend(sim, profile, idle_timeout=5, no_data_timeout=30)
    start = time.monotonic()
    got = await collect(backend, make_request(profile))
    assert got.error is None, got.error
    assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[0].body)
    assert got.finished == Finished("stop")
    assert time.monotonic() - start < 4


async def test_ollama_complete_then_keepalive_never_done_times_out(sim: Simulator) -> None:
    # Ollama has no finish marker but the done line; blank lines forever are not an answer.
    sim.scenario = Scenario(
        profile="ollama-modern", fault="complete_then_keepalive", keepalive_interval=0.05
    )
    backend = make_backend(sim, "ollama-modern", idle_timeout=5, no_data_timeout=0.5)
    got = await collect(backend, make_request("ollama-modern"))
    assert got.error is not None and got.error.kind is ErrorKind.TIMEOUT
    assert got.answer  # kept


# --- 4. Mid-stream errors -------------------------------------------------------------------


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_midstream_error_keeps_partial_text(sim: Simulator, profile: str) -> None:
    sim.scenario = scenario = Scenario(
        profile=profile, fault="midstream_error", fault_after_tokens=6
    )
    backend = make_backend(sim, profile)
    got = await collect(backend, make_request(profile))
    assert got.error is not None and got.error.kind is ErrorKind.STREAM, got.error
    assert got.error.retryable  # a server-side failure: trying again may help
    assert got.finished is None
    assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[0].body)
    assert got.reasoning or got.answer
    assert len(chat_requests(sim)) == 1


async def test_llamacpp_old_error_field(sim: Simulator) -> None:
    sim.scenario = Scenario(
        profile="llamacpp", fault="midstream_error", old_error_field=True, fault_after_tokens=3,
        error_message="the request exceeds the available context size",
    )  # fmt: skip
    backend = make_backend(sim, "llamacpp")
    got = await collect(backend, make_request("llamacpp"))
    assert got.error is not None and got.error.kind is ErrorKind.STREAM
    assert "context size" in got.error.detail
    assert got.reasoning


async def test_malformed_line_is_a_protocol_error_keeping_text(sim: Simulator) -> None:
    for profile in ("deepseek", "ollama-modern"):
        sim.reset()
        sim.scenario = scenario = Scenario(
            profile=profile, fault="malformed_line", fault_after_tokens=4
        )
        got = await collect(make_backend(sim, profile), make_request(profile))
        assert got.error is not None and got.error.kind is ErrorKind.PROTOCOL, profile
        assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[0].body)


# --- 5. Abrupt drops ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["drop", "reset", "cut_mid_line"])
@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_abrupt_end_is_truncated_not_success(
    sim: Simulator, profile: str, fault: str
) -> None:
    sim.scenario = scenario = Scenario(profile=profile, fault=fault, fault_after_tokens=5)
    got = await collect(make_backend(sim, profile), make_request(profile))
    assert got.error is not None and got.error.kind is ErrorKind.TRUNCATED, got.error
    assert got.finished is None
    assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[0].body)
    assert len(chat_requests(sim)) == 1


@pytest.mark.parametrize("profile", ["deepseek", "raw-tags", "ollama-modern"])
async def test_abrupt_end_with_close_delimited_body(sim: Simulator, profile: str) -> None:
    # Without chunked encoding a FIN looks like a clean end of body: still truncated.
    sim.scenario = Scenario(profile=profile, fault="cut_mid_line", transfer="close")
    got = await collect(make_backend(sim, profile), make_request(profile))
    assert got.error is not None and got.error.kind is ErrorKind.TRUNCATED, got.error


# --- 6. length while reasoning --------------------------------------------------------------


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_length_while_thinking(sim: Simulator, profile: str) -> None:
    sim.scenario = scenario = Scenario(
        profile=profile, fault="length_while_thinking", fault_after_tokens=8
    )
    got = await collect(make_backend(sim, profile), make_request(profile))
    assert got.error is None, got.error
    expected = sim.expected(scenario, chat_requests(sim)[0].body)
    assert (got.reasoning, got.answer) == expected
    if profile == "ollama-nothink-empty":  # no reasoning at all: a plain short answer
        assert got.finished == Finished("length")
        return
    assert got.reasoning and got.answer == ""
    assert got.finished == Finished("length", reasoning_unterminated=True)


async def test_max_tokens_cut_in_the_answer_is_a_terminated_length(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="raw-tags")
    backend = make_backend(sim, "raw-tags")
    got = await collect(backend, make_request("raw-tags", max_tokens=120))
    assert got.finished == Finished("length", reasoning_unterminated=False)
    assert got.answer


# --- 7. Empty think block, no reasoning, literal <think> in the answer ----------------------


async def test_empty_think_block_gives_no_reasoning(sim: Simulator) -> None:
    sim.scenario = scenario = Scenario(profile="ollama-nothink-empty")
    got = await collect(
        make_backend(sim, "ollama-nothink-empty"), make_request("ollama-nothink-empty")
    )
    assert got.error is None
    assert not any(isinstance(e, Reasoning) for e in got.events)
    assert got.answer == sim.expected(scenario, chat_requests(sim)[0].body)[1]
    assert got.answer.startswith("## Mass")


@pytest.mark.parametrize(
    ("profile", "model", "deep_think"),
    [
        ("deepseek", "deepseek-v4-flash", False),
        ("deepseek-legacy", "deepseek-chat", False),
        ("ollama-modern", "llama3.2:sim", True),
        ("ollama-modern", "deepseek-r1:sim", False),
    ],
)
async def test_no_reasoning_at_all(
    sim: Simulator, profile: str, model: str, deep_think: bool
) -> None:
    sim.scenario = Scenario(profile=profile)
    got = await collect(
        make_backend(sim, profile), make_request(profile, model=model, deep_think=deep_think)
    )
    assert got.error is None, got.error
    assert got.reasoning == ""
    assert "`<think>` tags" in got.answer  # the literal tag in the answer stays answer
    assert got.finished == Finished("stop")


@pytest.mark.parametrize("profile", ALL_PROFILES)
async def test_literal_think_in_the_answer_stays_answer(sim: Simulator, profile: str) -> None:
    sim.scenario = scenario = Scenario(profile=profile)
    got = await collect(make_backend(sim, profile), make_request(profile))
    assert got.error is None, got.error
    expected = sim.expected(scenario, chat_requests(sim)[0].body)
    assert (got.reasoning, got.answer) == expected
    assert "`<think>` tags" in got.answer
    assert got.usage is not None and got.usage.completion_tokens


# --- 8. The transition chunk carrying both channels -----------------------------------------


@pytest.mark.parametrize("profile", ["vllm-old", "vllm-new", "dual-field", "ollama-modern"])
async def test_transition_chunk_keeps_order(sim: Simulator, profile: str) -> None:
    sim.scenario = scenario = Scenario(profile=profile, reasoning_tokens=4, answer_tokens=4)
    got = await collect(make_backend(sim, profile), make_request(profile))
    assert (got.reasoning, got.answer) == sim.expected(scenario, chat_requests(sim)[0].body)
    texts = [type(e).__name__ for e in got.events if isinstance(e, Reasoning | Answer)]
    assert texts == ["Reasoning"] * 4 + ["Answer"] * 4


async def test_dual_field_reasoning_is_not_doubled(sim: Simulator) -> None:
    sim.scenario = scenario = Scenario(profile="dual-field")
    got = await collect(make_backend(sim, "dual-field"), make_request("dual-field"))
    assert got.reasoning == sim.expected(scenario, chat_requests(sim)[0].body)[0]


# --- 9. Error bodies ------------------------------------------------------------------------

STATUS_KINDS = {
    400: ErrorKind.BAD_REQUEST,
    401: ErrorKind.AUTH,
    402: ErrorKind.NO_BALANCE,
    404: ErrorKind.MODEL_NOT_FOUND,
    422: ErrorKind.BAD_REQUEST,
    429: ErrorKind.RATE_LIMITED,
    500: ErrorKind.SERVER,
    502: ErrorKind.GATEWAY,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.GATEWAY,
}


@pytest.mark.parametrize("envelope", ["openai", "string", "object", "html"])
@pytest.mark.parametrize("status", sorted(STATUS_KINDS))
async def test_http_errors_in_every_envelope(sim: Simulator, status: int, envelope: str) -> None:
    profile = "vllm-new"
    sim.scenario = Scenario(
        profile=profile, fault="http_error", http_status=status, error_envelope=envelope,
        error_message=None if envelope == "html" else f"boom {status} from upstream",
    )  # fmt: skip
    got = await collect(make_backend(sim, profile, max_tries=1), make_request(profile))
    assert got.error is not None
    assert got.error.kind is STATUS_KINDS[status]
    assert got.error.status == status
    if envelope == "html":
        assert f"HTTP {status}" in got.error.detail and "<html>" not in got.error.detail
    else:
        assert f"boom {status} from upstream" in got.error.detail
    assert got.events == []


@pytest.mark.parametrize("profile", ["ollama-modern", "llamacpp", "openrouter", "vllm-old"])
async def test_profile_own_error_envelopes(sim: Simulator, profile: str) -> None:
    sim.scenario = Scenario(profile=profile, fault="http_error", http_status=500)
    got = await collect(make_backend(sim, profile, max_tries=2), make_request(profile))
    assert got.error is not None and got.error.kind is ErrorKind.SERVER
    assert got.error.retryable
    assert len(chat_requests(sim)) == 2  # retried once, then given up


# --- 10. Cancel -----------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["deepseek", "ollama-modern"])
async def test_cancelling_the_consumer_closes_the_upstream(sim: Simulator, profile: str) -> None:
    sim.scenario = Scenario(profile=profile, token_rate=20)
    backend = make_backend(sim, profile)
    got: list[Event] = []

    async def consume() -> None:
        async for event in backend.stream_chat(make_request(profile)):
            got.append(event)

    task = asyncio.create_task(consume())
    while len(got) < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    cancelled_at = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    gone = await sim.await_disconnect(1.0)
    assert gone is not None and gone.disconnected_at is not None
    assert gone.disconnected_at - cancelled_at < 1.0
    await backend.aclose()


async def test_aclose_on_the_generator_closes_the_upstream(sim: Simulator) -> None:
    sim.scenario = Scenario(profile="vllm-new", token_rate=20)
    backend = make_backend(sim, "vllm-new")
    stream = backend.stream_chat(make_request("vllm-new"))
    assert isinstance(await anext(stream), Reasoning)  # type: ignore[call-overload]
    closed_at = time.monotonic()
    await stream.aclose()  # type: ignore[attr-defined]
    gone = await sim.await_disconnect(1.0)
    assert gone is not None and gone.disconnected_at is not None
    assert gone.disconnected_at - closed_at < 1.0
    await backend.aclose()


# --- History --------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["deepseek-legacy", "ollama-modern"])
async def test_history_goes_out_without_reasoning(sim: Simulator, profile: str) -> None:
    sim.scenario = Scenario(profile=profile)
    messages = [
        {"role": "user", "content": "first question"},
        {
            "role": "assistant",
            "content": "<think>old thoughts</think>\n\nfirst answer",
            "reasoning_content": "old thoughts",
            "thinking": "old thoughts",
        },
        {"role": "user", "content": "second question"},
    ]
    got = await collect(make_backend(sim, profile), make_request(profile, messages=messages))
    # deepseek-legacy answers 400 to any reasoning_content in the history: this passing is
    # itself proof that none was sent.
    assert got.error is None, got.error
    sent = chat_requests(sim)[0]
    assert sent.body["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    assert b"old thoughts" not in sent.raw_body and b"<think>" not in sent.raw_body
