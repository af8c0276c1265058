"""Share links: a read-only snapshot of a conversation's thread at an unguessable URL.

A link holds a copy of the messages as they were when it was made (`SharedMessage`), so what
the owner writes afterwards is never shown, and the reasoning only when they chose to include
it. Revoking deletes the link and its copy; deleting the conversation or the account deletes
its links (cascade).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models import Conversation, Message
from r1chat.text import CleanCharField, CleanTextField

# 24 random bytes: 192 bits, 32 URL-safe characters.
TOKEN_BYTES = 24
TOKEN_MAX_LENGTH = 64


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class SharedLink(models.Model):
    token = models.CharField(max_length=TOKEN_MAX_LENGTH, unique=True, default=new_token)
    conversation = models.ForeignKey(
        Conversation,
        verbose_name=_("conversation"),
        on_delete=models.CASCADE,
        related_name="shared_links",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="shared_links",
    )
    title = CleanCharField(_("title"), max_length=200, blank=True)
    include_reasoning = models.BooleanField(_("reasoning included"), default=False)
    message_count = models.PositiveIntegerField(_("messages"), default=0)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"])]
        verbose_name = _("shared link")
        verbose_name_plural = _("shared links")

    def __str__(self) -> str:
        return self.title or self.token[:8]

    def get_absolute_url(self) -> str:
        return reverse("shared-conversation", args=[self.token])


class SharedMessage(models.Model):
    """One message of a link's snapshot, with the renderer's HTML as it was cached."""

    link = models.ForeignKey(SharedLink, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Message.Role.choices)
    content = CleanTextField(blank=True)
    html = CleanTextField(blank=True)  # the sanitised rendering of an answer's `content`
    # Empty unless the owner chose to include the reasoning.
    reasoning = CleanTextField(blank=True)
    reasoning_html = CleanTextField(blank=True)
    thought_seconds = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Message.Status.choices)
    model = CleanCharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["link", "position"]
        constraints = [
            models.UniqueConstraint(fields=["link", "position"], name="unique_shared_position")
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.position}"
