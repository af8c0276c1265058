"""Searching a user's conversations: which match, in what order, one page at a time.

A query is split on spaces into terms; a conversation matches when its title holds every term,
or one finished message does (its text, and its reasoning when asked). Terms are substrings,
case-insensitive, so Chinese needs no word boundaries.

Ranking: conversations whose title matches come first, then those where only a message
matches; each group newest first (by the conversation's last activity). One result per
conversation, showing its best message. Pages follow each other by keyset, so a page costs
the same at any depth; the cursor is signed and bound to the query.

Finding message matches fast for both kinds of term:
- A common term is in most recent conversations: scanning the newest WINDOW conversations'
  messages with LIKE fills a page long before an index would have listed its every match.
- A rare term is in few: after the first window, a term of three characters or more asks the
  trigram index (FTS5 on SQLite, pg_trgm on PostgreSQL) for the conversations that hold it.
- A query whose terms are all shorter than three characters (a two-character Chinese word) has
  no trigram: it keeps scanning the user's own conversations, newest first, in growing windows
  until the page is full. Its cost grows with how rare the term is (see the README), so a
  request starts no new window after SCAN_SECONDS: it answers with what it found (perhaps
  nothing yet) and a cursor that goes on from where it stopped, with windows as large as
  the last, and the page asks for more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
import uuid
from typing import Any

from django.core import signing
from django.db import connection

from r1chat.text import clean_text

from . import index

PAGE_SIZE = 20
MAX_QUERY_CHARS = 200
MAX_TERMS = 8
WINDOW = 200  # the newest conversations scanned before the index is asked
MAX_WINDOW = 3200  # the most conversations one scan reads at once
SCAN_SECONDS = 0.1  # a page of a short query starts no new window after this (its cursor goes on)
TRIGRAM = 3  # the shortest term an index can find

TITLE, TEXT = 0, 1  # the ranking tiers
CURSOR_SALT = "conversations.search.cursor"


class BadCursor(ValueError):
    """A cursor that was not made by this search for this query."""


@dataclasses.dataclass
class Hit:
    conversation_id: int
    conversation_uuid: uuid.UUID
    title: str
    updated_at: dt.datetime
    tier: int
    # The best matching message, filled by `attach_messages` (None: the title alone matched).
    message: dict[str, Any] | None = None


@dataclasses.dataclass
class Page:
    terms: list[str]
    hits: list[Hit]
    next: str | None


def parse(text: str) -> list[str]:
    """The distinct terms of a query, in order (case-insensitively distinct)."""
    seen: set[str] = set()
    terms = []
    for term in clean_text(text).split():
        if term.casefold() not in seen:
            seen.add(term.casefold())
            terms.append(term)
    return terms[:MAX_TERMS]


# --- cursors ----------------------------------------------------------------------------------


def _query_key(terms: list[str], reasoning: bool) -> str:
    raw = "\x1f".join([*(t.casefold() for t in terms), "r" if reasoning else ""])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@dataclasses.dataclass
class Position:
    """Where a page ends: after this conversation, in this tier."""

    tier: int = TITLE
    updated_at: dt.datetime | None = None
    conversation_id: int | None = None  # None with a time: that conversation is gone
    conversation_uuid: uuid.UUID | None = None
    window: int = 0  # a scan that ran out of time goes on with windows this large


def encode_cursor(position: Position, key: str) -> str:
    assert position.updated_at is not None and position.conversation_uuid is not None
    payload = [
        key,
        position.tier,
        position.updated_at.isoformat(),
        position.conversation_uuid.hex,
        position.window,
    ]
    return signing.dumps(payload, salt=CURSOR_SALT, compress=True)


def decode_cursor(cursor: str, key: str, user: Any) -> Position:
    from ..models import Conversation

    try:
        cursor_key, tier, updated_text, uuid_hex, window = signing.loads(cursor, salt=CURSOR_SALT)
        updated_at = dt.datetime.fromisoformat(updated_text)
        conversation_uuid = uuid.UUID(hex=uuid_hex)
    except (signing.BadSignature, ValueError, TypeError):
        raise BadCursor from None
    if cursor_key != key or tier not in (TITLE, TEXT) or not isinstance(window, int):
        raise BadCursor
    last_id = (
        Conversation.objects.filter(owner=user, uuid=conversation_uuid)
        .values_list("id", flat=True)
        .first()
    )
    return Position(tier, updated_at, last_id, conversation_uuid, min(max(window, 0), MAX_WINDOW))


# --- SQL pieces -------------------------------------------------------------------------------


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _like(column: str, term: str) -> tuple[str, list[Any]]:
    """`column` contains `term`, ignoring case (on SQLite: the case of ASCII letters).

    A term without letters that have case (Chinese, digits) is compared as it is, which is
    several times faster: ILIKE lowercases every row's text, SQLite's LIKE folds each
    character; `instr` and a plain LIKE do neither (and LIKE still uses pg_trgm's index)."""
    caseless = term.lower() == term.upper()
    if connection.vendor == "postgresql":
        return f"{column} {'LIKE' if caseless else 'ILIKE'} %s", [_like_pattern(term)]
    if caseless:
        return f"instr({column}, %s) > 0", [term]
    return f"{column} LIKE %s ESCAPE '\\'", [_like_pattern(term)]


def _all(parts: list[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    if not parts:
        return "1=1", []
    return " AND ".join(f"({sql})" for sql, _ in parts), [p for _, ps in parts for p in ps]


def _fts_phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


class _Sql:
    """The WHERE clauses of one query (terms and the reasoning toggle), for this database."""

    def __init__(self, terms: list[str], reasoning: bool) -> None:
        self.terms = terms
        self.reasoning = reasoning
        self.long = [t for t in terms if len(t) >= TRIGRAM]
        self.short = [t for t in terms if len(t) < TRIGRAM]
        self.sqlite = connection.vendor == "sqlite"

    def title(self) -> tuple[str, list[Any]]:
        """Conversation `c`'s title holds every term."""
        if self.sqlite and self.long:
            match = " AND ".join(_fts_phrase(t) for t in self.long)
            index_part = (
                f"c.id IN (SELECT rowid FROM {index.TITLE_FTS} WHERE {index.TITLE_FTS} MATCH %s)",
                [match],
            )
            return _all([index_part, *(_like("c.title", t) for t in self.short)])
        return _all([_like("c.title", t) for t in self.terms])

    def _term_in_message(self, term: str) -> tuple[str, list[Any]]:
        content_sql, content_params = _like("m.content", term)
        if not self.reasoning:
            return content_sql, content_params
        reasoning_sql, reasoning_params = _like("m.reasoning", term)
        return f"{content_sql} OR {reasoning_sql}", content_params + reasoning_params

    def message(self) -> tuple[str, list[Any]]:
        """Message `m` is finished and holds every term (scanned, not indexed)."""
        sql, params = _all([self._term_in_message(t) for t in self.terms])
        return f"m.{index.FINISHED} AND {sql}", params

    def indexed_conversations(self) -> tuple[str, list[Any]]:
        """A subquery: the ids of conversations with a matching message, through the index.
        Only for queries with a term of three characters or more."""
        if self.sqlite:
            columns = "{content reasoning}" if self.reasoning else "content"
            match = " AND ".join(f"{columns} : {_fts_phrase(t)}" for t in self.long)
            short_sql, short_params = _all([self._term_in_message(t) for t in self.short])
            return (
                "SELECT m.conversation_id FROM conversations_message m WHERE m.id IN "
                f"(SELECT rowid FROM {index.MESSAGE_FTS} WHERE {index.MESSAGE_FTS} MATCH %s) "
                f"AND {short_sql}",
                [match, *short_params],
            )
        sql, params = self.message()
        return f"SELECT m.conversation_id FROM conversations_message m WHERE {sql}", params


def _moment(value: Any) -> dt.datetime:
    """A time read by raw SQL, as an aware datetime (SQLite gives naive UTC, or text)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _at(value: dt.datetime) -> Any:
    """A time as a raw SQL parameter, in the form the ORM stores it."""
    return connection.ops.adapt_datetimefield_value(value)


def _after(position: Position) -> tuple[str, list[Any]]:
    """Conversation `c` comes after `position` (newest first)."""
    if position.updated_at is None:
        return "1=1", []
    at = _at(position.updated_at)
    if position.conversation_id is None:
        return "c.updated_at < %s", [at]
    return (
        "(c.updated_at < %s OR (c.updated_at = %s AND c.id < %s))",
        [at, at, position.conversation_id],
    )


def _not_after(updated_at: dt.datetime, conversation_id: int) -> tuple[str, list[Any]]:
    """Conversation `c` is not older than the one given (it is in the window ending there)."""
    at = _at(updated_at)
    return "(c.updated_at > %s OR (c.updated_at = %s AND c.id >= %s))", [at, at, conversation_id]


COLUMNS = "c.id, c.uuid, c.title, c.updated_at"


def _hits(sql: str, params: list[Any], tier: int) -> list[Hit]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    out = []
    for pk, conversation_uuid, title, updated_at in rows:
        if not isinstance(conversation_uuid, uuid.UUID):  # (SQLite keeps it as hex text)
            conversation_uuid = uuid.UUID(conversation_uuid)
        out.append(Hit(pk, conversation_uuid, title, _moment(updated_at), tier))
    return out


# --- the two tiers ----------------------------------------------------------------------------


def _title_hits(user_id: int, sql: _Sql, position: Position, limit: int) -> list[Hit]:
    title_sql, title_params = sql.title()
    after_sql, after_params = _after(position)
    return _hits(
        f"SELECT {COLUMNS} FROM conversations_conversation c "
        f"WHERE c.owner_id = %s AND c.deleted_at IS NULL AND {after_sql} AND {title_sql} "
        "ORDER BY c.updated_at DESC, c.id DESC LIMIT %s",
        [user_id, *after_params, *title_params, limit],
        TITLE,
    )


def _window_end(user_id: int, position: Position, size: int) -> Position | None:
    """The oldest of the next `size` conversations after `position` (None: fewer remain)."""
    after_sql, after_params = _after(position)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.updated_at, c.id, c.uuid FROM conversations_conversation c "
            f"WHERE c.owner_id = %s AND c.deleted_at IS NULL AND {after_sql} "
            "ORDER BY c.updated_at DESC, c.id DESC LIMIT 1 OFFSET %s",
            [user_id, *after_params, size - 1],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    conversation_uuid = row[2] if isinstance(row[2], uuid.UUID) else uuid.UUID(row[2])
    return Position(TEXT, _moment(row[0]), row[1], conversation_uuid)


def _text_hits(
    user_id: int, sql: _Sql, position: Position, limit: int, window: int
) -> tuple[list[Hit], Position | None]:
    """Conversations whose title does not match but a message does, after `position`; and
    where the scan stopped, when it ran out of time before it filled the page."""
    if window <= 0 and sql.long:
        return _indexed_hits(user_id, sql, position, limit), None
    title_sql, title_params = sql.title()
    message_sql, message_params = sql.message()
    found: list[Hit] = []
    size = max(position.window or window, 1)
    started = time.monotonic()
    while len(found) < limit:
        end = _window_end(user_id, position, size)
        after_sql, after_params = _after(position)
        window_sql, window_params = (
            _not_after(end.updated_at, end.conversation_id) if end else ("1=1", [])
        )
        wanted = limit - len(found)
        found += _hits(
            f"SELECT {COLUMNS} FROM conversations_conversation c "
            f"WHERE c.owner_id = %s AND c.deleted_at IS NULL AND {after_sql} AND {window_sql} "
            f"AND NOT ({title_sql}) "
            "AND EXISTS (SELECT 1 FROM conversations_message m "
            f"WHERE m.conversation_id = c.id AND {message_sql}) "
            "ORDER BY c.updated_at DESC, c.id DESC LIMIT %s",
            [user_id, *after_params, *window_params, *title_params, *message_params, wanted],
            TEXT,
        )
        if end is None or len(found) >= limit:
            break
        position = end
        if sql.long:  # the rest through the index
            found += _indexed_hits(user_id, sql, position, limit - len(found))
            break
        size = min(size * 4, MAX_WINDOW)
        if time.monotonic() - started > SCAN_SECONDS:
            # The page so far; the next request scans on from here, in windows this large.
            return found, dataclasses.replace(position, window=size)
    return found, None


def _indexed_hits(user_id: int, sql: _Sql, position: Position, limit: int) -> list[Hit]:
    title_sql, title_params = sql.title()
    hits_sql, hits_params = sql.indexed_conversations()
    after_sql, after_params = _after(position)
    # PostgreSQL: the matching messages first, through the trigram index (not a scan of the
    # user's conversations testing each); SQLite plans an IN subquery that way by itself.
    materialized = "MATERIALIZED " if connection.vendor == "postgresql" else ""
    return _hits(
        f"WITH hits AS {materialized}({hits_sql}) "
        f"SELECT {COLUMNS} FROM conversations_conversation c "
        f"WHERE c.id IN (SELECT conversation_id FROM hits) AND c.owner_id = %s "
        "AND c.deleted_at IS NULL "
        f"AND {after_sql} AND NOT ({title_sql}) "
        "ORDER BY c.updated_at DESC, c.id DESC LIMIT %s",
        [*hits_params, user_id, *after_params, *title_params, limit],
        TEXT,
    )


# --- the best message of each hit -------------------------------------------------------------


def attach_messages(hits: list[Hit], sql: _Sql) -> None:
    """Each hit's best matching message: in the text rather than the reasoning, the most
    occurrences, then the newest."""
    if not hits:
        return
    message_sql, message_params = sql.message()
    reasoning = "m.reasoning" if sql.reasoning else "''"
    marks = ", ".join(["%s"] * len(hits))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.conversation_id, m.uuid, m.role, m.content, {reasoning}, m.created_at "
            f"FROM conversations_message m WHERE m.conversation_id IN ({marks}) "
            f"AND {message_sql}",
            [*(h.conversation_id for h in hits), *message_params],
        )
        rows = cursor.fetchall()
    folded = [t.casefold() for t in sql.terms]
    best: dict[int, tuple[tuple[Any, ...], dict[str, Any]]] = {}
    for conversation_id, message_uuid, role, content, reasoning_text, created_at in rows:
        content_folded = content.casefold()
        in_content = all(t in content_folded for t in folded)
        text = content if in_content else reasoning_text
        text_folded = content_folded if in_content else text.casefold()
        score = (in_content, sum(text_folded.count(t) for t in folded), str(created_at))
        if conversation_id not in best or score > best[conversation_id][0]:
            if not isinstance(message_uuid, uuid.UUID):
                message_uuid = uuid.UUID(message_uuid)
            best[conversation_id] = (
                score,
                {
                    "uuid": message_uuid,
                    "role": role,
                    "field": "content" if in_content else "reasoning",
                    "text": text,
                },
            )
    for hit in hits:
        if hit.conversation_id in best:
            hit.message = best[hit.conversation_id][1]


# --- the entry point --------------------------------------------------------------------------


def search(
    user: Any,
    text: str,
    *,
    reasoning: bool = False,
    cursor: str = "",
    limit: int | None = None,
    window: int | None = None,
) -> Page:
    """One page of `user`'s conversations matching `text` (raises BadCursor).

    `window`: how many of the newest conversations are scanned before the index is asked
    (0: at once, for a query with a term of three characters or more)."""
    limit = PAGE_SIZE if limit is None else limit
    window = WINDOW if window is None else window
    terms = parse(text)
    if not terms:
        return Page([], [], None)
    key = _query_key(terms, reasoning)
    position = decode_cursor(cursor, key, user) if cursor else Position()
    sql = _Sql(terms, reasoning)
    hits: list[Hit] = []
    resume = None
    if position.tier == TITLE:
        hits = _title_hits(user.pk, sql, position, limit + 1)
        position = Position(TEXT)
    if len(hits) <= limit:
        more, resume = _text_hits(user.pk, sql, position, limit + 1 - len(hits), window)
        hits += more
    if len(hits) > limit:
        hits = hits[:limit]
        last = hits[-1]
        resume = Position(last.tier, last.updated_at, last.conversation_id, last.conversation_uuid)
    attach_messages(hits, sql)
    return Page(terms, hits, encode_cursor(resume, key) if resume else None)
