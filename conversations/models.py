"""Backends, conversations and the message tree."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from r1chat.text import CleanCharField, CleanJSONField, CleanTextField

from .backends.base import BackendConfig

# Running generations beat every HEARTBEAT_INTERVAL; a `streaming` message whose heartbeat is
# older than STALE_AFTER belongs to a dead process.
HEARTBEAT_INTERVAL = timedelta(seconds=getattr(settings, "R1CHAT_HEARTBEAT_INTERVAL", 5.0))
STALE_AFTER = timedelta(seconds=getattr(settings, "R1CHAT_STALE_AFTER", 20.0))


class Backend(models.Model):
    """A model server: the DeepSeek API, any OpenAI-compatible server, or an Ollama."""

    class Kind(models.TextChoices):
        OPENAI = "openai", _("OpenAI-compatible (DeepSeek, vLLM, llama.cpp, LM Studio)")
        OLLAMA = "ollama", _("Ollama")

    name = CleanCharField(_("name"), max_length=80, unique=True)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    base_url = models.URLField(_("base URL"), max_length=500)
    # Write-only in the admin; never rendered to a page, a frame or a log line.
    api_key = CleanCharField(_("API key"), max_length=500, blank=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    default_model = CleanCharField(_("default model"), max_length=200, blank=True)
    model_allowlist = CleanJSONField(
        _("model allowlist"),
        default=list,
        blank=True,
        help_text=_("Model names offered to users; empty offers every model the server lists."),
    )
    assume_open_think = CleanJSONField(
        _("models with a pre-opened <think>"),
        default=list,
        blank=True,
        help_text=_("Models whose output starts inside the reasoning (only </think> appears)."),
    )
    vision_models = CleanJSONField(
        _("models that accept images"),
        default=list,
        blank=True,
        help_text=_(
            "OpenAI-compatible servers do not say which models see images; Ollama reports it."
        ),
    )
    connect_timeout = models.FloatField(_("connect timeout (s)"), default=10.0)
    idle_timeout = models.FloatField(_("idle timeout (s)"), default=120.0)
    no_data_timeout = models.FloatField(_("no-data timeout (s)"), default=600.0)
    total_timeout = models.FloatField(_("total timeout (s)"), default=1800.0)
    max_tries = models.PositiveSmallIntegerField(_("tries before the first token"), default=3)
    # Where the row came from: the environment on first start, the offline simulator, the admin.
    source = models.CharField(_("source"), max_length=20, default="admin", editable=False)
    last_health = models.JSONField(_("last health check"), default=dict, blank=True, editable=False)
    last_checked_at = models.DateTimeField(_("last checked"), null=True, blank=True, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["position", "name"]
        verbose_name = _("backend")
        verbose_name_plural = _("backends")

    def __str__(self) -> str:
        return self.name

    def config(self) -> BackendConfig:
        return BackendConfig(
            kind=self.kind,  # type: ignore[arg-type]
            base_url=self.base_url,
            api_key=self.api_key,
            name=self.name,
            connect_timeout=self.connect_timeout,
            idle_timeout=self.idle_timeout,
            no_data_timeout=self.no_data_timeout,
            total_timeout=self.total_timeout,
            max_tries=self.max_tries,
            model_allowlist=list(self.model_allowlist or []),
            assume_open_think=list(self.assume_open_think or []),
        )


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def alive(self) -> ConversationQuerySet:
        return self.filter(deleted_at__isnull=True)


class LiveConversationManager(models.Manager["Conversation"]):
    """The conversations people see: a deleted one is gone from every list, search, page and
    API at once, while its rows wait out the Undo window (`deleted_at`)."""

    def get_queryset(self) -> ConversationQuerySet:
        return ConversationQuerySet(self.model, using=self._db).alive()


class Conversation(models.Model):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="conversations",
    )
    title = CleanCharField(_("title"), max_length=200, blank=True)
    title_generated = models.BooleanField(default=False)
    pinned = models.BooleanField(_("pinned"), default=False)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now, db_index=True)
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Last-used settings: backend id, model, deep_think, enhanced, temperature, max_tokens,
    # system_prompt.
    settings = CleanJSONField(default=dict, blank=True)
    # Set by "Delete": hidden everywhere at once, purged once the Undo window has passed
    # (turns.deletion).
    deleted_at = models.DateTimeField(_("deleted"), null=True, blank=True, db_index=True)

    objects = LiveConversationManager()
    # Every row, deleted ones included: Undo and the purge.
    all_objects = ConversationQuerySet.as_manager()

    class Meta:
        ordering = ["-pinned", "-updated_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-pinned", "-updated_at", "-id"]),
            # Search results, newest first (conversations.search.query).
            models.Index(fields=["owner", "-updated_at", "-id"], name="conversation_owner_recent"),
        ]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")

    def __str__(self) -> str:
        return self.title or str(self.uuid)

    @property
    def group_name(self) -> str:
        """Channel-layer group of every tab showing this conversation."""
        return f"conv.{self.uuid.hex}"

    @property
    def control_group_name(self) -> str:
        """Channel-layer group of the runners generating in this conversation."""
        return f"ctl.{self.uuid.hex}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("user")
        ASSISTANT = "assistant", _("assistant")

    class Status(models.TextChoices):
        STREAMING = "streaming", _("streaming")
        COMPLETE = "complete", _("complete")
        STOPPED = "stopped", _("stopped")
        ERROR = "error", _("error")
        INTERRUPTED = "interrupted", _("interrupted")

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # A tree: regenerate and edit make siblings; the thread is the path to the current leaf.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(_("role"), max_length=10, choices=Role.choices)
    # Text fields clean U+0000 on the way to the database (r1chat.text): PostgreSQL refuses it.
    content = CleanTextField(blank=True)  # the answer (markdown) or the user's text
    reasoning = CleanTextField(blank=True)  # kept apart; never sent back to a model
    status = models.CharField(
        _("status"), max_length=12, choices=Status.choices, default=Status.COMPLETE, db_index=True
    )
    error_code = CleanCharField(_("error"), max_length=40, blank=True)
    error_detail = CleanTextField(blank=True)
    finish_reason = CleanCharField(max_length=40, blank=True)
    reasoning_unterminated = models.BooleanField(default=False)
    # The user who sent a question, and the id their tab gave it: a second send with the same
    # id is refused by the database (unique per user), however many processes see it.
    sender = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    client_id = CleanCharField(max_length=64, blank=True)
    backend = models.ForeignKey(Backend, null=True, blank=True, on_delete=models.SET_NULL)
    backend_name = CleanCharField(_("backend"), max_length=80, blank=True)
    model = CleanCharField(_("model"), max_length=200, blank=True)
    deep_think = models.BooleanField(default=True)
    enhanced_reasoning = models.BooleanField(default=True)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    usage = CleanJSONField(_("usage"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    reasoning_started_at = models.DateTimeField(null=True, blank=True)
    reasoning_finished_at = models.DateTimeField(null=True, blank=True)
    answer_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    html = CleanTextField(blank=True)  # cached rendering of `content`
    reasoning_html = CleanTextField(blank=True)  # cached rendering of `reasoning`

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["sender", "client_id"],
                condition=~models.Q(client_id=""),
                name="unique_client_id_per_sender",
            )
        ]
        verbose_name = _("message")
        verbose_name_plural = _("messages")

    def __str__(self) -> str:
        return f"{self.role} {self.uuid}"

    @property
    def is_stale(self) -> bool:
        beat = self.heartbeat_at or self.created_at
        return self.status == self.Status.STREAMING and timezone.now() - beat > STALE_AFTER

    def thought_seconds(self) -> float | None:
        if not self.reasoning_started_at:
            return None
        end = self.reasoning_finished_at or self.answer_started_at or self.finished_at
        if not end:
            return None
        return max(0.0, (end - self.reasoning_started_at).total_seconds())

    def timings(self) -> dict[str, Any]:
        """Seconds from the message's creation; msgpack-safe."""

        def since(moment: Any) -> float | None:
            return round((moment - self.created_at).total_seconds(), 3) if moment else None

        return {
            "first_reasoning": since(self.reasoning_started_at),
            "first_answer": since(self.answer_started_at),
            "finished": since(self.finished_at),
            "thought_seconds": self.thought_seconds(),
        }


class Attachment(models.Model):
    """A file a user attached to a question: uploaded before the question is sent (no message
    yet), then bound to it. Its kind is read from its bytes, never from its name; the text the
    model is given is extracted once, at upload (conversations.attachments)."""

    class Kind(models.TextChoices):
        TEXT = "text", _("text")
        PDF = "pdf", _("PDF")
        IMAGE = "image", _("image")

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="attachments",
    )
    message = models.ForeignKey(
        Message,
        verbose_name=_("message"),
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="attachments",
    )
    name = CleanCharField(_("name"), max_length=255)
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    content_type = models.CharField(_("content type"), max_length=100)
    size = models.PositiveIntegerField(_("size (bytes)"))
    text = CleanTextField(_("extracted text"), blank=True)
    pages = models.PositiveIntegerField(_("pages"), null=True, blank=True)
    # The bytes of an image (sent to models that see images); empty for text and PDFs.
    data = models.BinaryField(blank=True, default=b"")
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)

    class Meta:
        ordering = ["position", "id"]
        indexes = [models.Index(fields=["owner", "message", "created_at"])]
        verbose_name = _("attachment")
        verbose_name_plural = _("attachments")

    def __str__(self) -> str:
        return self.name


class ModelCapability(models.Model):
    """What a backend's model was seen doing: a model that streamed reasoning thinks, whatever
    its name or the server's metadata said (a GGUF import whose template passes `<think>`
    through, an OpenAI-compatible server that lists no abilities). The catalog lays this over
    its first guess (turns/catalog.py)."""

    class Thinking(models.TextChoices):
        ALWAYS = "always", _("always thinks")
        ON_OFF = "on_off", _("thinks when asked")
        NEVER = "never", _("does not think")

    backend = models.ForeignKey(
        Backend, on_delete=models.CASCADE, related_name="capabilities", verbose_name=_("backend")
    )
    model = CleanCharField(_("model"), max_length=200)
    thinking = models.CharField(_("thinking"), max_length=10, choices=Thinking.choices)
    learned_at = models.DateTimeField(_("learned"), default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["backend", "model"], name="unique_capability_per_model")
        ]
        verbose_name = _("model capability")
        verbose_name_plural = _("model capabilities")

    def __str__(self) -> str:
        return f"{self.backend_id}:{self.model} {self.thinking}"


class ChatPreset(models.Model):
    """A user's named set of chat settings: model, temperature, maximum length, Deep Think and
    an optional system prompt. A conversation remembers the preset it was last used with."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("owner"),
        on_delete=models.CASCADE,
        related_name="chat_presets",
    )
    name = CleanCharField(_("name"), max_length=80)
    # The same keys as a `settings` object of the chat socket (chat/protocol.clean_settings).
    settings = CleanJSONField(_("settings"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="unique_preset_name_per_owner")
        ]
        verbose_name = _("chat preset")
        verbose_name_plural = _("chat presets")

    def __str__(self) -> str:
        return self.name

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.pk, "name": self.name, "settings": dict(self.settings or {})}
