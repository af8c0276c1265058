"""The markdown renderer: output shape, math, code, and the streaming invariants."""

from __future__ import annotations

import itertools
import random
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conversations.rendering import (
    _MD,
    IncrementalRenderer,
    _render,
    pygments_css,
    render_markdown,
    render_plain_text,
)
from conversations.simulator import MARKDOWN_SCRIPT

CSS_PATH = Path(__file__).resolve().parent.parent / "static" / "css" / "markdown.css"


# --- Plain markdown -----------------------------------------------------------------------------


def test_it_renders_commonmark_with_tables_and_strikethrough() -> None:
    html = render_markdown("# Title\n\nSome *em*, **strong**, ~~gone~~ and `code`.\n")
    assert html == (
        "<h1>Title</h1>\n<p>Some <em>em</em>, <strong>strong</strong>, <s>gone</s> and "
        "<code>code</code>.</p>\n"
    )


def test_table_alignment_becomes_classes_not_styles() -> None:
    html = render_markdown("| a | b | c |\n|:--|:-:|--:|\n| 1 | 2 | 3 |\n")
    assert html.startswith('<div class="table-wrap"><table>')
    assert '<th class="align-left">a</th>' in html
    assert '<td class="align-center">2</td>' in html
    assert '<td class="align-right">3</td>' in html
    assert "style" not in html


def test_raw_html_is_shown_as_text() -> None:
    assert render_markdown("a <b>bold</b> word") == "<p>a &lt;b&gt;bold&lt;/b&gt; word</p>\n"


def test_links_open_in_a_new_tab_without_referrer() -> None:
    html = render_markdown("[docs](https://example.com/a?b=1&c=2)")
    assert html == (
        '<p><a href="https://example.com/a?b=1&amp;c=2" target="_blank" '
        'rel="noopener noreferrer nofollow">docs</a></p>\n'
    )


def test_only_http_https_and_mailto_links_are_links() -> None:
    assert "<a " in render_markdown("[m](mailto:a@example.com)")
    for url in ("/admin/logout/", "//evil.example/", "ftp://example.com/", "tel:123"):
        assert "<a " not in render_markdown(f"[x]({url})"), url


def test_reference_definitions_are_plain_text() -> None:
    html = render_markdown("[a]\n\n[a]: https://example.com\n")
    assert "<a " not in html
    assert "[a]: https://example.com" in html


def test_images_become_links_and_are_never_fetched() -> None:
    html = render_markdown("![a *chart*](https://img.example/c.png)")
    assert html == (
        '<p><a href="https://img.example/c.png" class="md-image-link" target="_blank" '
        'rel="noopener noreferrer nofollow">🖼 a chart</a></p>\n'
    )


def test_cjk_and_emoji_pass_through() -> None:
    assert (
        render_markdown("你好，世界 🌏 **加粗**") == "<p>你好，世界 🌏 <strong>加粗</strong></p>\n"
    )


def test_empty_text_renders_nothing() -> None:
    assert render_markdown("") == ""
    assert render_markdown("\n\n  \n") == ""


def test_crlf_is_the_same_as_lf() -> None:
    text = "# a\n\n- b\n- c\n\n```py\nx = 1\n```\n"
    assert render_markdown(text.replace("\n", "\r\n")) == render_markdown(text)


# --- Math ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("Euler: $e^{i\\pi}+1=0$.", "inline"),
        ("Euler: \\(e^{i\\pi}+1=0\\).", "inline"),
        ("Euler: $$e^{i\\pi}+1=0$$.", "block"),
        ("Euler: \\[e^{i\\pi}+1=0\\].", "block"),
    ],
)
def test_math_in_a_paragraph_is_mathml(text: str, display: str) -> None:
    html = render_markdown(text)
    assert html.startswith("<p>Euler: <math display=")
    assert f'<math display="{display}">' in html
    assert "<msup><mi>e</mi>" in html
    assert '<annotation encoding="application/x-tex">e^{i\\pi}+1=0</annotation>' in html


@pytest.mark.parametrize(
    "text",
    ["$$\n\\frac{a}{b}\n$$", "$$\\frac{a}{b}$$", "\\[\n\\frac{a}{b}\n\\]", "\\[\\frac{a}{b}\\]"],
)
def test_display_math_blocks(text: str) -> None:
    html = render_markdown(text)
    assert html.startswith('<div class="math-display"><math display="block">')
    assert "<mfrac>" in html
    assert html.endswith("</math></div>\n")


def test_display_math_inside_a_list_and_a_quote() -> None:
    assert '<li>\n<div class="math-display">' in render_markdown("- $$\n  x^2\n  $$\n")
    assert '<blockquote>\n<div class="math-display">' in render_markdown("> $$\n> x^2\n> $$\n")


def test_display_math_cannot_span_a_blank_line() -> None:
    html = render_markdown("$$\na\n\nb\n$$")
    assert "<math" not in html
    assert html.startswith("<p>$$")


def test_a_formula_that_fails_is_escaped_code() -> None:
    assert render_markdown("bad $\\frac{<b>}{$ x") == (
        '<p>bad <code class="math-error">\\frac{&lt;b&gt;}{</code> x</p>\n'
    )
    html = render_markdown("$$\n\\frac{a}{\n$$")
    assert html == '<pre class="math-error"><code>\\frac{a}{</code></pre>\n'


def test_text_in_math_is_escaped() -> None:
    html = render_markdown("$\\text{a < b & <i>c</i>}$")
    assert "<mtext>a&nbsp;&lt;&nbsp;b&nbsp;&amp;&nbsp;&lt;i&gt;c&lt;/i&gt;</mtext>" in html


@pytest.mark.parametrize(
    "text",
    ["It costs $5 and $10.", "Escaped \\$x\\$ dollars", "`$x$` in code", "US$ 5 and $ 6"],
)
def test_dollars_that_are_not_math(text: str) -> None:
    assert "<math" not in render_markdown(text)


# --- Code ---------------------------------------------------------------------------------------


def test_fenced_code_is_highlighted_with_classes_and_has_a_copy_button() -> None:
    html = render_markdown("```python\ndef f(x):\n    return x < 1\n```\n")
    assert html.startswith(
        '<div class="code-block" data-lang="python"><div class="code-header">'
        '<span class="code-lang">python</span>'
        '<button class="copy-code" data-copy="" type="button"></button></div>'
        '<pre class="highlight"><code><span class="k">def</span>'
    )
    assert '<span class="o">&lt;</span>' in html
    assert html.endswith("</code></pre></div>\n")
    assert "style=" not in html
    assert "onclick" not in html


@pytest.mark.parametrize("info", ["", "nosuchlanguage", '"><script>', "py{.x}"])
def test_unknown_or_missing_language_is_plain_escaped_text(info: str) -> None:
    html = render_markdown(f"```{info}\nif a < b: pass\n```\n")
    assert '<pre class="highlight"><code>if a &lt; b: pass\n</code></pre>' in html
    assert "<span class=" not in html.split("<pre", 1)[1]
    assert "<script" not in html


def test_indented_code_is_escaped() -> None:
    assert render_markdown("    <b>x</b>\n") == "<pre><code>&lt;b&gt;x&lt;/b&gt;\n</code></pre>\n"


# --- Plain text ---------------------------------------------------------------------------------


def test_plain_text_is_escaped_with_line_breaks() -> None:
    assert render_plain_text("a <b>\nline 2\n\n\npara & 2\n") == (
        "<p>a &lt;b&gt;<br>\nline 2</p>\n<p>para &amp; 2</p>\n"
    )
    assert render_plain_text("") == ""


# --- Streaming ----------------------------------------------------------------------------------

BLOCKS = [
    "# Heading one",
    "Setext heading\n--------------",
    "A paragraph with *emphasis*, `code`, a [link](https://example.com) and $x^2$.\n"
    "It continues on a second line with \\(a+b\\).",
    "中文段落，包含 **粗体** 和表情 🎉🚀。第二句话在这里。",
    "- tight one\n- tight two\n- tight three",
    "- loose one\n\n- loose two\n\n  with a continuation paragraph",
    "1. first\n2. second\n   - nested a\n   - nested b\n3. third",
    "3. starts at three\n4. four",
    "* star list\n\n  ```js\n  console.log('in a list');\n  ```",
    "```python\ndef f(x):\n\n    return x * 2  # blank line above\n```",
    "~~~\nplain tilde fence\n\n\nwith blank lines\n~~~",
    "````md\n```\nnested fence\n```\n````",
    "    indented code\n\n    more indented code",
    "| a | b |\n|---|:-:|\n| 1 | 2 |\n| 三 | 🎉 |",
    "$$\n\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}\n$$",
    "\\[\n\\int_0^1 x\\,dx = \\tfrac12\n\\]",
    "> A quote\n> with two lines\n>\n> and a second paragraph",
    "> - a list in a quote\n> - item two",
    "---",
    "Paragraph then\n***\nthematic break",
    "$$ not closed so just text",
    "Term with trailing spaces  \nhard break",
    "[a]: https://example.com/not-a-reference",
]


def _docs() -> list[list[str]]:
    rng = random.Random(1234)
    docs = [[b] for b in BLOCKS] + [BLOCKS]
    for _ in range(40):
        docs.append([rng.choice(BLOCKS) for _ in range(rng.randint(2, 8))])
    return docs


def _stream(text: str, rng: random.Random, max_piece: int, cuts: set[int]) -> list[str]:
    """`text` in random pieces of up to `max_piece` characters, also cut at each of `cuts`."""
    points, pos = set(cuts), 0
    while pos < len(text):
        pos += rng.randint(1, max_piece)
        points.add(min(pos, len(text)))
    bounds = [0, *sorted(p for p in points if 0 < p <= len(text))]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("seed", range(6))
def test_streamed_html_matches_the_full_render(seed: int) -> None:
    rng = random.Random(seed)
    checked = 0
    for blocks in _docs():
        text = "\n\n".join(blocks) + "\n"
        # After a blank line the tail is exactly what it will be; before one, its unfinished end
        # is shown as it may still turn out (see the tail tests below) and finish() is final.
        boundaries = {"\n\n".join(blocks[:k]) + "\n\n" for k in range(1, len(blocks))}
        full = render_markdown(text)
        renderer = IncrementalRenderer()
        appended, so_far = "", ""
        cuts = {len(b) for b in boundaries} | {len(text)}
        pieces = _stream(text, rng, rng.choice([1, 3, 17, 80]), cuts)
        for piece in pieces:
            renderer.feed(piece)
            so_far += piece
            append_html, tail_html = renderer.render()
            appended += append_html
            assert appended == renderer.stable_html
            # Final blocks are final: they start both this prefix and the whole message.
            assert render_markdown(so_far).startswith(appended)
            assert full.startswith(appended)
            if so_far in boundaries:
                assert appended + tail_html == render_markdown(so_far), (blocks, so_far)
                checked += 1
        assert renderer.finish() == full, blocks
    assert checked >= sum(len(blocks) - 1 for blocks in _docs())


def test_streamed_html_matches_at_every_block_boundary() -> None:
    for blocks in _docs():
        text = "\n\n".join(blocks) + "\n"
        renderer = IncrementalRenderer()
        appended = ""
        for k, block in enumerate(blocks):
            renderer.feed(block + "\n\n")
            append_html, tail_html = renderer.render()
            appended += append_html
            so_far = "\n\n".join(blocks[: k + 1]) + "\n\n"
            assert appended + tail_html == render_markdown(so_far), blocks[: k + 1]
        assert renderer.finish() == render_markdown(text + "\n")


def test_blocks_become_final_once_the_next_block_starts() -> None:
    renderer = IncrementalRenderer()
    renderer.feed("# One\n\nPara")
    assert renderer.render() == ("<h1>One</h1>\n", "<p>Para</p>\n")
    renderer.feed("graph\n\n- a\n- b\n\n")
    assert renderer.render() == ("<p>Paragraph</p>\n", "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n")
    # The list stays open: another item after the blank line makes it loose.
    renderer.feed("- c\n\nAfter\n")
    append_html, tail_html = renderer.render()
    assert append_html == render_markdown("- a\n- b\n\n- c\n")
    assert "<li>\n<p>a</p>\n</li>" in append_html
    assert tail_html == "<p>After</p>\n"
    assert renderer.stable_html == "<h1>One</h1>\n<p>Paragraph</p>\n" + append_html


def test_an_unfinished_fence_is_plain_in_the_tail_until_it_closes() -> None:
    renderer = IncrementalRenderer()
    renderer.feed("Intro\n\n```python\ndef f():\n\n    return '<b>'\n")
    append_html, tail_html = renderer.render()
    assert append_html == "<p>Intro</p>\n"
    assert "<pre class=\"highlight\"><code>def f():\n\n    return '&lt;b&gt;'\n</code>" in tail_html
    assert "<span class=" not in tail_html.split("<pre", 1)[1]
    renderer.feed("```\n")
    append_html, tail_html = renderer.render()
    assert append_html == ""
    assert '<span class="k">def</span>' in tail_html
    renderer.feed("\nDone.\n")
    append_html, tail_html = renderer.render()
    assert '<span class="k">def</span>' in append_html
    assert tail_html == "<p>Done.</p>\n"


# --- The open tail at every frame ---------------------------------------------------------------


def _tail(text: str) -> str:
    renderer = IncrementalRenderer()
    renderer.feed(text)
    append_html, tail_html = renderer.render()
    return append_html + tail_html


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Say **bol", "<p>Say <strong>bol</strong></p>\n"),
        ("Say __bol", "<p>Say <strong>bol</strong></p>\n"),
        ("Say *ital", "<p>Say <em>ital</em></p>\n"),
        ("Say ~~gone", "<p>Say <s>gone</s></p>\n"),
        ("Say **bold and *both", "<p>Say <strong>bold and <em>both</em></strong></p>\n"),
        ("Say **bold text ", "<p>Say <strong>bold text</strong></p>\n"),
        ("Call `co", "<p>Call <code>co</code></p>\n"),
        ("Call ``a ` b", "<p>Call <code>a ` b</code></p>\n"),
        (
            "- **E** is **ener",
            "<ul>\n<li><strong>E</strong> is <strong>ener</strong></li>\n</ul>\n",
        ),
        ("## Title **bo", "<h2>Title <strong>bo</strong></h2>\n"),
        ("See [the docs](https://exa", "<p>See the docs</p>\n"),
    ],
)
def test_an_unclosed_inline_construct_at_the_end_shows_as_if_closed(text: str, shown: str) -> None:
    assert _tail(text) == shown
    # After a blank line nothing can close it any more: it shows as it will stay.
    assert _tail(text + "\n\n") == render_markdown(text)


@pytest.mark.parametrize(
    ("text", "tex"),
    [
        ("Then $x^2 + y", "x^2 + y"),
        ("Then \\(a+b", "a+b"),
        ("Then \\[a+b", "a+b"),
        ("Then $$a+b", "a+b"),
        ("$$\nE = mc^2", "E = mc^2"),
        ("\\[\n\\int_0^1 x", "\\int_0^1 x"),
    ],
)
def test_unclosed_math_shows_as_math(text: str, tex: str) -> None:
    html = _tail(text)
    assert f'<annotation encoding="application/x-tex">{tex}</annotation>' in html
    assert "$" not in html.split("<math", 1)[0]
    assert "\\(" not in html and "\\[" not in html.split("<annotation", 1)[0]


def test_unfinished_math_that_cannot_convert_yet_is_code_not_dollars() -> None:
    assert _tail("we have $x^") == '<p>we have <code class="math-error">x^</code></p>\n'


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Text **", "<p>Text</p>\n"),
        ("Text __", "<p>Text</p>\n"),
        ("Text `", "<p>Text</p>\n"),
        ("Text $", "<p>Text</p>\n"),
        ("Text $$", "<p>Text</p>\n"),
        ("Text \\(", "<p>Text</p>\n"),
        ("Text \\", "<p>Text</p>\n"),
    ],
)
def test_a_delimiter_with_nothing_after_it_yet_is_held_back(text: str, shown: str) -> None:
    assert _tail(text) == shown


@pytest.mark.parametrize(
    "text", ["#", "##", "### ", "-", "- ", "1.", "> ", "- ##", "**", "```pyth", "~~~", "$$", "\\["]
)
def test_a_line_of_block_markers_without_text_yet_is_not_shown(text: str) -> None:
    assert _tail(text) == ""
    assert _tail("Para\n" + text) == "<p>Para</p>\n"


def test_an_amount_in_dollars_waits_for_the_next_character() -> None:
    assert _tail("It costs $5") == "<p>It costs</p>\n"  # "$5x$" would be a formula
    assert _tail("It costs $5 and $6 each") == "<p>It costs $5 and $6 each</p>\n"


def test_a_table_header_waits_for_its_delimiter_row() -> None:
    assert _tail("| a | b |") == ""
    assert _tail("| a | b |\n|--") == ""
    assert _tail("Intro\n\n| a | b |\n|---|-") == "<p>Intro</p>\n" + _tail("| a | b |\n|---|-")
    assert "<th>a</th>" in _tail("| a | b |\n|---|-")
    assert "<td>1</td>" in _tail("| a | b |\n|---|---|\n| 1")


def test_closing_the_tail_stays_linear_on_many_delimiters() -> None:
    # Many openers of one kind and closers of another: no closer may search them all.
    text = "_a " * 16_000 + "a* " * 16_000
    started = time.perf_counter()
    html = _tail(text)
    assert time.perf_counter() - started < 5  # (quadratic: about 15 s here)
    assert html.startswith("<p>") and "a*" in html


class _VisibleText(HTMLParser):
    """The text a reader sees outside code and math, and the text inside code blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.prose: list[str] = []
        self.code: list[str] = []
        self._inside: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("code", "annotation", "button"):
            self._inside.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._inside and self._inside[-1] == tag:
            self._inside.pop()

    def handle_data(self, data: str) -> None:
        (self.code if self._inside else self.prose).append(data)


def _visible(html: str) -> tuple[str, str]:
    parser = _VisibleText()
    parser.feed(html)
    return "".join(parser.prose), "".join(parser.code)


@pytest.mark.parametrize("part", ["answer", "reasoning"])
def test_no_prefix_of_a_markdown_heavy_text_shows_markdown_source(part: str) -> None:
    text = getattr(MARKDOWN_SCRIPT, part)
    prose, code = _visible(render_markdown(text))
    markers = ["*", "_", "#", "$", "`", "|", "\\(", "\\[", "~"]
    assert not [m for m in markers if m in prose]  # (the final text has none outside code)
    renderer = IncrementalRenderer()
    stable, open_fence_frames = "", 0
    for ch in text:
        renderer.feed(ch)
        append_html, tail_html = renderer.render()
        stable += append_html
        prose, code = _visible(stable + tail_html)
        assert not [m for m in markers if m in prose], (renderer._pending, tail_html)
        assert "``" not in code, (renderer._pending, tail_html)
        pending = renderer._pending
        if "```python\n" in pending and pending.count("```") == 1 and not pending.endswith("\n"):
            assert '<pre class="highlight"><code>' in tail_html
            open_fence_frames += 1
    assert open_fence_frames > 40
    assert renderer.finish() == render_markdown(text)


def test_an_open_fence_is_an_escaped_code_block_at_every_frame() -> None:
    code = "".join(f"line_{i} = '<b>' if x < {i} else '~~'\n" for i in range(40))
    text = "Intro:\n```python\n" + code + "```\n\nAfter"
    renderer = IncrementalRenderer()
    for i, ch in enumerate(text):
        renderer.feed(ch)
        _, tail_html = renderer.render()
        so_far = text[: i + 1]
        if so_far.count("```") == 1 and so_far.endswith("\n") and "```python\n" in so_far:
            # Exactly the streaming render of the text so far, without re-parsing the code.
            assert tail_html == _render(so_far, streaming=True)
            assert "<span class=" not in tail_html.split("<pre", 1)[1]
        if "```python\n" in so_far and so_far.count("```") == 1:
            assert '<pre class="highlight"><code>' in tail_html
            assert "`" not in tail_html  # not even the start of the closing line
    assert renderer.finish() == render_markdown(text)


def test_an_open_fence_is_scanned_not_parsed_again_each_frame() -> None:
    renderer = IncrementalRenderer()
    renderer.feed("```python\nx = 1\n")
    renderer.render()
    before = renderer.parsed_chars
    for i in range(200):
        renderer.feed(f"value_{i} = compute(value_{i - 1}, {i})  # step {i}\n")
        _, tail_html = renderer.render()
    assert renderer.parsed_chars == before  # the 200 lines were never handed to the parser
    assert "value_199 = compute(value_198, 199)" in tail_html
    renderer.feed("```\n")
    _, tail_html = renderer.render()
    assert '<span class="n">value_199</span>' in tail_html  # closed: parsed and highlighted


def test_finish_renders_an_unclosed_fence_like_render_markdown() -> None:
    text = "Intro\n\n```python\nx = 1\n"
    renderer = IncrementalRenderer()
    for ch in text:
        renderer.feed(ch)
        renderer.render()
    assert renderer.finish() == render_markdown(text)


def test_crlf_split_across_pieces() -> None:
    text = "# a\r\n\r\npara\r\n\r\n- x\r\n- y\r\n\r\nend\r"
    renderer = IncrementalRenderer()
    for ch in text:
        renderer.feed(ch)
        renderer.render()
    assert renderer.finish() == render_markdown(text)


def test_render_without_new_text_appends_nothing() -> None:
    renderer = IncrementalRenderer()
    renderer.feed("# a\n\nb\n")
    first = renderer.render()
    assert first[0] == "<h1>a</h1>\n"
    assert renderer.render() == ("", first[1])
    assert IncrementalRenderer().render() == ("", "")
    assert IncrementalRenderer().finish() == ""


def test_streaming_cost_is_linear() -> None:
    rng = random.Random(7)
    blocks = [rng.choice(BLOCKS[:20]) for _ in range(2_000)]
    text = "\n\n".join(blocks)
    while len(text) < 100_000:
        text += "\n\n" + rng.choice(BLOCKS)
    pieces_count = 2_000
    size = len(text) // pieces_count + 1
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    # Joined blocks can merge (two lists in a row are one list): measure what the parser sees.
    lines = text.split("\n")
    longest_block = max(
        sum(len(line) + 1 for line in lines[t.map[0] : t.map[1]])
        for t in _MD.parse(text)
        if t.level == 0 and t.map
    )

    renderer = IncrementalRenderer()
    for piece in pieces:
        renderer.feed(piece)
        renderer.render()
    assert renderer.finish() == render_markdown(text)

    # The open tail never holds more than about two blocks plus one piece...
    tail_bound = 2 * longest_block + size + 2
    assert renderer.max_pending <= tail_bound
    # ...each finished block goes through the parser once for its final HTML...
    assert renderer.finalised_chars <= len(text)
    # ...so the total work is linear in the text, with a per-render cost bounded by the tail.
    assert renderer.parsed_chars <= 3 * len(text) + len(pieces) * 2 * tail_bound
    # For scale: re-rendering the whole message each time would parse ~100x more.
    naive = sum(len(text[: i + size]) for i in range(0, len(text), size))
    assert renderer.parsed_chars * 20 < naive


# --- Styles -------------------------------------------------------------------------------------


def test_committed_css_holds_the_generated_pygments_styles() -> None:
    css = CSS_PATH.read_text(encoding="utf-8")
    assert pygments_css() in css
    assert '[data-theme="dark"] .highlight .k' in css
    assert re.search(
        r'@media \(prefers-color-scheme: dark\) \{\n  \[data-theme="system"\] \.highlight', css
    )
