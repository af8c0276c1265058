"""The project's own account pages: the sign-up code, waiting room, invitations, account page."""

from __future__ import annotations

from typing import Any

from allauth.account.internal.stagekit import clear_login, stash_login
from allauth.account.models import EmailAddress
from allauth.account.stages import LoginStageController
from django.apps import apps
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, logout
from django.contrib.auth.decorators import login_required
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from . import signup_modes
from .access import can_chat, close_user_sockets, has_verified_contact, needs_approval
from .codes import MAX_ATTEMPTS, Challenge
from .forms import (
    ChangeEmailForm,
    ChangePhoneForm,
    CodeForm,
    DeleteAccountForm,
    PreferencesForm,
)
from .models import Invitation
from .phones import display_phone
from .stages import VerifyContactStage

MAX_RESENDS = 5


def _recipient(challenge: Challenge) -> str:
    return display_phone(challenge.target) if challenge.channel == "phone" else challenge.target


def _code_page(
    request: HttpRequest,
    challenge: Challenge,
    form: CodeForm,
    *,
    title: str,
    cancel_url: str,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "accounts/confirm_code.html",
        {
            "form": form,
            "title": title,
            "channel": challenge.channel,
            "recipient": _recipient(challenge),
            "wait_seconds": challenge.wait_seconds(),
            "can_resend": challenge.state["resends"] < MAX_RESENDS,
            "attempts_left": challenge.attempts_left,
            "cancel_url": cancel_url,
            "action_url": request.get_full_path(),
        },
        status=status,
    )


def _resend(request: HttpRequest, challenge: Challenge) -> None:
    wait = challenge.wait_seconds()
    if challenge.state["resends"] >= MAX_RESENDS:
        messages.error(request, _("No more codes can be sent. Please start again."))
    elif wait:
        messages.error(
            request,
            _("Please wait %(seconds)s seconds before asking for another code.")
            % {"seconds": wait},
        )
    else:
        challenge.send(request)
        messages.info(request, _("We sent you a new code."))


# --- Sign-up confirmation (the login stage) ------------------------------------------------
@never_cache
def verify(request: HttpRequest) -> HttpResponse:
    """Enter the code sent at sign-up (or at a sign-in while the address is unconfirmed)."""
    stage = LoginStageController.enter(request, VerifyContactStage.key)
    if stage is None:
        return redirect("account_login")
    challenge = Challenge(stage.state)
    if not challenge.state or challenge.dead:
        clear_login(request)
        messages.error(request, _("The code has expired. Please start again."))
        return redirect("account_login")
    form = CodeForm()
    title = (
        _("Confirm your email address")
        if challenge.channel == "email"
        else _("Confirm your phone number")
    )
    if request.method == "POST":
        if request.POST.get("action") == "resend":
            _resend(request, challenge)
            stash_login(request, stage.login)
            return redirect("accounts:verify")
        form = CodeForm(request.POST)
        if form.is_valid() and challenge.check(form.cleaned_data["code"]):
            user = stage.login.user
            if user is None:  # a decoy never matches; defensive
                clear_login(request)
                return redirect("account_login")
            _mark_verified(request, user, challenge.channel, challenge.target)
            return stage.exit()
        if form.is_valid():
            if challenge.dead:
                clear_login(request)
                messages.error(
                    request, _("Too many wrong codes. Please start again to get a new code.")
                )
                return redirect("account_login")
            form.add_error("code", _("That code is not correct."))
        stash_login(request, stage.login)
        return _code_page(
            request, challenge, form, title=title, cancel_url=reverse("account_login"), status=400
        )
    return _code_page(request, challenge, form, title=title, cancel_url=reverse("account_login"))


def _mark_verified(request: HttpRequest, user: Any, channel: str, target: str) -> None:
    if channel == "phone":
        user.phone = target
        user.phone_verified = True
        user.save(update_fields=["phone", "phone_verified"])
        return
    address = EmailAddress.objects.filter(user=user, email__iexact=target).first()
    if address is None:
        EmailAddress.objects.filter(user=user, primary=True).update(primary=False)
        EmailAddress.objects.create(user=user, email=target, primary=True, verified=True)
    elif not address.verified or not address.primary:
        address.verified = True
        address.primary = True
        address.save(update_fields=["verified", "primary"])


# --- Waiting room, invitations --------------------------------------------------------------
@login_required
def waiting(request: HttpRequest) -> HttpResponse:
    if not needs_approval(request.user):
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/waiting.html")


@login_required
def verify_required(request: HttpRequest) -> HttpResponse:
    if has_verified_contact(request.user) or can_chat(request.user):
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "accounts/verify_required.html")


def invite(request: HttpRequest, token: str) -> HttpResponse:
    invitation = Invitation.objects.filter(token=token).first()
    if invitation is None or not invitation.is_usable:
        return render(request, "accounts/invite_invalid.html", status=404)
    request.session[signup_modes.INVITATION_SESSION_KEY] = invitation.token
    return redirect("account_signup")


# --- The account page -----------------------------------------------------------------------
def _reviews(user: Any) -> list[Any] | None:
    """Audit entries of admin views of this user's conversations, when that model exists."""
    for app_label in ("review", "conversations"):
        if not apps.is_installed(app_label):
            continue
        try:
            model = apps.get_model(app_label, "ReviewAudit")
        except LookupError:
            continue
        field = "owner" if any(f.name == "owner" for f in model._meta.get_fields()) else None
        if field is None:
            return None
        try:
            return list(model.objects.filter(owner=user).order_by("-pk")[:50])
        except DatabaseError:
            return None
    return None


@login_required
@never_cache
def account(request: HttpRequest) -> HttpResponse:
    user = request.user
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            form.save(user)
            messages.success(request, _("Your settings were saved."))
            response = redirect("accounts:account")
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                user.language,
                max_age=settings.LANGUAGE_COOKIE_AGE,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
            return response
    else:
        form = PreferencesForm(initial=PreferencesForm.initial_for(user))
    email_verified = bool(
        user.email
        and EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()
    )
    context = {
        "form": form,
        "email_verified": email_verified,
        "phone_display": display_phone(user.phone) if user.phone else "",
        "reviews": _reviews(user),
        "can_chat": can_chat(user),
        "awaiting_approval": needs_approval(user),
    }
    return render(request, "accounts/account.html", context, status=400 if form.errors else 200)


def _change_key(kind: str) -> str:
    return f"r1chat_change_{kind}"


def _session_challenge(request: HttpRequest, key: str) -> Challenge | None:
    state = request.session.get(key)
    if not state:
        return None
    challenge = Challenge(state)
    if challenge.user_id != request.user.pk or challenge.dead:
        request.session.pop(key, None)
        return None
    return challenge


@login_required
@never_cache
def change_contact(request: HttpRequest, kind: str) -> HttpResponse:
    """Step 1 of changing the email address or phone number: where to send the code."""
    user = request.user
    form_class = ChangeEmailForm if kind == "email" else ChangePhoneForm
    form = form_class(request.POST or None, user=user)
    if request.method == "POST" and form.is_valid():
        target = form.cleaned_data[kind]
        User = get_user_model()
        if kind == "email":
            taken = User.objects.filter(email__iexact=target).exclude(pk=user.pk).exists()
        else:
            taken = User.objects.filter(phone=target).exclude(pk=user.pk).exists()
        state: dict[str, Any] = {}
        challenge = Challenge.new(
            state,
            purpose=f"change_{kind}",
            channel=kind,
            target=target,
            user_id=user.pk,
            decoy=taken,
        )
        challenge.send(request)
        request.session[_change_key(kind)] = challenge.state
        return redirect(f"accounts:confirm_{kind}")
    template = "accounts/change_email.html" if kind == "email" else "accounts/change_phone.html"
    return render(request, template, {"form": form}, status=400 if form.errors else 200)


@login_required
@never_cache
def confirm_change(request: HttpRequest, kind: str) -> HttpResponse:
    """Step 2: the code sent to the new address; the change happens only when it matches."""
    key = _change_key(kind)
    challenge = _session_challenge(request, key)
    if challenge is None:
        return redirect("accounts:account")
    title = (
        _("Confirm your new email address")
        if kind == "email"
        else _("Confirm your new phone number")
    )
    form = CodeForm()
    if request.method == "POST":
        if request.POST.get("action") == "resend":
            _resend(request, challenge)
            request.session[key] = challenge.state
            return redirect(f"accounts:confirm_{kind}")
        form = CodeForm(request.POST)
        if form.is_valid() and challenge.check(form.cleaned_data["code"]):
            request.session.pop(key, None)
            if _apply_change(request.user, kind, challenge.target):
                messages.success(
                    request,
                    _("Your email address was changed.")
                    if kind == "email"
                    else _("Your phone number was changed."),
                )
            else:
                messages.error(request, _("That address is no longer available."))
            return redirect("accounts:account")
        request.session[key] = challenge.state
        if form.is_valid():
            if challenge.dead:
                request.session.pop(key, None)
                messages.error(request, _("Too many wrong codes. Please start again."))
                return redirect("accounts:account")
            form.add_error("code", _("That code is not correct."))
        return _code_page(
            request,
            challenge,
            form,
            title=title,
            cancel_url=reverse("accounts:account"),
            status=400,
        )
    return _code_page(request, challenge, form, title=title, cancel_url=reverse("accounts:account"))


def _apply_change(user: Any, kind: str, target: str) -> bool:
    User = get_user_model()
    with transaction.atomic():
        if kind == "email":
            if User.objects.filter(email__iexact=target).exclude(pk=user.pk).exists():
                return False
            EmailAddress.objects.filter(user=user).delete()
            EmailAddress.objects.create(user=user, email=target, primary=True, verified=True)
            user.email = target
            user.save(update_fields=["email"])
        else:
            if User.objects.filter(phone=target).exclude(pk=user.pk).exists():
                return False
            user.phone = target
            user.phone_verified = True
            user.save(update_fields=["phone", "phone_verified"])
    return True


@login_required
@require_POST
def sign_out_everywhere(request: HttpRequest) -> HttpResponse:
    """End every session of this account (all devices, this one included)."""
    user = request.user
    user.session_epoch += 1
    user.save(update_fields=["session_epoch"])  # invalidates every session hash
    logout(request)
    messages.success(request, _("You were signed out on all devices."))
    return redirect("account_login")


DELETE_KEY = "r1chat_delete_account"


@login_required
@never_cache
def delete_account(request: HttpRequest) -> HttpResponse:
    """Delete the account and all its data, confirmed by the password or by a code."""
    user = request.user
    challenge = _session_challenge(request, DELETE_KEY)
    if request.method == "POST" and request.POST.get("action") == "send_code":
        channel, target = _confirmed_contact(user)
        if target:
            if challenge is None:
                challenge = Challenge.new(
                    {}, purpose="delete", channel=channel, target=target, user_id=user.pk
                )
                challenge.send(request)
            else:
                _resend(request, challenge)
            request.session[DELETE_KEY] = challenge.state
            messages.info(
                request,
                _("We sent a code to %(recipient)s.") % {"recipient": _recipient(challenge)},
            )
        return redirect("accounts:delete")
    form = DeleteAccountForm(request.POST or None, user=user, challenge=challenge)
    if request.method == "POST":
        if form.is_valid():
            user_id = user.pk
            logout(request)
            with transaction.atomic():
                get_user_model().objects.filter(pk=user_id).delete()
            close_user_sockets(user_id)
            messages.success(request, _("Your account and all its data were deleted."))
            return redirect("account_login")
        if challenge is not None:
            request.session[DELETE_KEY] = challenge.state
    channel, target = _confirmed_contact(user)
    context = {
        "form": form,
        "code_recipient": (display_phone(target) if channel == "phone" else target)
        if target
        else "",
        "code_sent": challenge is not None,
        "wait_seconds": challenge.wait_seconds() if challenge else 0,
        "has_password": user.has_usable_password(),
        "max_attempts": MAX_ATTEMPTS,
    }
    return render(request, "accounts/delete.html", context, status=400 if form.errors else 200)


def _confirmed_contact(user: Any) -> tuple[str, str]:
    if user.phone and user.phone_verified:
        return "phone", user.phone
    if (
        user.email
        and EmailAddress.objects.filter(user=user, email__iexact=user.email, verified=True).exists()
    ):
        return "email", user.email
    return "", ""
