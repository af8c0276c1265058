from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from .models import User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = (
        "username",
        "email",
        "phone",
        "phone_verified",
        "is_active",
        "is_staff",
        "date_joined",
    )
    search_fields = ("username", "email", "phone")
    fieldsets = (
        *BaseUserAdmin.fieldsets,
        (_("Phone"), {"fields": ("phone", "phone_verified")}),
    )
