"""Admin for the audit log (read-only), feedback, daily quotas and the usage report."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from r1chat.adminkit import ProjectAdmin, object_or_404

from . import views
from .access import can_review
from .models import AdminAudit, Feedback, ReviewAudit, UsageRecord, UserQuota
from .quota import daily_quota
from .usage import tokens_used_on

admin.site.site_header = gettext_lazy("r1chat administration")
admin.site.site_title = gettext_lazy("r1chat admin")
admin.site.index_title = gettext_lazy("Team portal")


def _review_link(conversation_uuid: Any, title: str) -> str:
    return format_html(
        '<a href="{}">{}</a>',
        reverse("admin:conversations_conversation_review", args=[conversation_uuid]),
        title or _("Untitled conversation"),
    )


class ReadOnlyAdmin(ProjectAdmin, admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReviewAudit)
class ReviewAuditAdmin(ReadOnlyAdmin):
    """Who opened or exported whose conversation. Nobody edits or deletes an entry."""

    list_display = ("at", "reviewer_name", "owner", "conversation_link", "action", "ip_address")
    list_filter = ("action", "at")
    search_fields = ("reviewer_name", "owner__username", "owner__email", "conversation_title")
    list_select_related = ("owner",)
    date_hierarchy = "at"
    actions = None

    @admin.display(description=gettext_lazy("conversation"))
    def conversation_link(self, entry: ReviewAudit) -> str:
        if entry.conversation_id is None:
            return entry.conversation_title or str(entry.conversation_uuid)
        return _review_link(entry.conversation_uuid, entry.conversation_title)


def _is_superuser(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_superuser)


@admin.register(AdminAudit)
class AdminAuditAdmin(ReadOnlyAdmin):
    """Listings and searches of everyone's conversations, backends moved: superusers only."""

    list_display = ("at", "actor_name", "action", "search", "summary", "ip_address")
    list_filter = ("action", "at")
    search_fields = ("actor_name", "search")
    date_hierarchy = "at"
    actions = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_superuser(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_superuser(request)

    @admin.display(description=gettext_lazy("details"))
    def summary(self, entry: AdminAudit) -> str:
        return ", ".join(f"{key}={value}" for key, value in sorted(entry.details.items()))


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    """Thumbs up and down. Reasons are the user's words: reviewers only."""

    list_display = ("updated_at", "user", "rating", "short_reason", "conversation_link", "model")
    list_filter = ("rating", "updated_at")
    search_fields = ("reason", "user__username", "message__conversation__title")
    list_select_related = ("user", "message__conversation")
    actions = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return can_review(request.user)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_review(request.user)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Feedback]:
        return (
            super()
            .get_queryset(request)
            .defer("message__content", "message__reasoning", "message__html")
        )

    @admin.display(description=gettext_lazy("reason"))
    def short_reason(self, entry: Feedback) -> str:
        return Truncator(entry.reason).chars(80)

    @admin.display(description=gettext_lazy("model"))
    def model(self, entry: Feedback) -> str:
        return entry.message.model

    @admin.display(description=gettext_lazy("conversation"))
    def conversation_link(self, entry: Feedback) -> str:
        conversation = entry.message.conversation
        return format_html(
            '<a href="{}#m-{}">{}</a>',
            reverse("admin:conversations_conversation_review", args=[conversation.uuid]),
            entry.message.uuid,
            conversation.title or _("Untitled conversation"),
        )


@admin.register(UserQuota)
class UserQuotaAdmin(ProjectAdmin, admin.ModelAdmin):
    list_display = ("user", "daily_tokens", "effective_quota", "used_today", "note", "updated_at")
    search_fields = ("user__username", "user__email", "user__phone", "note")
    autocomplete_fields = ("user",)
    list_select_related = ("user",)

    @admin.display(description=gettext_lazy("quota in force"))
    def effective_quota(self, quota: UserQuota) -> str:
        value = daily_quota(quota.user_id)
        return f"{value:,}" if value else _("no limit")

    @admin.display(description=gettext_lazy("used today"))
    def used_today(self, quota: UserQuota) -> str:
        return f"{tokens_used_on(quota.user_id, timezone.localdate()):,}"


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    """The changelist is the usage report: tokens per user and model per day, chart and CSV."""

    def get_urls(self) -> list[Any]:
        return [
            path(
                "csv/",
                self.admin_site.admin_view(self.csv_view),
                name="review_usagerecord_csv",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return views.usage_report(request, model_admin=self)

    def csv_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return views.usage_csv(request, model_admin=self)

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> Any:
        if not self.has_view_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        object_or_404(UsageRecord.objects.all(), unquote(object_id))
        return self.changelist_view(request)
