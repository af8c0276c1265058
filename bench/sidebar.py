#!/usr/bin/env python
"""Sidebar and conversation-page benchmark.

    .venv/bin/python bench/sidebar.py [--conversations 10000] [--messages 500]

One user with 10,000 conversations, and one conversation of 500 messages whose answers carry
realistic cached HTML (code, a formula, a list). Prints the server time (median of several
requests, through Django's test client in this process) and the query count of: the sidebar's
first page (JSON), the chat page (which renders that first page), and the 500-message
conversation's page. Budget: first page ≤ 25 ms with a constant number of queries; the
500-message conversation ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ANSWER = """## Mass–energy equivalence

Einstein's relation $E=mc^2$ says that mass is a form of energy:

- **E** is the energy in joules
- **m** is the mass in kilograms
- **c** is the speed of light

```python
C = 299_792_458


def rest_energy(mass_kg: float) -> float:
    return mass_kg * C**2
```

One gram of matter holds about 9 × 10¹³ J.
"""


def measure(client: Any, url: str, repeat: int) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    queries = 0
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - start)
        assert response.status_code == 200, (url, response.status_code)
        queries = len(captured)
    return statistics.median(times) * 1000, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "r1chat.settings",
            "R1CHAT_DATA_DIR": tempfile.mkdtemp(prefix="r1chat-sidebar-"),
            "R1CHAT_HTTPS": "0",
            "R1CHAT_STATIC_MANIFEST": "0",
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "testserver",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from conversations.models import Conversation, Message
    from conversations.rendering import render_markdown
    from tests.chat_support import make_user

    user = make_user("sidebar")
    now = timezone.now()
    Conversation.objects.bulk_create(
        Conversation(
            owner=user,
            title=f"Conversation number {i}",
            pinned=i % 500 == 0,
            updated_at=now - timezone.timedelta(minutes=i * 7),
            created_at=now - timezone.timedelta(minutes=i * 7),
        )
        for i in range(args.conversations)
    )
    long_one = Conversation.objects.create(owner=user, title="A long conversation")
    html = render_markdown(ANSWER)
    parent = None
    for i in range(args.messages):
        role = "user" if i % 2 == 0 else "assistant"
        parent = Message.objects.create(
            conversation=long_one,
            parent=parent,
            role=role,
            content=f"Question {i}: how are mass and energy related?" if role == "user" else ANSWER,
            reasoning="" if role == "user" else "Let me think about E = mc² once more. " * 20,
            html="" if role == "user" else html,
            usage={} if role == "user" else {"prompt_tokens": 40, "completion_tokens": 300},
            created_at=now - timezone.timedelta(seconds=args.messages - i),
            reasoning_started_at=None if role == "user" else now,
            answer_started_at=None if role == "user" else now,
            finished_at=None if role == "user" else now,
        )
    long_one.current_leaf = parent
    long_one.save(update_fields=["current_leaf"])

    client = Client()
    client.force_login(user)
    client.get("/")  # warm up templates and caches
    print(
        f"r1chat sidebar benchmark: {args.conversations:,} conversations, "
        f"one of {args.messages} messages (median of {args.repeat})"
    )
    rows = [
        ("sidebar first page (JSON)", "/api/conversations"),
        ("chat page with the sidebar", "/"),
        (f"{args.messages}-message conversation", f"/c/{long_one.uuid}/"),
    ]
    for label, url in rows:
        ms, queries = measure(client, url, args.repeat)
        print(f"  {label + ':':<36}{ms:7.1f} ms, {queries} queries")


if __name__ == "__main__":
    main()
