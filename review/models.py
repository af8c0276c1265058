"""The review audit log, answer feedback, token usage and daily quotas."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from r1chat.text import CleanCharField, CleanJSONField, CleanTextField


class ReviewAudit(models.Model):
    """One opening or export of someone's conversation by a reviewer. Never edited or deleted."""

    class Action(models.TextChoices):
        OPEN = "open", _("opened in review")
        EXPORT_MD = "export_md", _("exported as Markdown")
        EXPORT_JSON = "export_json", _("exported as JSON")

    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("reviewer"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="reviews_made",
    )
    # Snapshots: the entry keeps saying who and what after the reviewer or conversation is gone.
    reviewer_name = CleanCharField(_("reviewer name"), max_length=150)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="reviews_received",
    )
    conversation = models.ForeignKey(
        "conversations.Conversation",
        verbose_name=_("conversation"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    conversation_uuid = models.UUIDField(_("conversation id"))
    conversation_title = CleanCharField(_("conversation title"), max_length=200, blank=True)
    action = models.CharField(_("action"), max_length=12, choices=Action.choices)
    at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    ip_address = models.GenericIPAddressField(_("from address"), null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["owner", "-at"])]
        permissions = [("review_conversations", _("Can review users' conversations"))]
        verbose_name = _("review audit entry")
        verbose_name_plural = _("review audit log")

    def __str__(self) -> str:
        return f"{self.reviewer_name} {self.action} {self.conversation_uuid}"


class AdminAudit(models.Model):
    """What staff did in the admin that no single owner's audit shows: listing and searching
    everyone's conversations (with the search terms), and moving a backend (its API key with
    it or not) to another server. Read by superusers; never edited or deleted."""

    class Action(models.TextChoices):
        LIST_CONVERSATIONS = "list_conversations", _("listed or searched conversations")
        LIST_MESSAGES = "list_messages", _("listed or searched messages")
        BACKEND_MOVED = "backend_moved", _("pointed a backend at another server")

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff member"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    actor_name = CleanCharField(_("staff member name"), max_length=150)
    action = models.CharField(_("action"), max_length=24, choices=Action.choices)
    search = CleanCharField(_("search terms"), max_length=500, blank=True)
    # Filters, page, or for a backend: its name, old and new server, what became of its key.
    details = CleanJSONField(_("details"), default=dict, blank=True)
    at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    ip_address = models.GenericIPAddressField(_("from address"), null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("admin audit entry")
        verbose_name_plural = _("admin audit log")

    def __str__(self) -> str:
        return f"{self.actor_name} {self.action}"


class Feedback(models.Model):
    """A user's thumbs up or down on one answer; one per user and message, changeable."""

    class Rating(models.TextChoices):
        UP = "up", _("thumbs up")
        DOWN = "down", _("thumbs down")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE
    )
    message = models.ForeignKey(
        "conversations.Message",
        verbose_name=_("message"),
        on_delete=models.CASCADE,
        related_name="feedback",
    )
    rating = models.CharField(_("rating"), max_length=4, choices=Rating.choices)
    reason = CleanTextField(_("reason"), blank=True, max_length=1000)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "message"], name="one_feedback_per_message")
        ]
        verbose_name = _("feedback")
        verbose_name_plural = _("feedback")

    def __str__(self) -> str:
        return f"{self.rating} {self.message_id}"

    @classmethod
    def ratings_for(cls, user_id: int, message_ids: list[int]) -> dict[int, dict[str, str]]:
        """{message pk: {"rating", "reason"}} of one user, for showing the thumbs on a page."""
        rows = cls.objects.filter(user_id=user_id, message_id__in=message_ids).values_list(
            "message_id", "rating", "reason"
        )
        return {pk: {"rating": rating, "reason": reason} for pk, rating, reason in rows}


class UsageRecord(models.Model):
    """The tokens of one generation. Kept when its conversation is deleted, so quotas hold."""

    class Source(models.TextChoices):
        WEB = "web", _("chat page")
        API = "api", _("API")
        CACHED = "cached", _("API, from the response cache")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE
    )
    message_uuid = models.UUIDField(_("message id"), unique=True, default=uuid.uuid4)
    day = models.DateField(_("day"))  # in TIME_ZONE, so "today" matches the quota's day
    backend_name = CleanCharField(_("backend"), max_length=80, blank=True)
    model = CleanCharField(_("model"), max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(_("prompt tokens"), default=0)
    completion_tokens = models.PositiveIntegerField(_("completion tokens"), default=0)
    reasoning_tokens = models.PositiveIntegerField(_("reasoning tokens"), default=0)
    # The server reported no usage: completion tokens were estimated from the text's length.
    estimated = models.BooleanField(_("estimated"), default=False)
    source = models.CharField(
        _("source"), max_length=8, choices=Source.choices, default=Source.WEB, db_index=True
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["-day", "-id"]
        indexes = [models.Index(fields=["user", "day"]), models.Index(fields=["day"])]
        verbose_name = _("usage")
        verbose_name_plural = _("usage")

    def __str__(self) -> str:
        return f"{self.day} {self.model}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class UserQuota(models.Model):
    """A user's own daily token quota, replacing R1CHAT_DEFAULT_DAILY_TOKEN_QUOTA."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        related_name="token_quota",
    )
    daily_tokens = models.PositiveIntegerField(
        _("daily tokens"),
        null=True,
        blank=True,
        help_text=_("Prompt and completion tokens per day. Blank: the site default. 0: no limit."),
    )
    note = CleanCharField(_("note"), max_length=200, blank=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        verbose_name = _("daily token quota")
        verbose_name_plural = _("daily token quotas")

    def __str__(self) -> str:
        return str(self.user)
