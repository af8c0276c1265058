"""`{% load review %}`: the reviews of a user's conversations, and the admin index links."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from ..access import can_review
from ..models import ReviewAudit

register = template.Library()


@register.simple_tag
def reviews_of(user: Any, limit: int = 50) -> list[ReviewAudit]:
    """`{% reviews_of request.user as reviews %}`: newest first, for the owner's account page."""
    if user is None or not getattr(user, "is_authenticated", False):
        return []
    entries = list(
        ReviewAudit.objects.filter(owner_id=user.pk)
        .select_related("conversation")
        .only(
            "reviewer_name",
            "conversation_uuid",
            "conversation_title",
            "action",
            "at",
            "conversation__title",
        )[:limit]
    )
    for entry in entries:
        # The conversation's title now (renamed since?), else the one it had when reviewed.
        entry.title_now = (
            entry.conversation.title if entry.conversation else ""
        ) or entry.conversation_title
    return entries


@register.simple_tag(takes_context=True)
def review_admin_links(context: dict[str, Any]) -> dict[str, str]:
    """The review queue and usage report links the admin index shows to whom may open them."""
    request = context.get("request")
    user = getattr(request, "user", None)
    links: dict[str, str] = {}
    if user is None:
        return links
    if can_review(user):
        links["queue"] = reverse("admin:conversations_conversation_changelist") + "?flagged=queue"
        links["conversations"] = reverse("admin:conversations_conversation_changelist")
    if user.has_perm("review.view_usagerecord"):
        links["usage"] = reverse("admin:review_usagerecord_changelist")
    return links
