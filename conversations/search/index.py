"""The search indexes, created by migration 0006 and checked after every `migrate`.

Both databases index the columns themselves, so every write path (the runner's updates, the
actions' saves, bulk inserts, the admin, a cascade delete) keeps the index in step:

- PostgreSQL: `pg_trgm` GIN indexes on `conversation.title`, `message.content` and
  `message.reasoning`. The message indexes are partial (finished messages only): a streaming
  answer is rewritten once a second, and its trigrams are indexed once, when it ends.
- SQLite: contentless FTS5 tables with the `trigram` tokenizer (SQLite ≥ 3.34): the index
  alone, its rows written by triggers on the tables themselves and keyed by their ids (the text
  stays in the tables). Contentless, they name no table, so Django can still rebuild the tables
  to alter them (a view over the messages broke the rename that ends such a rebuild).

Trigram matching is substring matching: Chinese, which has no spaces between words, is found
like any other text. Terms shorter than three characters have no trigram; `query.py` matches
them by scanning (LIKE, instr) within the searcher's own rows.

SQLite drops a table's triggers when Django rebuilds the table (an `AlterField` in a later
migration recreates it), so `ensure_sqlite_index` runs after every `migrate` (post_migrate): it
recreates what is missing and then rebuilds the index from the tables.
"""

from __future__ import annotations

from typing import Any

MESSAGE_FTS = "conversations_message_fts"
TITLE_FTS = "conversations_conversation_fts"

# A message is searchable once it is no longer streaming (questions are stored `complete`).
FINISHED = "status <> 'streaming'"

SQLITE_TABLES = [
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {MESSAGE_FTS} "
    "USING fts5(content, reasoning, content='', tokenize='trigram')",
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {TITLE_FTS} "
    "USING fts5(title, content='', tokenize='trigram')",
]

SQLITE_TRIGGERS = {
    "conversations_message_fts_ai": f"""
        CREATE TRIGGER IF NOT EXISTS conversations_message_fts_ai
        AFTER INSERT ON conversations_message WHEN new.{FINISHED} BEGIN
            INSERT INTO {MESSAGE_FTS}(rowid, content, reasoning)
            VALUES (new.id, new.content, new.reasoning);
        END""",
    "conversations_message_fts_ad": f"""
        CREATE TRIGGER IF NOT EXISTS conversations_message_fts_ad
        AFTER DELETE ON conversations_message WHEN old.{FINISHED} BEGIN
            INSERT INTO {MESSAGE_FTS}({MESSAGE_FTS}, rowid, content, reasoning)
            VALUES ('delete', old.id, old.content, old.reasoning);
        END""",
    "conversations_message_fts_au": f"""
        CREATE TRIGGER IF NOT EXISTS conversations_message_fts_au
        AFTER UPDATE OF content, reasoning, status ON conversations_message BEGIN
            INSERT INTO {MESSAGE_FTS}({MESSAGE_FTS}, rowid, content, reasoning)
            SELECT 'delete', old.id, old.content, old.reasoning WHERE old.{FINISHED};
            INSERT INTO {MESSAGE_FTS}(rowid, content, reasoning)
            SELECT new.id, new.content, new.reasoning WHERE new.{FINISHED};
        END""",
    "conversations_conversation_fts_ai": f"""
        CREATE TRIGGER IF NOT EXISTS conversations_conversation_fts_ai
        AFTER INSERT ON conversations_conversation BEGIN
            INSERT INTO {TITLE_FTS}(rowid, title) VALUES (new.id, new.title);
        END""",
    "conversations_conversation_fts_ad": f"""
        CREATE TRIGGER IF NOT EXISTS conversations_conversation_fts_ad
        AFTER DELETE ON conversations_conversation BEGIN
            INSERT INTO {TITLE_FTS}({TITLE_FTS}, rowid, title) VALUES ('delete', old.id, old.title);
        END""",
    "conversations_conversation_fts_au": f"""
        CREATE TRIGGER IF NOT EXISTS conversations_conversation_fts_au
        AFTER UPDATE OF title ON conversations_conversation BEGIN
            INSERT INTO {TITLE_FTS}({TITLE_FTS}, rowid, title) VALUES ('delete', old.id, old.title);
            INSERT INTO {TITLE_FTS}(rowid, title) VALUES (new.id, new.title);
        END""",
}

SQLITE_DROP = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS),
    f"DROP TABLE IF EXISTS {MESSAGE_FTS}",
    f"DROP TABLE IF EXISTS {TITLE_FTS}",
]

POSTGRESQL_INDEXES = [
    "CREATE INDEX IF NOT EXISTS conversations_conversation_title_trgm "
    "ON conversations_conversation USING gin (title gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS conversations_message_content_trgm "
    f"ON conversations_message USING gin (content gin_trgm_ops) WHERE {FINISHED}",
    "CREATE INDEX IF NOT EXISTS conversations_message_reasoning_trgm "
    f"ON conversations_message USING gin (reasoning gin_trgm_ops) WHERE {FINISHED}",
]

POSTGRESQL_DROP = [
    "DROP INDEX IF EXISTS conversations_conversation_title_trgm",
    "DROP INDEX IF EXISTS conversations_message_content_trgm",
    "DROP INDEX IF EXISTS conversations_message_reasoning_trgm",
]


def rebuild_sqlite(execute: Any) -> None:
    """Refill both FTS tables from their tables (what the triggers would have written)."""
    execute(f"INSERT INTO {MESSAGE_FTS}({MESSAGE_FTS}) VALUES ('delete-all')")
    execute(
        f"INSERT INTO {MESSAGE_FTS}(rowid, content, reasoning) "
        f"SELECT id, content, reasoning FROM conversations_message WHERE {FINISHED}"
    )
    execute(f"INSERT INTO {TITLE_FTS}({TITLE_FTS}) VALUES ('delete-all')")
    execute(
        f"INSERT INTO {TITLE_FTS}(rowid, title) SELECT id, title FROM conversations_conversation"
    )


def create(schema_editor: Any) -> None:
    """The indexes of this database (called by the migration)."""
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        for sql in POSTGRESQL_INDEXES:
            schema_editor.execute(sql)
    elif vendor == "sqlite":
        for sql in [*SQLITE_TABLES, *SQLITE_TRIGGERS.values()]:
            schema_editor.execute(sql)
        rebuild_sqlite(schema_editor.execute)


def drop(schema_editor: Any) -> None:
    statements = {"postgresql": POSTGRESQL_DROP, "sqlite": SQLITE_DROP}
    for sql in statements.get(schema_editor.connection.vendor, []):
        schema_editor.execute(sql)


def ensure_sqlite_index(using: str = "default", **kwargs: Any) -> None:
    """After `migrate` on SQLite: recreate dropped triggers, then rebuild the index."""
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        present = {row[0] for row in cursor.fetchall()}
        if MESSAGE_FTS not in present:
            return  # not migrated this far (or migrated back): nothing to keep in step
        missing = [sql for name, sql in SQLITE_TRIGGERS.items() if name not in present]
        if not missing:
            return
        for sql in [*SQLITE_TABLES, *missing]:
            cursor.execute(sql)
        rebuild_sqlite(cursor.execute)
