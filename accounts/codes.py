"""The project's own one-time codes: sign-up confirmation, email/phone change, account deletion.

A challenge is a small dict kept in the session (or in allauth's login-stage state): the target
address, a hash of the code, when it was sent, and the failed attempts. A code dies after
MAX_ATTEMPTS tries or R1CHAT_CODE_TIMEOUT seconds; the tries are counted in the session (for the
page) and in the database, shared by every request (accounts.attempts), so requests sent at the
same time cannot try a code more often. A challenge may be a decoy (no code at
all): that is how an address that belongs to another account gets the same page and the same
timing as a fresh one, while its owner only gets a notice.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from allauth.account.adapter import get_adapter
from allauth.core import context
from django.conf import settings
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _

from . import attempts
from .limits import CHALLENGE_PURPOSES, OTHER, seconds_until_resend, sending_for

MAX_ATTEMPTS = attempts.MAX_ATTEMPTS
CODE_LENGTH = 6


def generate_code() -> str:
    return f"{secrets.randbelow(10**CODE_LENGTH):0{CODE_LENGTH}d}"


def _hash(code: str) -> str:
    return salted_hmac("accounts.codes", code, algorithm="sha256").hexdigest()


def normalize_code(value: str) -> str:
    return "".join(ch for ch in (value or "") if ch.isalnum())


class Challenge:
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    @classmethod
    def new(
        cls,
        state: dict[str, Any],
        *,
        purpose: str,
        channel: str,
        target: str,
        user_id: int | None,
        decoy: bool = False,
    ) -> Challenge:
        state.clear()
        state.update(
            {
                "purpose": purpose,
                "channel": channel,
                "target": target,
                "user_id": user_id,
                "decoy": decoy,
                "code_hash": "",
                "guard": "",
                "at": time.time(),
                "sent_at": 0.0,
                "failed": 0,
                "resends": 0,
            }
        )
        return cls(state)

    @property
    def channel(self) -> str:
        return self.state["channel"]

    @property
    def target(self) -> str:
        return self.state["target"]

    @property
    def purpose(self) -> str:
        return self.state["purpose"]

    @property
    def user_id(self) -> int | None:
        return self.state.get("user_id")

    @property
    def expired(self) -> bool:
        return time.time() - self.state["at"] > settings.R1CHAT_CODE_TIMEOUT

    @property
    def dead(self) -> bool:
        return self.expired or self.state["failed"] >= MAX_ATTEMPTS

    @property
    def attempts_left(self) -> int:
        return max(0, MAX_ATTEMPTS - self.state["failed"])

    @property
    def cooldown_purpose(self) -> str:
        """Whose resend delay this challenge's messages count against (accounts.limits)."""
        return CHALLENGE_PURPOSES.get(self.purpose, OTHER)

    def wait_seconds(self) -> int:
        """Seconds before a new code may be sent (the resend countdown)."""
        own = self.state["sent_at"] + settings.R1CHAT_CODE_RESEND_SECONDS - time.time()
        return max(0, int(own + 0.999), seconds_until_resend(self.target, self.cooldown_purpose))

    def send(self, request: HttpRequest) -> None:
        """Send a fresh code (or, for a decoy, a notice to the address's owner).

        The adapter's senders apply the limits (accounts.limits.guard_send) to both.
        """
        with sending_for(self.cooldown_purpose):
            self._send(request)
        if self.state["sent_at"]:
            self.state["resends"] += 1
        self.state["sent_at"] = time.time()
        self.state["at"] = time.time()
        self.state["failed"] = 0

    def _send(self, request: HttpRequest) -> None:
        adapter = get_adapter(request)
        if self.state["decoy"]:
            self.state["code_hash"] = ""
            self.state["guard"] = ""
            if self.channel == "email":
                adapter.send_account_already_exists_mail(self.target)
            else:
                adapter.send_account_already_exists_sms(self.target)
        else:
            code = attempts.issue_unique(generate_code, self.target)
            self.state["code_hash"] = _hash(code)
            self.state["guard"] = attempts.code_key(code)
            send_code(
                request, channel=self.channel, target=self.target, code=code, purpose=self.purpose
            )

    def check(self, code: str) -> bool:
        """True for the right code; a wrong one counts an attempt."""
        if self.dead:
            return False
        attempts.check_rate(context.request)
        expected = self.state.get("code_hash") or ""
        guard = self.state.get("guard") or ""
        if (
            expected
            and attempts.allow_try(guard)
            and constant_time_compare(_hash(normalize_code(code)), expected)
        ):
            attempts.spend(guard)
            self.state["code_hash"] = ""  # one use
            return True
        self.state["failed"] += 1
        return False


def send_code(request: HttpRequest, *, channel: str, target: str, code: str, purpose: str) -> None:
    """Deliver a code by email (Django's mailers) or SMS (the SMS backend), no checks."""
    adapter = get_adapter(request)
    if channel == "email":
        adapter.send_mail("accounts/email/code", target, {"code": code, "purpose": purpose})
    else:
        text = _("Your %(site)s code is %(code)s. It expires in %(minutes)s minutes.") % {
            "site": settings.R1CHAT_SITE_NAME,
            "code": code,
            "minutes": max(1, settings.R1CHAT_CODE_TIMEOUT // 60),
        }
        adapter.deliver_sms(target, text, template_params={"code": code})
