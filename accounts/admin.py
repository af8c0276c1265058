from __future__ import annotations

from typing import Any

from allauth.account.admin import EmailAddressAdmin as BaseEmailAddressAdmin
from allauth.account.models import EmailAddress
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from r1chat.adminkit import ProjectAdmin

from . import approval
from .models import Invitation, User


@admin.register(User)
class UserAdmin(ProjectAdmin, BaseUserAdmin):
    list_display = (
        "username",
        "email",
        "phone",
        "phone_verified",
        "approved",
        "is_active",
        "is_staff",
        "date_joined",
    )
    list_filter = (*BaseUserAdmin.list_filter, "approved", "phone_verified")
    search_fields = ("username", "email", "phone")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        (_("Phone"), {"fields": ("phone", "phone_verified")}),
        (
            _("Access and preferences"),
            {"fields": ("approved", "language", "theme", "chat_defaults")},
        ),
    )
    actions = ["approve", "deactivate"]

    @admin.action(description=_("Approve the selected accounts"), permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        # Each newly approved person is told by email (or SMS) after commit.
        count = approval.approve(request, queryset)
        self.message_user(
            request,
            ngettext("%(count)d account approved.", "%(count)d accounts approved.", count)
            % {"count": count},
            messages.SUCCESS,
        )

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and obj.approved and "approved" in form.changed_data:
            approval.approved_in_form(request, obj)

    @admin.action(description=_("Deactivate the selected accounts"), permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        # One UPDATE: UserQuerySet.update closes their sockets and stops their answers.
        count = queryset.filter(is_active=True).exclude(pk=request.user.pk).update(is_active=False)
        self.message_user(
            request,
            ngettext("%(count)d account deactivated.", "%(count)d accounts deactivated.", count)
            % {"count": count},
            messages.SUCCESS,
        )


@admin.register(Invitation)
class InvitationAdmin(ProjectAdmin, admin.ModelAdmin):
    list_display = ("__str__", "invite_link", "created_by", "created_at", "expires_at", "used_by")
    list_filter = ("created_at", "expires_at")
    search_fields = ("note", "token")
    readonly_fields = ("token", "invite_link", "created_by", "created_at", "used_by", "used_at")
    fields = (
        "note",
        "expires_at",
        "token",
        "invite_link",
        "created_by",
        "created_at",
        "used_by",
        "used_at",
    )

    def get_fields(self, request: HttpRequest, obj: Invitation | None = None) -> Any:
        if obj is None:
            # The token is made when the invitation is saved; one shown on the empty form would
            # not be the one saved (the model's default runs again).
            return ("note", "expires_at")
        return super().get_fields(request, obj)

    @admin.display(description=_("Invitation link"))
    def invite_link(self, obj: Invitation) -> str:
        if not obj.pk:
            return str(_("Shown after saving."))
        return reverse("accounts:invite", args=[obj.token])

    def save_model(self, request: HttpRequest, obj: Invitation, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)
        url = request.build_absolute_uri(reverse("accounts:invite", args=[obj.token]))
        self.message_user(
            request, _("Send this sign-up link: %(url)s") % {"url": url}, messages.INFO
        )


# The admins of Django's groups and allauth's email addresses, with the same 404 for an id
# that names no object (r1chat.adminkit).
admin.site.unregister(Group)
admin.site.unregister(EmailAddress)


@admin.register(Group)
class GroupAdmin(ProjectAdmin, BaseGroupAdmin):
    pass


@admin.register(EmailAddress)
class EmailAddressAdmin(ProjectAdmin, BaseEmailAddressAdmin):
    pass
