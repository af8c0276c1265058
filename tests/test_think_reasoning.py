"""The reasoning block stays open after the answer (as DeepSeek's does); folding it is saved
for the user on the server, so a reload and other devices keep it folded."""

from __future__ import annotations

import json
import re

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


def _thinking_tags(html: str) -> list[str]:
    return re.findall(r'<details class="thinking"[^>]*>', html)


def _config(html: str) -> dict:
    raw = re.search(r'<script id="chat-config" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(raw.group(1))


def test_a_finished_answer_shows_its_reasoning_open(people):
    client, alice, _ = people
    conv = conversation(alice, turns=[("Q?", "Let me think.", "The answer.")])
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    tags = _thinking_tags(html)
    # The thread's answer and the template live answers are cloned from.
    assert len(tags) == 2 and all(" open" in tag for tag in tags)
    assert "Thought for 3 seconds" in html
    assert _config(html)["reasoning_expanded"] is True


def test_folding_is_saved_for_the_user_and_shown_folded_everywhere(people):
    client, alice, _ = people
    conv = conversation(alice, turns=[("Q?", "Let me think.", "The answer.")])
    response = client.post(
        reverse("api-settings"), {"reasoning_expanded": False}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["saved"] is True
    alice.refresh_from_db()
    assert alice.chat_defaults["reasoning_expanded"] is False
    # Another device (another session) shows it folded.
    other = Client()
    other.force_login(alice)
    html = other.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    assert all(" open" not in tag for tag in _thinking_tags(html))
    assert _config(html)["reasoning_expanded"] is False
    # Opened again: open again.
    client.post(
        reverse("api-settings"), {"reasoning_expanded": True}, content_type="application/json"
    )
    html = other.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    assert all(" open" in tag for tag in _thinking_tags(html))


def test_the_preference_must_be_true_or_false(people):
    client, alice, _ = people
    response = client.post(
        reverse("api-settings"), {"reasoning_expanded": "no"}, content_type="application/json"
    )
    assert response.status_code == 400
    alice.refresh_from_db()
    assert "reasoning_expanded" not in alice.chat_defaults


def test_an_answer_cut_off_at_the_length_shows_continue_generating(people):
    client, alice, _ = people
    conv = conversation(alice, turns=[("Q?", "Hmm.", "The start of a long")])
    Message.objects.filter(role="assistant").update(finish_reason="length")
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    thread = (
        html.split('id="thread"')[1].split('class="msg msg-assistant"')[1].split("</article>")[0]
    )
    assert re.search(r'<button type="button" class="btn continue-btn">', thread)
    assert "Continue generating" in thread
    # A whole answer has the button hidden.
    Message.objects.filter(role="assistant").update(finish_reason="stop")
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    thread = (
        html.split('id="thread"')[1].split('class="msg msg-assistant"')[1].split("</article>")[0]
    )
    assert re.search(r'class="btn continue-btn" hidden>', thread)
