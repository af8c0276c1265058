"""Writing the audit logs: who opened or exported which conversation (ReviewAudit, shown to its
owner), and what staff did across everyone's data in the admin (AdminAudit, for superusers)."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from .models import AdminAudit, ReviewAudit


def client_ip(request: HttpRequest) -> str | None:
    """The client's address; behind R1CHAT_TRUSTED_PROXY_COUNT proxies, from X-Forwarded-For.

    Each trusted proxy appends the address it was reached from, so the client is the Nth entry
    from the right; entries further left are whatever the client chose to send.
    """
    candidate = request.META.get("REMOTE_ADDR", "")
    proxies = int(getattr(settings, "TRUSTED_PROXY_COUNT", 0) or 0)
    if proxies > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            candidate = forwarded[-proxies]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def record_review(request: HttpRequest, conversation: Any, action: str) -> ReviewAudit:
    """Write exactly one audit entry; called before anything of the conversation is shown."""
    reviewer = request.user
    return ReviewAudit.objects.create(
        reviewer=reviewer,
        reviewer_name=reviewer.get_username(),
        owner_id=conversation.owner_id,
        conversation=conversation,
        conversation_uuid=conversation.uuid,
        conversation_title=(conversation.title or "")[:200],
        action=action,
        ip_address=client_ip(request),
    )


def record_admin_action(
    request: HttpRequest, action: str, *, search: str = "", details: dict[str, Any] | None = None
) -> AdminAudit:
    """Write one entry of the admin audit log for the signed-in staff member."""
    actor = request.user
    return AdminAudit.objects.create(
        actor=actor,
        actor_name=actor.get_username(),
        action=action,
        search=search[:500],
        details=details or {},
        ip_address=client_ip(request),
    )
