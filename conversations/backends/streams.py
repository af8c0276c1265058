"""Pure, synchronous stream parsers: SSE, NDJSON and the inline `<think>` splitter.

Everything here runs once per network chunk for every live stream (200 at once is the budget),
so the hot paths work on whole chunks with `str.find`/`str.split`: no regex, no per-character
loop, and buffers only ever hold an unfinished line or a few bytes of a possible tag, so a long
stream never causes quadratic copying. See docs/backend-protocols.md §4.1 and §4.3.
"""

from __future__ import annotations

import codecs
import enum
from dataclasses import dataclass

from .base import Answer, Reasoning

# --- SSE ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. `kind` is "data", "done" (the `[DONE]` sentinel) or "error"."""

    kind: str
    data: str = ""
    event: str = ""  # the `event:` field, when the server names its events


class SSEReader:
    """An incremental Server-Sent Events parser following the WHATWG rules.

    Feed it raw bytes as they arrive; it returns the events completed by those bytes. Comments
    (`: keep-alive`, `: OPENROUTER PROCESSING`, `: ping`) are counted in `comments` but never
    dispatched: they are liveness, not data (the caller's idle timer already saw the bytes).
    """

    __slots__ = (
        "_data",
        "_decoder",
        "_event",
        "_first",
        "_parts",
        "_skip_lf",
        "comments",
    )

    def __init__(self) -> None:
        # errors="replace": a server sending invalid UTF-8 must not crash the stream; the JSON
        # parse of that event decides whether it is usable.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []  # the unfinished line, in pieces (no quadratic concat)
        self._data: list[str] = []  # `data:` lines of the event being built
        self._event = ""
        self._skip_lf = False  # the previous chunk ended in \r: a leading \n belongs to it
        self._first = True  # a UTF-8 BOM is allowed before the first line
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if (
            text[:5] == "data:"
            and text.find("\n") == len(text) - 2
            and text[-1] == "\n"
            and not (self._parts or self._data or self._event or self._first or self._skip_lf)
            and "\r" not in text
        ):
            # The usual chunk: exactly one whole `data:` event and nothing pending.
            value = text[6:-2] if text[5:6] == " " else text[5:-2]
            return [SSEEvent("done" if value == "[DONE]" else "data", value)]
        return self._feed_text(text)

    def finish(self) -> list[SSEEvent]:
        """End of stream: process the unterminated last line and any un-dispatched data.

        llama.cpp may end with `data: [DONE]` and no blank line; that still counts.
        """
        out = self._feed_text(self._decoder.decode(b"", final=True))
        if self._parts:
            line = "".join(self._parts)
            self._parts.clear()
            self._line(line, out)
        self._dispatch(out)
        return out

    def _feed_text(self, text: str) -> list[SSEEvent]:
        out: list[SSEEvent] = []
        if not text:
            return out
        if self._first:
            self._first = False
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf:
            self._skip_lf = False
            if text[:1] == "\n":
                text = text[1:]
        if "\r" in text:
            # A chunk ending in \r has ended its line already (a lone CR is a line end); if
            # the next chunk starts with \n, that \n is the second half of a CRLF.
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n" not in text:
            if text:
                self._parts.append(text)
            return out
        lines = text.split("\n")
        tail = lines.pop()
        if self._parts:
            self._parts.append(lines[0])
            lines[0] = "".join(self._parts)
            self._parts.clear()
        for line in lines:
            self._line(line, out)
        if tail:
            self._parts.append(tail)
        return out

    def _line(self, line: str, out: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line[0] == ":":
            self.comments += 1
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "error":
            # Old llama.cpp (before PR #16109) sends `error: {json}` as its own field.
            out.append(SSEEvent("error", value))
        # id:, retry: and unknown fields are ignored, as the spec says.

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if not self._data:
            self._event = ""
            return
        data = self._data[0] if len(self._data) == 1 else "\n".join(self._data)
        self._data.clear()
        event, self._event = self._event, ""
        if data == "[DONE]":
            out.append(SSEEvent("done", data, event))
        elif event == "error":
            out.append(SSEEvent("error", data, event))
        else:
            out.append(SSEEvent("data", data, event))


# --- NDJSON ---------------------------------------------------------------------------------


class NDJSONReader:
    """Splits a byte stream into JSON lines. Works on bytes: `\\n` never occurs inside a UTF-8
    multi-byte sequence, and orjson parses bytes directly, so no decoder is needed."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._parts and chunk.find(b"\n") == len(chunk) - 1:
            # The usual chunk: exactly one whole line.
            line = chunk[:-1]
            return [line] if line.strip() else []
        if b"\n" not in chunk:
            if chunk:
                self._parts.append(chunk)
            return []
        lines = chunk.split(b"\n")
        tail = lines.pop()
        if self._parts:
            self._parts.append(lines[0])
            lines[0] = b"".join(self._parts)
            self._parts.clear()
        if tail:
            self._parts.append(tail)
        return [line for line in lines if line.strip()]

    def finish(self) -> list[bytes]:
        """End of stream: the unterminated tail is still a line (a server may omit the last
        newline); the caller decides whether it parses."""
        if not self._parts:
            return []
        tail = b"".join(self._parts)
        self._parts.clear()
        return [tail] if tail.strip() else []


# --- Inline <think> splitter ----------------------------------------------------------------

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"
_WS = " \t\r\n\f\v"


class SplitState(enum.Enum):
    START = "start"
    OPEN_WS = "open_ws"
    THINK = "think"
    CLOSE_WS = "close_ws"
    ANSWER = "answer"


def _tag_overlap(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    # At most len(tag)-1 endswith calls on short strings: constant work per chunk.
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0


class ThinkSplitter:
    """Splits content carrying inline `<think>…</think>` into Reasoning and Answer events.

    The state machine of §4.3: START → (OPEN_WS) → THINK → (CLOSE_WS) → ANSWER. Tags may be
    split anywhere across chunks. Leading whitespace of both channels and trailing whitespace
    of the reasoning are trimmed; nothing inside the text is touched. ANSWER never goes back
    to THINK, so a literal `<think>` in an answer (code, quotes) stays answer text.

    `assume_open`: the prompt template already opened the tag (updated R1 templates), so the
    output starts inside the reasoning and only `</think>` appears.
    """

    __slots__ = ("_buf", "_reasoning_started", "assume_open", "reasoning_unterminated", "state")

    def __init__(self, assume_open: bool = False) -> None:
        self.assume_open = assume_open
        self.state = SplitState.START
        # START: the text seen so far; THINK: held-back trailing whitespace plus a possible
        # partial `</think>`. Never more than that, so it stays tiny.
        self._buf = ""
        self._reasoning_started = False
        self.reasoning_unterminated = False

    def feed(self, text: str) -> list[Reasoning | Answer]:
        out: list[Reasoning | Answer] = []
        if text:
            self._feed(text, out)
        return out

    def _feed(self, text: str, out: list[Reasoning | Answer]) -> None:
        state = self.state
        if state is SplitState.ANSWER:  # the hot path once the reasoning is over
            out.append(Answer(text))
            return
        if state is SplitState.START:
            buf = (self._buf + text).lstrip(_WS)
            if not buf:
                self._buf = ""
                return
            if buf.startswith(OPEN_TAG):
                self._buf = ""
                self.state = SplitState.OPEN_WS
                self._feed(buf[len(OPEN_TAG) :], out)
                return
            if OPEN_TAG.startswith(buf):  # "<th": wait for the rest of the tag
                self._buf = buf
                return
            self._buf = ""
            if self.assume_open:
                self.state = SplitState.THINK
            else:
                self.state = SplitState.ANSWER
                out.append(Answer(buf))
                return
            text = buf
        elif state is SplitState.OPEN_WS or state is SplitState.CLOSE_WS:
            text = text.lstrip(_WS)
            if not text:
                return
            if state is SplitState.CLOSE_WS:
                self.state = SplitState.ANSWER
                out.append(Answer(text))
                return
            self.state = SplitState.THINK
        # THINK
        buf = self._buf + text if self._buf else text
        end = buf.find(CLOSE_TAG)
        if end >= 0:
            self._emit_reasoning(buf[:end].rstrip(_WS), out)
            self._buf = ""
            self.state = SplitState.CLOSE_WS
            rest = buf[end + len(CLOSE_TAG) :]
            if rest:
                self._feed(rest, out)
            return
        keep = _tag_overlap(buf, CLOSE_TAG)
        body = buf[: len(buf) - keep] if keep else buf
        stripped = body.rstrip(_WS)
        # Hold back trailing whitespace too: it is dropped if `</think>` follows it.
        self._buf = buf[len(stripped) :]
        self._emit_reasoning(stripped, out)

    def _emit_reasoning(self, text: str, out: list[Reasoning | Answer]) -> None:
        if not self._reasoning_started:
            text = text.lstrip(_WS)
            if not text:
                return
            self._reasoning_started = True
        if text:
            out.append(Reasoning(text))

    def finish(self) -> list[Reasoning | Answer]:
        """End of stream: flush what was held back, and flag reasoning that never closed."""
        out: list[Reasoning | Answer] = []
        state, buf = self.state, self._buf
        self._buf = ""
        if state is SplitState.START:
            if buf:  # e.g. the whole output was "<th": that is answer text after all
                self.state = SplitState.ANSWER
                out.append(Answer(buf))
        elif state is SplitState.THINK or state is SplitState.OPEN_WS:
            self._emit_reasoning(buf.rstrip(_WS), out)
            self.reasoning_unterminated = True
        return out


# --- Both channels --------------------------------------------------------------------------


class ChannelAssembler:
    """Turns a protocol's reasoning fields and content into trimmed Reasoning/Answer events.

    Content goes through the `ThinkSplitter` until a reasoning *field* has been seen in this
    stream; from then on the server is known to split reasoning itself, and content is
    answer as is (so a literal `<think>` in it stays answer text). The same whitespace rules
    apply in both paths: leading whitespace of each channel and trailing whitespace of the
    reasoning are dropped (vLLM sends "\\nAlright" and "\\n\\n9.8 is greater.").
    """

    __slots__ = (
        "_answer_started",
        "_held_ws",
        "_reasoning_started",
        "answer_only",
        "answer_seen",
        "fields_seen",
        "reasoning_seen",
        "splitter",
    )

    def __init__(self, assume_open: bool = False, answer_only: bool = False) -> None:
        self.splitter = ThinkSplitter(assume_open)
        # A continued answer: `content` is answer text as it comes, its leading whitespace
        # included (it joins the text before it) and its tags literal.
        self.answer_only = answer_only
        self.fields_seen = False
        self._reasoning_started = False
        self._answer_started = False
        self._held_ws = ""  # trailing whitespace of field reasoning, emitted only if text follows
        self.reasoning_seen = False
        self.answer_seen = False

    def reasoning(self, text: str) -> list[Reasoning | Answer]:
        """Text from `reasoning_content` / `reasoning` / `thinking`."""
        if not text:
            return []
        out: list[Reasoning | Answer] = []
        if not self.fields_seen:
            self.fields_seen = True
            # Anything the splitter held (leading whitespace, half a tag) is flushed first.
            self._note(self.splitter.finish(), out)
            self.splitter.reasoning_unterminated = False
        if not self._reasoning_started:
            text = text.lstrip(_WS)
            if not text:
                return out
            self._reasoning_started = True
        stripped = text.rstrip(_WS)
        if not stripped:
            self._held_ws += text
            return out
        if self._held_ws:
            stripped = self._held_ws + stripped
        self._held_ws = text[len(text.rstrip(_WS)) :]
        self.reasoning_seen = True
        out.append(Reasoning(stripped))
        return out

    def content(self, text: str) -> list[Reasoning | Answer]:
        """Text from `content`: inline tags are split unless fields carry the reasoning."""
        if not text:
            return []
        if self.answer_only:
            self.answer_seen = self._answer_started = True
            return [Answer(text)]
        if not self.fields_seen:
            out: list[Reasoning | Answer] = []
            self._note(self.splitter.feed(text), out)
            return out
        self._held_ws = ""
        if not self._answer_started:
            text = text.lstrip(_WS)
            if not text:
                return []
            self._answer_started = True
        self.answer_seen = True
        return [Answer(text)]

    def finish(self) -> list[Reasoning | Answer]:
        out: list[Reasoning | Answer] = []
        if not self.fields_seen:
            self._note(self.splitter.finish(), out)
        return out

    def unterminated(self, finish_reason: str | None) -> bool:
        """Whether the stream ended while still reasoning.

        With inline tags the splitter knows (no `</think>`). With fields there is no closing
        marker, so only a `length` stop with reasoning and no answer counts."""
        if self.splitter.reasoning_unterminated:
            return True
        return (
            self.fields_seen
            and finish_reason == "length"
            and self.reasoning_seen
            and not self.answer_seen
        )

    def _note(self, events: list[Reasoning | Answer], out: list[Reasoning | Answer]) -> None:
        for event in events:
            if type(event) is Reasoning:
                self.reasoning_seen = True
            else:
                self.answer_seen = True
                self._answer_started = True
            out.append(event)
