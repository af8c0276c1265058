"""Import jobs, and which imported conversation came from which source conversation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from r1chat.text import CleanCharField, CleanJSONField

# A running job beats at least this often; one whose beat is older than STALE_AFTER belongs to
# a process that died, and is taken over (transfer.jobs.resume_stale).
HEARTBEAT_EVERY = timedelta(seconds=5)
STALE_AFTER = timedelta(seconds=60)


class ImportJob(models.Model):
    """One uploaded export: checked and counted (`ready`), then imported in the background.

    The upload is kept in the row until the job ends, so any process can take over a job whose
    process died; `processed` moves in the same transaction as each conversation's rows, so a
    resumed job starts exactly after the last conversation it committed.
    """

    class Status(models.TextChoices):
        READY = "ready", _("waiting for confirmation")
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("importing")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")
        CANCELLED = "cancelled", _("cancelled")

    class Source(models.TextChoices):
        CHATGPT = "chatgpt", "ChatGPT"
        DEEPSEEK = "deepseek", "DeepSeek"
        OPENWEBUI = "openwebui", "Open WebUI"
        R1CHAT = "r1chat", "r1chat"

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="import_jobs",
    )
    source = models.CharField(_("format"), max_length=12, choices=Source.choices)
    filename = CleanCharField(_("file"), max_length=255, blank=True)
    size = models.PositiveBigIntegerField(_("size"), default=0)
    # The uploaded bytes (a .json or a .zip), emptied when the job ends.
    payload = models.BinaryField(default=b"", editable=False)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.READY, db_index=True
    )
    total_conversations = models.PositiveIntegerField(default=0)
    total_messages = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    imported_messages = models.PositiveIntegerField(default=0)
    # [{"title": ..., "reason": ...}] for each conversation not imported (capped).
    skipped = CleanJSONField(default=list, blank=True)
    skipped_count = models.PositiveIntegerField(default=0)
    error = CleanCharField(max_length=500, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("import")
        verbose_name_plural = _("imports")

    def __str__(self) -> str:
        return f"{self.get_source_display()} {self.filename}"

    @property
    def finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED, self.Status.CANCELLED}

    @property
    def is_stale(self) -> bool:
        if self.status not in {self.Status.QUEUED, self.Status.RUNNING}:
            return False
        beat = self.heartbeat_at or self.started_at or self.created_at
        return timezone.now() - beat > STALE_AFTER

    def as_json(self) -> dict[str, Any]:
        """What the account page shows (and polls)."""
        return {
            "id": str(self.uuid),
            "source": self.source,
            "source_label": self.get_source_display(),
            "filename": self.filename,
            "status": self.status,
            "status_label": self.get_status_display(),
            "finished": self.finished,
            "total_conversations": self.total_conversations,
            "total_messages": self.total_messages,
            "processed": self.processed,
            "imported": self.imported,
            "imported_messages": self.imported_messages,
            "skipped_count": self.skipped_count,
            "skipped": self.skipped,
            "error": self.error,
        }


class ImportedConversation(models.Model):
    """A conversation made by an import, and the id it had at its source: importing the same
    export again skips it (while it exists; deleting it allows importing it again)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=12)
    source_id = CleanCharField(max_length=200)
    conversation = models.OneToOneField(
        "conversations.Conversation", on_delete=models.CASCADE, related_name="import_origin"
    )
    job = models.ForeignKey(ImportJob, null=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "source", "source_id"], name="unique_import_source_per_owner"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.source_id}"
