"""The one server-side markdown renderer: live stream, page reload, admin review, exports, shares.

Pipeline: markdown-it-py ("commonmark" preset + tables + strikethrough, raw HTML escaped,
reference definitions and linkify off) → math as MathML (latex2mathml) and code highlighted by
Pygments (CSS classes, no inline styles) → one nh3 pass with a strict allowlist over the final
HTML. Sanitising after markdown and math is the point: a sanitiser run before parsing (Open
WebUI CVE-2026-44568) or a math renderer trusted to emit safe markup (KaTeX ``\\href``) is how
chat apps got stored XSS. Model images are never fetched: ``![alt](url)`` becomes a link.

Math: ``$…$`` and ``\\(…\\)`` inline; ``$$…$$`` and ``\\[…\\]`` display (as a block at the start
of a block, inline-display inside a paragraph). The delimiter rules follow mdit_py_plugins'
``texmath`` ("dollars" and "brackets", reusing its ``dollar_pre``/``dollar_post`` guards), but
are implemented here so that (1) a display formula cannot span a blank line — LaTeX forbids a
paragraph break in math mode, and it is what lets the streaming renderer finalise a block after
a blank line — and (2) no rule slices or scans the rest of the document per delimiter, which
made ``texmath`` quadratic on text full of ``$``. A formula latex2mathml cannot convert is
shown as escaped code, never raw.

User messages are rendered with ``render_markdown`` too (same allowlist, so equally safe): what
the user typed looks the same in the chat, the admin review and exports. ``render_plain_text``
is there for places that want literal text (titles, previews, plain exports).

Streaming: ``IncrementalRenderer`` keeps the text that is not final yet. A block is final once a
later top-level block has started after a blank line at column 0 (see ``_find_boundary``); each
final block is rendered once, only the open tail is re-rendered. Concatenating the pieces gives
exactly ``render_markdown`` of the text, because nothing in this configuration looks across such
a boundary: reference definitions are disabled, raw HTML is escaped, lists and block quotes close
at a non-indented line after a blank line, and display math cannot contain a blank line.
The open tail is provisional and shown at every frame, so its unfinished end is rendered as it
will look rather than as source (see ``_render_tail``); an open code block at its end is shown
from a scan of the lines that arrived, not parsed again per frame.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from typing import Any
from xml.etree.ElementTree import Element, tostring

import nh3
from latex2mathml.converter import convert_to_element
from markdown_it import MarkdownIt, rules_block
from markdown_it.common.utils import escapeHtml, unescapeAll
from markdown_it.renderer import RendererHTML
from markdown_it.rules_block import StateBlock
from markdown_it.rules_core import StateCore
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.texmath.index import dollar_post, dollar_pre
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

__all__ = [
    "IncrementalRenderer",
    "pygments_css",
    "render_markdown",
    "render_partial",
    "render_plain_text",
]

# Bounds that keep pathological input linear (and latex2mathml/Pygments fast).
MAX_INLINE_MATH = 2_000
MAX_DISPLAY_MATH = 20_000
MAX_HIGHLIGHT = 100_000
CACHE_MAX_TEX = 500  # formulas up to this size are cached (a few KiB of MathML each)
CACHE_MAX_CODE = 8_000  # code blocks up to this size are cached

PYGMENTS_LIGHT_STYLE = "default"
PYGMENTS_DARK_STYLE = "github-dark"
HIGHLIGHT_CLASS = "highlight"

_LANG_RE = re.compile(r"[A-Za-z0-9_+#.\-]{1,32}")
_SAFE_SCHEME_RE = re.compile(r"(?:https?://|mailto:)", re.IGNORECASE)

# ---------------------------------------------------------------------------------------------
# Math


def _tex_to_mathml(tex: str, display: bool) -> str | None:
    """MathML for `tex`, or None when latex2mathml cannot convert it."""
    try:
        math = convert_to_element(tex, display="block" if display else "inline")
    except Exception:  # latex2mathml raises many kinds of errors on bad input
        return None
    for el in math.iter():
        for attr in ("href", "xlink:href", "actiontype"):
            el.attrib.pop(attr, None)
    del math.attrib["xmlns"]  # HTML parsing puts <math> in the MathML namespace anyway
    # Keep the source as an annotation (copy/paste and screen readers).
    semantics = Element("semantics")
    semantics.extend(list(math))
    annotation = Element("annotation", encoding="application/x-tex")
    annotation.text = tex
    semantics.append(annotation)
    math[:] = [semantics]
    # latex2mathml stores character references as text ("&#x02211;") and its own serialiser
    # unescapes *everything*, which would turn `\text{<img ...>}` into markup. Serialise
    # properly and restore only the character references.
    return _CHAR_REF_RE.sub(r"&\1", tostring(math, encoding="unicode"))


_CHAR_REF_RE = re.compile(r"&amp;(#x[0-9A-Fa-f]{1,6};|#[0-9]{1,7};)")


def _math_html(tex: str, display: bool, *, as_block: bool) -> str:
    # The streaming tail re-renders the same formulas, and short ones recur across messages;
    # only short ones are cached, so the cache stays small.
    tex = tex.strip()
    if len(tex) <= CACHE_MAX_TEX:
        return _cached_math_html(tex, display, as_block)
    return _uncached_math_html(tex, display, as_block)


def _uncached_math_html(tex: str, display: bool, as_block: bool) -> str:
    mathml = _tex_to_mathml(tex, display) if tex else None
    if mathml is None:
        if as_block:
            return f'<pre class="math-error"><code>{escapeHtml(tex)}</code></pre>\n'
        return f'<code class="math-error">{escapeHtml(tex)}</code>'
    if as_block:
        return f'<div class="math-display">{mathml}</div>\n'
    return mathml


_cached_math_html = functools.lru_cache(maxsize=2048)(_uncached_math_html)


# Inline patterns, after texmath's "dollars" and "brackets" rules; matched at a position
# (never on a slice of the rest of the text) and bounded in length.
_INLINE_DOLLAR = re.compile(r"\$(\S[^$]*?[^\s\\])\$")
_INLINE_DOLLAR_SINGLE = re.compile(r"\$([^$\s\\])\$")
_N = f"{{1,{MAX_INLINE_MATH}}}?"
_INLINE_DOUBLE_DOLLAR = re.compile(r"\$\$((?:[^$]|\$(?!\$))" + _N + r")\$\$")
_INLINE_PAREN = re.compile(r"\\\((." + _N + r")\\\)", re.DOTALL)
_INLINE_BRACKET = re.compile(r"\\\[(." + _N + r")\\\]", re.DOTALL)


def _math_inline_rule(state: StateInline, silent: bool) -> bool:
    src, pos = state.src, state.pos
    ch = src[pos]
    display = False
    if ch == "$":
        if src.startswith("$$", pos):
            match = _INLINE_DOUBLE_DOLLAR.match(src, pos)
            display = True
        elif dollar_pre(src, pos):
            match = _INLINE_DOLLAR.match(src, pos) or _INLINE_DOLLAR_SINGLE.match(src, pos)
            if match and (len(match[1]) > MAX_INLINE_MATH or not dollar_post(src, match.end() - 1)):
                match = None
        else:
            return False
    elif ch == "\\":
        if src.startswith("\\(", pos):
            match = _INLINE_PAREN.match(src, pos)
        elif src.startswith("\\[", pos):
            match = _INLINE_BRACKET.match(src, pos)
            display = True
        else:
            return False
    else:
        return False
    if not match or not match[1].strip():
        return False
    if not silent:
        token = state.push("math_inline", "math", 0)
        token.content = match[1]
        token.markup = "$$" if display else "$"
        token.meta = {"display": display}
    state.pos = match.end()
    return True


def _math_block_rule(opener: str, closer: str) -> Any:
    """A display-math block: `opener` at the start of a block, `closer` ending a line."""

    def rule(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        if state.is_code_block(start_line):
            return False
        src = state.src
        pos = state.bMarks[start_line] + state.tShift[start_line]
        if not src.startswith(opener, pos):
            return False
        text = src[pos + len(opener) : state.eMarks[start_line]]
        parts: list[str] = []
        size = 0
        line = start_line
        while True:
            idx = text.find(closer)
            if idx != -1:
                if text[idx + len(closer) :].strip():
                    return False  # text after the closer: a paragraph with inline math
                parts.append(text[:idx])
                break
            parts.append(text)
            size += len(text) + 1
            line += 1
            if (
                size > MAX_DISPLAY_MATH
                or line >= end_line
                or state.isEmpty(line)
                or state.sCount[line] < state.blkIndent
            ):
                return False
            text = src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]
        content = "\n".join(parts)
        if not content.strip():
            return False
        if silent:
            return True
        token = state.push("math_block", "math", 0)
        token.block = True
        token.content = content
        token.markup = opener
        token.map = [start_line, line + 1]
        state.line = line + 1
        return True

    return rule


# ---------------------------------------------------------------------------------------------
# Code


@functools.lru_cache(maxsize=256)
def _lexer_for(lang: str) -> Lexer | None:
    try:
        return get_lexer_by_name(lang, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


_FORMATTER = HtmlFormatter(nowrap=True)


def _code_block_html(code: str, lang: str, *, highlight_code: bool) -> str:
    # A closed fence stays in the streaming tail until the next block starts: cache small ones.
    if len(code) <= CACHE_MAX_CODE:
        return _cached_code_block_html(code, lang, highlight_code)
    return _uncached_code_block_html(code, lang, highlight_code)


def _uncached_code_block_html(code: str, lang: str, highlight_code: bool) -> str:
    lang = lang if _LANG_RE.fullmatch(lang) else ""
    lexer = _lexer_for(lang.lower()) if lang and highlight_code else None
    if lexer is not None and len(code) <= MAX_HIGHLIGHT:
        body = highlight(code, lexer, _FORMATTER)
    else:
        body = escapeHtml(code)
    label = escapeHtml(lang or "text")
    # The copy button has no text: this HTML is cached per message and shared by every
    # language; the page's script labels it in the reader's language (static/js/codeblocks.js).
    return (
        f'<div class="code-block" data-lang="{label}"><div class="code-header">'
        f'<span class="code-lang">{label}</span>'
        '<button type="button" class="copy-code" data-copy></button></div>'
        f'<pre class="{HIGHLIGHT_CLASS}"><code>{body}</code></pre></div>\n'
    )


_cached_code_block_html = functools.lru_cache(maxsize=32)(_uncached_code_block_html)


def _fence_rule_marking_closed(original: Any) -> Any:
    """Wrap markdown-it's fence rule to record whether the fence has its closing line."""

    def rule(state: StateBlock, start_line: int, end_line: int, silent: bool) -> bool:
        if not original(state, start_line, end_line, silent):
            return False
        if silent:
            return True
        token = state.tokens[-1]
        last = state.line - 1
        closed = False
        if last > start_line:
            text = state.src[state.bMarks[last] + state.tShift[last] : state.eMarks[last]]
            marker = token.markup
            closed = (
                state.sCount[last] - state.blkIndent < 4
                and text.startswith(marker)
                and not text.rstrip(" \t").lstrip(marker[0])
            )
        token.meta = {**(token.meta or {}), "closed": closed}
        return True

    return rule


# ---------------------------------------------------------------------------------------------
# The markdown-it instance (built once)


def _validate_link(url: str) -> bool:
    # Only absolute http(s) and mailto: links; anything else stays literal text.
    return bool(_SAFE_SCHEME_RE.match(url.strip()))


_ALIGN_CLASSES = {
    "text-align:left": "align-left",
    "text-align:center": "align-center",
    "text-align:right": "align-right",
}


def _table_align_to_class(state: StateCore) -> None:
    # markdown-it puts alignment in a style attribute; styles are not allowed, classes are.
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and token.attrs:
            style = token.attrs.pop("style", None)
            if style in _ALIGN_CLASSES:
                token.attrSet("class", _ALIGN_CLASSES[style])


class _Renderer(RendererHTML):
    def fence(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        info = unescapeAll(token.info).strip() if token.info else ""
        lang = info.split(maxsplit=1)[0] if info else ""
        streaming_open = bool(env.get("streaming")) and not (token.meta or {}).get("closed")
        return _code_block_html(token.content, lang, highlight_code=not streaming_open)

    def image(self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
        token = tokens[idx]
        alt = self.renderInlineAsText(token.children, options, env).strip() or "image"
        href = escapeHtml(str(token.attrGet("src") or ""))
        return f'<a href="{href}" class="md-image-link">🖼 {escapeHtml(alt)}</a>'

    def table_open(
        self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        return '<div class="table-wrap"><table>\n'

    def table_close(
        self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        return "</table></div>\n"

    def math_inline(
        self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        token = tokens[idx]
        return _math_html(token.content, bool(token.meta.get("display")), as_block=False)

    def math_block(
        self, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
    ) -> str:
        return _math_html(tokens[idx].content, True, as_block=True)


def _build_markdown() -> MarkdownIt:
    md = MarkdownIt(
        "commonmark",
        {"html": False, "linkify": False, "typographer": False},
        renderer_cls=_Renderer,
    )
    md.enable(["table", "strikethrough"])
    # Links are inline; a reference definition would let later text change earlier blocks.
    md.disable(["reference", "html_block", "html_inline"])
    md.validateLink = _validate_link  # type: ignore[method-assign]
    md.block.ruler.at(
        "fence",
        _fence_rule_marking_closed(rules_block.fence),
        {"alt": ["paragraph", "reference", "blockquote", "list"]},
    )
    md.block.ruler.before("fence", "math_block_dollar", _math_block_rule("$$", "$$"))
    md.block.ruler.before("fence", "math_block_bracket", _math_block_rule("\\[", "\\]"))
    md.inline.ruler.before("escape", "math_inline", _math_inline_rule)
    md.core.ruler.push("table_align_to_class", _table_align_to_class)
    return md


_MD = _build_markdown()

# ---------------------------------------------------------------------------------------------
# The sanitiser (built once)

_MATHML_TAGS = {
    "math", "semantics", "annotation", "mrow", "mi", "mo", "mn", "ms", "mtext", "mspace",
    "msup", "msub", "msubsup", "mfrac", "msqrt", "mroot", "mover", "munder", "munderover",
    "mtable", "mtr", "mtd", "mlabeledtr", "mstyle", "mpadded", "menclose", "mphantom",
    "merror", "mfenced", "mmultiscripts", "mprescripts", "none",
}  # fmt: skip
_MATHML_ATTRS = {
    "mathvariant", "mathsize", "mathcolor", "mathbackground", "dir",
    "stretchy", "fence", "separator", "separators", "lspace", "rspace", "minsize", "maxsize",
    "movablelimits", "largeop", "symmetric", "accent", "accentunder", "form",
    "displaystyle", "scriptlevel", "notation", "width", "height", "depth", "voffset",
    "linethickness", "bevelled", "numalign", "denomalign",
    "columnalign", "columnlines", "columnspacing", "columnspan", "rowalign", "rowlines",
    "rowspacing", "rowspan", "frame", "framespacing", "equalrows", "equalcolumns",
    "linebreak", "open", "close", "align", "side",
}  # fmt: skip
_HTML_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "s", "del", "code",
    "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
    "div", "span", "button",
}  # fmt: skip
_PYGMENTS_CLASSES = {cls for cls in STANDARD_TYPES.values() if cls}

_CLEANER = nh3.Cleaner(
    tags=_HTML_TAGS | _MATHML_TAGS,
    clean_content_tags={"script", "style", "maction", "template", "noscript", "textarea"},
    attributes={
        "a": {"href", "title"},
        "ol": {"start"},
        "div": {"data-lang"},
        "button": {"data-copy"},
        "annotation": {"encoding"},
        **{tag: set(_MATHML_ATTRS) for tag in _MATHML_TAGS - {"math", "annotation"}},
    },
    tag_attribute_values={
        "math": {"display": {"inline", "block"}},
    },
    # Every link opens a new tab; a button can never submit anything.
    set_tag_attribute_values={"a": {"target": "_blank"}, "button": {"type": "button"}},
    allowed_classes={
        "span": _PYGMENTS_CLASSES | {"code-lang"},
        "div": {"code-block", "code-header", "math-display", "table-wrap"},
        "pre": {HIGHLIGHT_CLASS, "math-error"},
        "code": {"math-error"},
        "a": {"md-image-link"},
        "button": {"copy-code"},
        "th": set(_ALIGN_CLASSES.values()),
        "td": set(_ALIGN_CLASSES.values()),
    },
    url_schemes={"http", "https", "mailto"},
    url_relative="deny",
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def _sanitise(html_text: str) -> str:
    return _CLEANER.clean(html_text) if html_text else ""


# ---------------------------------------------------------------------------------------------
# Public API


def _normalise(text: str) -> str:
    # markdown-it's own normalisation, done up front so the streaming renderer can cut the text
    # at line boundaries that mean the same thing to the parser.
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\0", "\ufffd")


def _render(text: str, *, streaming: bool = False) -> str:
    if not text:
        return ""
    env: dict[str, Any] = {"streaming": True} if streaming else {}
    return _sanitise(_MD.render(text, env))


def render_markdown(text: str) -> str:
    """The sanitised HTML of a complete message."""
    return _render(_normalise(text))


def render_partial(text: str) -> str:
    """The sanitised HTML of a message still being written, as its live frames show it."""
    renderer = IncrementalRenderer()
    renderer.feed(text)
    append_html, tail_html = renderer.render()
    return append_html + tail_html


def render_plain_text(text: str) -> str:
    """`text` escaped, as paragraphs split at blank lines with line breaks kept as <br>."""
    paragraphs = re.split(r"\n[ \t]*\n+", _normalise(text).strip("\n"))
    return "".join(
        "<p>" + "<br>\n".join(html.escape(line) for line in p.split("\n")) + "</p>\n"
        for p in paragraphs
        if p.strip()
    )


_BLANK_LINE_RE = re.compile(r"\n[ \t]*\n")
# A line starting with one of these may still turn out to be an item of the list above it.
_MAYBE_LIST_ITEM = frozenset(" \t-+*0123456789")


def _find_boundary(text: str) -> int:
    """Offset in `text` before which every block is final, or 0.

    A boundary is the start of a top-level block (as the parser sees it, so never inside a
    fence, a list, a block quote or display math) whose line follows a blank line and starts
    at column 0. Nothing later can change what came before it: the blank line closed the
    paragraph or table, a non-indented line that is not an item of the same list closed the
    list or block quote, display math cannot cross a blank line, and there are no reference
    definitions. Lookahead constructs (a table's delimiter row, a setext underline, a closing
    fence) only affect the block at or after the boundary. The last line of `text` may be
    unfinished: it can start a block only if its first character cannot begin a list item
    (`1` may yet become `1.` and continue the list above).
    """
    if not _BLANK_LINE_RE.search(text):
        return 0
    if not text.endswith("\n"):
        partial_start = text.rfind("\n") + 1
        if text[partial_start] in _MAYBE_LIST_ITEM:
            text = text[:partial_start]
    tokens: list[Token] = []
    _MD.block.parse(text, _MD, {}, tokens)
    starts = sorted(
        {t.map[0] for t in tokens if t.level == 0 and t.nesting >= 0 and t.map and t.map[0] > 0},
        reverse=True,
    )
    if not starts:
        return 0
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    for start in starts:
        line = lines[start]
        if line[:1] not in ("", " ", "\t") and not lines[start - 1].strip(" \t"):
            return offsets[start]
    return 0


# --- The open tail, made safe to show at every frame ---------------------------------------
#
# The tail is provisional: it is replaced by the next frame and, once its block is final, by
# that block's full render. What a reader must never see in it is markdown source for constructs
# the renderer knows, which a text cut mid-construct would otherwise show: an unfinished last
# line of block markers (`#`, `-`, `1.`, `>`, a fence's opening line) is held back until its
# text arrives; a table's header row waits for its delimiter row; an unclosed inline construct
# at the end (`**bol`, `` `co ``, `$x^`, `\\(a`, `$$` opening display math) is rendered as if
# closed, and a delimiter run with nothing after it yet is held back. An open fenced code block
# is shown as an escaped code block without parsing it again: once seen, only the lines that
# arrived since the last frame are scanned for its closing line.

# An unfinished last line of nothing but block markers: it shows as markup once its text comes.
_MARKERS_ONLY_RE = re.compile(
    r" {0,3}(?:(?:[-+*]|\d{1,9}[.)]|>)[ \t]+)*"
    r"(?:#{1,6}|[-+*]|\d{1,9}[.)]|>|[-*_=]+|`{3,}[^`]*|~{3,}.*|\$\$|\\\[?)?[ \t]*"
)
_ENDS_BLANK_RE = re.compile(r"\n[ \t]*\n[ \t]*\Z")
_TABLE_ROW_RE = re.compile(r" {0,3}\|")
_TABLE_DELIMITER_PREFIX_RE = re.compile(r" {0,3}[-:| \t]*")
_LINK_AT_END_RE = re.compile(r"\[([^\[\]\n]*)\]\([^()\s]*\Z")
_BACKTICKS_RE = re.compile(r"`+")
_INLINE_SPECIAL_RE = re.compile(r"[\\`$*_~]")
_MAY_BE_OPEN_RE = re.compile(r"[\\`$*_~|\[]")  # what a tail's unfinished end may start with
_AMOUNT_RE = re.compile(r"\$\d[\d.,]*(?:\s|\Z)")  # "$5 each" is an amount, not a formula
_FENCE_OPENER_RE = re.compile(r"(`{3,}|~{3,})[^\n]*\n")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or (ch != "" and not ch.isalnum() and not ch.isspace())


def _flanking(prev: str, nxt: str) -> tuple[bool, bool]:
    """(left-flanking, right-flanking) of a delimiter run between `prev` and `nxt` ("" = edge)."""
    prev_space, next_space = prev == "" or prev.isspace(), nxt == "" or nxt.isspace()
    left = not next_space and (not _is_punct(nxt) or prev_space or _is_punct(prev))
    right = not prev_space and (not _is_punct(prev) or next_space or _is_punct(nxt))
    return left, right


def _close_inline(src: str) -> str:
    """`src` (the inline text at the end of an open block) with its unfinished end closed.

    Scans left to right like the inline rules (math, code spans and escapes first, then the
    emphasis delimiters of CommonMark's flanking rules) and returns `src` with the constructs
    still open at its end closed, or with an opener that has no text after it yet removed.
    """
    n = len(src)
    openers: list[list[Any]] = []  # unmatched emphasis runs: [char, count]
    open_runs = dict.fromkeys("*_~", 0)  # how many of `openers` are of each char

    def closed(text: str, closer: str = "") -> str:
        if text.endswith("\\") and (len(text) - len(text.rstrip("\\"))) % 2:
            text = text[:-1]  # a lone trailing backslash would escape the closer
        closers = "".join(ch * count for ch, count in reversed(openers))
        if closer or closers:
            text = text.rstrip()
        return text + closer + closers

    def opened(start: int, content: int, closer: str) -> str:
        # A construct opened at `start` whose text begins at `content` has no closer yet.
        text = src.rstrip()
        for k in range(len(closer) - 1, 0, -1):
            if text.endswith(closer[:k]):
                text = text[:-k]  # the first half of the closer: the whole one follows
                break
        if not text[content:].strip():
            return closed(src[:start])
        return closed(text, closer)

    i = 0
    while i < n:
        ch = src[i]
        if ch == "\\":
            if src.startswith(("\\(", "\\["), i):
                closer = "\\)" if src[i + 1] == "(" else "\\]"
                end = src.find(closer, i + 2)
                if end == -1:
                    return opened(i, i + 2, closer)
                i = end + 2
            else:
                i += 2
            continue
        if ch == "`":
            run = _BACKTICKS_RE.match(src, i)
            assert run is not None
            closing = next(
                (m for m in _BACKTICKS_RE.finditer(src, run.end()) if len(m[0]) == len(run[0])),
                None,
            )
            if closing is None:
                return opened(i, run.end(), run[0])
            i = closing.end()
            continue
        if ch == "$":
            if src.startswith("$$", i):
                end = src.find("$$", i + 2)
                if end == -1:
                    return opened(i, i + 2, "$$")
                i = end + 2
                continue
            if dollar_pre(src, i):
                match = _INLINE_DOLLAR.match(src, i) or _INLINE_DOLLAR_SINGLE.match(src, i)
                if match and dollar_post(src, match.end() - 1):
                    i = match.end()
                    continue
                if src.find("$", i + 1) == -1 and not src[i + 1 : i + 2].isspace():
                    amount = _AMOUNT_RE.match(src, i)
                    if amount is None:
                        return opened(i, i + 1, "$")
                    if amount.end() == n:
                        return closed(src[:i])  # "$5" may yet be "$5 each" or "$5x$"
            i += 1
            continue
        if ch in "*_~":
            j = i
            while j < n and src[j] == ch:
                j += 1
            count = j - i if ch != "~" else (j - i) // 2 * 2
            prev, nxt = src[i - 1 : i], src[j : j + 1]
            left, right = _flanking(prev, nxt)
            if ch == "_":
                can_open = left and (not right or _is_punct(prev))
                can_close = right and (not left or _is_punct(nxt))
            else:
                can_open, can_close = left, right
            if can_close and open_runs[ch]:
                # The nearest opener of the same char; the openers after it stay text.
                while openers[-1][0] != ch:
                    open_runs[openers.pop()[0]] -= 1
                while count and openers and openers[-1][0] == ch:
                    used = 2 if count >= 2 and openers[-1][1] >= 2 else 1
                    count -= used
                    openers[-1][1] -= used
                    if not openers[-1][1]:
                        open_runs[openers.pop()[0]] -= 1
            if count and j == n:
                return closed(src[:i])  # a run with nothing after it yet: it may still open
            if count and can_open:
                openers.append([ch, count])
                open_runs[ch] += 1
            i = j
            continue
        special = _INLINE_SPECIAL_RE.search(src, i + 1)
        i = special.start() if special else n
    link = _LINK_AT_END_RE.search(src)
    if link:
        return closed(src[: link.start()] + link[1])  # a link whose address is coming
    return closed(src)


def _line_offset(text: str, line: int) -> int:
    """Offset in `text` of the start of line number `line` (0-based)."""
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset


def _safe_tail_source(text: str, tokens: list[Token]) -> str:
    """The tail's source with its unfinished end made renderable (the same text if it is not)."""
    last = next((t for t in reversed(tokens) if t.level == 0 and t.nesting >= 0), None)
    if last is None or last.type in ("fence", "code_block", "math_block", "hr"):
        return text
    if last.type == "paragraph_open" and last.map:
        # A table's header row (and the start of its delimiter row) is a paragraph until the
        # delimiter row is complete.
        # (Only its last two lines are looked at: a frame costs no more for a longer paragraph.)
        body = text.rstrip("\n")
        lines = body.rsplit("\n", 2)
        own = body.count("\n", _line_offset(body, last.map[0])) + 1  # the paragraph's lines
        drop = 0
        if (
            own >= 2
            and _TABLE_ROW_RE.match(lines[-2])
            and _TABLE_DELIMITER_PREFIX_RE.fullmatch(lines[-1])
        ):
            drop = 2
        elif _TABLE_ROW_RE.match(lines[-1]):
            drop = 1
        if drop:
            kept = body.rsplit("\n", drop)[0] if body.count("\n") >= drop else ""
            return kept + "\n" if kept else ""
    # The last inline text (a table pads a short row with empty cells after it).
    content = next(
        (t.content.rstrip() for t in reversed(tokens) if t.type == "inline" and t.content.strip()),
        "",
    )
    stripped = text.rstrip()
    if not content or not stripped.endswith(content):
        return text
    fixed = _close_inline(content)
    if fixed == content:
        return text
    return stripped[: len(stripped) - len(content)] + fixed


def _render_tail(text: str) -> tuple[str, list[Token]]:
    """The sanitised HTML of an open tail, and the (block) tokens of its text."""
    if not text:
        return "", []
    env: dict[str, Any] = {"streaming": True}
    if not text.endswith("\n"):
        start = text.rfind("\n") + 1
        if _MARKERS_ONLY_RE.fullmatch(text, start):
            text = text[:start]
    # After a blank line nothing is unfinished: the last block renders as it will stay. Nor
    # can anything be unfinished in a last paragraph without a delimiter in it.
    last_paragraph = text.rfind("\n\n") + 1
    if _ENDS_BLANK_RE.search(text) or not _MAY_BE_OPEN_RE.search(text, last_paragraph):
        tokens = _MD.parse(text, env)
        return _sanitise(_MD.renderer.render(tokens, _MD.options, env)), tokens
    # The block structure first (cheap): it says where the unfinished end is.
    blocks: list[Token] = []
    _MD.block.parse(text, _MD, env, blocks)
    return _sanitise(_MD.render(_safe_tail_source(text, blocks), env)), blocks


class _OpenFence:
    """A top-level fenced code block still open at the end of the tail."""

    def __init__(self, start: int, content: int, marker: str, lang: str, head_html: str) -> None:
        self.start = start  # offset of its opening line in the pending text
        self.content = content  # offset of its first code line
        self.scanned = content  # complete lines before this offset hold no closing line
        self.closer = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$", re.M)
        self.partial_closer = re.compile(rf" {{0,3}}{re.escape(marker[0])}*[ \t]*")
        self.lang = lang
        self.head_html = head_html  # the blocks before it, rendered once

    @classmethod
    def at_end(cls, text: str, tokens: list[Token]) -> _OpenFence | None:
        last = next((t for t in reversed(tokens) if t.level == 0 and t.nesting >= 0), None)
        if last is None or last.type != "fence" or (last.meta or {}).get("closed"):
            return None
        assert last.map is not None
        start = _line_offset(text, last.map[0])
        opener = _FENCE_OPENER_RE.match(text, start)
        if opener is None:  # indented (its lines lose that indent), or no code line yet
            return None
        info = unescapeAll(last.info).strip() if last.info else ""
        lang = info.split(maxsplit=1)[0] if info else ""
        head_html = _render(text[:start], streaming=True)
        return cls(start, opener.end(), opener[1], lang, head_html)

    def still_open(self, text: str) -> bool:
        """Whether no line since the last call closes it (scans only those lines)."""
        end = text.rfind("\n") + 1
        if end > self.scanned:
            if self.closer.search(text, self.scanned, end):
                return False
            self.scanned = end
        return True

    def html(self, text: str) -> str:
        code = text[self.content :]
        last_line = code.rfind("\n") + 1
        if last_line < len(code) and self.partial_closer.fullmatch(code, last_line):
            code = code[:last_line]  # maybe the start of the closing line
        return self.head_html + _sanitise(
            _uncached_code_block_html(code, self.lang, highlight_code=False)
        )


def warm_up() -> None:
    """Load what the first rendering of code and math would load (Pygments' lexers, the
    converter's tables), so the first answer of a process does not pay for it mid-stream."""
    render_markdown("# a\n\n**b** $x^2$\n\n$$\\frac{1}{2}$$\n\n```python\nprint(1)\n```\n")
    renderer = IncrementalRenderer()
    renderer.feed("`c` $y$ | a |\n|---|\n```python\nx = 1\n")
    renderer.render()


class IncrementalRenderer:
    """Renders one streaming message: final blocks once, the open last block on each call.

    Invariant: ``stable_html`` + the latest tail is the message so far, with the tail's
    unfinished end shown as it will look (see ``_render_tail``); every ``append_html``
    returned by ``render()`` concatenated in order is ``stable_html``; and ``finish()`` equals
    ``render_markdown`` of everything fed.
    """

    def __init__(self) -> None:
        self.stable_html = ""
        self._pending = ""  # normalised text not yet final (starts at a line start)
        self._held_cr = False  # a trailing "\r" may be the first half of "\r\n"
        self._fence: _OpenFence | None = None
        self._last_tail: tuple[str, str] | None = None  # (pending, its tail HTML)
        # Work counters for tests and benchmarks: characters handed to the parser.
        self.parsed_chars = 0
        self.finalised_chars = 0
        self.max_pending = 0

    def feed(self, text: str) -> None:
        """Append raw answer text, split anywhere."""
        if self._held_cr:
            text = "\r" + text
            self._held_cr = False
        if text.endswith("\r"):
            text = text[:-1]
            self._held_cr = True
        self._pending += _normalise(text)
        self.max_pending = max(self.max_pending, len(self._pending))

    def render(self) -> tuple[str, str]:
        """(HTML of blocks that became final since the last call, HTML of the open tail)."""
        pending = self._pending
        if self._last_tail is not None and self._last_tail[0] == pending:
            return "", self._last_tail[1]
        if self._fence is not None:
            if self._fence.still_open(pending):
                tail = self._fence.html(pending)
                self._last_tail = (pending, tail)
                return "", tail
            self._fence = None
        append_html = ""
        # A block can become final only when a line starts after it: not while the last line
        # merely grows (whether it can start a block depends on its first character only).
        previous = self._last_tail[0] if self._last_tail is not None else ""
        new_line = previous.endswith("\n") or "\n" in pending[len(previous) :]
        if new_line and "\n" in pending:
            self.parsed_chars += len(pending)
            cut = _find_boundary(pending)
            if cut:
                chunk, self._pending = pending[:cut], pending[cut:]
                self.parsed_chars += len(chunk)
                self.finalised_chars += len(chunk)
                append_html = _render(chunk)
                self.stable_html += append_html
        self.parsed_chars += len(self._pending)
        tail, tokens = _render_tail(self._pending)
        self._fence = _OpenFence.at_end(self._pending, tokens)
        if self._fence is not None:
            tail = self._fence.html(self._pending)  # as every later frame will show it
        self._last_tail = (self._pending, tail)
        return append_html, tail

    def finish(self) -> str:
        """The full final HTML (equal to ``render_markdown`` of all the text fed)."""
        if self._held_cr:
            self._held_cr = False
            self._pending += "\n"
        self.parsed_chars += len(self._pending)
        return self.stable_html + _render(self._pending)


def pygments_css() -> str:
    """Token styles for code blocks: light by default, dark for the dark and system themes."""
    light = HtmlFormatter(style=PYGMENTS_LIGHT_STYLE)
    dark = HtmlFormatter(style=PYGMENTS_DARK_STYLE)

    def defs(formatter: HtmlFormatter, prefix: str) -> str:
        # Only the rules scoped to the prefix: get_style_defs also emits global `pre` and
        # line-number rules that would leak into the page.
        return "\n".join(
            line
            for line in formatter.get_style_defs(prefix).splitlines()
            if line.startswith(prefix)
        )

    cls = f".{HIGHLIGHT_CLASS}"
    system = defs(dark, f'[data-theme="system"] {cls}')
    return (
        f"/* Light: Pygments style {PYGMENTS_LIGHT_STYLE!r}. */\n"
        f"{defs(light, cls)}\n"
        f"/* Dark: Pygments style {PYGMENTS_DARK_STYLE!r}. */\n"
        f"{defs(dark, f'[data-theme={chr(34)}dark{chr(34)}] {cls}')}\n"
        "@media (prefers-color-scheme: dark) {\n"
        + "\n".join("  " + line for line in system.splitlines())
        + "\n}\n"
    )


if __name__ == "__main__":  # python -m conversations.rendering > the generated part of the CSS
    print(pygments_css(), end="")
