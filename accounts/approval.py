"""Approving accounts that wait (approval mode), and telling their owners.

The admin's "approve" action and a change of the "approved" box in a user's admin page both
come here: each newly approved person gets an email (or, with only a phone number, a text
message) in their own language, after the approval is committed.
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.account.adapter import get_adapter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from . import outbox
from .limits import SmsBudgetExceeded, consume_sms_budget
from .phones import sms_country_allowed
from .signup_modes import APPROVAL, signup_mode
from .sms import send_sms

logger = logging.getLogger(__name__)


def waiting_users() -> QuerySet[Any]:
    """Active accounts waiting for an administrator's approval."""
    return get_user_model().objects.filter(approved=False, is_active=True, is_staff=False)


def waiting_count() -> int | None:
    """How many people wait for approval; None when the site is not in approval mode."""
    if signup_mode() != APPROVAL:
        return None
    return waiting_users().count()


def approve(request: HttpRequest | None, users: QuerySet[Any]) -> int:
    """Approve the accounts of ``users`` that wait, and notify each one after commit."""
    newly = list(users.filter(approved=False))
    if not newly:
        return 0
    get_user_model().objects.filter(pk__in=[u.pk for u in newly]).update(approved=True)
    login_url = _login_url(request)
    for user in newly:
        transaction.on_commit(lambda user=user: notify_approved(user, login_url))
    return len(newly)


def approved_in_form(request: HttpRequest | None, user: Any) -> None:
    """The "approved" box was ticked on a user's admin page: notify after commit."""
    login_url = _login_url(request)
    transaction.on_commit(lambda: notify_approved(user, login_url))


def _login_url(request: HttpRequest | None) -> str:
    path = reverse("account_login")
    return request.build_absolute_uri(path) if request is not None else path


def notify_approved(user: Any, login_url: str) -> bool:
    """Tell ``user`` that their account was approved: by email, else by SMS. True if sent."""
    language = user.language or settings.LANGUAGE_CODE
    try:
        with translation.override(language):
            if user.email:
                get_adapter().send_mail(
                    "accounts/email/approved", user.email, {"user": user, "login_url": login_url}
                )
                return True
            if user.phone:
                return _text_approved(user.phone, login_url)
    except Exception:  # a notice that cannot go out must not undo the approval
        logger.exception("Could not tell user %s that their account was approved", user.pk)
    return False


def _text_approved(phone: str, login_url: str) -> bool:
    if not sms_country_allowed(phone):
        return False
    try:
        consume_sms_budget(phone)
    except SmsBudgetExceeded:
        logger.warning("SMS budget used up: approval notice to %s not sent", phone[:5])
        return False
    text = _("Your %(site)s account was approved. Sign in to start chatting: %(url)s") % {
        "site": settings.R1CHAT_SITE_NAME,
        "url": login_url,
    }
    outbox.defer("text message", send_sms, phone, text)
    return True
