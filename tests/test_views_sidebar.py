from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from conversations import views
from conversations.models import Conversation
from tests.views_support import conversation, personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    client.cookies["tz"] = "UTC"
    return client, alice, bob


def page(client, **params):
    response = client.get(reverse("api-conversations"), params)
    assert response.status_code == 200
    return response.json()


def test_conversations_are_grouped_by_date_with_pinned_first(people):
    client, alice, _ = people
    conversation(alice, "now", ago=dt.timedelta(0))  # (a few minutes ago may be yesterday)
    conversation(alice, "pinned old", ago=dt.timedelta(days=400), pinned=True)
    conversation(alice, "three days", ago=dt.timedelta(days=3))
    conversation(alice, "two weeks", ago=dt.timedelta(days=14))
    conversation(alice, "long ago", ago=dt.timedelta(days=90))
    # Yesterday at noon in UTC, whatever the time is now.
    noon = timezone.now().replace(hour=12, minute=0) - dt.timedelta(days=1)
    conversation(alice, "yesterday", ago=timezone.now() - noon)
    items = page(client)["items"]
    assert [(i["title"], i["group"]) for i in items] == [
        ("pinned old", "pinned"),
        ("now", "today"),
        ("yesterday", "yesterday"),
        ("three days", "week"),
        ("two weeks", "month"),
        ("long ago", (timezone.now() - dt.timedelta(days=90)).strftime("%Y-%m")),
    ]
    assert items[0]["group_label"] == "Pinned"
    assert items[-1]["group_label"]  # "August 2026"


def test_pages_follow_each_other_without_gaps_or_repeats(people, monkeypatch):
    client, alice, _ = people
    monkeypatch.setattr(views, "SIDEBAR_PAGE", 7)
    same_moment = timezone.now() - dt.timedelta(hours=1)
    for i in range(20):
        conversation(alice, f"c{i}", ago=dt.timedelta(minutes=i))
    for i in range(5):  # identical timestamps: the id breaks the tie
        Conversation.objects.create(owner=alice, title=f"tie{i}", updated_at=same_moment)
    for i in range(3):
        conversation(alice, f"p{i}", ago=dt.timedelta(days=i), pinned=True)
    seen, cursor, pages = [], None, 0
    while True:
        data = page(client, cursor=cursor) if cursor else page(client)
        seen += [i["title"] for i in data["items"]]
        pages += 1
        cursor = data["next"]
        if not cursor:
            break
    expected = list(
        Conversation.objects.filter(owner=alice)
        .order_by("-pinned", "-updated_at", "-id")
        .values_list("title", flat=True)
    )
    assert seen == expected
    assert len(seen) == 28 and pages == 4


def test_the_first_page_is_fast_with_many_conversations(people):
    client, alice, _ = people
    now = timezone.now()
    Conversation.objects.bulk_create(
        Conversation(owner=alice, title=f"chat {i}", updated_at=now - dt.timedelta(minutes=i))
        for i in range(10_000)
    )
    client.get(reverse("api-conversations"))
    for url in (reverse("api-conversations"), reverse("home")):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        # A constant number of queries; the time is bench/sidebar.py's (not a timed test).
        assert len(queries) <= 6, [q["sql"] for q in queries.captured_queries]
    # A page deep in the list costs the same queries.
    data = page(client)
    for _ in range(5):
        data = page(client, cursor=data["next"])
    with CaptureQueriesContext(connection) as queries:
        page(client, cursor=data["next"])
    assert len(queries) <= 6


def test_another_users_conversations_never_show(people):
    client, _alice, bob = people
    conversation(bob, "Bob's")
    assert page(client)["items"] == []


def test_a_broken_cursor_is_not_found(people):
    client, _, _ = people
    response = client.get(reverse("api-conversations"), {"cursor": "not-a-cursor"})
    assert response.status_code == 404


def test_the_page_renders_the_first_page_of_the_sidebar(people):
    client, alice, _ = people
    conversation(alice, "Hello <script>")
    html = client.get(reverse("home")).content.decode()
    assert "Hello &lt;script&gt;" in html
    assert 'class="conv-group" data-group="today">Today<' in html
