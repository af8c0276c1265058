"""Saving an API call in its owner's history, as a conversation like any other chat."""

from __future__ import annotations

from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.rendering import render_markdown
from conversations.turns.actions import initial_title

from .offers import Offer
from .parsing import ChatCall


class Exchange(Protocol):
    """What a saved call reads of the relay's exchange (api.relay.Exchange)."""

    user_id: int
    offer: Offer
    call: ChatCall
    started_at: Any
    reasoning: list[str]
    answer: list[str]
    usage: dict[str, Any]
    finish_reason: str
    reasoning_unterminated: bool
    reasoning_started_at: Any
    answer_started_at: Any
    status: str
    error: Exception | None


STATUSES = {
    "complete": Message.Status.COMPLETE,
    "stopped": Message.Status.STOPPED,
    "error": Message.Status.ERROR,
}


def save_exchange(exchange: Exchange) -> Message:
    """A new conversation: the call's messages (system prompts as its system prompt) and the
    answer, rendered as the chat page renders them. Returns the answer's message."""
    call, offer = exchange.call, exchange.offer
    system = "\n\n".join(m["content"] for m in call.messages if m["role"] == "system")
    dialogue = [m for m in call.messages if m["role"] != "system"]
    question = next(m["content"] for m in reversed(dialogue) if m["role"] == "user")
    answer, reasoning = "".join(exchange.answer), "".join(exchange.reasoning)
    error_code = ""
    if exchange.error is not None:
        error_code = str(getattr(getattr(exchange.error, "kind", None), "value", "internal"))
    now = timezone.now()
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner_id=exchange.user_id,
            title=initial_title(question),
            settings={
                "backend": offer.backend.pk,
                "model": offer.model,
                "temperature": call.temperature,
                "max_tokens": call.max_tokens,
                "system_prompt": system,
            },
        )
        parent = None
        for item in dialogue:
            parent = Message.objects.create(
                conversation=conversation,
                parent=parent,
                role=item["role"],
                content=item["content"],
                sender_id=exchange.user_id if item["role"] == "user" else None,
                html=render_markdown(item["content"]) if item["role"] == "assistant" else "",
                created_at=exchange.started_at,
            )
        message = Message.objects.create(
            conversation=conversation,
            parent=parent,
            role=Message.Role.ASSISTANT,
            status=STATUSES.get(exchange.status, Message.Status.ERROR),
            content=answer,
            reasoning=reasoning,
            html=render_markdown(answer),
            reasoning_html=render_markdown(reasoning),
            error_code=error_code,
            finish_reason=exchange.finish_reason,
            reasoning_unterminated=exchange.reasoning_unterminated,
            backend=offer.backend,
            backend_name=offer.backend.name,
            model=offer.model,
            deep_think=bool(reasoning),
            enhanced_reasoning=call.enhanced_reasoning,
            temperature=call.temperature,
            max_tokens=call.max_tokens,
            usage=exchange.usage,
            created_at=exchange.started_at,
            reasoning_started_at=exchange.reasoning_started_at,
            reasoning_finished_at=exchange.answer_started_at if reasoning else None,
            answer_started_at=exchange.answer_started_at,
            finished_at=now,
            heartbeat_at=now,
        )
        conversation.current_leaf = message
        conversation.save(update_fields=["current_leaf"])
    return message
