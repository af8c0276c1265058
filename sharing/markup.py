"""The shared page's messages, built in Python like the chat page's (`conversations.markup`).

Rendered through the template engine, a 500-message snapshot spent most of its time there (the
same finding as the chat page's). User text is escaped here; an answer's and its reasoning's
HTML is the renderer's, sanitised when it was written. `labels`: the page's fixed words,
translated and escaped once.
"""

from __future__ import annotations

from html import escape
from typing import Any

from django.utils.safestring import SafeString, mark_safe

from conversations.models import Message

from .models import SharedMessage


def _user(message: SharedMessage) -> str:
    return (
        '<article class="msg msg-user" data-role="user">'
        '<div class="msg-body"><div class="user-bubble">'
        f'<div class="user-text">{escape(message.content)}</div></div></div></article>\n'
    )


def _thinking(message: SharedMessage, label: str) -> str:
    if not message.reasoning:
        return ""
    return (
        '<details class="thinking"><summary class="thinking-summary">'
        '<svg class="thinking-icon" width="16" height="16" aria-hidden="true">'
        '<use href="#i-bulb"/></svg>'
        f'<span class="thinking-label">{escape(label)}</span>'
        '<svg class="thinking-chevron" width="14" height="14" aria-hidden="true">'
        '<use href="#i-chevron"/></svg></summary>'
        f'<div class="thinking-text markdown">{message.reasoning_html}</div></details>'
    )


def _assistant(message: SharedMessage, label: str, t: dict[str, str]) -> str:
    notice = (
        f'<p class="msg-notice">{t["unfinished"]}</p>'
        if message.status != Message.Status.COMPLETE
        else ""
    )
    model = f'<p class="shared-model">{escape(message.model)}</p>' if message.model else ""
    return (
        f'<article class="msg msg-assistant" data-role="assistant" '
        f'data-status="{escape(message.status)}">'
        '<div class="msg-avatar" aria-hidden="true">'
        '<svg width="28" height="28"><use href="#i-logo"/></svg></div>'
        f'<div class="msg-body">{_thinking(message, label)}'
        f'<div class="answer markdown">{message.html}</div>{notice}{model}</div></article>\n'
    )


def shared_thread_html(
    messages: list[SharedMessage], thought: Any, labels: dict[str, str]
) -> SafeString:
    """`thought(seconds)`: the "Thought for N seconds" label of a reasoning."""
    t = {key: escape(value) for key, value in labels.items()}
    parts = [
        _user(m) if m.role == Message.Role.USER else _assistant(m, thought(m.thought_seconds), t)
        for m in messages
    ]
    return mark_safe("".join(parts))
