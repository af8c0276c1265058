"""Personas and conversations for the review and admin tests (like healthchecks' hc/test.py).

- alice: owns conversations; may see only her own.
- bob: another user; must never see alice's.
- carol: staff without the review permission; reaches no review page.
- rita: staff holding review.review_conversations; reviews in "permission" mode only.
- root: superuser; reviews in "superusers" and "permission" modes, never in "nobody".
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.rendering import render_markdown

PASSWORD = "correct horse battery staple"


def make_person(name: str, *, password: str | None = None, **extra: Any) -> Any:
    """A user with a confirmed email; no usable password unless given (hashing is slow)."""
    user = get_user_model().objects.create_user(
        username=name, email=f"{name}@example.com", password=password, **extra
    )
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def make_personas() -> dict[str, Any]:
    rita = make_person("rita", is_staff=True)
    rita.user_permissions.add(Permission.objects.get(codename="review_conversations"))
    return {
        "alice": make_person("alice"),
        "bob": make_person("bob"),
        "carol": make_person("carol", is_staff=True),
        "rita": rita,
        "root": make_person("root", is_staff=True, is_superuser=True),
    }


def add_answer(
    user_message: Message,
    content: str,
    *,
    reasoning: str = "",
    model: str = "deepseek-v4-flash",
    usage: dict[str, int] | None = None,
    status: str = Message.Status.COMPLETE,
) -> Message:
    start = user_message.created_at + dt.timedelta(seconds=1)
    return Message.objects.create(
        conversation=user_message.conversation,
        parent=user_message,
        role=Message.Role.ASSISTANT,
        content=content,
        reasoning=reasoning,
        html=render_markdown(content),
        status=status,
        backend_name="Simulator",
        model=model,
        usage=usage if usage is not None else {"prompt_tokens": 12, "completion_tokens": 30},
        created_at=start,
        reasoning_started_at=start + dt.timedelta(seconds=0.2) if reasoning else None,
        reasoning_finished_at=start + dt.timedelta(seconds=3.2) if reasoning else None,
        answer_started_at=start + dt.timedelta(seconds=3.2),
        finished_at=start + dt.timedelta(seconds=5),
    )


def make_conversation(
    owner: Any,
    title: str = "Primes",
    question: str = "Is 91 prime?",
    answer: str = "No: **91 = 7 × 13**.",
    reasoning: str = "Try 7: 7 × 13 = 91.",
    **answer_extra: Any,
) -> tuple[Conversation, Message, Message]:
    conversation = Conversation.objects.create(owner=owner, title=title)
    asked = Message.objects.create(
        conversation=conversation,
        role=Message.Role.USER,
        content=question,
        # Now, not a few minutes ago: just after midnight that would be yesterday's usage.
        created_at=timezone.now(),
    )
    answered = add_answer(asked, answer, reasoning=reasoning, **answer_extra)
    conversation.current_leaf = answered
    conversation.save(update_fields=["current_leaf"])
    return conversation, asked, answered
