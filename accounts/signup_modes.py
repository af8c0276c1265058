"""Sign-up modes (R1CHAT_SIGNUP_MODE): open, approval, invite, closed; allowed email domains."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

OPEN = "open"
APPROVAL = "approval"
INVITE = "invite"
CLOSED = "closed"
MODES = (OPEN, APPROVAL, INVITE, CLOSED)

INVITATION_SESSION_KEY = "r1chat_invitation"


def signup_mode() -> str:
    mode = str(getattr(settings, "R1CHAT_SIGNUP_MODE", OPEN) or OPEN).strip().lower()
    return mode if mode in MODES else CLOSED  # a typo must not open the doors


def allowed_email_domains() -> list[str]:
    return [d.lower().lstrip("@") for d in getattr(settings, "R1CHAT_ALLOWED_EMAIL_DOMAINS", [])]


def email_domain_allowed(email: str) -> bool:
    domains = allowed_email_domains()
    if not domains:
        return True
    domain = email.rsplit("@", 1)[-1].lower()
    return domain in domains


def session_invitation(request: HttpRequest):  # -> Invitation | None
    from .models import Invitation

    token = request.session.get(INVITATION_SESSION_KEY)
    if not token:
        return None
    invitation = Invitation.objects.filter(token=token).first()
    if invitation is None or not invitation.is_usable:
        return None
    return invitation


def is_open_for_signup(request: HttpRequest) -> bool:
    mode = signup_mode()
    if mode in (OPEN, APPROVAL):
        return True
    if mode == INVITE:
        return session_invitation(request) is not None
    return False


def use_invitation(request: HttpRequest, user) -> None:
    """Mark the session's invitation used by ``user`` (invite mode)."""
    from .models import Invitation

    token = request.session.pop(INVITATION_SESSION_KEY, None)
    if not token:
        return
    Invitation.objects.filter(token=token, used_at__isnull=True).update(
        used_by=user, used_at=timezone.now()
    )
