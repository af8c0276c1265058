from __future__ import annotations

from django import template

from ..limits import seconds_until_resend
from ..signup_modes import signup_mode as _signup_mode

register = template.Library()


@register.simple_tag
def signup_mode() -> str:
    return _signup_mode()


@register.simple_tag
def resend_wait(recipient: str | None) -> int:
    """Seconds before another code may be sent to ``recipient`` (for the resend countdown)."""
    return seconds_until_resend(recipient) if recipient else 0
