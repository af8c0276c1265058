from __future__ import annotations

import datetime
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models, transaction
from django.dispatch import Signal
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext_lazy as _

from r1chat.text import CleanCharField, CleanJSONField

#: Default chat settings of a new account (the account page edits them).
CHAT_DEFAULTS: dict[str, Any] = {
    "temperature": 0.6,
    "max_tokens": 2048,
    "deep_think": True,
    "system_prompt": "",
}


class Theme(models.TextChoices):
    SYSTEM = "system", _("System")
    LIGHT = "light", _("Light")
    DARK = "dark", _("Dark")


#: Fields whose change ends a user's sessions and sockets (accounts.signals).
ACCESS_FIELDS = ("password", "is_active", "session_epoch")

#: Sent after the commit of a queryset update of access fields: `revoked` (user ids whose
#: sockets close) and `deactivated` (those whose answers stop too). accounts.signals acts on it.
access_changed = Signal()


class UserQuerySet(models.QuerySet["User"]):
    def update(self, **kwargs: Any) -> int:
        """As QuerySet.update; an update of access fields closes the users' sockets after
        commit, and deactivation also stops their answers: what saving one user does
        (accounts.signals), for an admin bulk action, a queryset update or bulk_update."""
        if not set(kwargs) & set(ACCESS_FIELDS):
            return super().update(**kwargs)
        with transaction.atomic(using=self.db):
            before = dict(self.values_list("pk", "is_active"))
            rows = super().update(**kwargs)
            now_inactive = set(
                self.model._default_manager.using(self.db)
                .filter(pk__in=list(before), is_active=False)
                .values_list("pk", flat=True)
            )
        other_fields = set(kwargs) - {"is_active"}
        deactivated = {pk for pk, active in before.items() if active and pk in now_inactive}
        revoked = set(before) if other_fields else deactivated

        def changed() -> None:
            access_changed.send(self.model, revoked=revoked, deactivated=deactivated)

        transaction.on_commit(changed, using=self.db)
        return rows


class UserManager(DjangoUserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    pass


class User(AbstractUser):
    """A person who chats. Signs up with an email address or a phone number (or both)."""

    objects = UserManager()

    # Null rather than "" so that the unique constraints allow many users without one.
    email = models.EmailField(_("email address"), unique=True, null=True, blank=True)
    phone = models.CharField(
        _("phone number"),
        max_length=16,
        unique=True,
        null=True,
        blank=True,
        help_text=_("E.164, for example +8613800138000."),
    )
    phone_verified = models.BooleanField(_("phone verified"), default=False)
    language = models.CharField(
        _("language"), max_length=10, blank=True, default="", choices=settings.LANGUAGES
    )
    theme = models.CharField(_("theme"), max_length=10, choices=Theme, default=Theme.SYSTEM)
    approved = models.BooleanField(
        _("approved"),
        default=True,
        help_text=_("In approval mode, new accounts wait for an administrator to approve them."),
    )
    chat_defaults = CleanJSONField(_("default chat settings"), default=dict, blank=True)
    # Bumped by "sign out everywhere": part of the session hash, so every session ends.
    session_epoch = models.PositiveIntegerField(default=0, editable=False)

    def __str__(self) -> str:
        return self.email or self.phone or self.username

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Keep the "one per address" invariant case-insensitive and blank-free.
        self.email = (self.email or "").strip().lower() or None
        self.phone = (self.phone or "").strip() or None
        super().save(*args, **kwargs)

    def _get_session_auth_hash(self, secret: str | None = None) -> str:
        if not self.session_epoch:
            return super()._get_session_auth_hash(secret=secret)
        key_salt = "accounts.User.get_session_auth_hash"
        return salted_hmac(
            key_salt,
            f"{self.password}:{self.session_epoch}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()

    def get_chat_defaults(self) -> dict[str, Any]:
        """The account's default chat settings, completed with the site defaults."""
        merged = dict(CHAT_DEFAULTS)
        if isinstance(self.chat_defaults, dict):
            merged.update({k: v for k, v in self.chat_defaults.items() if k in CHAT_DEFAULTS})
        return merged


def _new_token() -> str:
    return secrets.token_urlsafe(24)


def _default_expiry() -> datetime.datetime:
    return timezone.now() + datetime.timedelta(days=7)


class Invitation(models.Model):
    """A one-time sign-up link for invite-only mode, made by an administrator."""

    token = models.CharField(_("token"), max_length=64, unique=True, default=_new_token)
    note = CleanCharField(
        _("note"), max_length=200, blank=True, help_text=_("Who the invitation is for.")
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("created by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitations_created",
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    expires_at = models.DateTimeField(_("expires"), default=_default_expiry)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("used by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitations_used",
    )
    used_at = models.DateTimeField(_("used"), null=True, blank=True)

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.note or self.token[:8]

    @property
    def is_usable(self) -> bool:
        return self.used_at is None and self.expires_at > timezone.now()


class SmsDailyCounter(models.Model):
    """SMS sent per day: one row for the whole site (key "*") and one per number.

    Numbers are stored as a keyed hash, never in clear, so the counters hold no personal data.
    """

    day = models.DateField()
    key = models.CharField(max_length=64)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("SMS counter")
        verbose_name_plural = _("SMS counters")
        constraints = [models.UniqueConstraint(fields=["day", "key"], name="sms_counter_day_key")]

    def __str__(self) -> str:
        return f"{self.day} {self.key[:8]}: {self.count}"


class IssuedCode(models.Model):
    """One live one-time code, whichever flow sent it, and how often it was tried.

    allauth counts wrong codes in the session, and so did the project's own codes: requests
    running at the same time each read the count before any of them wrote it back, so one code
    could be tried dozens of times. This row is the count every request shares: a try is
    allowed only by an atomic ``UPDATE … SET attempts = attempts + 1 WHERE attempts < limit``
    (accounts.attempts). Codes are stored as a keyed hash, never in clear; two live codes are
    never equal, so the hash names one code sent to one address.
    """

    key = models.CharField(max_length=64, unique=True)
    # Keyed hash of the address the code went to (per-account limit on tries); "" until sent.
    recipient = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("one-time code")
        verbose_name_plural = _("one-time codes")

    def __str__(self) -> str:
        return f"{self.key[:8]}: {self.attempts}"
