"""Text on its way to the database: the one place it is cleaned.

PostgreSQL cannot store U+0000 in text, and SQLite cuts some strings at it; a NUL in a model's
stream, a user's message or a title would otherwise lose the text or fail the write. Every NUL
becomes U+FFFD (the replacement character), so the length and the rest of the text stay as
they were.
"""

from __future__ import annotations

NUL = "\x00"
REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    return value.replace(NUL, REPLACEMENT) if NUL in value else value
