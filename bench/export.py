#!/usr/bin/env python
"""Export-all benchmark: the memory and time of streaming every conversation as one zip.

    .venv/bin/python bench/export.py [--conversations 10000] [--messages 10] [--chars 1500]

One user with N conversations of M messages (answers with reasoning, the text hard to compress)
in a fresh SQLite database (or DATABASE_URL's). The zip is read chunk by chunk from the view
through Django's test client, as a browser reads the download. Prints the zip's size, the
time, the number of chunks and the largest, the process's peak RSS before and after the
export, and the Python memory a second export allocated at its peak (tracemalloc). Budget:
memory independent of N (compare --conversations 1000 with 10000).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    """The process's peak resident set size so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--chars", type=int, default=1500, help="characters per message")
    parser.add_argument("--trace", action="store_true", help="print the top allocation sites")
    args = parser.parse_args()

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "r1chat.settings",
            "R1CHAT_DATA_DIR": tempfile.mkdtemp(prefix="r1chat-export-"),
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
    from tests.chat_support import make_user

    user = make_user("exporter", password=None)
    now = timezone.now()
    rng = random.Random(1)

    def text() -> str:
        return base64.b64encode(rng.randbytes(args.chars * 3 // 4)).decode()

    made = time.perf_counter()
    for start in range(0, args.conversations, 500):
        batch = Conversation.objects.bulk_create(
            Conversation(
                owner=user,
                title=f"Conversation {i} – 对话",
                created_at=now - timezone.timedelta(minutes=i),
                updated_at=now - timezone.timedelta(minutes=i),
            )
            for i in range(start, min(start + 500, args.conversations))
        )
        rows = []
        for conv in batch:
            for k in range(args.messages):
                answer = k % 2 == 1
                rows.append(
                    Message(
                        conversation=conv,
                        role="assistant" if answer else "user",
                        content=text(),
                        reasoning=text()[: args.chars // 2] if answer else "",
                        created_at=now + timezone.timedelta(seconds=k),
                        model="deepseek-reasoner" if answer else "",
                        usage={"prompt_tokens": 100, "completion_tokens": 300} if answer else {},
                    )
                )
        Message.objects.bulk_create(rows, batch_size=2000)
    print(
        f"r1chat export-all benchmark: {args.conversations:,} conversations × {args.messages} "
        f"messages of {args.chars:,} characters (made in {time.perf_counter() - made:.0f} s)"
    )

    client = Client()
    client.force_login(user)

    def export() -> tuple[int, int, int, float]:
        start = time.perf_counter()
        response = client.get("/account/transfer/export.zip")
        total = chunks = largest = 0
        for chunk in response.streaming_content:
            total += len(chunk)
            chunks += 1
            largest = max(largest, len(chunk))
        return total, chunks, largest, time.perf_counter() - start

    rss_before = rss_mib()
    total, chunks, largest, elapsed = export()
    rss_after = rss_mib()
    print(
        f"  zip: {total / 2**20:,.1f} MiB in {chunks:,} chunks (largest {largest / 1024:,.0f} KiB)"
    )
    print(f"  time: {elapsed:.1f} s ({total / 2**20 / elapsed:.1f} MiB/s)")
    print(f"  peak RSS: {rss_before:.0f} MiB before the export, {rss_after:.0f} MiB after")
    tracemalloc.start()
    export()
    _, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot() if args.trace else None
    tracemalloc.stop()
    print(f"  Python memory the export allocated at its peak (tracemalloc): {peak / 2**20:.1f} MiB")
    if snapshot:
        for stat in snapshot.statistics("lineno")[:10]:
            print("   ", stat)


if __name__ == "__main__":
    main()
