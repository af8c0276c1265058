"""The thumbs on the chat page: the user's rating is pre-rendered (aria-pressed) in one query."""

from __future__ import annotations

import json
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.models import Message
from review.models import Feedback
from tests.views_support import conversation, personas

pytestmark = pytest.mark.django_db

THUMB = re.compile(r'<button type="button" class="icon-btn act-rate" data-rating="(up|down)" '
                   r'aria-pressed="(true|false)"')  # fmt: skip


@pytest.fixture
def alice_client():
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


def thumbs(html: str) -> list[tuple[str, str]]:
    """(rating, pressed) of every thumb on the page, in order (the two templates last)."""
    return THUMB.findall(html)


def answers(conv) -> list[Message]:
    return list(Message.objects.filter(conversation=conv, role="assistant").order_by("id"))


def page(client: Client, conv) -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("conversation-detail", args=[conv.uuid]))
    assert response.status_code == 200
    return response.content.decode(), [q["sql"] for q in queries.captured_queries]


def test_a_rated_answer_is_shown_pressed_in_a_constant_number_of_queries(alice_client):
    client, alice, bob = alice_client
    small = conversation(alice, "Small", turns=[("q", "r", "a")])
    big = conversation(alice, "Big", turns=[(f"q{i}", f"r{i}", f"a{i}") for i in range(30)])
    first, second, third = answers(big)[:3]
    Feedback.objects.create(user=alice, message=first, rating="down", reason="Wrong")
    Feedback.objects.create(user=alice, message=third, rating="up")
    Feedback.objects.create(user=bob, message=second, rating="down")  # not Alice's: not shown

    _small_html, small_queries = page(client, small)
    big_html, big_queries = page(client, big)

    assert len(big_queries) == len(small_queries)
    assert sum("review_feedback" in sql for sql in big_queries) == 1
    shown = thumbs(big_html)
    assert len(shown) == 2 * 30 + 2  # every answer, and the blank template
    assert shown[0:2] == [("up", "false"), ("down", "true")]
    assert shown[2:4] == [("up", "false"), ("down", "false")]
    assert shown[4:6] == [("up", "true"), ("down", "false")]
    assert all(pressed == "false" for _, pressed in shown[6:])  # the rest, and live ones
    # The scripts get every rated version and where to post.
    config = json.loads(re.search(r'id="chat-config"[^>]*>(.*?)</script>', big_html, re.S)[1])
    assert config["feedback"] == {str(first.uuid): "down", str(third.uuid): "up"}
    assert config["urls"]["feedback"] == reverse(
        "review:feedback", args=["00000000-0000-0000-0000-000000000000"]
    )
    assert 'aria-label="Good answer"' in big_html and 'aria-label="Bad answer"' in big_html
    assert '<symbol id="i-thumb-up"' in big_html and '<symbol id="i-thumb-down"' in big_html
    strings = json.loads(re.search(r'id="chat-strings"[^>]*>(.*?)</script>', big_html, re.S)[1])
    assert strings["feedback_reason"] and strings["feedback_thanks"]


def test_an_older_version_keeps_its_rating_for_the_scripts(alice_client):
    client, alice, _ = alice_client
    conv = conversation(alice, "Versions", turns=[("q", "r", "first answer")])
    old = answers(conv)[0]
    newer = Message.objects.create(
        conversation=conv, parent=old.parent, role="assistant", content="second", status="complete"
    )
    conv.current_leaf = newer
    conv.save(update_fields=["current_leaf"])
    Feedback.objects.create(user=alice, message=old, rating="down")
    html, _queries = page(client, conv)
    assert thumbs(html)[:2] == [("up", "false"), ("down", "false")]  # the shown version: unrated
    config = json.loads(re.search(r'id="chat-config"[^>]*>(.*?)</script>', html, re.S)[1])
    assert config["feedback"] == {str(old.uuid): "down"}


def test_the_empty_chat_needs_no_feedback_query(alice_client):
    client, _alice, _ = alice_client
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("home"))
    assert response.status_code == 200
    assert not any("review_feedback" in q["sql"] for q in queries.captured_queries)
    assert thumbs(response.content.decode()) == [("up", "false"), ("down", "false")]
