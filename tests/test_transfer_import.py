"""Importing ChatGPT, DeepSeek, Open WebUI and r1chat exports from the account page.

- Alice imports; her conversations are the ones looked at.
- Bob is another user: Alice's imports are "not found" for him and never land in his history.

The fixture files under tests/fixtures/import/ follow each format's published shape (see the
docstring of transfer/formats.py). Imports run inside the request here
(R1CHAT_IMPORT_IN_BACKGROUND off), except in the test of the background thread.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation, Message
from conversations.turns.threads import Tree, thread_messages
from tests.chat_support import make_user
from transfer.models import ImportJob

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "import"
JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture(autouse=True)
def _import_in_the_request(settings: Any) -> None:
    settings.R1CHAT_IMPORT_IN_BACKGROUND = False


def personas() -> tuple[Any, Any]:
    return make_user("alice", password=None), make_user("bob", password=None)


@pytest.fixture
def people() -> tuple[Client, Any, Any]:
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


def upload(client: Client, name: str, data: bytes) -> Any:
    file = SimpleUploadedFile(name, data, content_type="application/octet-stream")
    return client.post(reverse("transfer:import-upload"), {"file": file}, **JSON)


def preview_and_import(client: Client, name: str, data: bytes) -> dict[str, Any]:
    response = upload(client, name, data)
    assert response.status_code == 200, response.content
    job = response.json()["job"]
    started = client.post(reverse("transfer:import-start", args=[job["id"]]), **JSON)
    assert started.status_code == 200, started.content
    return client.get(reverse("transfer:import-status", args=[job["id"]])).json()["job"]


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def visible(conversation: Conversation) -> list[Message]:
    return thread_messages(conversation, Tree.load(conversation))


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- preview ----------------------------------------------------------------------------------


def test_the_preview_counts_conversations_and_messages_before_anything_is_imported(people):
    client, alice, _ = people
    response = upload(client, "conversations.json", fixture("chatgpt-conversations.json"))
    job = response.json()["job"]
    assert job["status"] == "ready"
    assert job["source"] == "chatgpt"
    assert job["total_conversations"] == 3
    assert job["total_messages"] == 7  # 5 + 2; the broken third is counted as a conversation
    assert "3 conversations, 7 messages" in response.json()["html"]
    assert not Conversation.objects.filter(owner=alice).exists()


def test_a_discarded_preview_imports_nothing(people):
    client, alice, _ = people
    job = upload(client, "c.json", fixture("deepseek-conversations.json")).json()["job"]
    client.post(reverse("transfer:import-cancel", args=[job["id"]]), **JSON)
    assert not ImportJob.objects.exists()
    assert not Conversation.objects.filter(owner=alice).exists()


# --- each format --------------------------------------------------------------------------------


def test_chatgpt_keeps_titles_dates_branches_reasoning_and_the_current_node(people):
    client, alice, _ = people
    job = preview_and_import(client, "conversations.json", fixture("chatgpt-conversations.json"))
    assert job["status"] == "done"
    assert (job["imported"], job["imported_messages"], job["skipped_count"]) == (2, 7, 1)
    assert job["skipped"] == [
        {"title": "Broken tree", "reason": "It has no message tree (“mapping”)."}
    ]

    prime = Conversation.objects.get(owner=alice, title="Prime check – 素数")
    assert prime.created_at == dt.datetime.fromtimestamp(1700000000, tz=dt.UTC)
    assert prime.updated_at == dt.datetime.fromtimestamp(1700000600, tz=dt.UTC)
    thread = visible(prime)
    assert [(m.role, m.content) for m in thread] == [
        ("user", "Is 91 prime?"),
        ("assistant", "No: **91 = 7 × 13**."),
        ("user", "And 97?"),
        ("assistant", "97 is prime."),
    ]
    answer = thread[1]
    # The "thoughts" node became the reasoning of the answer below it.
    assert answer.reasoning == "**Checking divisors**\n\nTry 7: 7 × 13 = 91."
    assert answer.model == "o3"
    assert answer.thought_seconds() == 4.0
    assert "<strong>91 = 7 × 13</strong>" in answer.html  # rendered as the chat renders
    # The regenerated answer is kept as a second version of the reply to the question.
    versions = Message.objects.filter(parent=thread[0]).order_by("created_at")
    assert [m.content for m in versions] == ["No: **91 = 7 × 13**.", "No, 91 is 7 times 13."]
    assert prime.current_leaf == thread[-1]

    plot = Conversation.objects.get(owner=alice, title="A plot")
    assert [(m.role, m.content) for m in visible(plot)] == [
        ("user", "Plot these numbers: 1, 4, 9"),  # the image is left out, the text kept
        ("assistant", "Here is the plot of the squares."),  # tool call and output left out
    ]


def test_deepseek_fragments_become_question_reasoning_and_answer(people):
    client, alice, _ = people
    job = preview_and_import(client, "conversations.json", fixture("deepseek-conversations.json"))
    assert (job["source"], job["imported"], job["imported_messages"]) == ("deepseek", 2, 7)
    chat = Conversation.objects.get(owner=alice, title="深度思考 – 素数")
    assert chat.created_at == dt.datetime(2025, 3, 29, 20, 49, 36, 505000, tzinfo=dt.UTC)
    question = Message.objects.get(conversation=chat, content="91 是素数吗？")
    first, regenerated = Message.objects.filter(parent=question).order_by("created_at")
    assert first.reasoning == "嗯，用户问 91 是不是素数。7 × 13 = 91。"
    assert first.content == "不是：**91 = 7 × 13**。"
    assert first.model == "deepseek-reasoner"
    assert first.thought_seconds() == 3.5
    assert regenerated.reasoning == ""
    assert regenerated.model == "deepseek-chat"
    # No current node in DeepSeek's export: the newest branch is shown, as DeepSeek shows it.
    assert chat.current_leaf == regenerated
    follow_up = Message.objects.get(conversation=chat, content="97 是素数。")
    assert follow_up.parent.parent == first
    search = Conversation.objects.get(owner=alice, title="Weather search")
    assert [m.content for m in visible(search)] == [
        "What is the weather in Hangzhou?",
        "Sunny, 24 °C.",
    ]


def test_open_webui_history_reasoning_pins_and_current_id(people):
    client, alice, _ = people
    job = preview_and_import(client, "chat-export.json", fixture("openwebui-chat-export.json"))
    assert (job["source"], job["imported"], job["imported_messages"]) == ("openwebui", 2, 7)
    chat = Conversation.objects.get(owner=alice, title="Reasoning in Open WebUI")
    assert chat.pinned
    assert chat.created_at == dt.datetime.fromtimestamp(1735689600, tz=dt.UTC)
    assert chat.updated_at == dt.datetime.fromtimestamp(1735689705, tz=dt.UTC)
    details = Message.objects.get(
        conversation=chat, model="deepseek-r1:8b", parent__content="Is 91 prime?"
    )
    assert details.content == "No, 91 = 7 × 13."
    assert details.reasoning == "Let me think.\n7 × 13 = 91."
    assert details.thought_seconds() == 5.0
    assert details.usage == {"prompt_tokens": 12, "completion_tokens": 30}
    think = Message.objects.get(conversation=chat, model="qwq:32b")
    assert (think.content, think.reasoning) == ("No.", "quick check")
    # currentId names the second answer, not the newest branch.
    assert chat.current_leaf == think
    assert [m.content for m in visible(chat)] == ["Is 91 prime?", "No."]
    old = Conversation.objects.get(owner=alice, title="Old export")
    assert [(m.role, m.content) for m in visible(old)] == [
        ("user", "Hello"),
        ("assistant", "Hi there!"),
    ]


def test_a_zip_with_conversations_json_is_read(people):
    client, alice, _ = people
    data = zipped(
        {
            "user.json": b'{"id": "me"}',
            "export/conversations.json": fixture("deepseek-conversations.json"),
        }
    )
    job = preview_and_import(client, "deepseek_data-2025.zip", data)
    assert (job["source"], job["imported"]) == ("deepseek", 2)
    assert Conversation.objects.filter(owner=alice).count() == 2


def test_importing_the_same_export_twice_skips_what_is_already_there(people):
    client, alice, _ = people
    preview_and_import(client, "c.json", fixture("openwebui-chat-export.json"))
    again = preview_and_import(client, "c.json", fixture("openwebui-chat-export.json"))
    assert (again["imported"], again["skipped_count"]) == (0, 2)
    assert {s["reason"] for s in again["skipped"]} == {"It was imported before."}
    assert Conversation.objects.filter(owner=alice).count() == 2


# --- bad files ----------------------------------------------------------------------------------


def _bomb() -> bytes:
    return zipped({"conversations.json": b"[" + b" " * 3_000_000 + b"]"})


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("photo.json", b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a JSON export (not UTF-8 text)"),
        ("c.json", b'[{"title": "x"', "not valid JSON (line 1, column 15"),
        ("c.json", b"", "The file is empty."),
        ("c.json", b'{"hello": "world"}', "not an export r1chat knows"),
        ("c.json", b'[{"title": "x", "messages": []}]', "not an export r1chat knows"),
        ("c.json", b"42", "not a list of conversations"),
        ("c.json", b"[]", "holds no conversations"),
        ("c.json", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        ("c.zip", b"PK\x03\x04 this is not really a zip", "damaged"),
        ("c.zip", b"PK\x05\x06" + b"\x00" * 18, "The zip file is empty."),
        ("c.zip", zipped({"notes.txt": b"hello"}), "holds no JSON file"),
        ("c.zip", zipped({"a.json": b"[]", "b.json": b"[]"}), "several JSON files"),
        ("c.zip", _bomb(), "conversations.json is bigger than 1.0\xa0MB unpacked"),
    ],
)
def test_a_bad_file_gets_a_clear_message_and_nothing_is_created(
    people, settings, name, data, message
):
    settings.R1CHAT_IMPORT_MAX_JSON_BYTES = 1024 * 1024
    client, alice, _ = people
    response = upload(client, name, data)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not ImportJob.objects.exists()
    assert not Conversation.objects.filter(owner=alice).exists()


def test_a_zip_bomb_is_stopped_at_the_limit_whatever_its_header_says(people, settings):
    """The member's declared size is small, its content is not: nothing past the declared size
    is read (zipfile stops there and the CRC fails), so the file is refused as damaged."""
    settings.R1CHAT_IMPORT_MAX_JSON_BYTES = 100_000
    client, _, _ = people
    big = zipped({"conversations.json": b"[" + b" " * 5_000_000 + b"]"})
    # Rewrite the declared uncompressed size (local header and central directory) to 10 bytes.
    lying = bytearray(big)
    real = (5_000_002).to_bytes(4, "little")
    index = lying.find(real)
    while index != -1:
        lying[index : index + 4] = (10).to_bytes(4, "little")
        index = lying.find(real, index + 4)
    response = upload(client, "c.zip", bytes(lying))
    assert response.status_code == 400
    assert "damaged" in response.json()["detail"]
    assert not ImportJob.objects.exists()


def test_a_file_over_the_size_limit_is_refused_with_both_sizes(people, settings):
    settings.R1CHAT_IMPORT_MAX_BYTES = 2000
    client, _, _ = people
    response = upload(client, "c.json", fixture("chatgpt-conversations.json"))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The file is 8.0\xa0KB;")
    assert "the limit is 2.0\xa0KB" in response.json()["detail"]


def test_too_many_conversations_or_messages_are_refused_or_skipped(people, settings):
    client, alice, _ = people
    settings.R1CHAT_IMPORT_MAX_CONVERSATIONS = 1
    response = upload(client, "c.json", fixture("deepseek-conversations.json"))
    assert response.status_code == 400
    assert "holds 2 conversations; at most 1" in response.json()["detail"]
    settings.R1CHAT_IMPORT_MAX_CONVERSATIONS = 100
    settings.R1CHAT_IMPORT_MAX_MESSAGES = 3
    job = preview_and_import(client, "c.json", fixture("deepseek-conversations.json"))
    assert (job["imported"], job["skipped_count"]) == (1, 1)
    assert (
        job["skipped"][0]["reason"] == "It has 5 messages; at most 3 are imported per conversation."
    )
    assert list(Conversation.objects.filter(owner=alice).values_list("title", flat=True)) == [
        "Weather search"
    ]


def test_a_conversation_the_database_refuses_leaves_no_rows_and_the_rest_is_imported(people):
    """The second conversation fails on its last message's insert (a negative max_tokens breaks
    the column's CHECK constraint): its conversation row, written before, is rolled back."""
    client, alice, _ = people

    def conversation(title: str, max_tokens: int) -> dict[str, Any]:
        return {
            "format": "r1chat", "version": 1, "title": title,
            "created_at": "2026-01-02T03:04:05+00:00", "updated_at": "2026-01-02T03:05:00+00:00",
            "messages": [
                {"id": f"{title}-q", "parent": None, "role": "user", "content": "q"},
                {"id": f"{title}-a", "parent": f"{title}-q", "role": "assistant",
                 "content": "a", "max_tokens": max_tokens},
            ],
        }  # fmt: skip

    export = {
        "format": "r1chat",
        "version": 1,
        "conversations": [
            conversation("one", 100),
            conversation("two", -5),
            conversation("three", 7),
        ],
    }
    job = preview_and_import(client, "all.json", json.dumps(export).encode())
    assert (job["imported"], job["skipped_count"]) == (2, 1)
    assert job["skipped"] == [{"title": "two", "reason": "The database refused it."}]
    assert sorted(Conversation.objects.filter(owner=alice).values_list("title", flat=True)) == [
        "one",
        "three",
    ]
    assert not Message.objects.filter(content="q", conversation__title="two").exists()
    assert Message.objects.filter(conversation__owner=alice).count() == 4


# --- progress, summary, access ----------------------------------------------------------------


def test_the_account_page_shows_the_summary(people):
    client, _, _ = people
    preview_and_import(client, "conversations.json", fixture("chatgpt-conversations.json"))
    html = client.get(reverse("accounts:account")).content.decode()
    assert 'id="section-transfer"' in html
    assert "Imported 2 conversations (7 messages)." in html
    assert "Skipped 1 conversation:" in html
    assert "Broken tree" in html


def test_the_form_works_without_scripts(people):
    client, alice, _ = people
    file = SimpleUploadedFile("c.json", fixture("openwebui-chat-export.json"))
    response = client.post(reverse("transfer:import-upload"), {"file": file})
    assert response.status_code == 302
    job = ImportJob.objects.get()
    assert client.post(reverse("transfer:import-start", args=[job.uuid])).status_code == 302
    assert Conversation.objects.filter(owner=alice).count() == 2
    bad = client.post(
        reverse("transfer:import-upload"),
        {"file": SimpleUploadedFile("x.json", b"nope")},
        follow=True,
    )
    assert "The file is not valid JSON" in bad.content.decode()


def test_another_users_import_is_not_found(people):
    client, _, bob = people
    job = upload(client, "c.json", fixture("openwebui-chat-export.json")).json()["job"]
    theirs = Client()
    theirs.force_login(bob)
    assert theirs.get(reverse("transfer:import-status", args=[job["id"]])).status_code == 404
    assert (
        theirs.post(reverse("transfer:import-start", args=[job["id"]]), **JSON).status_code == 404
    )
    assert ImportJob.objects.get().status == "ready"
    assert not Conversation.objects.exists()


def test_signed_out_visitors_cannot_import(db):
    response = Client().post(
        reverse("transfer:import-upload"), {"file": SimpleUploadedFile("c.json", b"[]")}
    )
    assert response.status_code in {302, 403}
    assert not ImportJob.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_import_runs_in_the_background_and_reports_progress(settings):
    settings.R1CHAT_IMPORT_IN_BACKGROUND = True
    alice, _ = personas()
    client = Client()
    client.force_login(alice)
    many = json.loads(fixture("openwebui-chat-export.json"))
    export = []
    for index in range(40):
        chat = json.loads(json.dumps(many[0]))
        chat["id"] = f"chat-{index}"
        chat["title"] = f"Chat {index}"
        export.append(chat)
    job = upload(client, "many.json", json.dumps(export).encode()).json()["job"]
    started = client.post(reverse("transfer:import-start", args=[job["id"]]), **JSON).json()["job"]
    assert started["status"] in {"queued", "running", "done"}
    seen = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = client.get(reverse("transfer:import-status", args=[job["id"]])).json()["job"]
        seen.add(state["processed"])
        if state["finished"]:
            break
        time.sleep(0.02)
    assert state["status"] == "done"
    assert state["imported"] == 40
    assert Conversation.objects.filter(owner=alice).count() == 40
    assert ImportJob.objects.get().payload in (b"", memoryview(b""))  # the file is not kept


@pytest.mark.django_db(transaction=True)
def test_a_job_whose_process_died_is_resumed_after_its_last_committed_conversation(settings):
    settings.R1CHAT_IMPORT_IN_BACKGROUND = False
    alice, _ = personas()
    client = Client()
    client.force_login(alice)
    job_id = upload(client, "c.json", fixture("deepseek-conversations.json")).json()["job"]["id"]
    job = ImportJob.objects.get(uuid=job_id)
    # A process took the job, committed the first conversation, then died (stale heartbeat).
    from transfer import formats, jobs

    job.status = ImportJob.Status.RUNNING
    job.save(update_fields=["status"])
    first = json.loads(fixture("deepseek-conversations.json"))[0]
    with __import__("django.db").db.transaction.atomic():
        jobs.import_conversation(job, formats.read("deepseek", first))
    ImportJob.objects.filter(pk=job.pk).update(
        processed=1,
        imported=1,
        imported_messages=5,
        heartbeat_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    )
    state = client.get(reverse("transfer:import-status", args=[job_id])).json()["job"]
    assert state["status"] == "done"
    assert (state["imported"], state["skipped_count"]) == (2, 0)
    assert Conversation.objects.filter(owner=alice).count() == 2


def test_stop_ends_a_running_import_after_the_conversation_it_is_writing(people):
    client, alice, _ = people
    job_id = upload(client, "c.json", fixture("deepseek-conversations.json")).json()["job"]["id"]
    # Queued but not yet taken by a worker: Stop is recorded, and the worker obeys it.
    ImportJob.objects.filter(uuid=job_id).update(status=ImportJob.Status.QUEUED)
    stopped = client.post(reverse("transfer:import-cancel", args=[job_id]), **JSON).json()["job"]
    assert stopped["status"] == "queued"
    from transfer import jobs

    jobs.run_job(ImportJob.objects.get(uuid=job_id).pk)
    state = client.get(reverse("transfer:import-status", args=[job_id])).json()["job"]
    assert (state["status"], state["imported"]) == ("cancelled", 0)
    assert not Conversation.objects.filter(owner=alice).exists()
    assert "The import was stopped." in client.get(reverse("accounts:account")).content.decode()


def test_a_preview_left_for_a_day_is_discarded_with_its_file(people):
    client, _, _ = people
    upload(client, "c.json", fixture("deepseek-conversations.json"))
    ImportJob.objects.update(created_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    client.get(reverse("accounts:account"))
    assert not ImportJob.objects.exists()
