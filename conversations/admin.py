"""The admin: backends (team administration) and conversations (review, read-only, audited).

Conversations are visible only to whom R1CHAT_REVIEW_ACCESS allows (`review.access`); opening
one goes through the audited review page, never through the generic change form.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_POST

from r1chat.adminkit import ProjectAdmin, object_or_404
from review.access import can_review
from review.audit import record_admin_action
from review.models import AdminAudit, Feedback, ReviewAudit
from sharing.admin import SharedColumnMixin, SharedFilter

from .backends.base import BackendConfig, Health
from .backends.ollama import OllamaBackend
from .backends.openai import OpenAIBackend
from .models import Backend, Conversation, Message, ModelCapability
from .turns import catalog

logger = logging.getLogger(__name__)

HEALTH_TIMEOUT = 20.0


# --- Backends -------------------------------------------------------------------------------


class LinesField(forms.CharField):
    """A list of names edited as one per line (commas work too)."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            items = [str(v) for v in value]
        else:
            items = str(value or "").replace(",", "\n").split("\n")
        seen: dict[str, None] = {}
        for item in items:
            if item.strip():
                seen.setdefault(item.strip(), None)
        return list(seen)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return self.to_python(initial) != self.to_python(data)


class BackendForm(forms.ModelForm):
    # The stored key never enters this form: not as initial data, not as a widget value.
    new_api_key = forms.CharField(
        label=gettext_lazy("New API key"),
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("Write-only. Leave blank to keep the stored key."),
    )
    clear_api_key = forms.BooleanField(label=gettext_lazy("Clear the stored key"), required=False)
    model_allowlist = LinesField(
        label=gettext_lazy("Model allowlist"),
        required=False,
        help_text=gettext_lazy(
            "One model name per line. Empty offers every model the server lists."
        ),
    )
    assume_open_think = LinesField(
        label=gettext_lazy("Models with a pre-opened <think>"),
        required=False,
        help_text=gettext_lazy("Models whose output starts inside the reasoning."),
    )

    vision_models = LinesField(
        label=gettext_lazy("Models that accept images"),
        required=False,
        help_text=gettext_lazy(
            "One model name per line. OpenAI-compatible servers do not say which models see "
            "images; Ollama's models are asked."
        ),
    )

    class Meta:
        model = Backend
        # An allowlist, so a field added to Backend later is never exposed by accident.
        fields = (
            "name", "kind", "base_url", "enabled", "position", "default_model",
            "model_allowlist", "assume_open_think", "vision_models", "connect_timeout",
            "idle_timeout",
            "no_data_timeout", "total_timeout", "max_tries",
        )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Where the stored key is sent today (before this form changes the instance).
        self.stored_origin = server_origin(self.instance.base_url) if self.instance.pk else None
        self.stored_key = bool(self.instance.pk and self.instance.api_key)
        #: Set by save(): {"from", "to", "key"} when the server's scheme, host or port changed.
        self.moved: dict[str, str] | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("new_api_key") and data.get("clear_api_key"):
            raise forms.ValidationError(_("Enter a new key or clear the stored one, not both."))
        return data

    def save(self, commit: bool = True) -> Backend:
        backend = super().save(commit=False)
        new_origin = server_origin(backend.base_url)
        moved = self.stored_origin is not None and new_origin != self.stored_origin
        if self.cleaned_data.get("new_api_key"):
            backend.api_key = self.cleaned_data["new_api_key"]
            key = "entered again"
        elif self.cleaned_data.get("clear_api_key"):
            backend.api_key = ""
            key = "cleared"
        elif moved and backend.api_key:
            # The key was given for the old server: it does not follow the URL to another one
            # (or "Check now" would hand it to whoever runs the new host).
            backend.api_key = ""
            key = "cleared"
        else:
            key = "none" if not backend.api_key else "kept"
        if moved:
            self.moved = {
                "backend": backend.name,
                "from": _origin_text(self.stored_origin),
                "to": _origin_text(new_origin),
                "key": key if self.stored_key or key == "entered again" else "none",
            }
        if commit:
            backend.save()
            self.save_m2m()
        return backend


def server_origin(url: str | None) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of a URL, default ports spelled out; None if it has none."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return ("", url, None)  # unreadable: never equal to a readable origin
    scheme = parts.scheme.lower()
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return (scheme, (parts.hostname or "").lower(), port)


def _origin_text(origin: tuple[str, str, int | None] | None) -> str:
    if origin is None:
        return ""
    scheme, host, port = origin
    return f"{scheme}://{host}:{port}" if port is not None else f"{scheme}://{host}"


def _health_client(config: BackendConfig) -> OllamaBackend | OpenAIBackend:
    # A client of its own, closed after the check: the shared ones belong to the serving loop.
    return OllamaBackend(config) if config.kind == "ollama" else OpenAIBackend(config)


async def _check(config: BackendConfig) -> Health:
    client = _health_client(config)
    try:
        return await asyncio.wait_for(client.health(), timeout=HEALTH_TIMEOUT)
    except TimeoutError:
        return Health(reachable=False, error=_("The model server did not answer in time."))
    except Exception as exc:
        return Health(reachable=False, error=type(exc).__name__)
    finally:
        await client.aclose()


def _redact(text: str | None, secret: str) -> str | None:
    if text and secret:
        return text.replace(secret, "•••")
    return text


def check_backend(backend: Backend) -> dict[str, Any]:
    """Call the server's health check; store and return the result (never the key)."""
    health = async_to_sync(_check)(backend.config())
    result = health.as_dict()
    result["error"] = _redact(result.get("error"), backend.api_key)
    now = timezone.now()
    # update(), not save(): the check is not an edit and must not touch updated_at.
    Backend.objects.filter(pk=backend.pk).update(last_health=result, last_checked_at=now)
    backend.last_health, backend.last_checked_at = result, now
    return result


def _health_line(name: str, result: dict[str, Any]) -> str:
    if not result.get("reachable"):
        return _("%(name)s: unreachable (%(error)s)") % {
            "name": name,
            "error": result.get("error") or _("no answer"),
        }
    parts = [
        _("%(name)s: reachable") % {"name": name},
        _("version %(version)s") % {"version": result["version"]} if result.get("version") else "",
        ngettext("%(count)d model", "%(count)d models", len(result.get("models") or []))
        % {"count": len(result.get("models") or [])},
        _("%(ms)s ms") % {"ms": result["latency_ms"]}
        if result.get("latency_ms") is not None
        else "",
    ]
    line = ", ".join(p for p in parts if p)
    if result.get("error"):
        line += " — " + _("last error: %(error)s") % {"error": result["error"]}
    return line


@admin.register(ModelCapability)
class ModelCapabilityAdmin(ProjectAdmin, admin.ModelAdmin):
    """What the backends' models were seen doing (a model that streamed reasoning thinks); an
    administrator may correct or delete a row, and the picker follows."""

    list_display = ("model", "backend", "thinking", "learned_at")
    list_filter = ("backend", "thinking")
    search_fields = ("model",)
    readonly_fields = ("learned_at",)


@admin.register(Backend)
class BackendAdmin(ProjectAdmin, admin.ModelAdmin):
    form = BackendForm
    list_display = (
        "name",
        "kind",
        "base_url",
        "enabled",
        "default_model",
        "health_status",
        "last_checked_at",
    )
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url")
    actions = ["check_now"]
    readonly_fields = ("api_key_status", "health_summary", "last_checked_at", "source")
    fieldsets = (
        (None, {"fields": ("name", "kind", "base_url", "enabled", "position", "source")}),
        (
            gettext_lazy("API key"),
            {"fields": ("api_key_status", "new_api_key", "clear_api_key")},
        ),
        (
            gettext_lazy("Models"),
            {
                "fields": (
                    "default_model",
                    "model_allowlist",
                    "assume_open_think",
                    "vision_models",
                )
            },
        ),
        (
            gettext_lazy("Timeouts and retries"),
            {
                "fields": (
                    "connect_timeout",
                    "idle_timeout",
                    "no_data_timeout",
                    "total_timeout",
                    "max_tries",
                )
            },
        ),
        (gettext_lazy("Health"), {"fields": ("health_summary", "last_checked_at")}),
    )

    @admin.display(description=gettext_lazy("Stored key"))
    def api_key_status(self, backend: Backend) -> str:
        return _("stored (never shown)") if backend.api_key else _("none")

    @admin.display(description=gettext_lazy("health"))
    def health_status(self, backend: Backend) -> str:
        result = backend.last_health or {}
        if not backend.last_checked_at:
            return "—"
        if not result.get("reachable"):
            return format_html('<span class="r1-bad">{}</span>', _("unreachable"))
        return format_html(
            '<span class="r1-ok">{}</span> {}',
            _("reachable"),
            _("%(ms)s ms") % {"ms": result.get("latency_ms")},
        )

    @admin.display(description=gettext_lazy("last check"))
    def health_summary(self, backend: Backend) -> str:
        result = backend.last_health or {}
        if not backend.pk or not backend.last_checked_at:
            return _("Not checked yet.")
        rows = [
            (_("Reachable"), _("yes") if result.get("reachable") else _("no")),
            (_("Version"), result.get("version") or "—"),
            (_("Latency"), _("%(ms)s ms") % {"ms": result.get("latency_ms")}),
            (_("Models"), ", ".join(result.get("models") or []) or "—"),
            (_("Last error"), result.get("error") or "—"),
        ]
        return format_html(
            '<dl class="r1-health">{}</dl>',
            format_html_join("", "<dt>{}</dt><dd>{}</dd>", rows),
        )

    @admin.action(description=gettext_lazy("Check now"), permissions=["change"])
    def check_now(self, request: HttpRequest, queryset: QuerySet[Backend]) -> None:
        for backend in queryset:
            result = check_backend(backend)
            level = messages.SUCCESS if result.get("reachable") else messages.WARNING
            self.message_user(request, _health_line(backend.name, result), level)

    def get_urls(self) -> list[Any]:
        urls = [
            path(
                "<int:object_id>/check/",
                self.admin_site.admin_view(self.check_view),
                name="conversations_backend_check",
            )
        ]
        return urls + super().get_urls()

    def check_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return require_POST(self._check_view)(request, object_id)

    def _check_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        backend = get_object_or_404(Backend, pk=object_id)
        if not self.has_change_permission(request, backend):
            return HttpResponse(status=403)
        self.check_now(request, Backend.objects.filter(pk=backend.pk))
        return HttpResponseRedirect(
            reverse("admin:conversations_backend_change", args=[backend.pk])
        )

    def save_model(self, request: HttpRequest, obj: Backend, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        moved = getattr(form, "moved", None)
        if moved:
            record_admin_action(request, AdminAudit.Action.BACKEND_MOVED, details=moved)
            if moved["key"] == "cleared":
                self.message_user(
                    request,
                    _(
                        "The server's address changed, so the stored API key was cleared. "
                        "Enter the key again if this server should have it."
                    ),
                    messages.WARNING,
                )
        # The model picker follows at once: drop the cached list now and after commit.
        catalog.forget(obj.pk)
        transaction.on_commit(lambda: catalog.forget(obj.pk))

    def delete_model(self, request: HttpRequest, obj: Backend) -> None:
        pk = obj.pk
        super().delete_model(request, obj)
        catalog.forget(pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Backend]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        super().delete_queryset(request, queryset)
        for pk in ids:
            catalog.forget(pk)


# --- Conversations (review) -----------------------------------------------------------------


def _down_flags() -> QuerySet[Feedback]:
    return Feedback.objects.filter(
        message__conversation=OuterRef("pk"), rating=Feedback.Rating.DOWN
    )


def _review_url(conversation_uuid: uuid.UUID | str) -> str:
    return reverse("admin:conversations_conversation_review", args=[conversation_uuid])


def audit_listing(request: HttpRequest, action: str) -> None:
    """Log one listing of everyone's conversations or messages: search terms, filters, page."""
    if request.method != "GET" or not can_review(request.user):
        return  # (refused further on, and nothing shown)
    details = {key: value[:200] for key, value in list(request.GET.items())[:20] if key != "q"}
    record_admin_action(request, action, search=request.GET.get("q", ""), details=details)


class ReviewAccessMixin:
    """Read-only, and visible only to reviewers as R1CHAT_REVIEW_ACCESS decides."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_review(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_review(request.user)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FlaggedFilter(admin.SimpleListFilter):
    title = gettext_lazy("flagged")
    parameter_name = "flagged"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("queue", _("Review queue (flagged since the last review)")),
            ("yes", _("Flagged")),
            ("no", _("Not flagged")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "queue":
            reviewed_since = ReviewAudit.objects.filter(
                conversation=OuterRef(OuterRef("pk")),
                action=ReviewAudit.Action.OPEN,
                at__gte=OuterRef("updated_at"),
            )
            return queryset.filter(Exists(_down_flags().filter(~Exists(reviewed_since))))
        if self.value() == "yes":
            return queryset.filter(Exists(_down_flags()))
        if self.value() == "no":
            return queryset.exclude(Exists(_down_flags()))
        return queryset


class _MessageExistsFilter(admin.SimpleListFilter):
    """Conversations with at least one message whose `field` has the chosen value."""

    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        values = (
            Message.objects.exclude(**{self.field: ""})
            .order_by(self.field)
            .values_list(self.field, flat=True)
            .distinct()[:100]
        )
        return [(v, v) for v in values]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not self.value():
            return queryset
        return queryset.filter(
            Exists(
                Message.objects.filter(conversation=OuterRef("pk"), **{self.field: self.value()})
            )
        )


class BackendFilter(_MessageExistsFilter):
    title = gettext_lazy("backend")
    parameter_name = "backend"
    field = "backend_name"


class ModelFilter(_MessageExistsFilter):
    title = gettext_lazy("model")
    parameter_name = "model"
    field = "model"


class StatusFilter(_MessageExistsFilter):
    title = gettext_lazy("message status")
    parameter_name = "status"
    field = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in Message.Status.choices]


def _token_sum(key: str) -> Subquery:
    return Subquery(
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(total=Sum(Cast(KT(f"usage__{key}"), IntegerField())))
        .values("total")[:1],
        output_field=IntegerField(),
    )


@admin.register(Conversation)
class ConversationAdmin(SharedColumnMixin, ReviewAccessMixin, ProjectAdmin, admin.ModelAdmin):
    list_display = (
        "review_link",
        "owner",
        "models_used",
        "message_count",
        "tokens",
        "status",
        "flags",
        "shared",
        "updated_at",
    )
    list_display_links = None
    list_filter = (
        FlaggedFilter,
        SharedFilter,
        ("owner", admin.RelatedOnlyFieldListFilter),
        BackendFilter,
        ModelFilter,
        StatusFilter,
        ("updated_at", admin.DateFieldListFilter),
    )
    date_hierarchy = "updated_at"
    search_fields = ("title", "owner__username", "owner__email", "messages__content")
    list_select_related = ("owner",)
    list_per_page = 50
    actions = None

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        count = (
            Message.objects.filter(conversation=OuterRef("pk"))
            .order_by()
            .values("conversation")
            .annotate(n=Count("id"))
            .values("n")[:1]
        )
        flags = (
            _down_flags().order_by().values("message__conversation").annotate(n=Count("id"))
        ).values("n")[:1]
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_messages=Coalesce(Subquery(count, output_field=IntegerField()), Value(0)),
                n_tokens=Coalesce(_token_sum("prompt_tokens"), Value(0))
                + Coalesce(_token_sum("completion_tokens"), Value(0)),
                n_flags=Coalesce(Subquery(flags, output_field=IntegerField()), Value(0)),
                leaf_status=F("current_leaf__status"),
            )
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        audit_listing(request, AdminAudit.Action.LIST_CONVERSATIONS)
        return super().changelist_view(request, extra_context)

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        page = list(changelist.result_list)  # fills the queryset's cache the template reads
        models: dict[int, set[str]] = {}
        for conversation_id, model in (
            Message.objects.filter(conversation__in=[c.pk for c in page])
            .exclude(model="")
            .order_by()
            .values_list("conversation_id", "model")
            .distinct()
        ):
            models.setdefault(conversation_id, set()).add(model)
        for conversation in page:
            conversation.models_used_cache = sorted(models.get(conversation.pk, ()))
        return changelist

    @admin.display(description=gettext_lazy("title"), ordering="title")
    def review_link(self, conversation: Conversation) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            _review_url(conversation.uuid),
            conversation.title or _("Untitled conversation"),
        )

    @admin.display(description=gettext_lazy("models"))
    def models_used(self, conversation: Conversation) -> str:
        return ", ".join(getattr(conversation, "models_used_cache", [])) or "—"

    @admin.display(description=gettext_lazy("messages"), ordering="n_messages")
    def message_count(self, conversation: Conversation) -> int:
        return conversation.n_messages  # type: ignore[attr-defined]

    @admin.display(description=gettext_lazy("tokens"), ordering="n_tokens")
    def tokens(self, conversation: Conversation) -> str:
        return f"{conversation.n_tokens:,}"  # type: ignore[attr-defined]

    @admin.display(description=gettext_lazy("status"), ordering="leaf_status")
    def status(self, conversation: Conversation) -> str:
        value = conversation.leaf_status  # type: ignore[attr-defined]
        return str(Message.Status(value).label) if value else "—"

    @admin.display(description=gettext_lazy("flags"), ordering="n_flags")
    def flags(self, conversation: Conversation) -> str:
        n = conversation.n_flags  # type: ignore[attr-defined]
        return format_html('<span class="r1-flag">⚑ {}</span>', n) if n else ""

    def get_urls(self) -> list[Any]:
        from review import views

        def wrap(view: Any, **kwargs: Any) -> Any:
            def inner(request: HttpRequest, **url_kwargs: Any) -> HttpResponse:
                return view(request, model_admin=self, **kwargs, **url_kwargs)

            return self.admin_site.admin_view(inner)

        urls = [
            path(
                "review/<uuid:conversation>/",
                wrap(views.review_conversation),
                name="conversations_conversation_review",
            ),
            path(
                "review/<uuid:conversation>/export.md",
                wrap(views.export_conversation, fmt="md"),
                name="conversations_conversation_export_md",
            ),
            path(
                "review/<uuid:conversation>/export.json",
                wrap(views.export_conversation, fmt="json"),
                name="conversations_conversation_export_json",
            ),
        ]
        return urls + super().get_urls()

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        # The generic form would show the thread unaudited: every opening goes through review.
        if not can_review(request.user):
            raise PermissionDenied
        conversation = object_or_404(Conversation.objects.all(), unquote(object_id))
        return HttpResponseRedirect(_review_url(conversation.uuid))

    def history_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        return self.change_view(request, object_id)


@admin.register(Message)
class MessageAdmin(ReviewAccessMixin, ProjectAdmin, admin.ModelAdmin):
    """Messages by status, model and error, without their text (that is in the review page)."""

    list_display = (
        "short_id",
        "conversation_link",
        "role",
        "backend_name",
        "model",
        "status",
        "error_code",
        "created_at",
    )
    list_display_links = None
    list_filter = ("status", "role", "error_code", "backend_name", "model", "created_at")
    list_select_related = ("conversation",)
    date_hierarchy = "created_at"
    actions = None
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return (
            super()
            .get_queryset(request)
            .defer("content", "reasoning", "html", "conversation__settings")
        )

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        audit_listing(request, AdminAudit.Action.LIST_MESSAGES)
        return super().changelist_view(request, extra_context)

    @admin.display(description=gettext_lazy("message"))
    def short_id(self, message: Message) -> str:
        return str(message.uuid)[:8]

    @admin.display(description=gettext_lazy("conversation"))
    def conversation_link(self, message: Message) -> str:
        return format_html(
            '<a href="{}#m-{}">{}</a>',
            _review_url(message.conversation.uuid),
            message.uuid,
            message.conversation.title or _("Untitled conversation"),
        )

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        if not can_review(request.user):
            raise PermissionDenied
        message = object_or_404(Message.objects.select_related("conversation"), unquote(object_id))
        return HttpResponseRedirect(f"{_review_url(message.conversation.uuid)}#m-{message.uuid}")

    def history_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        return self.change_view(request, object_id)
