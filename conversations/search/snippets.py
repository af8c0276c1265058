"""Highlighted snippets: a window of plain text around the first match, every match marked.

The result is HTML built here from escaped text and `<mark>` elements only, so the page may
insert it as it is: a message holding `<script>` shows as text.
"""

from __future__ import annotations

import re

from django.utils.html import escape

SNIPPET_CHARS = 160  # the window's width
CONTEXT_CHARS = 40  # of it, before the first match

_FENCE = re.compile(r"^\s*(```|~~~)[^\n]*$", re.MULTILINE)
_LINE_MARKUP = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?|[-*+]\s+)", re.MULTILINE)
_INLINE_MARKUP = re.compile(r"\*\*|__|`+")
_SPACE = re.compile(r"\s+")


def plain(text: str) -> str:
    """Markdown as one line of reading text: no fences, heading or quote marks, emphasis."""
    text = _FENCE.sub(" ", text)
    text = _LINE_MARKUP.sub("", text)
    text = _INLINE_MARKUP.sub("", text)
    return _SPACE.sub(" ", text).strip()


def _pattern(terms: list[str]) -> re.Pattern[str]:
    longest_first = sorted(terms, key=len, reverse=True)
    return re.compile("|".join(re.escape(t) for t in longest_first), re.IGNORECASE)


def mark(text: str, terms: list[str]) -> str:
    """`text` as HTML with every term marked."""
    if not terms:
        return escape(text)
    out = []
    last = 0
    for match in _pattern(terms).finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(f"<mark>{escape(match.group())}</mark>")
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(out)


def snippet(text: str, terms: list[str], width: int = SNIPPET_CHARS) -> str:
    """A window of `text` around its first match, as HTML with the matches marked."""
    text = plain(text)
    first = _pattern(terms).search(text) if terms else None
    start = max(0, first.start() - CONTEXT_CHARS) if first else 0
    if start:
        # Start at a word where there are spaces (not in Chinese, which has none).
        space = text.find(" ", start, start + 15)
        if space != -1 and (first is None or space < first.start()):
            start = space + 1
    end = min(len(text), start + width)
    # A match cut by the window's end is shown whole.
    for match in _pattern(terms).finditer(text, start, min(len(text), end + 50)) if terms else []:
        if match.start() < end < match.end():
            end = match.end()
    body = mark(text[start:end], terms)
    return ("…" if start > 0 else "") + body + ("…" if end < len(text) else "")
