from __future__ import annotations

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.utils.translation import gettext_lazy as _


class User(AbstractUser):
    """A person who chats. Signs up with an email address or a phone number (or both)."""

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

    def __str__(self) -> str:
        return self.email or self.phone or self.username

    def save(self, *args: object, **kwargs: object) -> None:
        # Keep the "one per address" invariant case-insensitive and blank-free.
        self.email = (self.email or "").strip().lower() or None
        self.phone = (self.phone or "").strip() or None
        super().save(*args, **kwargs)  # type: ignore[arg-type]
