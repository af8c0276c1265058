"""Abuse limits on sending codes: the daily SMS budget and the per-address resend delay.

Every code, notice or "unknown account" message goes through :func:`guard_send`, whether or
not an account exists for the address, so the limits answer the same for both (no enumeration).
"""

from __future__ import annotations

import time

from allauth.core.exceptions import ImmediateHttpResponse
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


def _cooldown_key(recipient: str) -> str:
    return (
        "r1chat:code-sent:"
        + salted_hmac("accounts.code.cooldown", recipient.lower(), algorithm="sha256").hexdigest()
    )


def seconds_until_resend(recipient: str) -> int:
    sent_at = cache.get(_cooldown_key(recipient))
    if not sent_at:
        return 0
    return max(0, int(sent_at + settings.R1CHAT_CODE_RESEND_SECONDS - time.time() + 0.999))


def mark_sent(recipient: str) -> None:
    cache.set(_cooldown_key(recipient), time.time(), settings.R1CHAT_CODE_RESEND_SECONDS)


def too_many(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "accounts/429.html", {"message": message}, status=429)


def guard_send(request: HttpRequest, *, channel: str, recipient: str) -> None:
    """Check (and count) one message to ``recipient``; raise ImmediateHttpResponse (429) if not.

    - the same address gets at most one message per R1CHAT_CODE_RESEND_SECONDS;
    - SMS only to allowed countries, within the daily budget overall and per number.
    """
    wait = seconds_until_resend(recipient)
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
    mark_sent(recipient)
