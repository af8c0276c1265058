from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Conversation
from tests.views_support import conversation, personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


def post(client, name, conv, data=None):
    return client.post(reverse(name, args=[conv.uuid]), data or {}, content_type="application/json")


def test_rename(people):
    client, alice, _ = people
    conv = conversation(alice, "Old title")
    response = post(client, "conversation-rename", conv, {"title": "  New   title "})
    assert response.status_code == 200
    assert response.json()["conversation"]["title"] == "New title"
    conv.refresh_from_db()
    assert conv.title == "New title"
    assert conv.title_generated  # the model will not replace a person's title


def test_an_empty_title_is_refused(people):
    client, alice, _ = people
    conv = conversation(alice, "Keep")
    assert post(client, "conversation-rename", conv, {"title": "   "}).status_code == 400
    conv.refresh_from_db()
    assert conv.title == "Keep"


def test_pin_and_unpin(people):
    client, alice, _ = people
    conv = conversation(alice)
    assert post(client, "conversation-pin", conv, {"pinned": True}).json()["conversation"]["pinned"]
    conv.refresh_from_db()
    assert conv.pinned
    post(client, "conversation-pin", conv, {"pinned": False})
    conv.refresh_from_db()
    assert not conv.pinned


def test_delete(people):
    client, alice, _ = people
    conv = conversation(alice, turns=[("q", "r", "a")])
    response = post(client, "conversation-delete", conv)
    assert response.status_code == 200
    assert not Conversation.objects.filter(pk=conv.pk).exists()
    assert client.get(reverse("conversation-detail", args=[conv.uuid])).status_code == 404


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("conversation-rename", {"title": "hacked"}),
        ("conversation-pin", {"pinned": True}),
        ("conversation-delete", {}),
    ],
)
def test_another_users_conversation_is_not_found(people, name, data):
    client, _, bob = people
    theirs = conversation(bob, "Bob's")
    assert post(client, name, theirs, data).status_code == 404
    theirs.refresh_from_db()
    assert (theirs.title, theirs.pinned) == ("Bob's", False)


@pytest.mark.parametrize("name", ["conversation-rename", "conversation-pin", "conversation-delete"])
def test_posts_need_the_csrf_token(people, name):
    _, alice, _ = people
    conv = conversation(alice, "Mine")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert post(client, name, conv, {"title": "x", "pinned": True}).status_code == 403
    conv.refresh_from_db()
    assert (conv.title, conv.pinned) == ("Mine", False)
    # With the token the page carries, it works.
    client.get(reverse("home"))
    token = client.cookies["csrftoken"].value
    response = client.post(
        reverse(name, args=[conv.uuid]),
        {"title": "x", "pinned": True},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 200


def test_get_is_not_allowed(people):
    client, alice, _ = people
    conv = conversation(alice)
    assert client.get(reverse("conversation-delete", args=[conv.uuid])).status_code == 405
    assert Conversation.objects.filter(pk=conv.pk).exists()


def test_anonymous_posts_are_refused():
    alice, _ = personas()
    conv = conversation(alice)
    response = Client().post(reverse("conversation-delete", args=[conv.uuid]))
    assert response.status_code in (302, 403)
    assert Conversation.objects.filter(pk=conv.pk).exists()
