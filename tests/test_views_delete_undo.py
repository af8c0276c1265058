"""Deleting a conversation hides it everywhere at once; Undo brings it back within
R1CHAT_DELETE_UNDO_SECONDS; after that it is purged."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.deletion import purge_deleted
from conversations.models import Conversation, Message
from conversations.turns import actions
from tests.views_support import conversation, personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    # Alice deletes and restores her chats; Bob may not restore hers.
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


def post(client, name, conv):
    return client.post(reverse(name, args=[conv.uuid]), {}, content_type="application/json")


def test_a_deleted_chat_is_gone_from_every_list_page_and_api_at_once(people):
    client, alice, _ = people
    conv = conversation(alice, "Doomed", turns=[("question", "thought", "answer")])
    response = post(client, "conversation-delete", conv)
    assert response.status_code == 200
    assert response.json()["undo_seconds"] > 0
    listing = client.get(reverse("api-conversations")).json()
    assert [item["id"] for item in listing["items"]] == []
    searched = client.get(reverse("api-conversations"), {"q": "question"}).json()
    assert searched["items"] == []
    assert client.get(reverse("conversation-detail", args=[conv.uuid])).status_code == 404
    thread_url = reverse("api-conversation-thread", args=[conv.uuid])
    assert client.get(thread_url).status_code == 404
    export_url = reverse("conversation-export-json", args=[conv.uuid])
    assert client.get(export_url).status_code == 404
    assert "Doomed" not in client.get(reverse("home")).content.decode()
    # Its rows wait out the Undo window.
    assert Conversation.all_objects.filter(pk=conv.pk, deleted_at__isnull=False).exists()
    assert Message.objects.filter(conversation_id=conv.pk).count() == 2


def test_undo_within_the_window_brings_the_chat_back_whole(people):
    client, alice, _ = people
    conv = conversation(alice, "Keep after all", turns=[("question", "thought", "answer")])
    post(client, "conversation-delete", conv)
    response = post(client, "conversation-restore", conv)
    assert response.status_code == 200
    assert response.json()["conversation"]["title"] == "Keep after all"
    listing = client.get(reverse("api-conversations")).json()
    assert [item["id"] for item in listing["items"]] == [str(conv.uuid)]
    thread = client.get(reverse("api-conversation-thread", args=[conv.uuid])).json()
    assert [m["content"] for m in thread["messages"]] == ["question", "answer"]


def test_undo_after_the_window_is_not_found_and_the_chat_is_purged(people, settings):
    client, alice, _ = people
    conv = conversation(alice, "Too late", turns=[("question", "thought", "answer")])
    post(client, "conversation-delete", conv)
    past = timezone.now() - dt.timedelta(seconds=settings.R1CHAT_DELETE_UNDO_SECONDS + 1)
    Conversation.all_objects.filter(pk=conv.pk).update(deleted_at=past)
    response = post(client, "conversation-restore", conv)
    assert response.status_code == 404
    assert async_to_sync(purge_deleted)() == 1
    assert not Conversation.all_objects.filter(pk=conv.pk).exists()
    assert not Message.objects.filter(conversation_id=conv.pk).exists()


def test_a_later_delete_purges_what_has_passed_its_window(people, settings):
    client, alice, _ = people
    old = conversation(alice, "Deleted long ago")
    Conversation.all_objects.filter(pk=old.pk).update(
        deleted_at=timezone.now() - dt.timedelta(seconds=settings.R1CHAT_DELETE_UNDO_SECONDS + 5)
    )
    fresh = conversation(alice, "Deleted now")
    post(client, "conversation-delete", fresh)
    assert not Conversation.all_objects.filter(pk=old.pk).exists()
    assert Conversation.all_objects.filter(pk=fresh.pk).exists()  # (still in its window)


def test_someone_elses_chat_cannot_be_restored(people):
    client, _alice, bob = people
    theirs = conversation(bob, "Bob's")
    Conversation.objects.filter(pk=theirs.pk).update(deleted_at=timezone.now())
    assert post(client, "conversation-restore", theirs).status_code == 404
    assert Conversation.all_objects.get(pk=theirs.pk).deleted_at is not None


def test_a_chat_that_was_not_deleted_is_not_restored(people):
    client, alice, _ = people
    conv = conversation(alice, "Alive")
    assert post(client, "conversation-restore", conv).status_code == 404


def test_messages_of_a_deleted_chat_cannot_be_edited_or_regenerated(people):
    _client, alice, _ = people
    conv = conversation(alice, "Doomed", turns=[("question", "thought", "answer")])
    answer = Message.objects.get(conversation=conv, role="assistant")
    async_to_sync(actions.delete_conversation)(alice, conv.uuid)
    from conversations.chat.protocol import ClientError

    with pytest.raises(ClientError) as caught:
        async_to_sync(actions.get_message)(alice, answer.uuid)
    assert caught.value.code == "not_found"
