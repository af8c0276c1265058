"""API keys in the admin: listed with their owners and use, revocable (one or many at once).
Keys are made by their owners on the account page, or with `manage.py create_api_key`: the
secret exists only at that moment."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from r1chat.adminkit import ProjectAdmin

from .models import ApiKey


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("active")), ("revoked", _("revoked")), ("expired", _("expired"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ProjectAdmin, admin.ModelAdmin):
    list_display = (
        "name", "owner", "shown", "created_at", "expires_at", "last_used_at", "record", "state",
    )  # fmt: skip
    list_filter = (StateFilter, "record", "created_at")
    search_fields = ("name", "prefix", "owner__username", "owner__email")
    list_select_related = ("owner",)
    readonly_fields = ("owner", "shown", "created_at", "last_used_at")
    fields = ("name", "owner", "shown", "created_at", "expires_at", "scope", "record",
              "last_used_at", "revoked_at")  # fmt: skip
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a key's secret is shown only to whoever makes it

    @admin.display(description=_("key"))
    def shown(self, key: ApiKey) -> str:
        return key.shown

    @admin.display(description=_("state"))
    def state(self, key: ApiKey) -> str:
        if key.is_revoked:
            return str(_("revoked"))
        if key.is_expired:
            return str(_("expired"))
        return str(_("active"))

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(
            request,
            ngettext("%(count)d key was revoked.", "%(count)d keys were revoked.", count)
            % {"count": count},
            messages.SUCCESS,
        )
