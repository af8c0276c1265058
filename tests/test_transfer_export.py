"""Export all: one zip of every conversation, streamed, that re-imports without loss.

- Alice exports; her conversations are the ones in the zip.
- Bob is another user: nothing of his is ever in Alice's zip.
- Carol imports Alice's export into her own (empty) history.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import os
import tracemalloc
import zipfile
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from conversations import exporting
from conversations.models import Attachment, Conversation, Message
from tests.chat_support import make_user
from tests.views_support import conversation

pytestmark = pytest.mark.django_db

JSON = {"HTTP_ACCEPT": "application/json"}
T0 = dt.datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _import_in_the_request(settings: Any) -> None:
    settings.R1CHAT_IMPORT_IN_BACKGROUND = False


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def read_zip(response: Any) -> zipfile.ZipFile:
    assert response.streaming
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def rich_conversation(owner: Any) -> Conversation:
    """Branches (an edited question and a regenerated answer), reasoning, timings, usage, an
    error, settings, a pin and a generated title; the current leaf is not the newest branch."""
    conv = Conversation.objects.create(
        owner=owner, title="Relativity – 相对论", title_generated=True, pinned=True,
        created_at=T0, updated_at=T0 + dt.timedelta(hours=2),
        settings={"model": "deepseek-reasoner", "deep_think": True, "temperature": 0.6,
                  "system_prompt": "Be brief."},
    )  # fmt: skip

    def add(parent: Message | None, role: str, content: str, minutes: int, **extra: Any) -> Message:
        return Message.objects.create(
            conversation=conv, parent=parent, role=role, content=content,
            created_at=T0 + dt.timedelta(minutes=minutes), **extra,
        )  # fmt: skip

    def answer(parent: Message, content: str, minutes: int, **extra: Any) -> Message:
        at = T0 + dt.timedelta(minutes=minutes)
        fields = {
            "reasoning": "Let me think.\nE = mc².",
            "status": "complete", "model": "deepseek-reasoner", "backend_name": "DeepSeek",
            "deep_think": True, "enhanced_reasoning": False, "temperature": 0.6, "max_tokens": 4096,
            "usage": {"prompt_tokens": 12, "completion_tokens": 40, "reasoning_tokens": 25},
            "finish_reason": "stop", "reasoning_started_at": at + dt.timedelta(seconds=1),
            "reasoning_finished_at": at + dt.timedelta(seconds=4),
            "answer_started_at": at + dt.timedelta(seconds=4, microseconds=500),
            "finished_at": at + dt.timedelta(seconds=9),
        } | extra  # fmt: skip
        return add(parent, "assistant", content, minutes, **fields)

    q1 = add(None, "user", "What is E?", 0)
    a1 = answer(q1, "**Energy**: $E=mc^2$", 1)
    answer(
        q1, "Energy.", 2, status="error", error_code="timeout", error_detail="no data", reasoning=""
    )
    q2 = add(a1, "user", "And m?", 3)
    # The question's files: a PDF's text and an image's bytes come back with it.
    Attachment.objects.create(
        owner=owner, message=q2, name="notes – 笔记.pdf", kind="pdf",
        content_type="application/pdf", size=2048, pages=2, text="m is the mass.", position=0,
    )  # fmt: skip
    Attachment.objects.create(
        owner=owner, message=q2, name="graph.png", kind="image", content_type="image/png",
        size=12, data=b"\x89PNG\r\n\x1a\n\x00\x01\x02\x03", position=1,
    )  # fmt: skip
    a3 = answer(q2, "Mass.", 4)
    q2_edited = add(a1, "user", "And c?", 5)
    answer(q2_edited, "The speed of light.", 6, reasoning="", deep_think=False)
    conv.current_leaf = a3
    conv.save(update_fields=["current_leaf"])
    return conv


def files(message: Message) -> list[tuple[Any, ...]]:
    return [
        (a.name, a.kind, a.content_type, a.size, a.pages, a.text, bytes(a.data), a.position)
        for a in message.attachments.order_by("position")
    ]


def shape(conv: Conversation) -> dict[str, Any]:
    """Everything an import must recreate, without ids."""
    messages = list(conv.messages.order_by("created_at", "id"))
    index = {m.pk: i for i, m in enumerate(messages)}
    fields = [
        "role", "content", "reasoning", "status", "error_code", "error_detail", "finish_reason",
        "backend_name", "model", "deep_think", "enhanced_reasoning", "temperature", "max_tokens",
        "usage", "created_at", "reasoning_started_at", "reasoning_finished_at",
        "answer_started_at", "finished_at", "reasoning_unterminated",
    ]  # fmt: skip
    return {
        "title": conv.title,
        "title_generated": conv.title_generated,
        "pinned": conv.pinned,
        "created_at": conv.created_at,
        "updated_at": conv.updated_at,
        "settings": conv.settings,
        "current_leaf": index.get(conv.current_leaf_id),
        "messages": [
            {name: getattr(m, name) for name in fields}
            | {"parent": index.get(m.parent_id), "files": files(m)}
            for m in messages
        ],
    }


# --- the zip ----------------------------------------------------------------------------------


def test_the_zip_holds_markdown_and_json_per_conversation_and_one_file_for_all(db):
    alice = make_user("alice", password=None)
    rich_conversation(alice)
    conversation(alice, "Plan: 计划 / v2", turns=[("q", "thinking", "a")])
    response = signed_in(alice).get(reverse("transfer:export-all"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="r1chat-export-')
    archive = read_zip(response)
    names = archive.namelist()
    root = names[0].split("/")[0]
    assert names[0] == f"{root}/conversations.json"
    day = T0.date().isoformat()
    json_names = sorted(n for n in names if "/json/" in n)
    md_names = sorted(n for n in names if "/markdown/" in n)
    assert len(json_names) == len(md_names) == 2
    assert any(n.startswith(f"{root}/json/{day} Relativity – 相对论 ") for n in json_names)
    assert any("Plan 计划 v2 " in n for n in md_names)  # ":" and "/" are not kept in names
    everything = json.loads(archive.read(f"{root}/conversations.json"))
    assert (everything["format"], everything["version"]) == ("r1chat", 1)
    assert sorted(c["title"] for c in everything["conversations"]) == [
        "Plan: 计划 / v2",
        "Relativity – 相对论",
    ]
    single = json.loads(archive.read(next(n for n in json_names if "Relativity" in n)))
    relativity = next(c for c in everything["conversations"] if c["title"].startswith("Rel"))
    assert single["messages"] == relativity["messages"]  # one document, two places
    markdown = archive.read(next(n for n in md_names if "Relativity" in n)).decode()
    assert markdown.startswith("# Relativity – 相对论\n")
    assert "> Let me think." in markdown
    assert "Mass." in markdown and "The speed of light." not in markdown  # the visible thread


def test_other_users_conversations_are_never_exported(db):
    alice, bob = make_user("alice", password=None), make_user("bob", password=None)
    conversation(alice, "Alice's", turns=[("mine", "", "mine too")])
    conversation(bob, "Bob's secret", turns=[("bob-question-xyz", "bob-thought", "bob-answer")])
    archive = read_zip(signed_in(alice).get(reverse("transfer:export-all")))
    everything = b"".join(archive.read(name) for name in archive.namelist())
    assert b"Alice's" in everything
    assert b"bob" not in everything.lower()


def test_an_empty_history_exports_an_empty_list(db):
    alice = make_user("alice", password=None)
    archive = read_zip(signed_in(alice).get(reverse("transfer:export-all")))
    (name,) = archive.namelist()
    assert json.loads(archive.read(name))["conversations"] == []


def test_signed_out_visitors_get_no_export(db):
    response = Client().get(reverse("transfer:export-all"))
    assert response.status_code == 302
    assert not getattr(response, "streaming", False)


# --- round trip -------------------------------------------------------------------------------


def import_file(client: Client, data: bytes, name: str = "export.zip") -> dict[str, Any]:
    file = SimpleUploadedFile(name, data)
    job = client.post(reverse("transfer:import-upload"), {"file": file}, **JSON).json()["job"]
    client.post(reverse("transfer:import-start", args=[job["id"]]), **JSON)
    return client.get(reverse("transfer:import-status", args=[job["id"]])).json()["job"]


def test_the_export_re_imports_without_loss(db):
    alice, carol = make_user("alice", password=None), make_user("carol", password=None)
    original = rich_conversation(alice)
    plain = conversation(alice, "Plain", turns=[("q1", "", "a1"), ("q2", "r2", "a2")])
    data = b"".join(signed_in(alice).get(reverse("transfer:export-all")).streaming_content)
    job = import_file(signed_in(carol), data)
    assert (job["source"], job["imported"], job["skipped_count"]) == ("r1chat", 2, 0)
    copy = Conversation.objects.get(owner=carol, title=original.title)
    assert shape(copy) == shape(original)
    assert shape(Conversation.objects.get(owner=carol, title="Plain")) == shape(plain)
    # Alice's ids are hers: Carol's copies get their own.
    assert copy.uuid != original.uuid


def test_re_importing_into_the_same_account_skips_what_is_there_and_restores_what_is_not(db):
    alice = make_user("alice", password=None)
    original = rich_conversation(alice)
    kept = shape(original)
    old_uuid = original.uuid
    client = signed_in(alice)
    data = b"".join(client.get(reverse("transfer:export-all")).streaming_content)
    again = import_file(client, data)
    assert (again["imported"], again["skipped"]) == (
        0,
        [{"title": "Relativity – 相对论", "reason": "It is already in your history."}],
    )
    original.delete()
    restored = import_file(client, data)
    assert restored["imported"] == 1
    back = Conversation.objects.get(owner=alice)
    assert back.uuid == old_uuid  # links to it work again
    assert shape(back) == kept


def test_a_single_conversations_json_download_imports_too(db):
    alice, carol = make_user("alice", password=None), make_user("carol", password=None)
    original = rich_conversation(alice)
    data = signed_in(alice).get(reverse("conversation-export-json", args=[original.uuid])).content
    job = import_file(signed_in(carol), data, "Relativity.json")
    assert job["imported"] == 1
    assert shape(Conversation.objects.get(owner=carol)) == shape(original)


# --- streaming, in bounded memory -------------------------------------------------------------


def many_conversations(owner: Any, count: int, text_bytes: int) -> None:
    """`count` conversations of 4 messages with hard-to-compress text."""
    now = timezone.now()
    conversations = Conversation.objects.bulk_create(
        Conversation(owner=owner, title=f"Conversation {i}", created_at=now, updated_at=now)
        for i in range(count)
    )

    def text() -> str:
        return base64.b64encode(os.urandom(text_bytes * 3 // 4)).decode()

    rows = []
    for conv in conversations:
        for role in ("user", "assistant", "user", "assistant"):
            rows.append(Message(conversation=conv, role=role, content=text(), created_at=now))
    Message.objects.bulk_create(rows, batch_size=1000)


async def _export_measured(client: AsyncClient) -> tuple[int, int, int, int]:
    """(bytes, chunks, largest chunk, traced peak) of one export read chunk by chunk."""
    tracemalloc.start()
    try:
        response = await client.get(reverse("transfer:export-all"))
        assert response.streaming
        total = chunks = largest = 0
        async for chunk in response.streaming_content:
            total += len(chunk)
            largest = max(largest, len(chunk))
            chunks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return total, chunks, largest, peak


@pytest.mark.django_db(transaction=True)
async def test_the_export_streams_in_constant_memory_under_asgi() -> None:
    """Read chunk by chunk from the ASGI response, an export of 400 conversations allocates no
    more than one of 100: a page of conversations at a time."""
    from asgiref.sync import sync_to_async

    alice = await sync_to_async(make_user)("alice", password=None)
    client = AsyncClient()
    await client.aforce_login(alice)
    await sync_to_async(many_conversations)(alice, 100, 4000)
    small = await _export_measured(client)
    await sync_to_async(many_conversations)(alice, 300, 4000)
    large = await _export_measured(client)
    # The chunks were made in asgiref's shared worker thread (a server makes them in the
    # request's own): its database connection is closed here, as the server's would be.
    await sync_to_async(connections.close_all)()
    print(f"export of 100 / 400 conversations: {small[0] / 1e6:.1f} / {large[0] / 1e6:.1f} MB "
          f"in {small[1]} / {large[1]} chunks, largest {large[2] / 1e3:.0f} kB; traced peak "
          f"{small[3] / 1e6:.1f} / {large[3] / 1e6:.1f} MB")  # fmt: skip
    assert large[0] > 3.5 * small[0]
    assert large[1] > 100  # sent as it is written, not in one piece
    assert large[2] < 1_000_000
    assert large[3] < 1.5 * small[3]


def test_each_page_of_conversations_costs_a_constant_number_of_queries(
    db: Any, django_assert_max_num_queries: Any
) -> None:
    alice = make_user("alice", password=None)
    many_conversations(alice, 250, 100)
    client = signed_in(alice)
    response = client.get(reverse("transfer:export-all"))
    # Two passes over 3 pages of 100: a conversations, a messages and a files query per page, an
    # empty page ending each pass, and the newest id read once.
    with django_assert_max_num_queries(21):
        data = b"".join(response.streaming_content)
    assert len(zipfile.ZipFile(io.BytesIO(data)).namelist()) == 1 + 2 * 250
    assert exporting.FORMAT == "r1chat"
