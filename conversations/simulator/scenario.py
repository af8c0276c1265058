"""What the simulated model says and how it misbehaves: the script, the scenario, the record."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

OPENAI_PROFILES = frozenset(
    {
        "deepseek",
        "deepseek-legacy",
        "vllm-old",
        "vllm-new",
        "dual-field",
        "llamacpp",
        "openrouter",
        "raw-tags",
        "raw-tags-preopened",
    }
)
OLLAMA_PROFILES = frozenset(
    {"ollama-modern", "ollama-legacy", "ollama-prefilled", "ollama-nothink-empty"}
)
# What a request on the other protocol's path is served with.
DEFAULT_OPENAI_PROFILE = "deepseek"
DEFAULT_OLLAMA_PROFILE = "ollama-modern"

FAULTS = frozenset(
    {
        "stall",
        "keepalive_only",
        "complete_then_keepalive",
        "midstream_error",
        "drop",
        "reset",
        "cut_mid_line",
        "malformed_line",
        "length_while_thinking",
        "content_filter",
        "insufficient_system_resource",
        "http_error",
        "no_response",
    }
)
HTTP_ERROR_STATUSES = frozenset({400, 401, 402, 404, 422, 429, 500, 502, 503, 504})
# "openai": {"error":{...}}; "string": {"error":"..."}; "object": {"object":"error",...};
# "html": a proxy's HTML page. None picks the profile's own shape.
ERROR_ENVELOPES = frozenset({"openai", "string", "object", "html"})
LINE_ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}

# Ollama models the simulator serves, with the capabilities /api/show reports.
DEFAULT_OLLAMA_MODELS: dict[str, list[str]] = {
    "deepseek-r1:sim": ["completion", "thinking"],
    "qwen3:sim": ["completion", "tools", "thinking"],
    "llama3.2:sim": ["completion", "tools"],
}
OPENAI_MODELS = ("deepseek-v4-flash", "deepseek-v4-pro", "deepseek-reasoner", "deepseek-chat")
OPENAI_MODELS_ALL = (*OPENAI_MODELS, "r1-distill-sim")


@dataclass(frozen=True, slots=True)
class Script:
    reasoning: str
    answer: str


# Deterministic R1-style output. The answer exercises every renderer path (heading, list, fenced
# code, inline and display math, a literal <think> that must stay answer text) and carries
# multi-byte characters (CJK, emoji) so that UTF-8 split across TCP reads is exercised.
DEFAULT_SCRIPT = Script(
    reasoning=(
        "Okay, the user asks how mass and energy are related, and wants a small Python example. "
        "Let me recall Einstein's relation: E equals m times c squared, where c is the speed of "
        "light, about 299,792,458 metres per second. Hmm, so even a tiny mass holds a huge amount "
        "of energy. Wait, should I show the units? Yes: joules, kilograms and metres per second. "
        "The user also wrote 你好, so a friendly tone fits 🙂. I will give a heading, a short "
        "list, a code block and the formula, both inline and as a display equation."
    ),
    answer=(
        "## Mass–energy equivalence ⚡\n"
        "\n"
        "Einstein's relation $E=mc^2$ says that mass is a form of energy:\n"
        "\n"
        "- **E** is the energy in joules\n"
        "- **m** is the mass in kilograms\n"
        "- **c** is the speed of light, about 3 × 10⁸ m/s\n"
        "\n"
        "$$\n"
        "E = mc^2\n"
        "$$\n"
        "\n"
        "```python\n"
        "C = 299_792_458  # speed of light, m/s\n"
        "\n"
        "\n"
        "def rest_energy(mass_kg: float) -> float:\n"
        '    """Energy in joules held by a mass at rest."""\n'
        "    return mass_kg * C**2\n"
        "\n"
        "\n"
        'print(f"{rest_energy(0.001):.3e} J")  # one gram\n'
        "```\n"
        "\n"
        "Reasoning models such as R1 wrap their thoughts in `<think>` tags; this answer is not "
        "one of them. One gram of matter holds about 9 × 10¹³ J. 你好，世界 🌍!"
    ),
)

# Markdown-heavy output for what a reader sees while it streams: every construct the renderer
# knows, with bold and code spans over several tokens and a long code block. Its code holds no
# `**`, `##`, `$$` or backtick fence, so any of those seen mid-stream is unrendered markdown.
MARKDOWN_SCRIPT = Script(
    reasoning=(
        "## Plan\n"
        "\n"
        "The user wants **the rest energy of one gram** and a table. Key facts:\n"
        "\n"
        "- the relation is $E = m c^2$ with **c the speed of light**\n"
        "- one gram is $10^{-3}$ kg\n"
        "\n"
        "$$\n"
        "E = 10^{-3} \\times (3 \\times 10^{8})^2\n"
        "$$\n"
        "\n"
        "A quick check in code:\n"
        "\n"
        "```python\n"
        "mass = 0.001\n"
        "c = 299792458\n"
        "print(mass * c * c)\n"
        "```\n"
        "\n"
        "So about **nine times ten to the thirteen joules**, then `format the answer` nicely."
    ),
    answer=(
        "# Rest energy of one gram\n"
        "\n"
        "## The relation\n"
        "\n"
        "Einstein's relation $E = m c^2$ says that **mass is a form of energy**, and "
        "\\(c\\) is *the speed of light in vacuum*.\n"
        "\n"
        "- **energy E** in joules\n"
        "- **mass m** in kilograms\n"
        "- **speed c** in metres per second\n"
        "\n"
        "| Quantity | Symbol | Value |\n"
        "|---|---|---|\n"
        "| mass | $m$ | **0.001 kg** |\n"
        "| speed of light | $c$ | 299 792 458 m/s |\n"
        "| energy | $E$ | about 9 × 10¹³ J |\n"
        "\n"
        "$$\n"
        "E = 0.001 \\times 299792458^2 \\approx 8.988 \\times 10^{13}\n"
        "$$\n"
        "\n"
        "### In code\n"
        "\n"
        "```python\n"
        "SPEED_OF_LIGHT = 299_792_458  # metres per second\n"
        "\n"
        "\n"
        "def rest_energy(mass_kg: float) -> float:\n"
        '    """The energy in joules held by a mass at rest."""\n'
        "    return mass_kg * SPEED_OF_LIGHT * SPEED_OF_LIGHT\n"
        "\n"
        "\n"
        "def in_tonnes_of_tnt(joules: float) -> float:\n"
        '    """The same energy as tonnes of TNT."""\n'
        "    return joules / 4.184e9\n"
        "\n"
        "\n"
        "for grams in (1, 10, 100, 1000):\n"
        "    energy = rest_energy(grams / 1000)\n"
        "    tnt = in_tonnes_of_tnt(energy)\n"
        '    print(f"{grams} g: {energy:.3e} J, {tnt:,.0f} t of TNT")\n'
        "```\n"
        "\n"
        "So **one gram holds about 21 kilotonnes of TNT**, which `rest_energy(0.001)` confirms."
    ),
)

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
# A token is one word (or one CJK character) with the whitespace before it attached, so joining
# tokens reproduces the text exactly; a trailing run of whitespace is a token of its own.
_TOKEN_RE = re.compile(rf"\s*(?:[{_CJK}]|[^\s{_CJK}]+)|\s+")


def tokenize(text: str) -> list[str]:
    """Split text into word-sized tokens whose concatenation is exactly `text`."""
    return _TOKEN_RE.findall(text)


@functools.lru_cache(maxsize=64)
def make_tokens(text: str, count: int | None) -> tuple[str, ...]:
    """`text`'s tokens, or exactly `count` of them, cycling the text deterministically."""
    base = tokenize(text)
    if count is None:
        return tuple(base)
    if count <= 0 or not base:
        return ()
    if count <= len(base):
        return tuple(base[:count])
    # When the text starts again, keep a space before its first word.
    wrap = list(base)
    if not wrap[0][:1].isspace():
        wrap[0] = " " + wrap[0]
    out = list(base)
    while len(out) < count:
        out.extend(wrap[: count - len(out)])
    return tuple(out)


@dataclass
class Scenario:
    """How the simulated model behaves for the next requests (every field has a default)."""

    profile: str = DEFAULT_OPENAI_PROFILE
    token_rate: float = 0.0  # tokens per second per stream; 0 = as fast as possible
    reasoning_tokens: int | None = None  # None: the script's own length
    answer_tokens: int | None = None
    reasoning_text: str | None = None  # None: DEFAULT_SCRIPT
    answer_text: str | None = None
    first_token_delay: float = 0.0  # seconds after the headers, before the first data
    keepalives_before: int = 0  # keep-alive comments before the first data
    keepalive_interval: float = 0.5
    fault: str | None = None
    fault_after_tokens: int = 5
    stall_seconds: float = 5.0
    http_status: int = 503  # for fault "http_error" and for fail_first
    error_envelope: str | None = None  # None: the profile's own envelope
    error_message: str | None = None  # None: the server's usual text for that status
    retry_after: float | None = None  # Retry-After header on HTTP errors
    old_error_field: bool = False  # llamacpp: mid-stream error as an `error:` SSE field
    fail_first: int = 0  # the first N chat requests get `http_status`, then normal streams
    line_ending: str = "lf"  # SSE only ("lf" | "crlf" | "cr"); NDJSON is always "\n"
    comments_between: bool = False  # a comment and a blank line before every frame
    split_at: list[int] | None = None  # body offsets at which separate TCP writes happen
    split_pause: float = 0.02  # pause between those writes, so the client reads them apart
    split_tags: bool = False  # inline-tag profiles: send "<th"+"ink>" and "</thi"+"nk>"
    transfer: str = "chunked"  # "chunked" (keep-alive) | "close" (body ends with FIN)
    ollama_version: str = "0.12.5"
    ollama_models: dict[str, list[str]] | None = None  # name -> capabilities; None: defaults
    # Ollama models whose output carries inline <think> tags although /api/show lists no
    # `thinking` (a GGUF import whose template passes the tags through).
    inline_think_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in OPENAI_PROFILES | OLLAMA_PROFILES:
            raise ValueError(f"unknown simulator profile {self.profile!r}")
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown simulator fault {self.fault!r}")
        if self.fault == "http_error" and self.http_status not in HTTP_ERROR_STATUSES:
            raise ValueError(f"http_status must be one of {sorted(HTTP_ERROR_STATUSES)}")
        if self.error_envelope is not None and self.error_envelope not in ERROR_ENVELOPES:
            raise ValueError(f"unknown error envelope {self.error_envelope!r}")
        if self.line_ending not in LINE_ENDINGS:
            raise ValueError(f"unknown line ending {self.line_ending!r}")
        if self.transfer not in ("chunked", "close"):
            raise ValueError(f"unknown transfer {self.transfer!r}")

    @property
    def models(self) -> dict[str, list[str]]:
        return self.ollama_models if self.ollama_models is not None else DEFAULT_OLLAMA_MODELS


@dataclass
class SimRequest:
    """One request as the simulator saw it (times are `time.monotonic()`)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    started_at: float
    ended_at: float | None = None
    client_disconnected: bool = False
    disconnected_at: float | None = None
    status: int | None = None
    first_data_at: float | None = None  # when the first data frame was written
    query: str = ""
    raw_body: bytes = b""
    profile: str | None = None  # the profile that served it (chat requests)
    extra: dict[str, Any] = field(default_factory=dict)
