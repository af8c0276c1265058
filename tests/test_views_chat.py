from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.models import Message
from tests.views_support import conversation, personas, unverified_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client():
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


def test_home_shows_the_empty_chat(alice_client):
    client, _alice, _ = alice_client
    response = client.get(reverse("home"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="composer-input"' in html
    assert 'id="empty-state"' in html
    assert 'type="module"' in html
    config = json.loads(
        re.search(r'id="chat-config" type="application/json">(.*?)</script>', html).group(1)
    )
    assert config["conversation"] is None
    assert config["settings"]["temperature"] == 0.6
    assert config["settings"]["max_tokens"] == 2048
    assert config["urls"]["ws"] == "/ws/chat/"


def test_anonymous_visitors_are_sent_to_sign_in():
    response = Client().get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_users_who_cannot_chat_yet_are_sent_to_verify():
    client = Client()
    client.force_login(unverified_user())
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:verify_required")
    api = client.get(reverse("api-conversations"))
    assert api.status_code == 403


def test_the_conversation_page_prerenders_the_thread(alice_client):
    client, alice, _ = alice_client
    conv = conversation(
        alice,
        "Physics",
        turns=[("What is <E>?", "Let me think <b>hard</b>.", "It is **energy**: $E=mc^2$")],
    )
    response = client.get(reverse("conversation-detail", args=[conv.uuid]))
    assert response.status_code == 200
    html = response.content.decode()
    # The user's text is escaped text; the reasoning and the answer are the server's HTML (in
    # which raw HTML is text).
    assert "What is &lt;E&gt;?" in html
    assert "Let me think &lt;b&gt;hard&lt;/b&gt;." in html
    assert "<strong>energy</strong>" in html
    assert "<math" in html
    assert "Thought for 3 seconds" in html
    assert 'data-status="complete"' in html
    assert f'class="conv-item is-active" data-id="{conv.uuid}"' in html


def test_the_reasoning_is_rendered_markdown_on_the_page_and_in_the_api(alice_client):
    client, alice, _ = alice_client
    conv = conversation(alice, "R", turns=[("Q", "## Plan\n\nThink **hard** about $x^2$.", "A")])
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    reasoning = html.split('<div class="thinking-stable">', 1)[1].split("</details>", 1)[0]
    assert reasoning.startswith("<h2>Plan</h2>")
    assert "<strong>hard</strong>" in reasoning and "<math" in reasoning
    assert "**" not in reasoning and "$" not in reasoning
    data = client.get(reverse("api-conversation-thread", args=[conv.uuid])).json()
    assert data["messages"][1]["reasoning_html"].startswith("<h2>Plan</h2>")
    assert data["messages"][1]["reasoning"] == "## Plan\n\nThink **hard** about $x^2$."


def test_a_message_still_streaming_shows_its_unfinished_end_rendered(alice_client):
    client, alice, _ = alice_client
    conv = conversation(alice, "S", turns=[("Q", "Think about `co", "It is **ener")])
    Message.objects.filter(role="assistant").update(status="streaming", finished_at=None)
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    assert '<div class="thinking-stable"><p>Think about <code>co</code></p>' in html
    assert '<div class="answer-stable"><p>It is <strong>ener</strong></p>' in html


def test_text_in_a_messages_attributes_stays_inside_them(alice_client):
    client, alice, _ = alice_client
    conv = conversation(alice, turns=[("q", "r", "a")])
    payload = 'x" onmouseover="alert(1)'
    Message.objects.filter(role="assistant").update(model=payload, usage={"k": payload})
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    assert 'data-model="x&quot; onmouseover=&quot;alert(1)"' in html
    assert 'onmouseover="alert' not in html
    assert "&quot;k&quot;: &quot;x\\&quot; onmouseover=" in html  # the usage JSON, escaped


def test_the_page_has_no_inline_styles_or_scripts(alice_client):
    client, alice, _ = alice_client
    conv = conversation(alice, turns=[("q", "r", "a\n\n```python\nprint(1)\n```")])
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    assert " style=" not in html
    for script in re.findall(r"<script[^>]*>", html):
        assert 'type="application/json"' in script or "src=" in script


def test_an_error_is_shown_inside_its_message(alice_client):
    client, alice, _ = alice_client
    conv = conversation(alice, turns=[("q", "", "partial")])
    Message.objects.filter(role="assistant").update(status="error", error_code="rate_limited")
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    assert "rate limiting requests" in html
    assert "partial" in html
    assert re.search(r'<button type="button" class="retry-btn">', html)


def test_running_out_of_tokens_while_thinking_is_said(alice_client):
    client, alice, _ = alice_client
    conv = conversation(alice, turns=[("q", "thinking…", "")])
    Message.objects.filter(role="assistant").update(
        reasoning_unterminated=True, finish_reason="length"
    )
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    assert "ran out of tokens while thinking" in html


def test_another_users_conversation_is_not_found(alice_client):
    client, _alice, bob = alice_client
    theirs = conversation(bob, "Bob's secret", turns=[("secret question", "", "secret answer")])
    response = client.get(reverse("conversation-detail", args=[theirs.uuid]))
    assert response.status_code == 404
    assert b"secret" not in response.content
    missing = client.get("/c/00000000-0000-4000-8000-000000000000/")
    assert missing.status_code == 404
    thread = client.get(reverse("api-conversation-thread", args=[theirs.uuid]))
    assert thread.status_code == 404


def test_the_thread_api_returns_the_visible_thread(alice_client):
    client, alice, _ = alice_client
    conv = conversation(alice, "T", turns=[("one", "", "1"), ("two", "", "2")])
    data = client.get(reverse("api-conversation-thread", args=[conv.uuid])).json()
    assert data["conversation"] == str(conv.uuid)
    assert [m["content"] for m in data["messages"]] == ["one", "1", "two", "2"]


def test_a_long_conversation_opens_with_constant_queries(alice_client):
    # Its time is measured by bench/sidebar.py (budget 150 ms), not asserted here.
    client, alice, _ = alice_client
    turns = [(f"question {i}", f"reasoning {i}", f"answer **{i}**\n\n- a\n- b") for i in range(250)]
    conv = conversation(alice, "Long", turns=turns)
    from conversations.rendering import render_markdown

    for message in Message.objects.filter(role="assistant"):  # the cached HTML
        message.html = render_markdown(message.content)
        message.save(update_fields=["html"])
    url = reverse("conversation-detail", args=[conv.uuid])
    client.get(url)  # warm the template cache
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert response.content.decode().count('class="msg msg-') == 500 + 2  # and two templates
    assert len(queries) <= 12


def test_the_page_is_translated(alice_client):
    client, _, _ = alice_client
    response = client.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert '<html lang="zh-hans"' in response.content.decode()


def test_the_theme_comes_from_the_account(alice_client):
    client, alice, _ = alice_client
    alice.theme = "dark"
    alice.save()
    html = client.get(reverse("home")).content.decode()
    assert 'data-theme="dark"' in html


def test_dates_in_the_sidebar_use_the_browsers_time_zone(alice_client):
    client, alice, _ = alice_client
    conversation(alice, "Old", ago=dt.timedelta(days=3))
    client.cookies["tz"] = "Asia/Shanghai"
    html = client.get(reverse("home")).content.decode()
    assert "Previous 7 days" in html
