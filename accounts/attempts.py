"""Tries at one-time codes, counted in one shared, atomic place (the database).

Every code the site sends — allauth's sign-in and password-reset codes, the project's own
sign-up, change-of-address and deletion codes — is registered here when it is made
(:func:`issue_unique`), and every check of a code first asks :func:`allow_try`. That is one
``UPDATE … SET attempts = attempts + 1 WHERE key = … AND attempts < limit AND expires_at > now``:
atomic on PostgreSQL and SQLite alike, so however many requests arrive at once, at most
``MAX_ATTEMPTS`` of them ever compare a guess with the code; after that the code is dead for
every session, the right code included. A code that was used (:func:`spend`) is dead too.

allauth's own count stays in the session and keeps deciding when its flow ends (the page says
"too many attempts" and starts over); this count only refuses more tries than that, so a tried-out
code answers exactly like a wrong one ("incorrect code"): nothing tells a guesser whether a code,
or an account, was behind the page.

On top, tries are rate-limited per client address and per recipient address
(:func:`check_rate`, :func:`allow_try`), in the cache (Redis when REDIS_URL is set).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from allauth.account import app_settings as account_settings
from allauth.account.adapter import get_adapter
from allauth.core.exceptions import ImmediateHttpResponse
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from .models import IssuedCode

#: Tries of one code, whoever makes them (allauth's and the project's limit).
MAX_ATTEMPTS = 3
SPENT = 1_000_000


def code_key(code: str) -> str:
    """The keyed hash naming a code (case and punctuation as allauth normalises them)."""
    normalized = "".join(ch for ch in (code or "") if ch.isalnum()).lower()
    return salted_hmac("accounts.attempts.code", normalized, algorithm="sha256").hexdigest()


def recipient_key(recipient: str) -> str:
    return salted_hmac(
        "accounts.attempts.recipient", (recipient or "").strip().lower(), algorithm="sha256"
    ).hexdigest()


def lifetime() -> int:
    """Seconds a registration lives: the longest code lifetime of any flow."""
    return max(
        settings.R1CHAT_CODE_TIMEOUT,
        account_settings.LOGIN_BY_CODE_TIMEOUT,
        account_settings.PASSWORD_RESET_BY_CODE_TIMEOUT,
        account_settings.PHONE_VERIFICATION_TIMEOUT,
    )


def _issue(key: str, recipient: str = "") -> bool:
    now = timezone.now()
    IssuedCode.objects.filter(expires_at__lte=now).delete()
    try:
        with transaction.atomic():
            IssuedCode.objects.create(
                key=key,
                recipient=recipient_key(recipient) if recipient else "",
                expires_at=now + timedelta(seconds=lifetime()),
            )
    except IntegrityError:
        return False  # the same code is live already (for someone): make another
    return True


def issue_unique(generate: Callable[[], str], recipient: str = "") -> str:
    """A fresh code from ``generate`` that no live code equals, registered for counting."""
    for _attempt in range(50):
        code = generate()
        if _issue(code_key(code), recipient):
            return code
    raise RuntimeError("Could not make a code that is not in use.")


def note_recipient(code: str, recipient: str) -> None:
    """Record where a registered code was sent (for the per-recipient limit)."""
    IssuedCode.objects.filter(key=code_key(code)).update(recipient=recipient_key(recipient))


def _window_hit(scope: str, ident: str, limit: int, period: int) -> bool:
    """Count one hit in a fixed window; False once ``limit`` hits are in it (atomic incr)."""
    if limit <= 0:
        return True
    window = int(time.time() // period)
    key = f"r1chat:code-tries:{scope}:{ident}:{window}"
    cache.add(key, 0, period + 5)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr: a new window
        cache.add(key, 1, period + 5)
        count = 1
    return count <= limit


def check_rate(request: HttpRequest | None) -> None:
    """Per client address: raise ImmediateHttpResponse (429) past the limit on code tries."""
    if request is None:
        return
    limit, period = settings.R1CHAT_CODE_TRIES_PER_IP
    ip = get_adapter(request).get_client_ip(request)
    if not _window_hit("ip", recipient_key(ip), limit, period):
        from .limits import too_many

        message = _("Too many codes were tried from your network. Please wait a few minutes.")
        raise ImmediateHttpResponse(too_many(request, message))


def allow_try(key: str) -> bool:
    """Count one try of the code named ``key``; whether it may be compared at all.

    False when the code is unknown, expired, spent or tried ``MAX_ATTEMPTS`` times already
    (by anyone), or when its recipient had too many tries in the current window.
    """
    if not key:
        return False
    allowed = IssuedCode.objects.filter(
        key=key, attempts__lt=MAX_ATTEMPTS, expires_at__gt=timezone.now()
    ).update(attempts=F("attempts") + 1)
    if not allowed:
        return False
    recipient = IssuedCode.objects.filter(key=key).values_list("recipient", flat=True).first()
    if recipient:
        limit, period = settings.R1CHAT_CODE_TRIES_PER_RECIPIENT
        return _window_hit("to", recipient, limit, period)
    return True


def spend(key: str) -> None:
    """A code that matched is used up: no further try of it is allowed."""
    IssuedCode.objects.filter(key=key).update(attempts=SPENT)
