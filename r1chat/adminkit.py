"""What every ModelAdmin of the project shares (``ProjectAdmin``).

- An id that names no object is a 404. Django's admin answers a change, history or delete URL
  whose id is malformed or unknown by redirecting to the admin index with a message (and views
  that looked objects up themselves raised ValueError on a malformed id: a 500).
- Search terms go through r1chat.text.clean_text: the admin's search is made of pattern
  lookups (icontains), which do not clean their value through the field, and PostgreSQL
  refuses a U+0000 in a query as in a row (a 500).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest

from .text import clean_text


def object_or_404[M: Model](queryset: QuerySet[M], object_id: Any) -> M:
    """The object of ``queryset`` whose primary key is ``object_id`` (as written in a URL)."""
    field = queryset.model._meta.pk
    try:
        return queryset.get(pk=field.to_python(object_id))
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError, OverflowError):
        raise Http404 from None


class ProjectAdmin(admin.ModelAdmin):
    """A ModelAdmin whose object views answer 404 for an id that names no object, and whose
    search terms are cleaned of U+0000."""

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        return super().get_search_results(request, queryset, clean_text(search_term))

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        try:
            obj = super().get_object(request, object_id, from_field)
        except (TypeError, OverflowError):
            obj = None
        if obj is None:
            raise Http404
        return obj
