"""Export all: one zip of every conversation of a user, written while it is sent.

The zip is written by `zipfile` into a sink that hands each write on as a chunk (zipfile writes
to unseekable streams with data descriptors), and conversations are read in keyset pages of
``PAGE`` with their messages fetched per page, so memory holds one page whether there are ten
or ten thousand conversations; only the zip's central directory (zipfile's entry for each
file written, a few hundred bytes each) grows with the count. A page is its own short query
(not one server-side cursor held across the whole download), so the export runs the same on
both databases and under ASGI, where each page is read in a worker thread between chunks.

Contents (``r1chat-export-<date>/``):

- ``conversations.json``: ``{"format": "r1chat", "version": 1, "conversations": [...]}``, which
  the importer accepts (the same document as each conversation's own JSON);
- ``json/<date> <title> <id>.json`` and ``markdown/<date> <title> <id>.md`` per conversation.

The all-conversations member is written first, then the per-conversation ones: a zip member
must be complete before the next begins, so the conversations are read twice.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from conversations import exporting
from conversations.attachments import by_message
from conversations.models import Conversation, Message
from conversations.turns.threads import Tree

PAGE = 100
CHUNK = 64 * 1024  # bytes handed on at a time (at least)


class _Sink:
    """A write-only stream whose writes are collected until taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        return data


def _pages(user: Any, last_id: int) -> Iterator[list[tuple[Conversation, Tree]]]:
    """The user's conversations up to `last_id`, oldest first, a page at a time, each with its
    message tree: two queries a page.

    The messages are fetched by conversation id and grouped here rather than with
    prefetch_related, which links each message back to its conversation object: those
    reference cycles outlive the page until the garbage collector's next full pass, and memory
    would grow with the number of pages.
    """
    after = 0
    while True:
        page = list(
            Conversation.objects.filter(owner=user, id__gt=after, id__lte=last_id).order_by("id")[
                :PAGE
            ]
        )
        if not page:
            return
        grouped: dict[int, list[Message]] = {c.pk: [] for c in page}
        messages = Message.objects.filter(conversation_id__in=list(grouped))
        for message in exporting.export_messages(messages):
            grouped[message.conversation_id].append(message)
        yield [(c, Tree(grouped[c.pk])) for c in page]
        after = page[-1].pk
        del page, grouped


def _files(page: list[tuple[Conversation, Tree]]) -> exporting.Files:
    """The attached files of a page's messages: one query a page."""
    return by_message([pk for _c, tree in page for pk in tree.by_id], with_data=True)


def member_name(conversation: Conversation, extension: str) -> str:
    day = conversation.created_at.date().isoformat()
    stem = exporting.file_stem(conversation.title, fallback="conversation", limit=60)
    return f"{day} {stem} {conversation.uuid.hex[:8]}.{extension}"


def folder_name() -> str:
    return f"r1chat-export-{timezone.now().date().isoformat()}"


def zip_chunks(user: Any) -> Iterator[bytes]:
    """The zip of every conversation of `user`, as chunks of about CHUNK bytes."""
    sink = _Sink()
    root = folder_name()
    last_id = (
        Conversation.objects.filter(owner=user).order_by("-id").values_list("id", flat=True).first()
        or 0
    )
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open(f"{root}/conversations.json", mode="w", force_zip64=True) as member:
            head = {
                "format": exporting.FORMAT,
                "version": exporting.VERSION,
                "exported_at": timezone.now().isoformat(),
            }
            member.write(
                json.dumps(head, ensure_ascii=False)[:-1].encode() + b', "conversations": [\n'
            )
            first = True
            for page in _pages(user, last_id):
                files = _files(page)
                for conversation, tree in page:
                    document = exporting.conversation_document(conversation, tree, files=files)
                    text = json.dumps(document, ensure_ascii=False)
                    member.write((("" if first else ",\n") + text).encode())
                    first = False
                    if sink.size >= CHUNK:
                        yield sink.take()
            member.write(b"\n]}\n")
        for page in _pages(user, last_id):
            files = _files(page)
            for conversation, tree in page:
                document = exporting.conversation_document(conversation, tree, files=files)
                archive.writestr(
                    f"{root}/json/{member_name(conversation, 'json')}",
                    json.dumps(document, ensure_ascii=False, indent=2),
                )
                archive.writestr(
                    f"{root}/markdown/{member_name(conversation, 'md')}",
                    exporting.conversation_markdown(conversation, tree, files=files),
                )
                if sink.size >= CHUNK:
                    yield sink.take()
    # The central directory, written on close, holds an entry per file (about 100 bytes each):
    # sent in chunks of the usual size too.
    rest = sink.take()
    for start in range(0, len(rest), CHUNK):
        yield rest[start : start + CHUNK]


async def azip_chunks(user: Any) -> AsyncIterator[bytes]:
    """`zip_chunks` for ASGI: each chunk is made in the worker thread the ORM runs in, so a
    download never holds the event loop nor buffers the whole zip."""
    chunks = zip_chunks(user)
    done = object()
    while True:
        chunk = await sync_to_async(next)(chunks, done)
        if chunk is done:
            return
        yield chunk  # type: ignore[misc]
