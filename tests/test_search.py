"""Search (`/api/search`): ranking, snippets, Chinese, reasoning, paging, ownership, the index
kept in step with every write, and the jump to a message on another version.

Personas: Alice searches her own conversations; Bob's hold the same words and must never show.
Most tests run twice: through the scan of the newest conversations (`window` 200, the default)
and through the trigram index alone (`window` 0), so both ways of finding a match are proven.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.models import Conversation, Message
from conversations.search import query
from r1chat.text import CleanCharField
from tests.views_support import conversation, personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> tuple[Client, Any, Any]:
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


@pytest.fixture(params=["scan", "index"])
def window(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """The newest conversations scanned before the index is asked: 200, or none at all."""
    size = query.WINDOW if request.param == "scan" else 0
    monkeypatch.setattr(query, "WINDOW", size)
    return size


def search(client: Client, q: str, **params: Any) -> dict[str, Any]:
    response = client.get(reverse("api-search"), {"q": q, **params})
    assert response.status_code == 200, response.content
    return response.json()


def titles(client: Client, q: str, **params: Any) -> list[str]:
    return [r["title"] for r in search(client, q, **params)["results"]]


def test_title_hits_come_first_then_the_newest(people, window):
    client, alice, _bob = people
    conversation(alice, "Old kettle", ago=dt.timedelta(days=9))
    conversation(alice, "Tea", ago=dt.timedelta(hours=1), turns=[("a kettle?", "", "Yes.")])
    conversation(alice, "Kettle descaling", ago=dt.timedelta(days=2))
    conversation(alice, "Water", ago=dt.timedelta(days=1), turns=[("boil", "", "Use a KETTLE")])
    conversation(alice, "Coffee", turns=[("beans", "", "grind them")])
    assert titles(client, "kettle") == ["Kettle descaling", "Old kettle", "Tea", "Water"]
    results = search(client, "kettle")["results"]
    assert [r["where"] for r in results] == ["title", "title", "question", "answer"]
    assert results[0]["title_html"] == "<mark>Kettle</mark> descaling"


def test_every_term_must_match_in_one_message(people, window):
    client, alice, _bob = people
    conversation(alice, "A", turns=[("rust ownership", "", "borrowing rules")])
    conversation(alice, "B", turns=[("rust", "", "async runtimes")])
    assert titles(client, "rust borrowing") == []
    assert titles(client, "Ownership rust") == ["A"]
    assert titles(client, "  ") == []


def test_a_snippet_is_escaped_text_with_the_matches_marked(people, window):
    client, alice, _bob = people
    answer = "Intro. " * 30 + "Never run <script>alert('x')</script> from a stranger & friends."
    conversation(alice, "Safety", turns=[("scripts?", "", answer)])
    [result] = search(client, "stranger")["results"]
    snippet = result["snippet_html"]
    assert "<script>" not in snippet
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in snippet
    assert "<mark>stranger</mark> &amp; friends." in snippet
    assert snippet.startswith("…")  # the window starts near the match, not at "Intro."
    [result] = search(client, "<script>")["results"]
    assert "<mark>&lt;script&gt;</mark>" in result["snippet_html"]


def test_chinese_is_found_without_word_boundaries(people, window):
    client, alice, bob = people
    conversation(alice, "排序", turns=[("怎样快速排序一个数组？", "", "可以使用快速排序算法。")])
    conversation(alice, "首都", turns=[("中华人民共和国的首都是哪里？", "", "北京。")])
    conversation(alice, "天气", turns=[("今天天气怎么样", "", "晴天")])
    conversation(bob, "鲍勃", turns=[("快速", "", "中华人民共和国")])
    # Two characters: no trigram, matched within Alice's own rows.
    assert titles(client, "快速") == ["排序"]
    assert titles(client, "首都") == ["首都"]
    # Three and more: through the index when the scan does not find them first.
    assert titles(client, "排序算法") == ["排序"]
    assert titles(client, "人民共和国") == ["首都"]
    [result] = search(client, "排序算法")["results"]
    assert "快速<mark>排序算法</mark>" in result["snippet_html"]
    assert titles(client, "排序 数组") == ["排序"]  # two terms, one short and one long


def test_reasoning_is_searched_only_when_asked(people, window):
    client, alice, _bob = people
    conversation(alice, "Puzzle", turns=[("riddle", "Perhaps the answer is a zeppelin.", "An egg")])
    assert titles(client, "zeppelin") == []
    [result] = search(client, "zeppelin", reasoning="1")["results"]
    assert result["where"] == "reasoning"
    assert "<mark>zeppelin</mark>" in result["snippet_html"]
    assert titles(client, "zeppelin", reasoning="0") == []


def test_a_result_names_the_message_it_jumps_to(people, window):
    client, alice, _bob = people
    turns = [("pack", "", "Bring a compass."), ("and?", "", "A map")]
    conv = conversation(alice, "Trip", turns=turns)
    compass = Message.objects.get(content="Bring a compass.")
    [result] = search(client, "compass")["results"]
    assert result["conversation"] == str(conv.uuid)
    assert result["message"] == str(compass.uuid)
    assert result["url"] == f"/c/{conv.uuid}/?m={compass.uuid}"


def test_pages_follow_each_other_without_gaps_or_repeats(people, window, monkeypatch):
    client, alice, _bob = people
    monkeypatch.setattr(query, "PAGE_SIZE", 3)
    same_moment = timezone.now() - dt.timedelta(hours=3)
    expected = []
    for i in range(4):
        expected.append(f"Lamp {i}")
        conversation(alice, f"Lamp {i}", ago=dt.timedelta(minutes=i))
    for i in range(5):  # text hits, some at the same moment (the tie-break is the id)
        conv = conversation(alice, f"Note {i}", turns=[("the lamp", "", "ok")])
        Conversation.objects.filter(pk=conv.pk).update(
            updated_at=same_moment if i < 3 else same_moment - dt.timedelta(hours=i)
        )
    conversation(alice, "Unrelated", turns=[("chairs", "", "ok")])
    seen = []
    page = search(client, "lamp")
    while True:
        seen += [r["title"] for r in page["results"]]
        if not page["next"]:
            break
        page = search(client, "lamp", cursor=page["next"])
    assert seen[:4] == expected
    assert sorted(seen[4:]) == [f"Note {i}" for i in range(5)]
    assert len(seen) == len(set(seen)) == 9


def test_a_cursor_works_only_for_its_own_query(people):
    client, alice, _bob = people
    for i in range(25):
        conversation(alice, f"Plant {i}")
    page = search(client, "plant")
    assert len(page["results"]) == query.PAGE_SIZE and page["next"]
    url = reverse("api-search")
    for params in (
        {"q": "plants", "cursor": page["next"]},
        {"q": "plant", "cursor": page["next"], "reasoning": "1"},
        {"q": "plant", "cursor": page["next"][:-2] + "xx"},
        {"q": "plant", "cursor": "garbage"},
    ):
        response = client.get(url, params)
        assert response.status_code == 400
        assert response.json()["error"] == "bad_cursor"
        assert response.json()["detail"]


def test_bad_input_gets_a_clear_error(people):
    client, _alice, _bob = people
    response = client.get(reverse("api-search"), {"q": "x" * 201})
    assert response.status_code == 400
    assert "200" in response.json()["detail"]
    assert search(client, "")["results"] == []
    assert search(client, "%")["results"] == []
    assert search(client, "a\x00b")["results"] == []


def test_like_wildcards_are_searched_as_text(people, window):
    client, alice, _bob = people
    conversation(alice, "Discount", turns=[("how much?", "", "It is 50% off_today")])
    conversation(alice, "Other", turns=[("50 apples", "", "offtoday")])
    assert titles(client, "50%") == ["Discount"]
    assert titles(client, "off_today") == ["Discount"]


def test_other_users_conversations_never_appear(people, window):
    client, alice, bob = people
    conversation(bob, "Bob's secret recipe", turns=[("secret", "secret", "secret sauce")])
    assert titles(client, "secret") == []
    assert titles(client, "secret", reasoning="1") == []
    conversation(alice, "Mine", turns=[("secret", "", "ok")])
    assert titles(client, "secret", reasoning="1") == ["Mine"]
    anonymous = Client().get(reverse("api-search"), {"q": "secret"})
    assert anonymous.status_code == 302  # to the sign-in page, with nothing found
    assert anonymous["Location"].startswith(reverse("account_login"))


def test_the_index_follows_every_write(people):
    """Edits, renames and deletes through the ORM, the actions and bulk statements: the
    index (asked alone, `window=0`) always agrees with the rows."""
    client, alice, _bob = people

    def found(q: str, **kwargs: Any) -> list[str]:
        return [h.title for h in query.search(alice, q, window=0, **kwargs).hits]

    conv = conversation(alice, "Garden", turns=[("tomatoes", "maybe basil", "water daily")])
    answer = conv.messages.get(role="assistant")
    assert found("tomatoes") == ["Garden"]
    # An edited text (a queryset update, as the runner writes).
    Message.objects.filter(pk=answer.pk).update(content="prune weekly", reasoning="perhaps mint")
    assert found("water daily") == []
    assert found("prune weekly") == ["Garden"]
    assert found("basil", reasoning=True) == []
    assert found("mint", reasoning=True) == ["Garden"]
    assert found("perhaps", reasoning=True) == ["Garden"]
    # A save() of the whole row.
    answer.refresh_from_db()
    answer.content = "harvest in august"
    answer.save()
    assert found("prune") == []
    assert found("harvest") == ["Garden"]
    # A rename through the endpoint.
    response = client.post(
        reverse("conversation-rename", args=[conv.uuid]),
        json.dumps({"title": "Vegetable patch"}),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert titles(client, "garden") == []
    assert titles(client, "vegetable") == ["Vegetable patch"]
    assert found("vegetable") == ["Vegetable patch"]
    # Bulk inserts keep it too.
    other = Conversation.objects.create(owner=alice, title="Bulk")
    rows = [Message(conversation=other, role="user", content=f"row {i} pumpkin") for i in range(3)]
    Message.objects.bulk_create(rows)
    assert found("pumpkin") == ["Bulk"]
    # A deleted message, then a deleted conversation, are gone.
    other.messages.all().delete()
    assert found("pumpkin") == []
    response = client.post(reverse("conversation-delete", args=[conv.uuid]))
    assert response.status_code == 200
    assert found("harvest") == []
    assert titles(client, "vegetable") == []
    assert titles(client, "harvest") == []


def test_a_streaming_answer_is_found_once_it_ends(people, window):
    client, alice, _bob = people
    conv = conversation(alice, "Live", turns=[("stream", "", "")])
    answer = conv.messages.get(role="assistant")
    Message.objects.filter(pk=answer.pk).update(status="streaming", content="half a giraffe")
    assert titles(client, "giraffe") == []
    Message.objects.filter(pk=answer.pk).update(status="complete", content="a whole giraffe")
    assert titles(client, "giraffe") == ["Live"]


def test_a_deleted_conversation_disappears(people, window):
    client, alice, _bob = people
    conv = conversation(alice, "Temporary", turns=[("ephemeral", "", "gone soon")])
    assert titles(client, "ephemeral") == ["Temporary"]
    client.post(reverse("conversation-delete", args=[conv.uuid]))
    assert titles(client, "ephemeral") == []
    assert titles(client, "temporary") == []
    # Undo brings it back to the results.
    client.post(reverse("conversation-restore", args=[conv.uuid]))
    assert titles(client, "ephemeral") == ["Temporary"]


def test_the_jump_shows_the_version_that_holds_the_message(people):
    client, alice, _bob = people
    conv = conversation(alice, "Versions", turns=[("capital of France?", "", "Lyon")])
    question = conv.messages.get(role="user")
    first = conv.messages.get(role="assistant")
    second = Message.objects.create(
        conversation=conv, parent=question, role="assistant", content="Paris", status="complete"
    )
    conv.current_leaf = second
    conv.save(update_fields=["current_leaf"])
    [result] = search(client, "lyon")["results"]
    assert result["message"] == str(first.uuid)
    page = client.get(result["url"])
    assert page.status_code == 200
    html = page.content.decode()
    assert f'data-id="{first.uuid}"' in html
    assert f'data-id="{second.uuid}"' not in html
    conv.refresh_from_db()
    assert conv.current_leaf_id == first.pk  # what the composer continues is what is shown
    # A message on the shown thread changes nothing; an unknown or foreign id is ignored.
    assert client.get(f"/c/{conv.uuid}/?m={question.uuid}").status_code == 200
    assert client.get(f"/c/{conv.uuid}/?m=nonsense").status_code == 200
    conv.refresh_from_db()
    assert conv.current_leaf_id == first.pk


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's triggers")
@pytest.mark.django_db(transaction=True)
def test_a_table_rebuilt_by_a_migration_keeps_its_index():
    """Django rebuilds a SQLite table to alter a column, which drops the table's triggers:
    after `migrate` they are back, and the index agrees with the rows again."""
    alice, _bob = personas()
    conv = conversation(alice, "Orchard", turns=[("apples", "", "pears")])
    old = Message._meta.get_field("finish_reason")
    wider = CleanCharField(max_length=old.max_length + 1, blank=True)
    wider.set_attributes_from_name("finish_reason")
    wider.model = Message
    with connection.schema_editor() as editor:
        editor.alter_field(Message, old, wider)
    try:
        Message.objects.filter(conversation=conv, role="assistant").update(content="plums")
        call_command("migrate", verbosity=0)
        assert [h.title for h in query.search(alice, "plums", window=0).hits] == ["Orchard"]
        assert query.search(alice, "pears", window=0).hits == []
        Message.objects.filter(conversation=conv, role="assistant").update(content="cherries")
        assert [h.title for h in query.search(alice, "cherries", window=0).hits] == ["Orchard"]
    finally:
        with connection.schema_editor() as editor:
            editor.alter_field(Message, wider, old)
        call_command("migrate", verbosity=0)


def test_a_short_query_out_of_time_goes_on_where_it_stopped(people, monkeypatch):
    """A rare short term is scanned a slice per request: a page may be short, even empty,
    and its cursor goes on from where the scan stopped, with no gap and no repeat."""
    client, alice, _bob = people
    monkeypatch.setattr(query, "WINDOW", 1)
    monkeypatch.setattr(query, "MAX_WINDOW", 2)
    monkeypatch.setattr(query, "SCAN_SECONDS", -1.0)  # out of time after every slice
    expected = []
    for i in range(12):
        found = i % 4 == 0
        title = f"Chat {i}"
        conversation(
            alice, title, ago=dt.timedelta(hours=i), turns=[("鲸鱼" if found else "猫", "", "")]
        )
        if found:
            expected.append(title)
    seen, pages = [], 0
    page = search(client, "鲸鱼")
    while True:
        pages += 1
        seen += [r["title"] for r in page["results"]]
        if not page["next"]:
            break
        page = search(client, "鲸鱼", cursor=page["next"])
    assert seen == expected
    assert pages > len(expected)  # some pages came back short
