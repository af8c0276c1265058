"""Unit tests of the pure stream parsers: bytes in, events out (no I/O, no mocks)."""

from __future__ import annotations

import time

import pytest

from conversations.backends.base import Answer, Reasoning
from conversations.backends.streams import (
    ChannelAssembler,
    NDJSONReader,
    SplitState,
    SSEEvent,
    SSEReader,
    ThinkSplitter,
)


def sse_all(chunks: list[bytes]) -> tuple[list[SSEEvent], SSEReader]:
    reader = SSEReader()
    out: list[SSEEvent] = []
    for chunk in chunks:
        out.extend(reader.feed(chunk))
    out.extend(reader.finish())
    return out, reader


def every_split(data: bytes) -> list[list[bytes]]:
    return [[data[:k], data[k:]] for k in range(len(data) + 1)]


# --- SSE ------------------------------------------------------------------------------------


def test_sse_basic_events_and_done() -> None:
    events, _ = sse_all([b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n'])
    assert events == [
        SSEEvent("data", '{"a":1}'),
        SSEEvent("data", '{"b":2}'),
        SSEEvent("done", "[DONE]"),
    ]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_sse_line_endings(eol: bytes) -> None:
    body = b": keep-alive" + eol + eol + b"data: x" + eol + eol + b"data: [DONE]" + eol + eol
    for chunks in every_split(body):
        events, reader = sse_all(chunks)
        assert events == [SSEEvent("data", "x"), SSEEvent("done", "[DONE]")], chunks
        assert reader.comments == 1


def test_sse_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    # If the \n after a chunk-final \r were a second line end, "a" and "b" would be two events.
    events, _ = sse_all([b"data: a\r", b"\ndata: b\r\n\r\n"])
    assert events == [SSEEvent("data", "a\nb")]


def test_sse_multiline_data_joined_with_newline_and_one_space_dropped() -> None:
    events, _ = sse_all([b"data:no-space\ndata:  two-spaces\ndata\n\n"])
    assert events == [SSEEvent("data", "no-space\n two-spaces\n")]


def test_sse_comments_are_liveness_only() -> None:
    events, reader = sse_all([b": OPENROUTER PROCESSING\n\n: ping\n\n:\n\ndata: 1\n\n"])
    assert events == [SSEEvent("data", "1")]
    assert reader.comments == 3


def test_sse_unknown_fields_ignored_and_event_name_kept() -> None:
    events, _ = sse_all([b"id: 7\nretry: 100\nfoo: bar\nevent: error\ndata: {}\n\n"])
    assert events == [SSEEvent("error", "{}", "error")]


def test_sse_llamacpp_error_field() -> None:
    body = b'error: {"code":400,"message":"too long"}\n\ndata: [DONE]\n\n'
    events, _ = sse_all([body])
    assert events == [
        SSEEvent("error", '{"code":400,"message":"too long"}'),
        SSEEvent("done", "[DONE]"),
    ]


def test_sse_flushes_undispatched_data_at_eof() -> None:
    # llama.cpp: `[DONE]` with no trailing blank line, or even no final newline.
    for body in (b"data: 1\n\ndata: [DONE]\n", b"data: 1\n\ndata: [DONE]"):
        events, _ = sse_all([body])
        assert events == [SSEEvent("data", "1"), SSEEvent("done", "[DONE]")]


def test_sse_utf8_split_inside_multibyte_characters() -> None:
    text = "思考 🤔 ok"
    body = f"data: {text}\n\n".encode()
    for chunks in every_split(body):
        events, _ = sse_all(chunks)
        assert events == [SSEEvent("data", text)]
    # One byte at a time too.
    events, _ = sse_all([body[i : i + 1] for i in range(len(body))])
    assert events == [SSEEvent("data", text)]


def test_sse_bom_is_skipped() -> None:
    events, _ = sse_all([b"\xef\xbb", b"\xbfdata: a\n\n"])
    assert events == [SSEEvent("data", "a")]


def test_sse_every_split_of_a_realistic_stream() -> None:
    body = (
        b": keep-alive\r\n\r\n"
        b'data: {"choices":[{"delta":{"reasoning_content":"\xe6\x80\x9d"}}]}\r\n\r\n'
        b'data: {"choices":[{"delta":{"content":"<think>"}}]}\r\n\r\n'
        b"data: [DONE]"
    )
    expected, _ = sse_all([body])
    assert [e.kind for e in expected] == ["data", "data", "done"]
    for chunks in every_split(body):
        assert sse_all(chunks)[0] == expected


def test_sse_long_line_in_many_chunks_is_linear() -> None:
    reader = SSEReader()
    payload = b"x" * 200_000
    start = time.perf_counter()
    reader.feed(b"data: ")
    for i in range(0, len(payload), 10):
        reader.feed(payload[i : i + 10])
    events = reader.feed(b"\n\n")
    assert time.perf_counter() - start < 1.0
    assert events[0].data == "x" * 200_000


# --- NDJSON ---------------------------------------------------------------------------------


def test_ndjson_lines_blank_lines_and_tail() -> None:
    body = b'{"a":1}\n\n  \n{"b":2}\n{"c":3}'
    for chunks in every_split(body):
        reader = NDJSONReader()
        lines: list[bytes] = []
        for chunk in chunks:
            lines.extend(reader.feed(chunk))
        lines.extend(reader.finish())
        assert lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}'], chunks


def test_ndjson_crlf_lines_are_kept_for_the_json_parser() -> None:
    reader = NDJSONReader()
    assert reader.feed(b'{"a":1}\r\n{"b"') == [b'{"a":1}\r']
    assert reader.finish() == [b'{"b"']


# --- Think splitter -------------------------------------------------------------------------


def split_run(pieces: list[str], assume_open: bool = False) -> tuple[str, str, ThinkSplitter]:
    splitter = ThinkSplitter(assume_open)
    events: list[Reasoning | Answer] = []
    for piece in pieces:
        events.extend(splitter.feed(piece))
    events.extend(splitter.finish())
    for event in events:
        assert event.text, "no empty events"
    reasoning = "".join(e.text for e in events if isinstance(e, Reasoning))
    answer = "".join(e.text for e in events if isinstance(e, Answer))
    # Reasoning events never follow an answer event.
    kinds = [type(e) for e in events]
    if Answer in kinds:
        assert Reasoning not in kinds[kinds.index(Answer) :]
    return reasoning, answer, splitter


SPLIT_CASES = [
    # (text, assume_open, reasoning, answer, unterminated)
    (
        "<think>\nOkay, 9.11 vs 9.8.\n</think>\n\n9.8 is greater.",
        False,
        "Okay, 9.11 vs 9.8.",
        "9.8 is greater.",
        False,
    ),
    ("  <think>a b</think>c <think>x</think>", False, "a b", "c <think>x</think>", False),
    ("<think>\n\n</think>\n\nHello", False, "", "Hello", False),
    ("Hello <think> world", False, "", "Hello <think> world", False),
    ("\n\nplain answer\n", False, "", "plain answer\n", False),
    ("<think>still thinking  \n", False, "still thinking", "", True),
    ("<think>", False, "", "", True),
    ("<th", False, "", "<th", False),
    ("reasoning here\n</think>\n\nanswer", True, "reasoning here", "answer", False),
    ("<think>\nr</think>a", True, "r", "a", False),
    ("\n just reasoning", True, "just reasoning", "", True),
    ("a </thin b</think>c", False, "", "a </thin b</think>c", False),
    ("<think>a </thin b</think>c", False, "a </thin b", "c", False),
    ("<think>line1\n\n  line2 </think>", False, "line1\n\n  line2", "", False),
    ("<think>🤔 x</think>\n🙂", False, "🤔 x", "🙂", False),
]


@pytest.mark.parametrize(
    ("text", "assume_open", "reasoning", "answer", "unterminated"), SPLIT_CASES
)
def test_splitter_every_split_point(
    text: str, assume_open: bool, reasoning: str, answer: str, unterminated: bool
) -> None:
    variants = [[text], list(text)]
    variants += [[text[:i], text[i:]] for i in range(len(text) + 1)]
    variants += [
        [text[:i], text[i:j], text[j:]] for i in range(len(text)) for j in range(i, len(text), 3)
    ]
    for pieces in variants:
        got_r, got_a, splitter = split_run(pieces, assume_open)
        assert (got_r, got_a) == (reasoning, answer), pieces
        assert splitter.reasoning_unterminated is unterminated, pieces


def test_splitter_states_and_no_reentry() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("  <th") == []
    assert splitter.state is SplitState.START
    assert splitter.feed("ink>\n") == []
    assert splitter.state is SplitState.OPEN_WS
    assert splitter.feed("Hmm") == [Reasoning("Hmm")]
    assert splitter.state is SplitState.THINK
    assert splitter.feed(" </thi") == []
    assert splitter.feed("nk>\n\n") == []
    assert splitter.state is SplitState.CLOSE_WS
    assert splitter.feed("Yes") == [Answer("Yes")]
    assert splitter.feed("<think>") == [Answer("<think>")]
    assert splitter.state is SplitState.ANSWER


def test_splitter_streams_reasoning_without_waiting_for_the_close_tag() -> None:
    splitter = ThinkSplitter()
    assert splitter.feed("<think>one two") == [Reasoning("one two")]
    assert splitter.feed(" three <") == [Reasoning(" three")]
    assert splitter.feed("b>") == [Reasoning(" <b>")]


def test_splitter_is_fast_on_long_streams() -> None:
    splitter = ThinkSplitter()
    tokens = ["<think>"] + ["word "] * 100_000 + ["</think>"] + ["ans "] * 100_000
    start = time.perf_counter()
    for token in tokens:
        splitter.feed(token)
    splitter.finish()
    assert time.perf_counter() - start < 1.0


# --- Channel assembler ----------------------------------------------------------------------


def assemble(
    steps: list[tuple[str, str]], assume_open: bool = False
) -> tuple[str, str, ChannelAssembler]:
    asm = ChannelAssembler(assume_open)
    events: list[Reasoning | Answer] = []
    for channel, text in steps:
        events.extend(asm.reasoning(text) if channel == "r" else asm.content(text))
    events.extend(asm.finish())
    reasoning = "".join(e.text for e in events if isinstance(e, Reasoning))
    answer = "".join(e.text for e in events if isinstance(e, Answer))
    return reasoning, answer, asm


def test_assembler_fields_bypass_the_splitter_and_trim() -> None:
    r, a, asm = assemble(
        [
            ("c", ""),
            ("r", "\nAlright, "),
            ("r", "compare  "),
            ("r", "\n"),
            ("r", "it.\n"),
            ("c", "\n\n9.8 <think> is"),
            ("c", " greater."),
        ]
    )
    assert r == "Alright, compare  \nit."
    assert a == "9.8 <think> is greater."
    assert not asm.unterminated("stop")


def test_assembler_transition_chunk_keeps_order() -> None:
    asm = ChannelAssembler()
    events = asm.reasoning("tail of thought") + asm.content("head of answer")
    assert events == [Reasoning("tail of thought"), Answer("head of answer")]


def test_assembler_inline_tags_when_no_fields() -> None:
    r, a, _asm = assemble([("c", "<think>\nx"), ("c", "</think>\n\ny")])
    assert (r, a) == ("x", "y")


def test_assembler_length_while_thinking_with_fields() -> None:
    _, a, asm = assemble([("r", "thinking...")])
    assert a == ""
    assert asm.unterminated("length")
    assert not asm.unterminated("stop")


def test_assembler_length_while_thinking_with_tags() -> None:
    _, _, asm = assemble([("c", "<think>thinking...")])
    assert asm.unterminated("length")
