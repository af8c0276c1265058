"""Loaded with `-p tests.testenv` before Django's settings: the environment of every test run."""

import os
import tempfile

# Tests talk plain HTTP to the app: no HTTPS redirect or secure-only cookies.
os.environ.setdefault("R1CHAT_HTTPS", "0")
# No offline-demo simulator started by the app itself: tests start their own.
os.environ.setdefault("R1CHAT_SIMULATOR", "off")
# Static files from the source folders (no collectstatic before tests).
os.environ.setdefault("R1CHAT_STATIC_MANIFEST", "0")
os.environ.setdefault("SMS_BACKEND", "locmem")
# Mail and SMS sent in the request, so a test reads the outbox right after it (the tests of
# accounts.outbox turn the background queue on).
os.environ.setdefault("R1CHAT_SEND_IN_BACKGROUND", "0")
# One SQLite test database per run (inherited by the live-server processes it spawns).
os.environ.setdefault(
    "R1CHAT_TEST_DB", os.path.join(tempfile.gettempdir(), f"r1chat-test-{os.getpid()}.sqlite3")
)
# PostgreSQL and Redis (.ci/run's second configuration): a database and key prefix per run.
os.environ.setdefault("R1CHAT_TEST_DB_NAME", f"test_r1chat_{os.getpid()}")
os.environ.setdefault("R1CHAT_REDIS_PREFIX", f"r1chat-test-{os.getpid()}")
