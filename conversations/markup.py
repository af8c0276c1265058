"""One message's markup on the chat page, in Python: the page renders it once per message.

A 500-message conversation spent three quarters of its server time in the Django template of
one message (about twenty variables, each looked up and escaped through the template engine's
layers). This is the same markup built with `html.escape`, which is what Django's escaping
does. `m` is a message prepared by `views._for_template`; `t` holds the labels translated once
per page (`views._labels`). The page also renders it blank into <template>s, which the scripts
clone for live messages, so every message on the page has exactly this shape.
"""

from __future__ import annotations

from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _hidden(shown: Any) -> str:
    return "" if shown else " hidden"


def _icon(name: str, size: int = 16) -> str:
    return f'<svg width="{size}" height="{size}" aria-hidden="true"><use href="#i-{name}"/></svg>'


def _button(action: str, label: str, icon: str) -> str:
    return (
        f'<button type="button" class="icon-btn act-{action}" aria-label="{label}" '
        f'title="{label}">{_icon(icon)}</button>'
    )


def _versions(m: dict[str, Any], t: dict[str, str]) -> str:
    return (
        f'<div class="versions"{_hidden(not m["single"])}>'
        f'<button type="button" class="icon-btn version-prev" aria-label="{t["previous"]}"'
        f"{' disabled' if m['first'] else ''}>‹</button>"
        f'<span class="versions-label">{_e(m["versions_label"])}</span>'
        f'<button type="button" class="icon-btn version-next" aria-label="{t["next"]}"'
        f"{' disabled' if m['last'] else ''}>›</button></div>"
    )


def _rate(rating: str, current: Any, label: str, icon: str) -> str:
    pressed = "true" if current == rating else "false"
    return (
        f'<button type="button" class="icon-btn act-rate" data-rating="{rating}" '
        f'aria-pressed="{pressed}" aria-label="{label}" title="{label}">{_icon(icon)}</button>'
    )


def file_chip(file: dict[str, Any]) -> str:
    """One attached file (`attachments.chip`)."""
    return (
        f'<li class="file-chip" data-id="{_e(file["id"])}" data-kind="{_e(file["kind"])}" '
        f'title="{_e(file["name"])}" tabindex="0" role="button">'
        f"{_chip_icon(file)}"
        f'<span class="file-chip-name">{_e(file["name"])}</span>'
        f'<span class="file-chip-size">{_e(file["size_label"])}</span></li>'
    )


def _chip_icon(file: dict[str, Any]) -> str:
    if file.get("thumbnail"):
        return f'<img class="file-chip-thumb" src="{_e(file["thumbnail"])}" alt="">'
    return f'<span class="file-chip-kind">{_e(file["label"])}</span>'


def files_html(files: list[dict[str, Any]]) -> str:
    """A user message's attached files, as chips (the same markup `attachments.js` builds)."""
    chips = "".join(file_chip(f) for f in files)
    return f'<ul class="msg-files"{_hidden(files)}>{chips}</ul>'


def message_html(m: dict[str, Any], labels: dict[str, str]) -> SafeString:
    return mark_safe(_message(m, _escaped(labels)))


def thread_html(thread: list[dict[str, Any]], labels: dict[str, str]) -> SafeString:
    t = _escaped(labels)  # once a page, not once a message
    return mark_safe("".join(_message(m, t) for m in thread))


def _escaped(labels: dict[str, str]) -> dict[str, str]:
    return {key: escape(value) for key, value in labels.items()}


def _message(m: dict[str, Any], t: dict[str, str]) -> str:
    """`t`: the labels, escaped."""
    common = (
        f'data-id="{_e(m["id"])}" data-role="{_e(m["role"])}" data-parent="{_e(m.get("parent"))}"'
    )
    if m["role"] == "user":
        return (
            f'<article class="msg msg-user" {common} data-versions="{_e(m["versions_json"])}">\n'
            '  <div class="msg-body">\n'
            f"    {files_html(m.get('attachments') or [])}\n"
            f'    <div class="user-bubble"{_hidden(m["content"])}>'
            f'<div class="user-text">{_e(m["content"])}</div></div>\n'
            '    <div class="msg-actions">\n'
            f"      {_versions(m, t)}\n"
            f"      {_button('copy', t['copy'], 'copy')}\n"
            f"      {_button('edit', t['edit'], 'edit')}\n"
            "    </div>\n"
            "  </div>\n"
            "</article>\n"
        )
    error = m.get("error") or {}
    return (
        f'<article class="msg msg-assistant" {common} data-status="{_e(m["status"])}" '
        f'data-versions="{_e(m["versions_json"])}" data-usage="{_e(m["usage_json"])}" '
        f'data-timings="{_e(m["timings_json"])}" data-model="{_e(m.get("model"))}" '
        f'data-deep-think="{m["deep_think_attr"]}">\n'
        '  <div class="msg-avatar" aria-hidden="true">'
        '<svg width="28" height="28"><use href="#i-logo"/></svg></div>\n'
        '  <div class="msg-body">\n'
        f'    <details class="thinking"{" open" if m["thinking_open"] else ""}'
        f"{_hidden(m['show_thinking'])}>\n"
        '      <summary class="thinking-summary">'
        '<svg class="thinking-icon" width="16" height="16" aria-hidden="true">'
        '<use href="#i-bulb"/></svg>'
        f'<span class="thinking-label">{_e(m["thinking_label"])}</span>'
        '<svg class="thinking-chevron" width="14" height="14" aria-hidden="true">'
        '<use href="#i-chevron"/></svg></summary>\n'
        # The reasoning's HTML, like the answer's, was sanitised when it was rendered.
        '      <div class="thinking-text markdown">'
        f'<div class="thinking-stable">{m["reasoning_html"]}</div>'
        '<div class="thinking-tail"></div></div>\n'
        "    </details>\n"
        f'    <template class="msg-source">{_e(m["content"])}</template>\n'
        # The answer's HTML was sanitised once, when it was rendered (conversations/rendering).
        f'    <div class="answer markdown"><div class="answer-stable">{m["html"]}</div>'
        '<div class="answer-tail"></div></div>\n'
        f'    <div class="typing" aria-hidden="true"{_hidden(m["typing"])}>'
        "<span></span><span></span><span></span></div>\n"
        f'    <p class="msg-notice"{_hidden(m["notice"])}>{_e(m["notice"])}</p>\n'
        f'    <button type="button" class="btn continue-btn"{_hidden(m.get("can_continue"))}>'
        f"{_icon('chevron', 14)}<span>{t['continue']}</span></button>\n"
        f'    <div class="msg-error" role="alert"{_hidden(m["error"])}>{_icon("alert", 18)}'
        f'<span class="msg-error-text">{_e(error.get("message"))}</span>'
        f'<button type="button" class="retry-btn"{_hidden(error.get("retryable"))}>'
        f"{t['retry']}</button></div>\n"
        '    <div class="msg-actions">\n'
        f"      {_versions(m, t)}\n"
        f"      {_button('copy', t['copy'], 'copy')}\n"
        f"      {_button('regenerate', t['regenerate'], 'regenerate')}\n"
        f"      {_rate('up', m.get('rating'), t['good'], 'thumb-up')}\n"
        f"      {_rate('down', m.get('rating'), t['bad'], 'thumb-down')}\n"
        f'      <span class="msg-info" tabindex="0" role="button" aria-label="{t["usage"]}">'
        f'{_icon("info")}<span class="msg-usage" role="tooltip"></span></span>\n'
        "    </div>\n"
        "  </div>\n"
        "</article>\n"
    )
