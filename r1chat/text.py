"""Text on its way to the database: one rule, applied in one place.

PostgreSQL's ``text`` cannot hold U+0000 (psycopg refuses the whole statement: "PostgreSQL text
fields cannot contain NUL (0x00) bytes"), while SQLite stores it and cuts C strings at it. So
every text that is written — messages and their reasoning, titles, search terms, imports,
fields edited in the admin — goes through :func:`clean_text` first:

- U+0000 is replaced with U+FFFD (the replacement character), so the reader sees that something
  was there and the text keeps its length; nothing else changes.

Model fields do it for every write (``CleanTextField``, ``CleanCharField`` and, for every string
in a JSON value, keys included, ``CleanJSONField`` call it in ``get_prep_value``: ``save()``,
``update()``, ``bulk_create()`` and exact lookups). Code that writes raw SQL, or puts user input
into a pattern lookup (``icontains``, which does not prepare its value through the field),
calls it itself.
"""

from __future__ import annotations

from typing import Any, overload

from django.db import models

NUL = "\x00"
REPLACEMENT = "\ufffd"


@overload
def clean_text(value: str) -> str: ...
@overload
def clean_text(value: None) -> None: ...
def clean_text(value: str | None) -> str | None:
    """``value`` with every U+0000 replaced by U+FFFD (None stays None)."""
    if value is None or NUL not in value:
        return value
    return value.replace(NUL, REPLACEMENT)


class CleanTextField(models.TextField):
    """A TextField whose values go through :func:`clean_text` on their way to the database."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return clean_text(value) if isinstance(value, str) else value


class CleanCharField(models.CharField):
    """A CharField whose values go through :func:`clean_text` on their way to the database."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return clean_text(value) if isinstance(value, str) else value


def clean_json(value: Any) -> Any:
    """``value`` with :func:`clean_text` applied to every string in it, keys included."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_json(key): clean_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(item) for item in value]
    return value


class CleanJSONField(models.JSONField):
    """A JSONField whose strings go through :func:`clean_text` (PostgreSQL's jsonb refuses
    ``\\u0000`` as its text does)."""

    def get_prep_value(self, value: Any) -> Any:
        return super().get_prep_value(clean_json(value))
