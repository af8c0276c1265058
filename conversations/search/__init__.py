"""Full-text search of a user's conversations: titles, questions and answers, and reasoning.

- `index.py`: the indexes, on the columns themselves (no second copy that could drift):
  PostgreSQL `pg_trgm` GIN indexes, SQLite FTS5 `trigram` tables kept by triggers.
- `query.py`: ranking, paging and the strategy that keeps a first page fast.
- `snippets.py`: the highlighted snippets (escaped HTML with `<mark>`).
- `views.py`: `/api/search`.
"""
