"""allauth adapter: phones in E.164, codes through the abuse limits, sign-up modes, stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allauth import app_settings as allauth_settings
from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.encoding import force_str
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from . import attempts, outbox, signup_modes
from .access import needs_approval
from .limits import guard_send
from .phones import normalize_phone, try_normalize_phone
from .sms import send_sms

#: Mails that carry a code or answer a code request: they share the resend delay.
GUARDED_MAILS = {
    "account/email/login_code",
    "account/email/password_reset_code",
    "account/email/unknown_account",
    "account/email/account_already_exists",
    "accounts/email/code",
}
#: allauth's "Successfully signed in as …": the page after signing in (the chat, or the
#: waiting room) shows no such banner, so it would only turn up, stale, on a later page.
SILENT_MESSAGES = {"account/messages/logged_in.txt"}


@dataclass(frozen=True)
class SiteInfo:
    """What mails call ``current_site``: the configured name (R1CHAT_SITE_NAME), and the host
    the request came to (django.contrib.sites is not installed)."""

    name: str
    domain: str


def current_site(request: HttpRequest | None) -> SiteInfo:
    domain = request.get_host() if request is not None else ""
    return SiteInfo(name=settings.R1CHAT_SITE_NAME, domain=domain)


class AccountAdapter(DefaultAccountAdapter):
    # --- stages and redirects -------------------------------------------------------------
    def get_login_stages(self) -> list[str]:
        stages = [
            "allauth.account.stages.LoginByCodeStage",
            # Replaces allauth's PhoneVerificationStage and EmailVerificationStage (links).
            "accounts.stages.VerifyContactStage",
        ]
        if allauth_settings.MFA_ENABLED:  # pragma: no cover - MFA is not installed
            stages.append("allauth.mfa.stages.AuthenticateStage")
        return stages

    def get_login_redirect_url(self, request: HttpRequest) -> str:
        if needs_approval(request.user):
            return reverse("accounts:waiting")
        return super().get_login_redirect_url(request)

    def post_login(self, request: HttpRequest, user: Any, **kwargs: Any) -> HttpResponse:
        response = super().post_login(request, user, **kwargs)
        if needs_approval(user):
            response["Location"] = reverse("accounts:waiting")
        language = getattr(user, "language", "")
        if language and response is not None:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response

    def add_message(
        self,
        request: HttpRequest,
        level: int,
        message_template: str | None = None,
        message_context: dict[str, Any] | None = None,
        extra_tags: str = "",
        message: str | None = None,
    ) -> None:
        if message_template in SILENT_MESSAGES and not message:
            return
        super().add_message(
            request,
            level,
            message_template=message_template,
            message_context=message_context,
            extra_tags=extra_tags,
            message=message,
        )

    # --- sign-up -----------------------------------------------------------------------------
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return signup_modes.is_open_for_signup(request)

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        if signup_modes.signup_mode() == signup_modes.APPROVAL:
            user.approved = False
        language = (get_language() or "").lower()
        if language in dict(settings.LANGUAGES):
            user.language = language
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            signup_modes.use_invitation(request, user)
        return user

    # --- phone numbers -------------------------------------------------------------------
    def phone_form_field(self, **kwargs: Any) -> Any:
        kwargs.setdefault("validators", [])  # normalised by clean_phone instead of a regex
        field = super().phone_form_field(**kwargs)
        field.widget.attrs.update(
            {"placeholder": _("Phone number"), "inputmode": "tel", "autocomplete": "tel"}
        )
        return field

    def clean_phone(self, phone: str) -> str:
        try:
            return normalize_phone(phone)
        except forms.ValidationError as exc:
            raise forms.ValidationError(exc.messages[0], code="invalid_phone") from None

    def set_phone(self, user: Any, phone: str, verified: bool) -> None:
        user.phone = phone
        user.phone_verified = verified
        user.save(update_fields=["phone", "phone_verified"])

    def get_phone(self, user: Any) -> tuple[str, bool] | None:
        return (user.phone, bool(user.phone_verified)) if user.phone else None

    def set_phone_verified(self, user: Any, phone: str) -> None:
        self.set_phone(user, phone, True)

    def get_user_by_phone(self, phone: str) -> Any:
        normalized = try_normalize_phone(phone)
        if not normalized:
            return None
        return get_user_model().objects.filter(phone=normalized).first()

    # --- codes -----------------------------------------------------------------------------
    # Every code allauth makes is registered for the shared count of tries (accounts.attempts);
    # no two live codes are equal, so a code names one sending.
    def generate_login_code(self) -> str:
        return attempts.issue_unique(super().generate_login_code)

    def generate_password_reset_code(self) -> str:
        return attempts.issue_unique(super().generate_password_reset_code)

    def generate_phone_verification_code(self, *, user: Any, phone: str) -> str:
        parent = super().generate_phone_verification_code
        return attempts.issue_unique(lambda: parent(user=user, phone=phone), phone)

    # --- sending ---------------------------------------------------------------------------
    def format_email_subject(self, subject: str) -> str:
        return f"[{settings.R1CHAT_SITE_NAME}] {force_str(subject)}"

    def send_mail(self, template_prefix: str, email: str, context_: dict[str, Any]) -> None:
        if template_prefix in GUARDED_MAILS and context.request is not None:
            guard_send(context.request, channel="email", recipient=email)
        if context_.get("code") and template_prefix.startswith("account/email/"):
            attempts.note_recipient(str(context_["code"]), email)
        # As allauth's send_mail, but the message is sent off the request path (accounts.outbox)
        # and signed with the configured site name.
        request = context.request
        full = {"request": request, "email": email, "current_site": current_site(request)}
        full.update(context_)
        message = self.render_mail(template_prefix, email, full)
        outbox.defer("mail", message.send)

    def deliver_sms(
        self,
        phone: str,
        message: str,
        *,
        template_params: dict[str, str] | None = None,
        send: bool = True,
        purpose: str | None = None,
    ) -> None:
        """Every SMS goes here: resend delay, country allowlist and daily budget first."""
        guard_send(context.request, channel="phone", recipient=phone, purpose=purpose)
        if send:
            outbox.defer("text message", send_sms, phone, message, template_params=template_params)

    def send_verification_code_sms(self, user: Any, phone: str, code: str, **kwargs: Any) -> None:
        attempts.note_recipient(code, phone)
        text = _("Your %(site)s code is %(code)s. Do not share it with anyone.") % {
            "site": settings.R1CHAT_SITE_NAME,
            "code": code,
        }
        self.deliver_sms(phone, text, template_params={"code": code})

    def send_unknown_account_sms(self, phone: str, **kwargs: Any) -> None:
        # Counted exactly like a code (same limits, same answer), but nothing is sent: texting
        # numbers that have no account would only feed SMS-pumping fraud.
        self.deliver_sms(phone, "", send=False)

    def send_account_already_exists_sms(self, phone: str, **kwargs: Any) -> None:
        text = _(
            "Someone tried to sign up for %(site)s with this number, which already has an "
            "account. If it was you, sign in or reset your password."
        ) % {"site": settings.R1CHAT_SITE_NAME}
        self.deliver_sms(phone, text)
