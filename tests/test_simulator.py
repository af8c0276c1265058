"""The bundled model simulator, driven with plain httpx over loopback.

The parsers here are deliberately small and test-local: they check the simulator's framing, not
the app's backend code (which has its own tests against this simulator).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from conversations.simulator import (
    DEFAULT_SCRIPT,
    OLLAMA_PROFILES,
    OPENAI_PROFILES,
    Scenario,
    Simulator,
    tokenize,
)

PROMPT = [{"role": "user", "content": "How are mass and energy related?"}]
CHAT = {"model": "deepseek-v4-flash", "messages": PROMPT, "stream": True}
OLLAMA_CHAT = {"model": "deepseek-r1:sim", "messages": PROMPT}


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[Simulator]:
    simulator.reset()
    yield simulator
    simulator.reset()


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=5) as c:
        yield c


# --- test-local parsers ---------------------------------------------------------------------


def parse_sse(raw: bytes) -> tuple[list[tuple[str, str]], list[str]]:
    """(events as (field, data), comments) by the WHATWG rules the app must follow."""
    events: list[tuple[str, str]] = []
    comments: list[str] = []
    data: list[str] = []
    for line in re.split(r"\r\n|\r|\n", raw.decode()):
        if not line:
            if data:
                events.append(("data", "\n".join(data)))
                data = []
            continue
        if line.startswith(":"):
            comments.append(line)
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "error":
            events.append(("error", value))
    if data:  # llama.cpp's [DONE] comes without the blank line
        events.append(("data", "\n".join(data)))
    return events, comments


def sse_chunks(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """The JSON chunks of a stream and whether it ended with [DONE]."""
    events, _ = parse_sse(raw)
    chunks = [orjson.loads(data) for kind, data in events if kind == "data" and data != "[DONE]"]
    return chunks, bool(events) and events[-1] == ("data", "[DONE]")


def split_tags(content: str, preopened: bool = False) -> tuple[str, str]:
    """Whole-text version of the inline-tag splitter (§4.3)."""
    text = content.lstrip()
    if text.startswith("<think>"):
        text = text.removeprefix("<think>")
    elif not preopened:
        return "", text
    reasoning, closed, answer = text.partition("</think>")
    return reasoning.strip(), answer.lstrip() if closed else ""


def openai_text(chunks: list[dict[str, Any]], profile: str) -> tuple[str, str]:
    reasoning, content = [], []
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            # One reasoning field per chunk, never both added together.
            piece = delta.get("reasoning_content") or delta.get("reasoning")
            if piece:
                reasoning.append(piece)
            if delta.get("content"):
                content.append(delta["content"])
    if profile.startswith("raw-tags"):
        return split_tags("".join(content), preopened=profile == "raw-tags-preopened")
    return "".join(reasoning).strip(), "".join(content).lstrip()


def ndjson(raw: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in raw.split(b"\n") if line.strip()]


def ollama_text(lines: list[dict[str, Any]], profile: str) -> tuple[str, str]:
    thinking = "".join(line["message"].get("thinking", "") for line in lines if "message" in line)
    content = "".join(line["message"]["content"] for line in lines if "message" in line)
    if profile == "ollama-modern":
        return thinking.strip(), content.lstrip()
    return split_tags(content, preopened=profile == "ollama-prefilled")


# --- the script -----------------------------------------------------------------------------


def test_tokens_join_back_to_the_exact_script() -> None:
    for text in (DEFAULT_SCRIPT.reasoning, DEFAULT_SCRIPT.answer, "  a\n\n b  "):
        assert "".join(tokenize(text)) == text
    assert "你" in DEFAULT_SCRIPT.answer and "🌍" in DEFAULT_SCRIPT.answer
    assert "```python" in DEFAULT_SCRIPT.answer and "$E=mc^2$" in DEFAULT_SCRIPT.answer


def test_token_counts_are_generated_deterministically(sim: Simulator) -> None:
    scenario = Scenario(reasoning_tokens=800, answer_tokens=1600)
    body = sim.render_body(scenario)
    chunks, done = sse_chunks(body)
    assert done
    assert chunks[-1]["usage"]["completion_tokens"] == 2400
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 800
    assert sim.render_body(scenario) == body
    reasoning, answer = sim.expected(scenario)
    assert len(tokenize(reasoning)) == 800 and len(tokenize(answer)) == 1600


# --- profiles -------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(OPENAI_PROFILES))
def test_openai_profiles_stream_what_expected_says(
    sim: Simulator, client: httpx.Client, profile: str
) -> None:
    sim.scenario = Scenario(profile=profile)
    body = {**CHAT, "stream_options": {"include_usage": True}}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks, done = sse_chunks(response.content)
    assert done
    assert openai_text(chunks, profile) == sim.expected()
    assert sim.requests[-1].body == body and sim.requests[-1].profile == profile
    finish = [c for c in chunks if c.get("choices") and c["choices"][0].get("finish_reason")]
    assert [c["choices"][0]["finish_reason"] for c in finish] == ["stop"]
    usage = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usage) == 1
    assert usage[0]["total_tokens"] == usage[0]["prompt_tokens"] + usage[0]["completion_tokens"]


def test_deepseek_framing_matches_the_v4_captures(sim: Simulator, client: httpx.Client) -> None:
    chunks, _ = sse_chunks(client.post("/chat/completions", json=CHAT).content)
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "reasoning_content": "",
    }
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] <= usage["completion_tokens"]
    assert (
        usage["prompt_cache_hit_tokens"] + usage["prompt_cache_miss_tokens"]
        == (usage["prompt_tokens"])
    )
    assert chunks[-1]["choices"][0]["delta"] == {"content": "", "reasoning_content": None}


def test_vllm_new_sends_usage_chunk_only_when_asked(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(profile="vllm-new")
    plain, _ = sse_chunks(client.post("/v1/chat/completions", json=CHAT).content)
    assert not any("usage" in c for c in plain)
    body = {**CHAT, "stream_options": {"include_usage": True}}
    chunks, _ = sse_chunks(client.post("/v1/chat/completions", json=body).content)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert not any("reasoning_content" in c["choices"][0]["delta"] for c in chunks[:-1])
    both = [c for c in chunks[:-1] if {"reasoning", "content"} <= c["choices"][0]["delta"].keys()]
    assert len(both) == 1  # the transition chunk carries the end of one and start of the other


def test_llamacpp_quirks(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(profile="llamacpp", keepalives_before=1, keepalive_interval=0.01)
    raw = client.post("/v1/chat/completions", json=CHAT).content
    assert raw.startswith(b": ping\n\n") and raw.endswith(b"}\n\ndata: [DONE]\n")
    chunks, _ = sse_chunks(raw)
    assert chunks[0]["choices"][0]["delta"] == {"content": None, "role": "assistant"}
    assert "timings" in chunks[-1]


def test_openrouter_comments_and_reasoning_field(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(profile="openrouter", keepalives_before=2, keepalive_interval=0.01)
    raw = client.post("/v1/chat/completions", json=CHAT).content
    _, comments = parse_sse(raw)
    assert comments == [": OPENROUTER PROCESSING"] * 2
    chunks, _ = sse_chunks(raw)
    assert chunks[0]["choices"][0]["delta"]["reasoning"]


@pytest.mark.parametrize("profile", sorted(OLLAMA_PROFILES))
def test_ollama_profiles_stream_what_expected_says(
    sim: Simulator, client: httpx.Client, profile: str
) -> None:
    sim.scenario = Scenario(profile=profile)
    response = client.post("/api/chat", json=OLLAMA_CHAT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = ndjson(response.content)
    assert ollama_text(lines, profile) == sim.expected()
    done = lines[-1]
    assert done["done"] is True and done["done_reason"] == "stop"
    assert all(isinstance(done[k], int) for k in ("total_duration", "eval_duration"))
    assert not any(line["done"] for line in lines[:-1])


def test_ollama_modern_transition_line_and_text_on_done_line(
    sim: Simulator, client: httpx.Client
) -> None:
    lines = ndjson(client.post("/api/chat", json=OLLAMA_CHAT).content)
    both = [
        line for line in lines if line["message"].get("thinking") and line["message"]["content"]
    ]
    assert len(both) == 1
    assert lines[-1]["message"]["content"] == tokenize(DEFAULT_SCRIPT.answer)[-1]
    assert sim.expected() == (DEFAULT_SCRIPT.reasoning, DEFAULT_SCRIPT.answer)


def test_line_endings_and_comments_between_frames(sim: Simulator, client: httpx.Client) -> None:
    for ending, raw_ending in (("crlf", b"\r\n"), ("cr", b"\r")):
        sim.scenario = Scenario(line_ending=ending, comments_between=True)
        raw = client.post("/chat/completions", json=CHAT).content
        assert b"\n" not in raw.replace(raw_ending, b"") if ending == "cr" else raw_ending in raw
        chunks, done = sse_chunks(raw)
        assert done and openai_text(chunks, "deepseek") == sim.expected()
        _, comments = parse_sse(raw)
        assert len(comments) >= len(chunks)


def test_split_tags_cut_inline_tags_mid_tag(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(profile="raw-tags", split_tags=True)
    chunks, _ = sse_chunks(client.post("/chat/completions", json=CHAT).content)
    pieces = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert "<th" in pieces and "ink>" in pieces and "</thi" in pieces and "nk>" in pieces
    assert openai_text(chunks, "raw-tags") == sim.expected()


# --- request handling -----------------------------------------------------------------------


def test_thinking_disabled_means_no_reasoning(sim: Simulator, client: httpx.Client) -> None:
    off = {**CHAT, "thinking": {"type": "disabled"}}
    chunks, _ = sse_chunks(client.post("/chat/completions", json=off).content)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert not any("reasoning_content" in c["choices"][0]["delta"] for c in chunks)
    assert openai_text(chunks, "deepseek") == ("", DEFAULT_SCRIPT.answer)
    assert sim.expected(request_body=off) == ("", DEFAULT_SCRIPT.answer)
    chat_model = {**CHAT, "model": "deepseek-chat"}
    chunks, _ = sse_chunks(client.post("/chat/completions", json=chat_model).content)
    assert openai_text(chunks, "deepseek") == ("", DEFAULT_SCRIPT.answer)
    lines = ndjson(client.post("/api/chat", json={**OLLAMA_CHAT, "think": False}).content)
    assert ollama_text(lines, "ollama-modern") == ("", DEFAULT_SCRIPT.answer)


def test_max_tokens_truncates_with_length(sim: Simulator, client: httpx.Client) -> None:
    short = {**CHAT, "max_tokens": 4}
    chunks, _ = sse_chunks(client.post("/chat/completions", json=short).content)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert openai_text(chunks, "deepseek") == ("".join(tokenize(DEFAULT_SCRIPT.reasoning)[:4]), "")
    assert sim.expected(request_body=short) == openai_text(chunks, "deepseek")
    sim.scenario = Scenario(profile="raw-tags")
    chunks, _ = sse_chunks(client.post("/chat/completions", json=short).content)
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "<think>" in content and "</think>" not in content
    options = {**OLLAMA_CHAT, "options": {"num_predict": 3}}
    lines = ndjson(client.post("/api/chat", json=options).content)
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 3


def test_non_stream_returns_one_json_body(sim: Simulator, client: httpx.Client) -> None:
    response = client.post("/chat/completions", json={**CHAT, "stream": False})
    message = response.json()["choices"][0]["message"]
    assert (message["reasoning_content"], message["content"]) == sim.expected()
    response = client.post("/api/chat", json={**OLLAMA_CHAT, "stream": False})
    payload = response.json()
    assert (payload["message"]["thinking"], payload["message"]["content"]) == sim.expected(
        path="/api/chat"
    )
    assert payload["done"] is True and payload["eval_count"] > 0
    sim.scenario = Scenario(keepalives_before=2, keepalive_interval=0.01)
    response = client.post("/chat/completions", json={**CHAT, "stream": False})
    assert response.content.startswith(b"\n\n{")
    assert orjson.loads(response.content)["choices"][0]["finish_reason"] == "stop"


def test_ollama_think_checks(sim: Simulator, client: httpx.Client) -> None:
    llama = {**OLLAMA_CHAT, "model": "llama3.2:sim", "think": True}
    response = client.post("/api/chat", json=llama)
    assert response.status_code == 400
    assert response.json() == {"error": '"llama3.2:sim" does not support thinking'}
    assert client.post("/api/chat", json={**llama, "think": False}).status_code == 200
    sim.scenario = Scenario(ollama_version="0.11.0")
    response = client.post("/api/chat", json=llama)
    assert response.json() == {
        "error": "registry.ollama.ai/library/llama3.2:sim does not support thinking"
    }
    response = client.post("/api/chat", json={**OLLAMA_CHAT, "think": "extreme"})
    assert response.status_code == 400
    assert response.json()["error"].startswith('invalid think value: "extreme" (must be')
    sim.reset()
    assert client.post("/api/chat", json={**OLLAMA_CHAT, "think": "high"}).status_code == 200
    response = client.post("/api/chat", json={**OLLAMA_CHAT, "model": "nope:1b"})
    assert (response.status_code, response.json()) == (404, {"error": "model 'nope:1b' not found"})
    # Before v0.12.4 an unset think meant the tags stayed in the content.
    sim.scenario = Scenario(ollama_version="0.9.6")
    lines = ndjson(client.post("/api/chat", json=OLLAMA_CHAT).content)
    assert lines[0]["message"]["content"] == "<think>"
    assert ollama_text(lines, "ollama-legacy") == sim.expected()


def test_metadata_endpoints(sim: Simulator, client: httpx.Client) -> None:
    tags = client.get("/api/tags").json()["models"]
    assert [m["name"] for m in tags] == ["deepseek-r1:sim", "qwen3:sim", "llama3.2:sim"]
    show = client.post("/api/show", json={"model": "qwen3:sim"}).json()
    assert "thinking" in show["capabilities"]
    assert (
        "thinking"
        not in client.post("/api/show", json={"model": "llama3.2:sim"}).json()["capabilities"]
    )
    assert client.post("/api/show", json={"model": "x"}).status_code == 404
    sim.scenario = Scenario(ollama_version="0.21.3")
    assert client.get("/api/version").json() == {"version": "0.21.3"}
    for path in ("/models", "/v1/models"):
        ids = [m["id"] for m in client.get(path).json()["data"]]
        assert "deepseek-v4-flash" in ids and "r1-distill-sim" in ids
    assert client.get("/user/balance").json()["is_available"] is True
    response = client.post("/chat/completions", json={**CHAT, "model": "gpt-99"})
    assert response.status_code == 404 and "gpt-99" in response.json()["error"]["message"]
    assert [r.path for r in sim.requests][:3] == ["/api/tags", "/api/show", "/api/show"]


def test_api_key_is_enforced_on_openai_paths() -> None:
    locked = Simulator(api_key="sk-right")
    base = locked.start_in_thread()
    try:
        response = httpx.post(
            base + "/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-wrongkey"}
        )
        assert response.status_code == 401
        assert response.json()["error"] == {
            "message": "Authentication Fails, Your api key: ****gkey is invalid",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_request_error",
        }
        assert httpx.get(base + "/models").status_code == 401
        ok = httpx.get(base + "/models", headers={"Authorization": "Bearer sk-right"})
        assert ok.status_code == 200
        assert httpx.get(base + "/api/tags").status_code == 200  # Ollama has no keys
    finally:
        locked.stop()


def test_oversized_body_is_refused(sim: Simulator, client: httpx.Client) -> None:
    response = client.post("/chat/completions", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413


def test_keep_alive_reuses_one_connection(sim: Simulator, client: httpx.Client) -> None:
    for _ in range(3):
        assert sse_chunks(client.post("/chat/completions", json=CHAT).content)[1]
    client.get("/api/version")
    assert len({r.extra["peer"] for r in sim.requests}) == 1


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("envelope", "status", "check"),
    [
        (None, 402, lambda j: j["error"]["message"] == "Insufficient Balance"),
        ("openai", 429, lambda j: j["error"]["type"] == "rate_limit_error"),
        ("string", 500, lambda j: isinstance(j["error"], str)),
        ("object", 422, lambda j: j["object"] == "error" and j["code"] == 422),
        (None, 503, lambda j: j["error"]["message"] == "Server Overloaded"),
        (None, 400, lambda j: "error" in j),
        (None, 404, lambda j: "error" in j),
    ],
)
def test_http_errors_in_each_envelope(
    sim: Simulator, client: httpx.Client, envelope: str | None, status: int, check: Any
) -> None:
    sim.scenario = Scenario(
        fault="http_error", http_status=status, error_envelope=envelope, retry_after=2
    )
    response = client.post("/chat/completions", json=CHAT)
    assert response.status_code == status and response.headers["retry-after"] == "2"
    assert check(response.json())
    assert sim.expected() == ("", "")


def test_html_502_and_ollama_string_errors(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(fault="http_error", http_status=502, error_envelope="html")
    response = client.post("/chat/completions", json=CHAT)
    assert response.status_code == 502 and response.headers["content-type"] == "text/html"
    assert b"<h1>502 Bad Gateway</h1>" in response.content
    sim.scenario = Scenario(fault="http_error", http_status=503)
    response = client.post("/api/chat", json=OLLAMA_CHAT)
    assert response.status_code == 503 and response.json()["error"].startswith("server busy")


def test_html_504_page(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(fault="http_error", http_status=504, error_envelope="html")
    response = client.post("/chat/completions", json=CHAT)
    assert response.status_code == 504 and b"<h1>504 Gateway Timeout</h1>" in response.content


def test_no_response_reads_the_request_and_closes(sim: Simulator, client: httpx.Client) -> None:
    assert client.get("/v1/models").status_code == 200  # metadata is still answered
    sim.scenario = Scenario(fault="no_response")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/chat/completions", json=CHAT)
    chat = [r for r in sim.requests if r.path == "/chat/completions"]
    assert len(chat) == 1 and chat[0].body == CHAT and chat[0].status == 0
    assert sim.expected() == ("", "")


def test_fail_first_then_stream(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(fail_first=2, http_status=429)
    statuses = [client.post("/chat/completions", json=CHAT).status_code for _ in range(3)]
    assert statuses == [429, 429, 200]


def test_drop_ends_without_terminator(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(fault="drop", fault_after_tokens=3)
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/chat/completions", json=CHAT) as response,
    ):
        for piece in response.iter_raw():
            received += piece
    chunks, done = sse_chunks(received)
    assert not done and openai_text(chunks, "deepseek") == sim.expected()
    assert sim.expected()[0] == "".join(tokenize(DEFAULT_SCRIPT.reasoning)[:3])
    # Without chunked framing the same fault is a clean EOF before any terminator.
    sim.scenario = Scenario(profile="ollama-modern", fault="drop", transfer="close")
    lines = ndjson(client.post("/api/chat", json=OLLAMA_CHAT).content)
    assert len(lines) == 5 and not lines[-1]["done"]
    assert ollama_text(lines, "ollama-modern") == sim.expected()


def test_reset_sends_rst(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(fault="reset", fault_after_tokens=2)
    received = b""
    with (
        pytest.raises(httpx.TransportError),
        client.stream("POST", "/chat/completions", json=CHAT) as response,
    ):
        for piece in response.iter_raw():
            received += piece
    assert b"reasoning_content" in received and b"[DONE]" not in received
    assert not sim.requests[-1].client_disconnected


def test_cut_mid_line_and_malformed_line(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(fault="cut_mid_line", transfer="close", fault_after_tokens=2)
    raw = client.post("/chat/completions", json=CHAT).content
    assert not raw.endswith(b"\n\n") and raw.rsplit(b"\n\n", 1)[-1].startswith(b"data: {")
    sim.scenario = Scenario(fault="malformed_line", fault_after_tokens=2)
    events, _ = parse_sse(client.post("/chat/completions", json=CHAT).content)
    bad = [data for _, data in events if data != "[DONE]" and not data.startswith("{")]
    assert len(bad) == 1 or any(not _is_json(d) for _, d in events)
    assert sim.expected()[0] == "".join(tokenize(DEFAULT_SCRIPT.reasoning)[:2])


def _is_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return text == "[DONE]"
    return True


@pytest.mark.parametrize(
    ("profile", "old_field", "marker"),
    [
        ("deepseek", False, b'data: {"error":{"message":"The server had an error'),
        ("llamacpp", True, b'error: {"code":500'),
        ("llamacpp", False, b'data: {"error":{"code":500'),
        ("openrouter", False, b'"finish_reason":"error"'),
        ("ollama-modern", False, b'{"error":"an error was encountered while running the model"}'),
    ],
)
def test_midstream_error_shapes(
    sim: Simulator, client: httpx.Client, profile: str, old_field: bool, marker: bytes
) -> None:
    sim.scenario = Scenario(
        profile=profile, fault="midstream_error", fault_after_tokens=4, old_error_field=old_field
    )
    path = "/api/chat" if profile.startswith("ollama") else "/chat/completions"
    response = client.post(path, json=OLLAMA_CHAT if path == "/api/chat" else CHAT)
    assert response.status_code == 200 and marker in response.content
    assert sim.expected()[0] == "".join(tokenize(DEFAULT_SCRIPT.reasoning)[:4]).strip()


@pytest.mark.parametrize("fault", ["length_while_thinking", "content_filter"])
def test_finish_reason_faults(sim: Simulator, client: httpx.Client, fault: str) -> None:
    sim.scenario = Scenario(fault=fault, fault_after_tokens=6)
    chunks, done = sse_chunks(client.post("/chat/completions", json=CHAT).content)
    reason = chunks[-1]["choices"][0]["finish_reason"]
    assert done and reason == ("length" if fault == "length_while_thinking" else fault)
    assert openai_text(chunks, "deepseek") == sim.expected()
    assert sim.expected()[1] == ""  # still inside the reasoning when it stopped


def test_keepalive_only_then_client_leaves(sim: Simulator) -> None:
    sim.scenario = Scenario(fault="keepalive_only", keepalive_interval=0.02)
    received = b""
    with (
        httpx.Client(base_url=sim.base_url) as client,
        client.stream("POST", "/chat/completions", json=CHAT) as response,
    ):
        started = time.monotonic()
        for piece in response.iter_raw():
            received += piece
            if time.monotonic() - started > 0.2:
                break
    events, comments = parse_sse(received)
    assert not events and len(comments) >= 3
    gone = sim.wait_for_disconnect(1.0)
    assert gone is sim.requests[-1]


def test_complete_then_keepalive_never_sends_done(sim: Simulator) -> None:
    sim.scenario = Scenario(fault="complete_then_keepalive", keepalive_interval=0.02)
    received = b""
    with (
        httpx.Client(base_url=sim.base_url) as client,
        client.stream("POST", "/chat/completions", json=CHAT) as response,
    ):
        for piece in response.iter_raw():
            received += piece
            if received.count(b": keep-alive") >= 3:
                break
    chunks, done = sse_chunks(received)
    assert not done and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert openai_text(chunks, "deepseek") == sim.expected()


def test_stall_pauses_then_continues(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(fault="stall", fault_after_tokens=3, stall_seconds=0.3)
    gaps: list[float] = []
    last = time.monotonic()
    with client.stream("POST", "/chat/completions", json=CHAT) as response:
        for _ in response.iter_raw():
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    assert max(gaps) >= 0.25
    assert sim.expected() == (DEFAULT_SCRIPT.reasoning, DEFAULT_SCRIPT.answer)


# --- timing, disconnects, fragmentation -----------------------------------------------------


def test_client_disconnect_is_recorded_within_a_second(sim: Simulator) -> None:
    sim.scenario = Scenario(token_rate=4, first_token_delay=0.05)
    with (
        httpx.Client(base_url=sim.base_url) as client,
        client.stream("POST", "/chat/completions", json=CHAT) as response,
    ):
        for _piece in response.iter_raw():
            break  # one frame, then hang up while the server sleeps before the next token
    closed = time.monotonic()
    request = sim.wait_for_disconnect(1.0)
    assert request is not None and request.disconnected_at is not None
    assert request.disconnected_at - closed < 1.0
    assert request.ended_at is None and sim.wait_for_disconnect(0.05) is None


async def test_async_mode_and_await_disconnect() -> None:
    own = Simulator()
    base = await own.start()
    own.scenario = Scenario(profile="ollama-modern", first_token_delay=5)
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/api/chat", json=OLLAMA_CHAT, timeout=0.2)
            request = await own.await_disconnect(1.0)
            assert request is not None and request.disconnected_at is not None
            assert request.disconnected_at - started < 1.0
    finally:
        await own.stop_async()


def test_token_rate_is_roughly_respected(sim: Simulator, client: httpx.Client) -> None:
    sim.scenario = Scenario(token_rate=100, reasoning_tokens=20, answer_tokens=20)
    started = time.monotonic()
    chunks, done = sse_chunks(client.post("/chat/completions", json=CHAT).content)
    elapsed = time.monotonic() - started
    assert done and len(chunks) == 42  # role + 40 tokens + finish
    assert 0.35 <= elapsed < 0.8


async def test_split_at_gives_separate_reads(sim: Simulator) -> None:
    body = sim.render_body(Scenario())
    emoji = body.index("🙂".encode()) + 2  # inside the emoji's four bytes
    cuts = [5, body.index(b"\n\n") + 1, emoji, len(body) - 3]
    sim.scenario = Scenario(split_at=cuts, split_pause=0.03)
    async with (
        httpx.AsyncClient(base_url=sim.base_url) as client,
        client.stream("POST", "/chat/completions", json=CHAT) as response,
    ):
        pieces = [piece async for piece in response.aiter_raw()]
    joined = b"".join(pieces)
    offsets = [sum(len(p) for p in pieces[: i + 1]) for i in range(len(pieces) - 1)]
    assert offsets == cuts
    chunks, done = sse_chunks(joined)
    assert done and openai_text(chunks, "deepseek") == sim.expected()


def test_render_body_matches_what_is_served(sim: Simulator, client: httpx.Client) -> None:
    for profile in ("vllm-old", "ollama-legacy"):
        sim.scenario = Scenario(profile=profile)
        served = client.post(
            "/api/chat" if profile.startswith("ollama") else "/chat/completions",
            json=OLLAMA_CHAT if profile.startswith("ollama") else CHAT,
        ).content
        rendered = sim.render_body()
        # Ids and timestamps differ; the shape and the text do not.
        assert len(served.splitlines()) == len(rendered.splitlines())
        if profile.startswith("ollama"):
            assert ollama_text(ndjson(rendered), profile) == sim.expected()
        else:
            assert openai_text(sse_chunks(rendered)[0], profile) == sim.expected()


async def test_many_concurrent_streams(sim: Simulator) -> None:
    sim.scenario = Scenario(token_rate=50, reasoning_tokens=10, answer_tokens=10)
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=sim.base_url, limits=limits, timeout=10) as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(client.post("/chat/completions", json=CHAT) for _ in range(200))
        )
        elapsed = time.monotonic() - started
    assert all(sse_chunks(r.content)[1] for r in responses)
    assert elapsed < 2.5  # 22 frames at 50/s is ~0.4 s per stream, all at once


def test_head_and_unknown_paths_keep_the_connection_usable(
    sim: Simulator, client: httpx.Client
) -> None:
    assert client.head("/").status_code == 200
    assert client.get("/").text == "Ollama is running"
    assert client.get("/nope").status_code == 404
    assert client.get("/chat/completions").status_code == 405
    assert sse_chunks(client.post("/chat/completions", json=CHAT).content)[1]
    assert len({r.extra["peer"] for r in sim.requests}) == 1


def test_the_management_command_serves_a_stream(simulator: Simulator) -> None:
    """`manage.py simulate_models` (the benchmarks' model server, and a demo's) starts and
    streams an answer."""
    import subprocess
    import sys

    from tests.processes import BASE_DIR, app_env, free_port

    port = free_port()
    command = [sys.executable, "manage.py", "simulate_models", "--port", str(port),
               "--reasoning-tokens", "3", "--answer-tokens", "4", "--rate", "0"]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=BASE_DIR, env=app_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline().decode()
        assert f"127.0.0.1:{port}" in banner, banner + process.stdout.read(4000).decode()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            chunks, done = sse_chunks(client.post("/chat/completions", json=CHAT).content)
        assert done
        scenario = Scenario(reasoning_tokens=3, answer_tokens=4)
        assert openai_text(chunks, "deepseek") == simulator.expected(scenario)
    finally:
        process.terminate()
        process.wait(10)
