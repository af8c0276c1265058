"""The login stage that confirms a new account's email address or phone number by a code.

allauth only verifies email by code when email is a required sign-up field, and verifies
phones with a stage of its own. This one stage does both, the same way: while an account has
no confirmed address, every sign-in (and the sign-up itself) stops here until the 6-digit code
sent to that address is entered.
"""

from __future__ import annotations

from allauth.account.internal.stagekit import clear_login, stash_login
from allauth.account.stages import LoginStage
from allauth.core.internal.httpkit import headed_redirect_response
from django.http import HttpResponse

from .access import has_verified_contact
from .codes import Challenge


class VerifyContactStage(LoginStage):
    key = "r1chat_verify_contact"
    urlname = "accounts:verify"

    def handle(self) -> tuple[HttpResponse | None, bool]:
        user = self.login.user
        if user is not None:
            if has_verified_contact(user):
                return None, True
            if user.email:
                channel, target = "email", user.email
            elif user.phone:
                channel, target = "phone", user.phone
            else:
                return None, False  # nothing to confirm: refuse the login
            decoy = False
        else:
            # Sign-up with an address that already has an account (enumeration prevention):
            # the same page, but the owner gets a notice instead of a code.
            if self.login.email:
                channel, target = "email", self.login.email
            elif self.login.phone:
                channel, target = "phone", self.login.phone
            else:
                return None, False
            decoy = True
        challenge = Challenge.new(
            self.state,
            purpose="signup" if self.login.signup else "verify",
            channel=channel,
            target=target,
            user_id=user.pk if user is not None else None,
            decoy=decoy,
        )
        try:
            challenge.send(self.request)
        except Exception:
            clear_login(self.request)
            raise
        return headed_redirect_response("accounts:verify"), True

    def persist(self) -> None:
        stash_login(self.request, self.login)
