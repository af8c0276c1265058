"""Short conversation titles, written by the model in the background (no reasoning)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

from ..backends import get_backend
from ..backends.base import Answer, BackendError, ChatRequest
from ..models import Conversation

if TYPE_CHECKING:
    from ..runner.generation import GenerationRunner

logger = logging.getLogger(__name__)

TITLE_PROMPT = (
    "Write a title of at most six words for a conversation that starts with the message below. "
    "Use the message's language. Reply with the title only: no quotes, no punctuation at the end."
)
TITLE_TIMEOUT = 30.0


def clean_title(text: str) -> str:
    text = re.sub(r"[*_`#>\"“”'「」]", "", text).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = first.rstrip("。.!！?？:：")
    return first[:60]


async def _always_thinks(runner: GenerationRunner) -> bool:
    from .catalog import backend_models, learned_thinking, with_learned

    assert runner.backend is not None and runner.request is not None
    models, _error = await backend_models(runner.backend)
    learned = await learned_thinking()
    return any(
        m.name == runner.request.model
        and with_learned(runner.backend.pk, m, learned).thinking == "always"
        for m in models
    )


async def generate_title(conversation: Conversation, runner: GenerationRunner) -> bool:
    """Ask the model that answered for a short title; keep the first-line title on failure.
    Whether the conversation got the model's title."""
    if runner.request is None or runner.backend is None:
        return False
    question = next((m["content"] for m in runner.request.messages if m["role"] == "user"), "")
    request = ChatRequest(
        model=runner.request.model,
        messages=[
            {"role": "system", "content": TITLE_PROMPT},
            {"role": "user", "content": question[:2000]},
        ],
        deep_think=False,
        enhanced_reasoning=False,
        temperature=0.3,
        # A model that always thinks needs room to think before the title.
        max_tokens=400 if await _always_thinks(runner) else 60,
    )
    parts: list[str] = []
    try:
        async with asyncio.timeout(TITLE_TIMEOUT):
            stream = get_backend(runner.backend.config()).stream_chat(request)
            try:
                async for event in stream:
                    if isinstance(event, Answer):
                        parts.append(event.text)
                        if sum(map(len, parts)) > 200:
                            break
            finally:
                await stream.aclose()
    except (BackendError, TimeoutError) as exc:
        logger.info("no title for %s: %s", conversation.uuid, exc)
        return False
    title = clean_title("".join(parts))
    if not title:
        return False
    # Only if nobody renamed it meanwhile.
    updated = await Conversation.objects.filter(pk=conversation.pk, title_generated=False).aupdate(
        title=title, title_generated=True
    )
    if not updated:
        return False
    conversation.title = title
    conversation.title_generated = True
    return True
