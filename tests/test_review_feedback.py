"""Thumbs up and down on answers; a thumbs down puts the conversation in the review queue."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from review.models import Feedback
from review.testing import make_conversation, make_personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


def client_for(user: Any, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def rate(client: Client, message: Any, body: Any) -> Any:
    return client.post(
        reverse("review:feedback", args=[message.uuid]),
        data=json.dumps(body) if not isinstance(body, bytes) else body,
        content_type="application/json",
    )


def test_the_url_is_stable() -> None:
    assert reverse("review:feedback", args=["7c4b1d9e-0000-4000-8000-000000000001"]) == (
        "/review/feedback/7c4b1d9e-0000-4000-8000-000000000001"
    )


def test_thumbs_down_with_a_reason_is_recorded_and_changeable(people: dict[str, Any]) -> None:
    _, _, answer = make_conversation(people["alice"])
    alice = client_for(people["alice"])
    response = rate(alice, answer, {"rating": "down", "reason": "  Wrong arithmetic  "})
    assert response.status_code == 200
    assert response.json() == {
        "message": str(answer.uuid),
        "rating": "down",
        "reason": "Wrong arithmetic",
    }
    rate(alice, answer, {"rating": "up"})
    entry = Feedback.objects.get()
    assert (entry.user, entry.message, entry.rating, entry.reason) == (
        people["alice"],
        answer,
        "up",
        "",
    )
    assert rate(alice, answer, {"rating": None}).json()["rating"] is None
    assert not Feedback.objects.exists()


def test_another_users_message_is_not_found(people: dict[str, Any]) -> None:
    _, asked, answer = make_conversation(people["alice"])
    bob = client_for(people["bob"])
    assert rate(bob, answer, {"rating": "down"}).status_code == 404
    # Nor can the owner rate their own question: only answers.
    assert rate(client_for(people["alice"]), asked, {"rating": "down"}).status_code == 404
    assert not Feedback.objects.exists()


def test_signed_out_and_wrong_method_are_refused(people: dict[str, Any]) -> None:
    _, _, answer = make_conversation(people["alice"])
    assert rate(Client(), answer, {"rating": "down"}).status_code == 401
    url = reverse("review:feedback", args=[answer.uuid])
    assert client_for(people["alice"]).get(url).status_code == 405
    assert not Feedback.objects.exists()


def test_it_requires_the_csrf_token(people: dict[str, Any]) -> None:
    _, _, answer = make_conversation(people["alice"])
    client = client_for(people["alice"], enforce_csrf_checks=True)
    assert rate(client, answer, {"rating": "down"}).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"rating": "meh"},
        {"rating": 1},
        {"rating": "down", "reason": "x" * 1001},
        [1, 2],
        b"{not json",
        b"x" * 5000,
    ],
)
def test_malformed_input_is_a_clear_error(people: dict[str, Any], body: Any) -> None:
    _, _, answer = make_conversation(people["alice"])
    response = rate(client_for(people["alice"]), answer, body)
    assert response.status_code in (400, 413)
    assert "error" in response.json()
    assert not Feedback.objects.exists()


def queue(client: Client) -> str:
    url = reverse("admin:conversations_conversation_changelist") + "?flagged=queue"
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def test_a_flag_puts_the_conversation_in_the_queue_until_it_is_reviewed(
    people: dict[str, Any],
) -> None:
    flagged, _, answer = make_conversation(people["alice"], title="Flagged one")
    make_conversation(people["alice"], title="Calm one")
    _, _, liked_answer = make_conversation(people["alice"], title="Liked one")
    root = client_for(people["root"])
    assert "Flagged one" not in queue(root)

    rate(client_for(people["alice"]), answer, {"rating": "down", "reason": "made up"})
    rate(client_for(people["alice"]), liked_answer, {"rating": "up"})
    html = queue(root)
    assert "Flagged one" in html
    assert "Calm one" not in html and "Liked one" not in html

    root.get(reverse("admin:conversations_conversation_review", args=[flagged.uuid]))
    assert "Flagged one" not in queue(root)
    # Still listed among all flagged conversations.
    url = reverse("admin:conversations_conversation_changelist") + "?flagged=yes"
    assert "Flagged one" in root.get(url).content.decode()

    # A new flag after the review brings it back.
    rate(client_for(people["alice"]), answer, {"rating": "down", "reason": "still wrong"})
    assert "Flagged one" in queue(root)


def test_the_admin_index_links_the_queue(people: dict[str, Any]) -> None:
    html = client_for(people["root"]).get(reverse("admin:index")).content.decode()
    assert "?flagged=queue" in html and "Review queue" in html


def test_ratings_for_gives_the_page_one_users_thumbs(people: dict[str, Any]) -> None:
    _, _, answer = make_conversation(people["alice"])
    rate(client_for(people["alice"]), answer, {"rating": "down", "reason": "no"})
    assert Feedback.ratings_for(people["alice"].pk, [answer.pk]) == {
        answer.pk: {"rating": "down", "reason": "no"}
    }
    assert Feedback.ratings_for(people["bob"].pk, [answer.pk]) == {}
