"""`{% load sharing %}`: the share links of a user (account page) or a conversation (review)."""

from __future__ import annotations

from typing import Any

from django import template

from ..models import SharedLink

register = template.Library()


@register.simple_tag
def shared_links_of(user: Any) -> list[SharedLink]:
    """`{% shared_links_of request.user as links %}`: the user's live links, newest first."""
    if user is None or not getattr(user, "is_authenticated", False):
        return []
    links = SharedLink.objects.filter(owner_id=user.pk, conversation__deleted_at__isnull=True)
    return list(links.select_related("conversation"))


@register.simple_tag
def shared_links_for(conversation: Any) -> list[SharedLink]:
    """`{% shared_links_for conversation as links %}`: its live links, newest first."""
    return list(SharedLink.objects.filter(conversation=conversation))


@register.simple_tag(takes_context=True)
def absolute_url(context: dict[str, Any], path: str) -> str:
    """`path` as a full URL of this site, as the request reached it."""
    request = context.get("request")
    return request.build_absolute_uri(path) if request is not None else path
