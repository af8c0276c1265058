from __future__ import annotations

from django import template

from ..limits import seconds_until_resend
from ..signup_modes import signup_mode as _signup_mode

register = template.Library()


@register.simple_tag
def signup_mode() -> str:
    return _signup_mode()


@register.simple_tag
def resend_wait(recipient: str | None, purpose: str) -> int:
    """Seconds before another ``purpose`` code (accounts.limits) may be sent to ``recipient``
    (for the resend countdown)."""
    return seconds_until_resend(recipient, purpose) if recipient else 0


@register.inclusion_tag("admin/accounts/_waiting_for_approval.html")
def waiting_for_approval() -> dict[str, object]:
    """The admin home's count of people waiting for approval (approval mode only)."""
    from django.urls import reverse

    from ..approval import waiting_count

    count = waiting_count()
    query = "?approved__exact=0&is_active__exact=1&is_staff__exact=0"
    return {"count": count, "url": reverse("admin:accounts_user_changelist") + query}
