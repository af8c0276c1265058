"""Forms: sign-up (email or phone), code requests, reset by email or phone, the account page."""

from __future__ import annotations

from typing import Any

from allauth.account import forms as allauth_forms
from allauth.account.adapter import get_adapter
from allauth.account.internal.flows.password_reset_by_code import (
    PasswordResetVerificationProcess,
)
from allauth.account.internal.userkit import filter_users_by_email
from allauth.core import context
from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from . import attempts, limits, signup_modes
from .limits import CooldownError, sms_budget_available
from .models import CHAT_DEFAULTS, Theme
from .phones import check_sms_country, normalize_phone

EMAIL = "email"
PHONE = "phone"
METHOD_CHOICES = [(EMAIL, _("Email")), (PHONE, _("Phone"))]


def _check_sms_possible(phone: str) -> None:
    """Country allowlist and (dry-run) daily budget: the same for existing and new numbers."""
    check_sms_country(phone)
    if not sms_budget_available(phone):
        raise forms.ValidationError(
            _("The daily limit of text messages has been reached. Please try again tomorrow."),
            code="sms_budget",
        )


def _check_cooldown(form: forms.Form, recipient: str, purpose: str) -> None:
    """The resend delay of ``purpose`` for ``recipient``, as a form error with a countdown.

    The form keeps the seconds left in ``wait_seconds`` (the template's countdown on its
    button), so a second request is answered on the form, not by the 429 page.
    """
    try:
        limits.check_cooldown(recipient, purpose)
    except CooldownError as exc:
        form.wait_seconds = exc.seconds  # type: ignore[attr-defined]
        raise


def _check_email_domain(email: str) -> None:
    if email and not signup_modes.email_domain_allowed(email):
        domains = ", ".join("@" + d for d in signup_modes.allowed_email_domains())
        raise forms.ValidationError(
            _("Sign-up is limited to addresses at %(domains)s.") % {"domains": domains},
            code="domain",
        )


class SignupForm(allauth_forms.SignupForm):
    """Sign up with an email address OR a phone number (the "method" tab), and a password."""

    method = forms.ChoiceField(
        label=_("Sign up with"),
        choices=METHOD_CHOICES,
        initial=EMAIL,
        widget=forms.RadioSelect,
        required=False,
    )

    field_order = ["method", "email", "phone", "password1", "password2"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only the chosen tab's field counts: the other may hold stale text.
        _only_chosen_method(self)
        self.fields["email"].label = _("Email address")
        self.fields["email"].widget.attrs.update({"placeholder": _("Email address")})
        self.fields["phone"].label = _("Phone number")
        self.fields["password1"].widget.attrs["placeholder"] = _("Password")
        self.fields["password2"].widget.attrs["placeholder"] = _("Password (again)")
        if signup_modes.allowed_email_domains():
            self.fields["method"].choices = [(EMAIL, _("Email"))]

    def clean_method(self) -> str:
        return self.cleaned_data.get("method") or EMAIL

    wait_seconds = 0

    def clean_email(self) -> str:
        email = (self.cleaned_data.get("email") or "").strip().lower()
        if email:
            _check_email_domain(email)
            _check_cooldown(self, email, limits.SIGNUP)
        return super().clean_email()

    def clean_phone(self) -> str:
        phone = self.cleaned_data.get("phone") or ""
        if phone:
            _check_cooldown(self, phone, limits.SIGNUP)
        return phone

    def validate_unique_email(self, value: str) -> str:
        # allauth only hides a taken address when verification is "mandatory"; ours is done
        # by our own code stage, so hide it here: no error, the owner gets a notice instead.
        email = get_adapter().validate_unique_email(value)
        if filter_users_by_email(email):
            self.account_already_exists = True
        return email

    def try_save(self, request: Any) -> Any:
        if self.account_already_exists:
            # The same work as a new account (hashing the password is most of it), so that the
            # answer's timing does not tell that the address is taken. The hash is thrown away.
            make_password(self.cleaned_data.get("password1"))
        return super().try_save(request)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        method = cleaned.get("method") or EMAIL
        if method == EMAIL and not cleaned.get("email") and not self.has_error("email"):
            self.add_error("email", _("Enter your email address."))
        if method == PHONE:
            if signup_modes.allowed_email_domains():
                self.add_error("phone", _("Please sign up with your work email address."))
            elif not cleaned.get("phone") and not self.has_error("phone"):
                self.add_error("phone", _("Enter your phone number."))
            elif cleaned.get("phone"):
                try:
                    _check_sms_possible(cleaned["phone"])
                except forms.ValidationError as exc:
                    self.add_error("phone", exc)
        return cleaned


class LoginForm(allauth_forms.LoginForm):
    """Password sign-in with an email address or a phone number written any usual way."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["login"].label = _("Email or phone number")
        self.fields["login"].widget.attrs.update(
            {"placeholder": _("Email or phone number"), "autocomplete": "username"}
        )
        self.fields["password"].help_text = ""
        self.fields["password"].widget.attrs["placeholder"] = _("Password")


def _only_chosen_method(form: forms.Form) -> None:
    """Of the email and phone inputs, keep only the one of the chosen tab ("method")."""
    if not form.is_bound:
        return
    method = form.data.get("method")
    if method not in (EMAIL, PHONE):
        method = PHONE if form.data.get(PHONE) and not form.data.get(EMAIL) else EMAIL
    data = form.data.copy()
    data["method"] = method
    data[PHONE if method == EMAIL else EMAIL] = ""
    form.data = data


class RequestLoginCodeForm(allauth_forms.RequestLoginCodeForm):
    """A sign-in code by email or SMS, to what is written in one field ("login").

    An address with "@" is an email address, anything else a phone number (normalised, SMS
    limits checked first). allauth's own "email" and "phone" fields are filled from it, so its
    checks, rate limits and flow run unchanged; their errors show under the one field.
    """

    wait_seconds = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["login"] = forms.CharField(
            label=_("Email or phone number"),
            required=False,
            max_length=254,
            widget=forms.TextInput(
                attrs={
                    "placeholder": _("Email or phone number"),
                    "autocomplete": "username",
                    "autofocus": True,
                }
            ),
        )
        self.order_fields(["login"])
        self.fields["email"].label = _("Email address")
        self.fields["phone"].label = _("Phone number")
        if not self.is_bound:
            return
        if "login" in self.data:
            value = (self.data.get("login") or "").strip()
            data = self.data.copy()
            is_email = "@" in value
            data[EMAIL] = value if is_email else ""
            data[PHONE] = "" if is_email else value
            data["method"] = EMAIL if is_email else PHONE
            self.data = data
        else:  # a post with the two separate fields (API clients, older pages)
            _only_chosen_method(self)

    def clean_email(self) -> str:
        email = (self.cleaned_data.get("email") or "").strip().lower()
        if email:
            self.cleaned_data["email"] = email
            _check_cooldown(self, email, limits.LOGIN)
        return super().clean_email()

    def clean_phone(self) -> str:
        phone = self.cleaned_data.get("phone")
        if phone:
            _check_sms_possible(phone)
            _check_cooldown(self, phone, limits.LOGIN)
        return super().clean_phone()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not (cleaned.get("email") or cleaned.get("phone")) and not (
            self.has_error("email") or self.has_error("phone")
        ):
            self.add_error("login", _("Enter your email address or phone number."))
        return cleaned


class ResetPasswordForm(allauth_forms.ResetPasswordForm):
    """Reset by a code sent to an email address or, by SMS, to a phone number.

    The field keeps allauth's name ("email") because allauth's view rate-limits on it.
    """

    email = forms.CharField(
        label=_("Email or phone number"),
        max_length=254,
        widget=forms.TextInput(
            attrs={"placeholder": _("Email or phone number"), "autocomplete": "username"}
        ),
    )

    channel = EMAIL
    wait_seconds = 0

    def clean_email(self) -> str:
        value = (self.cleaned_data.get("email") or "").strip()
        if "@" in value:
            validate_email(value)
            self.channel = EMAIL
            email = value.lower()
            _check_cooldown(self, email, limits.RESET)
            self.users = filter_users_by_email(
                email, is_active=True, prefer_verified=True, for_login=True
            )
            return email
        self.channel = PHONE
        phone = normalize_phone(value)
        _check_sms_possible(phone)
        _check_cooldown(self, phone, limits.RESET)
        user = get_user_model().objects.filter(phone=phone, is_active=True).first()
        self.users = [user] if user else []
        return phone

    def save(self, request: Any, **kwargs: Any) -> str:
        if self.channel == EMAIL:
            return super().save(request, **kwargs)
        phone = self.cleaned_data["email"]
        user = self.users[0] if self.users else None
        # allauth's process keeps the address under "email"; for a phone it is only the
        # recipient shown on the code page.
        state = PasswordResetVerificationProcess.initial_state(user, phone)
        process = PasswordResetVerificationProcess(request, state=state, user=user)
        adapter = get_adapter(request)
        if user is not None:
            code = adapter.generate_password_reset_code()
            state["code"] = code
            adapter.send_verification_code_sms(user=user, phone=phone, code=code)
        else:
            adapter.send_unknown_account_sms(phone)
        process.persist()
        return phone


CODE_INPUT_ATTRS = {
    "placeholder": _("6-digit code"),
    "autocomplete": "one-time-code",
    "inputmode": "numeric",
    "autofocus": True,
}


class SharedTriesMixin:
    """allauth's code forms, with every try counted in the shared place (accounts.attempts).

    A code tried too often (by any number of requests at once) answers like a wrong code.
    """

    expected_code: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A phone offers its number pad and the code from the text message.
        self.fields["code"].widget.attrs.update(CODE_INPUT_ATTRS)  # type: ignore[attr-defined]

    def clean_code(self) -> str:
        attempts.check_rate(context.request)
        key = attempts.code_key(self.expected_code) if self.expected_code else ""
        if not attempts.allow_try(key):
            raise get_adapter().validation_error("incorrect_code")
        code = super().clean_code()  # type: ignore[misc]
        attempts.spend(key)
        return code


class ConfirmLoginCodeForm(SharedTriesMixin, allauth_forms.ConfirmLoginCodeForm):
    pass


class ConfirmPasswordResetCodeForm(SharedTriesMixin, allauth_forms.ConfirmPasswordResetCodeForm):
    pass


class VerifyPhoneForm(SharedTriesMixin, allauth_forms.VerifyPhoneForm):
    pass


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=12,
        widget=forms.TextInput(attrs=CODE_INPUT_ATTRS),
    )


class ChangeEmailForm(forms.Form):
    email = forms.EmailField(
        label=_("New email address"),
        widget=forms.EmailInput(attrs={"placeholder": _("Email address"), "autocomplete": "email"}),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if email == (self.user.email or ""):
            raise forms.ValidationError(_("This is already your email address."))
        _check_email_domain(email)
        email = get_adapter().clean_email(email)
        _check_cooldown(self, email, limits.CHANGE)
        return email


class ChangePhoneForm(forms.Form):
    phone = forms.CharField(
        label=_("New phone number"),
        max_length=32,
        widget=forms.TextInput(
            attrs={"placeholder": _("Phone number"), "autocomplete": "tel", "type": "tel"}
        ),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        self.user = user
        super().__init__(*args, **kwargs)

    def clean_phone(self) -> str:
        phone = normalize_phone(self.cleaned_data["phone"])
        if phone == (self.user.phone or "") and self.user.phone_verified:
            raise forms.ValidationError(_("This is already your phone number."))
        _check_sms_possible(phone)
        _check_cooldown(self, phone, limits.CHANGE)
        return phone


class PreferencesForm(forms.Form):
    """Language, theme and the default chat settings."""

    language = forms.ChoiceField(label=_("Language"), choices=[])
    theme = forms.ChoiceField(label=_("Theme"), choices=Theme.choices)
    temperature = forms.FloatField(
        label=_("Temperature"),
        min_value=0.1,
        max_value=1.0,
        widget=forms.NumberInput(attrs={"step": "0.1"}),
        help_text=_("Lower is more focused, higher more varied (0.1–1.0)."),
    )
    max_tokens = forms.IntegerField(
        label=_("Maximum answer length (tokens)"), min_value=256, max_value=65536
    )
    deep_think = forms.BooleanField(label=_("Deep Think on by default"), required=False)
    system_prompt = forms.CharField(
        label=_("System prompt"),
        required=False,
        max_length=4000,
        widget=forms.Textarea(
            attrs={"rows": 4, "placeholder": _("Optional instructions for every new chat")}
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from django.conf import settings

        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [(code, _(name)) for code, name in settings.LANGUAGES]

    @classmethod
    def initial_for(cls, user: Any) -> dict[str, Any]:
        from django.utils.translation import get_language

        initial = dict(user.get_chat_defaults())
        initial["language"] = user.language or get_language() or "en"
        initial["theme"] = user.theme
        return initial

    def save(self, user: Any) -> None:
        data = self.cleaned_data
        user.language = data["language"]
        user.theme = data["theme"]
        user.chat_defaults = {key: data.get(key, value) for key, value in CHAT_DEFAULTS.items()}
        user.chat_defaults["temperature"] = round(float(data["temperature"]), 2)
        user.save(update_fields=["language", "theme", "chat_defaults"])


class DeleteAccountForm(forms.Form):
    """Deleting an account needs the password, or a code sent to a confirmed address."""

    password = forms.CharField(
        label=_("Password"),
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    code = forms.CharField(
        label=_("Or the code we sent you"),
        required=False,
        max_length=12,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    confirm = forms.BooleanField(
        label=_("I understand that my account and all my conversations will be deleted."),
        required=True,
    )

    def __init__(self, *args: Any, user: Any, challenge: Any = None, **kwargs: Any) -> None:
        self.user = user
        self.challenge = challenge
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        code = (cleaned.get("code") or "").strip()
        password = cleaned.get("password") or ""
        if code:
            if self.challenge is None or not self.challenge.check(code):
                self.add_error("code", _("The code is not correct or has expired."))
        elif not password or not self.user.check_password(password):
            self.add_error("password", _("The password is not correct."))
        return cleaned
