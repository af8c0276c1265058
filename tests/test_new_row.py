"""`new_row`: the same instance as `Model(**values)`, for the rows of a new conversation."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.db.models import signals
from django.utils import timezone

from accounts.models import User
from conversations.models import Conversation, Message, new_row

from .chat_support import make_user

# Defaults computed per instance: equal in kind, not in value.
FRESH = {"uuid": uuid.UUID, "created_at": dt.datetime, "updated_at": dt.datetime}


def assert_same_row(made: Any, expected: Any) -> None:
    assert type(made) is type(expected)
    for field in type(expected)._meta.concrete_fields:
        got, want = getattr(made, field.attname), getattr(expected, field.attname)
        if field.attname in FRESH and got is not want:
            assert isinstance(got, FRESH[field.attname]), field.attname
            assert type(got) is type(want), field.attname
        else:
            assert got == want, field.attname
    assert made._state.adding is expected._state.adding is True
    assert made._state.db == expected._state.db
    assert made._state.fields_cache == expected._state.fields_cache


def test_a_conversation_and_its_messages_match_model_init() -> None:
    owner = User(pk=7, email="a@example.com")
    conversation = new_row(Conversation, owner=owner, title="Mass and energy")
    assert_same_row(conversation, Conversation(owner=owner, title="Mass and energy"))
    assert (
        conversation.settings == {}
        and conversation.settings is not new_row(Conversation, owner=owner).settings
    )  # a new dict each, as the callable default gives

    at = timezone.now()
    values = {
        "conversation": conversation, "parent": None, "role": Message.Role.USER,
        "content": "E = mc²?", "client_id": "c-1", "created_at": at,
    }  # fmt: skip
    question = new_row(Message, **values)
    assert_same_row(question, Message(**values))
    assert question.created_at is at

    answer = {
        "conversation": conversation, "parent": question, "role": Message.Role.ASSISTANT,
        "status": Message.Status.STREAMING, "backend_id": 3, "model": "deepseek-v4-flash",
        "temperature": 0.6, "max_tokens": 2048, "heartbeat_at": at,
    }  # fmt: skip
    assert_same_row(new_row(Message, **answer), Message(**answer))


def test_keys_by_attname_and_unknown_names() -> None:
    row = new_row(Message, conversation_id=5, role=Message.Role.USER)
    assert row.conversation_id == 5 and "conversation" not in row._state.fields_cache
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        new_row(Message, colour="red")


def test_init_signals_are_honoured() -> None:
    seen: list[Any] = []

    def receiver(sender: Any, instance: Any, **kwargs: Any) -> None:
        seen.append(instance)

    signals.post_init.connect(receiver, sender=Conversation)
    try:
        row = new_row(Conversation, title="x")
    finally:
        signals.post_init.disconnect(receiver, sender=Conversation)
    assert seen == [row]


@pytest.mark.django_db
def test_unsaved_parents_keys_are_filled_in_when_saved() -> None:
    owner = make_user("bea", password=None)
    conversation = new_row(Conversation, owner=owner, title="t")
    question = new_row(Message, conversation=conversation, role=Message.Role.USER, content="q")
    answer = new_row(Message, conversation=conversation, parent=question, role="assistant")
    conversation.save(force_insert=True)
    question.save(force_insert=True)
    answer.save(force_insert=True)
    stored = Message.objects.get(pk=answer.pk)
    assert (stored.conversation_id, stored.parent_id) == (conversation.pk, question.pk)
    assert stored.uuid == answer.uuid and stored.content == ""
