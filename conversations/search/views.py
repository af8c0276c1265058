"""`/api/search` and the jump from a result to its message."""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import async_to_sync
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from ..guards import chat_required
from ..models import Conversation, Message
from ..turns.threads import Tree, thread_messages
from . import query, snippets

TRUE = {"1", "true", "on", "yes"}


def _where(hit: query.Hit) -> tuple[str, str]:
    if hit.tier == query.TITLE:
        return "title", _("Title")
    assert hit.message is not None
    if hit.message["field"] == "reasoning":
        return "reasoning", _("Reasoning")
    if hit.message["role"] == Message.Role.USER:
        return "question", _("Your message")
    return "answer", _("Answer")


def _result(hit: query.Hit, terms: list[str]) -> dict[str, Any]:
    title = hit.title or _("New chat")
    url = reverse("conversation-detail", args=[hit.conversation_uuid])
    message = hit.message
    if message is not None:
        url += "?" + urlencode({"m": str(message["uuid"])})
    where, where_label = _where(hit)
    return {
        "conversation": str(hit.conversation_uuid),
        "title": title,
        "title_html": snippets.mark(title, terms),
        "message": str(message["uuid"]) if message else None,
        "snippet_html": snippets.snippet(message["text"], terms) if message else "",
        "where": where,
        "where_label": where_label,
        "updated_at": hit.updated_at.isoformat(),
        "url": url,
    }


@never_cache
@require_GET
@chat_required
def search(request: HttpRequest) -> JsonResponse:
    """One page of results: `q`, `reasoning=1` to search the reasoning too, `cursor`."""
    text = request.GET.get("q", "")
    if len(text) > query.MAX_QUERY_CHARS:
        detail = _("Search for at most %(count)d characters.") % {"count": query.MAX_QUERY_CHARS}
        return JsonResponse({"error": "too_long", "detail": detail}, status=400)
    reasoning = request.GET.get("reasoning", "").lower() in TRUE
    try:
        page = query.search(
            request.user, text, reasoning=reasoning, cursor=request.GET.get("cursor", "")
        )
    except query.BadCursor:
        detail = _("That page of results does not exist. Search again.")
        return JsonResponse({"error": "bad_cursor", "detail": detail}, status=400)
    return JsonResponse(
        {
            "query": text,
            "terms": page.terms,
            "results": [_result(hit, page.terms) for hit in page.hits],
            "next": page.next,
        }
    )


def show_message(request: HttpRequest, conversation: Conversation) -> None:
    """`/c/<uuid>/?m=<message>`: a result's message, on whichever branch it is.

    When the message is on a version that is not shown, that version becomes the current one,
    as the version arrows would make it: the composer continues the thread on screen, and the
    user's other tabs follow. An unknown id shows the conversation as it is.
    """
    try:
        message_uuid = uuid.UUID(request.GET.get("m", ""))
    except ValueError:
        return
    message_id = (
        Message.objects.filter(conversation=conversation, uuid=message_uuid)
        .values_list("id", flat=True)
        .first()
    )
    if message_id is None:
        return
    if any(m.pk == message_id for m in thread_messages(conversation, Tree.load(conversation))):
        return
    from ..turns import actions

    async_to_sync(actions.switch_version)(request.user, message_uuid)
    conversation.refresh_from_db(fields=["current_leaf"])
