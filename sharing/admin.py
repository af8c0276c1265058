"""What the conversations admin shows about sharing: a column and a filter (mixed into
`conversations.admin.ConversationAdmin`), and the links on the review page (a template tag)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Exists, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from .models import SharedLink


def _links() -> QuerySet[SharedLink]:
    return SharedLink.objects.filter(conversation=OuterRef("pk"))


class SharedFilter(admin.SimpleListFilter):
    title = gettext_lazy("shared")
    parameter_name = "shared"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", _("Shared by a link")), ("no", _("Not shared"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(Exists(_links()))
        if self.value() == "no":
            return queryset.exclude(Exists(_links()))
        return queryset


class SharedColumnMixin:
    """The number of live share links of each conversation, as the `shared` column."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        count = _links().order_by().values("conversation").annotate(n=Count("id")).values("n")[:1]
        return (
            super()  # type: ignore[misc]
            .get_queryset(request)
            .annotate(n_shared=Coalesce(Subquery(count, output_field=IntegerField()), Value(0)))
        )

    @admin.display(description=gettext_lazy("shared"), ordering="n_shared")
    def shared(self, conversation: Any) -> str:
        n = conversation.n_shared
        if not n:
            return "—"
        return format_html(
            '<span class="r1-shared">{}</span>',
            ngettext("%(count)d link", "%(count)d links", n) % {"count": n},
        )
