"""The review page shows the thread as the user saw it: same HTML, reasoning folded, versions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Message
from review.models import Feedback
from review.testing import add_answer, make_conversation, make_personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


@pytest.fixture
def root_client(people: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(people["root"])
    return client


def review(client: Client, conversation: Any) -> str:
    response = client.get(
        reverse("admin:conversations_conversation_review", args=[conversation.uuid])
    )
    assert response.status_code == 200
    return response.content.decode()


def test_it_shows_the_cached_html_and_folded_reasoning(
    people: dict[str, Any], root_client: Client
) -> None:
    conversation, _, answer = make_conversation(
        people["alice"], usage={"prompt_tokens": 11, "completion_tokens": 29}
    )
    html = review(root_client, conversation)
    assert answer.html in html  # the renderer's cached output, byte for byte
    assert "<strong>91 = 7 × 13</strong>" in html
    assert '<details class="r1-reasoning">' in html
    assert "Thought for 3 s" in html
    assert "Try 7: 7 × 13 = 91." in html
    assert "11 prompt, 29 completion tokens" in html
    assert "first answer" in html and "3.2 s" in html  # timings in seconds
    assert "Is 91 prime?" in html


def test_a_message_without_cached_html_is_rendered_by_the_same_renderer(
    people: dict[str, Any], root_client: Client
) -> None:
    conversation, _, answer = make_conversation(people["alice"], answer="A *fresh* answer")
    Message.objects.filter(pk=answer.pk).update(html="")
    assert "<em>fresh</em>" in review(root_client, conversation)


def test_every_version_of_a_regenerated_or_edited_message_is_shown(
    people: dict[str, Any], root_client: Client
) -> None:
    conversation, asked, _ = make_conversation(people["alice"], answer="First try")
    second = add_answer(asked, "Second try")
    third = add_answer(asked, "Third try")
    # An edited question with its own answer, and a follow-up under the second answer.
    edited = Message.objects.create(
        conversation=conversation, role="user", content="Is 97 prime?", created_at=asked.created_at
    )
    add_answer(edited, "Yes, 97 is prime")
    follow = Message.objects.create(
        conversation=conversation, parent=second, role="user", content="Why 7?"
    )
    add_answer(follow, "Because 7 divides 91")
    conversation.current_leaf = third
    conversation.save(update_fields=["current_leaf"])

    html = review(root_client, conversation)
    for text in ("First try", "Second try", "Third try", "Is 97 prime?", "Yes, 97 is prime",
                 "Why 7?", "Because 7 divides 91"):  # fmt: skip
        assert html.count(text) == 1, text
    assert "version 3 of 3" in html  # the visible answer
    assert "2 other versions" in html  # of the answer
    assert html.index("Third try") < html.index("First try")  # the visible thread first


def test_user_text_and_model_output_cannot_inject_markup(
    people: dict[str, Any], root_client: Client
) -> None:
    conversation, _, _ = make_conversation(
        people["alice"],
        title="<script>alert('t')</script>",
        question="<img src=x onerror=alert(1)>",
        answer="<script>alert(2)</script> [x](javascript:alert(3))",
        reasoning="<iframe src=//evil></iframe>",
    )
    html = review(root_client, conversation)
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "<iframe" not in html
    assert 'href="javascript' not in html


def test_feedback_is_shown_next_to_the_answer(people: dict[str, Any], root_client: Client) -> None:
    conversation, _, answer = make_conversation(people["alice"])
    Feedback.objects.create(user=people["alice"], message=answer, rating="down", reason="Wrong!")
    html = review(root_client, conversation)
    assert "Wrong!" in html


def test_the_json_export_holds_every_version_and_the_visible_thread(
    people: dict[str, Any], root_client: Client
) -> None:
    conversation, asked, first = make_conversation(people["alice"], answer="First try")
    second = add_answer(asked, "Second try")
    conversation.current_leaf = first
    conversation.save(update_fields=["current_leaf"])
    response = root_client.get(
        reverse("admin:conversations_conversation_export_json", args=[conversation.uuid])
    )
    assert response["Content-Disposition"].startswith("attachment;")
    data = json.loads(response.content)
    assert data["thread"] == [str(asked.uuid), str(first.uuid)]
    assert {m["id"] for m in data["messages"]} == {str(asked.uuid), str(first.uuid),
                                                    str(second.uuid)}  # fmt: skip
    answer = next(m for m in data["messages"] if m["id"] == str(first.uuid))
    assert answer["reasoning"] == "Try 7: 7 × 13 = 91."
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 30}
    assert "html" not in answer


def test_the_markdown_export_quotes_the_reasoning_above_the_answer(
    people: dict[str, Any], root_client: Client
) -> None:
    conversation, _, _ = make_conversation(people["alice"], title="Primes")
    response = root_client.get(
        reverse("admin:conversations_conversation_export_md", args=[conversation.uuid])
    )
    text = response.content.decode()
    assert response["Content-Type"].startswith("text/markdown")
    assert text.startswith("# Primes\n")
    assert "## User\n\nIs 91 prime?" in text
    assert "> **Thought for 3 s**" in text
    assert "> Try 7: 7 × 13 = 91." in text
    assert text.index("Try 7") < text.index("No: **91 = 7 × 13**.")
