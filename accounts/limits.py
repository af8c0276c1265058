"""Abuse limits on sending codes: the daily SMS budget and the per-address resend delay.

Every code, notice or "unknown account" message goes through :func:`guard_send`, whether or
not an account exists for the address, so the limits answer the same for both (no enumeration).

The resend delay (R1CHAT_CODE_RESEND_SECONDS) counts per address *and per purpose*: a sign-up
code, a sign-in code, a reset code, a change of address and an account deletion each wait for
their own earlier message only, so signing in right after signing up sends the sign-in code at
once. The forms check the delay first (:func:`check_cooldown`) and show a countdown; the 429
page of :func:`guard_send` is left for requests that skip the form's answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from allauth.core.exceptions import ImmediateHttpResponse
from django import forms
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _

from .models import SmsDailyCounter
from .phones import sms_country_allowed

SITE_KEY = "*"


class SmsBudgetExceeded(Exception):
    """The daily SMS budget (for the site or for one number) is used up."""


def _number_key(phone: str) -> str:
    return salted_hmac("accounts.sms.counter", phone, algorithm="sha256").hexdigest()[:64]


def _limits(phone: str) -> list[tuple[str, int]]:
    return [
        (SITE_KEY, settings.SMS_DAILY_BUDGET),
        (_number_key(phone), settings.SMS_DAILY_PER_NUMBER),
    ]


def sms_budget_available(phone: str) -> bool:
    """Dry run: whether one more SMS to this number fits today's budgets."""
    today = timezone.localdate()
    for key, limit in _limits(phone):
        row = SmsDailyCounter.objects.filter(day=today, key=key).first()
        if (row.count if row else 0) >= limit:
            return False
    return True


def consume_sms_budget(phone: str) -> None:
    """Count one SMS against today's budgets, atomically; raise SmsBudgetExceeded if over."""
    today = timezone.localdate()
    with transaction.atomic():
        for key, limit in _limits(phone):
            SmsDailyCounter.objects.get_or_create(day=today, key=key)
            updated = SmsDailyCounter.objects.filter(day=today, key=key, count__lt=limit).update(
                count=F("count") + 1
            )
            if not updated:
                transaction.set_rollback(True)
                raise SmsBudgetExceeded


# Purposes of a message, each with its own resend delay per address.
SIGNUP = "signup"  # the code that confirms a new account's address (and the "taken" notice)
VERIFY = "verify"  # the same confirmation, asked at a sign-in of an unconfirmed account
LOGIN = "login"  # a one-time sign-in code
RESET = "reset"  # a password reset code
CHANGE = "change"  # a code to a new email address or phone number
DELETE = "delete"  # a code that confirms deleting the account
OTHER = "other"

#: The project's challenge purposes (accounts.codes) → resend-delay purposes.
CHALLENGE_PURPOSES = {
    "signup": SIGNUP,
    "verify": VERIFY,
    "change_email": CHANGE,
    "change_phone": CHANGE,
    "delete": DELETE,
}
#: allauth's views (their URL names) → the purpose of what they send.
VIEW_PURPOSES = {
    "account_request_login_code": LOGIN,
    "account_confirm_login_code": LOGIN,
    "account_login": LOGIN,
    "account_reset_password": RESET,
    "account_confirm_password_reset_code": RESET,
    "account_signup": SIGNUP,
}

_sending_for: ContextVar[str | None] = ContextVar("r1chat_sending_for", default=None)


@contextmanager
def sending_for(purpose: str) -> Iterator[None]:
    """Messages sent inside this block count against ``purpose``'s resend delay."""
    token = _sending_for.set(purpose)
    try:
        yield
    finally:
        _sending_for.reset(token)


def current_purpose(request: HttpRequest | None) -> str:
    """The purpose of a message being sent: the block's, else the view's that sends it."""
    purpose = _sending_for.get()
    if purpose:
        return purpose
    match = getattr(request, "resolver_match", None) if request is not None else None
    return VIEW_PURPOSES.get(match.view_name if match else "", OTHER)


def _cooldown_key(recipient: str, purpose: str) -> str:
    digest = salted_hmac(
        "accounts.code.cooldown", f"{purpose}:{recipient.lower()}", algorithm="sha256"
    ).hexdigest()
    return f"r1chat:code-sent:{digest}"


def seconds_until_resend(recipient: str, purpose: str) -> int:
    """Seconds before another ``purpose`` message may go to ``recipient`` (0: now)."""
    sent_at = cache.get(_cooldown_key(recipient, purpose))
    if not sent_at:
        return 0
    return max(0, int(sent_at + settings.R1CHAT_CODE_RESEND_SECONDS - time.time() + 0.999))


def mark_sent(recipient: str, purpose: str) -> None:
    cache.set(_cooldown_key(recipient, purpose), time.time(), settings.R1CHAT_CODE_RESEND_SECONDS)


class CooldownError(forms.ValidationError):
    """A form's answer while the resend delay runs; ``seconds`` drives the countdown."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        super().__init__(
            _("A code was sent here a moment ago. You can ask for another in %(seconds)s s.")
            % {"seconds": seconds},
            code="cooldown",
        )


def check_cooldown(recipient: str, purpose: str) -> None:
    """For forms: raise CooldownError while ``recipient`` waits for another code."""
    wait = seconds_until_resend(recipient, purpose) if recipient else 0
    if wait:
        raise CooldownError(wait)


def too_many(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "accounts/429.html", {"message": message}, status=429)


def guard_send(
    request: HttpRequest, *, channel: str, recipient: str, purpose: str | None = None
) -> None:
    """Check (and count) one message to ``recipient``; raise ImmediateHttpResponse (429) if not.

    - the same address gets at most one message per purpose per R1CHAT_CODE_RESEND_SECONDS;
    - SMS only to allowed countries, within the daily budget overall and per number.
    """
    purpose = purpose or current_purpose(request)
    wait = seconds_until_resend(recipient, purpose)
    if wait:
        message = _("Please wait %(seconds)s seconds before asking for another code.") % {
            "seconds": wait
        }
        raise ImmediateHttpResponse(too_many(request, message))
    if channel == "phone":
        if not sms_country_allowed(recipient):
            message = _("Text messages cannot be sent to numbers in this country.")
            raise ImmediateHttpResponse(too_many(request, message))
        try:
            consume_sms_budget(recipient)
        except SmsBudgetExceeded:
            message = _(
                "The daily limit of text messages has been reached. Please try again tomorrow "
                "or use an email address."
            )
            raise ImmediateHttpResponse(too_many(request, message)) from None
    mark_sent(recipient, purpose)
