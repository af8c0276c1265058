from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Message
from tests.views_support import conversation, personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


def test_markdown_export_marks_the_reasoning(people):
    client, alice, _ = people
    conv = conversation(
        alice,
        "Relativity",
        turns=[("What is E?", "First line of thought.\nSecond line.", "**Energy**: $E=mc^2$")],
    )
    response = client.get(reverse("conversation-export-md", args=[conv.uuid]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="Relativity.md"'
    assert response["X-Content-Type-Options"] == "nosniff"
    text = response.content.decode()
    assert text.startswith("# Relativity\n")
    assert "### You\n\nWhat is E?" in text
    assert "> **Reasoning**" in text
    assert "> First line of thought.\n> Second line." in text
    assert "**Energy**: $E=mc^2$" in text  # the markdown itself, not HTML


def test_json_export_keeps_reasoning_apart(people):
    client, alice, _ = people
    conv = conversation(alice, "Résumé 你好", turns=[("q1", "thinking 1", "a1"), ("q2", "", "a2")])
    response = client.get(reverse("conversation-export-json", args=[conv.uuid]))
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    # RFC 5987: the title as it reads, accents and CJK included.
    assert response["Content-Disposition"].endswith(
        "filename*=utf-8''R%C3%A9sum%C3%A9%20%E4%BD%A0%E5%A5%BD.json"
    )
    data = json.loads(response.content)
    assert data["title"] == "Résumé 你好"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "q1"), ("assistant", "a1"), ("user", "q2"), ("assistant", "a2"),
    ]  # fmt: skip
    assert data["messages"][1]["reasoning"] == "thinking 1"
    assert data["messages"][3]["reasoning"] is None
    assert data["messages"][1]["usage"]["completion_tokens"] == 40
    assert data["messages"][1]["timings"]["thought_seconds"] == 3.0


def test_exports_follow_the_visible_thread(people):
    client, alice, _ = people
    conv = conversation(alice, "Versions", turns=[("question", "", "first answer")])
    question = Message.objects.get(role="user")
    newer = Message.objects.create(
        conversation=conv, parent=question, role="assistant", content="second answer",
        status="complete",
    )  # fmt: skip
    conv.current_leaf = newer
    conv.save()
    text = client.get(reverse("conversation-export-md", args=[conv.uuid])).content.decode()
    assert "second answer" in text
    assert "first answer" not in text


def test_export_shows_unfinished_answers_as_such(people):
    client, alice, _ = people
    conv = conversation(alice, "Err", turns=[("q", "", "partial")])
    Message.objects.filter(role="assistant").update(status="error", error_code="timeout")
    text = client.get(reverse("conversation-export-md", args=[conv.uuid])).content.decode()
    assert "partial" in text
    assert "_(error: timeout)_" in text


@pytest.mark.parametrize("name", ["conversation-export-md", "conversation-export-json"])
def test_another_users_export_is_not_found(people, name):
    client, _, bob = people
    theirs = conversation(bob, "Bob's", turns=[("secret", "", "secret")])
    response = client.get(reverse(name, args=[theirs.uuid]))
    assert response.status_code == 404
    assert b"secret" not in response.content


def test_export_file_names_keep_dashes_and_cjk_but_not_path_separators(people):
    client, alice, _ = people
    conv = conversation(alice, "Plan – 计划 / v2: draft?", turns=[("q", "", "a")])
    response = client.get(reverse("conversation-export-md", args=[conv.uuid]))
    disposition = response["Content-Disposition"]
    # "Plan – 计划 v2 draft" in UTF-8, percent-encoded; "/", ":" and "?" are gone.
    assert disposition.endswith(
        "filename*=utf-8''Plan%20%E2%80%93%20%E8%AE%A1%E5%88%92%20v2%20draft.md"
    )


def test_json_export_holds_every_version_for_re_import(people):
    client, alice, _ = people
    conv = conversation(alice, "Versions", turns=[("question", "", "first answer")])
    question = Message.objects.get(role="user")
    first = Message.objects.get(role="assistant")
    second = Message.objects.create(
        conversation=conv, parent=question, role="assistant", content="second answer",
        status="complete",
    )  # fmt: skip
    data = json.loads(client.get(reverse("conversation-export-json", args=[conv.uuid])).content)
    assert (data["format"], data["version"]) == ("r1chat", 1)
    assert data["current_leaf"] == str(first.uuid)
    assert data["thread"] == [str(question.uuid), str(first.uuid)]
    by_id = {m["id"]: m for m in data["messages"]}
    assert by_id[str(second.uuid)]["parent"] == str(question.uuid)
