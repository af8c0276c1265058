"""Personal API keys for the OpenAI-compatible API (/v1/).

A key is shown once, when it is made: `r1-` followed by 43 random URL-safe characters (256
bits). Only its SHA-256 is stored, with its first characters for people to recognise it by.
A high-entropy random token needs no slow password hash: nobody can guess it, and a lookup by
its digest is one indexed query.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from r1chat.text import CleanCharField, CleanJSONField

KEY_PREFIX = "r1-"
SHOWN_CHARS = 8  # characters after the prefix kept to tell keys apart ("r1-AbCdEfGh…")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKey(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="api_keys",
    )
    name = CleanCharField(_("name"), max_length=80)
    hashed = models.CharField(_("SHA-256 of the key"), max_length=64, unique=True, editable=False)
    prefix = models.CharField(_("key starts with"), max_length=16, editable=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)
    # Model ids (as /v1/models lists them) this key may use; empty: every model of the owner.
    scope = CleanJSONField(
        _("models"),
        default=list,
        blank=True,
        help_text=_("Model ids this key may use; empty allows every model."),
    )
    record = models.BooleanField(
        _("save calls in the history"),
        default=False,
        help_text=_("Calls made with this key are saved as conversations in the owner's history."),
    )
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")

    def __str__(self) -> str:
        return f"{self.name} ({self.shown})"

    @property
    def shown(self) -> str:
        return f"{self.prefix}…"

    @classmethod
    def issue(
        cls,
        owner: Any,
        name: str,
        *,
        expires_in_days: int | None = None,
        models: list[str] | None = None,
        record: bool = False,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret, which is not stored anywhere and never shown again."""
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            owner=owner,
            name=name,
            hashed=digest(token),
            prefix=token[: len(KEY_PREFIX) + SHOWN_CHARS],
            expires_at=(
                timezone.now() + dt.timedelta(days=expires_in_days) if expires_in_days else None
            ),
            scope=list(models or []),
            record=record,
        )
        return key, token

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return not self.is_revoked and not self.is_expired

    def allows(self, model_ids: list[str]) -> bool:
        """Whether the key's scope includes a model known by any of these ids."""
        return not self.scope or any(m in self.scope for m in model_ids)

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
