"""Personas and a few conversations for the view tests.

- Alice owns the conversations the tests look at.
- Bob is another user: every id of Alice's is "not found" for him.
- Carol signed up but has not confirmed an address yet: she cannot chat.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from conversations.models import Conversation, Message
from tests.chat_support import make_user


def personas() -> tuple[Any, Any]:
    return make_user("alice"), make_user("bob")


def unverified_user() -> Any:
    return get_user_model().objects.create_user(
        username="carol", email="carol@example.com", password="x"
    )


def conversation(
    owner: Any,
    title: str = "A chat",
    *,
    ago: dt.timedelta = dt.timedelta(0),
    pinned: bool = False,
    turns: list[tuple[str, str, str]] | None = None,
) -> Conversation:
    """A conversation with (question, reasoning, answer) turns, updated `ago`."""
    when = timezone.now() - ago
    conv = Conversation.objects.create(owner=owner, title=title, pinned=pinned, updated_at=when)
    parent = None
    for question, reasoning, answer in turns or []:
        user_message = Message.objects.create(
            conversation=conv, parent=parent, role="user", content=question
        )
        parent = Message.objects.create(
            conversation=conv,
            parent=user_message,
            role="assistant",
            content=answer,
            reasoning=reasoning,
            status="complete",
            model="sim-r1",
            reasoning_started_at=when,
            answer_started_at=when + dt.timedelta(seconds=3),
            finished_at=when + dt.timedelta(seconds=5),
            usage={"prompt_tokens": 10, "completion_tokens": 40, "reasoning_tokens": 25},
        )
    if parent is not None:
        conv.current_leaf = parent
        conv.save(update_fields=["current_leaf"])
    return conv
