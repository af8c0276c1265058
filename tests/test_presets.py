"""Saved presets: a user's model and settings under a name, created, renamed and deleted in
the settings panel, chosen per conversation (which remembers its preset)."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse

from conversations.models import ChatPreset, Conversation
from tests.chat_support import (  # noqa: F401 (autouse fixtures: they apply to this module)
    Tab,
    fresh_layer_and_clients,
    generations_end_before_the_database_is_emptied,
    make_backend,
    make_user,
)
from tests.views_support import personas

SETTINGS = {
    "backend": 3, "model": "deepseek-v4-pro", "temperature": 0.3, "max_tokens": 6144,
    "deep_think": False, "system_prompt": "Answer in haiku.",
}  # fmt: skip


@pytest.fixture
def people(db):
    # Alice saves presets; Bob may see, rename or delete none of hers.
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


def _post(client: Client, url: str, body: dict) -> tuple[int, dict]:
    response = client.post(url, body, content_type="application/json")
    return response.status_code, response.json()


def _config(html: str) -> dict:
    raw = re.search(r'<script id="chat-config" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(raw.group(1))


def test_a_preset_is_created_listed_renamed_and_deleted(people):
    client, alice, _ = people
    status, data = _post(client, reverse("api-presets"), {"name": " Poet ", "settings": SETTINGS})
    assert status == 201
    preset = data["preset"]
    assert (preset["name"], preset["settings"]) == ("Poet", SETTINGS)
    assert client.get(reverse("api-presets")).json()["presets"] == [preset]
    # The chat page carries them for the settings panel.
    assert _config(client.get(reverse("home")).content.decode())["presets"] == [preset]

    status, data = _post(client, reverse("api-preset", args=[preset["id"]]), {"name": "Haiku"})
    assert (status, data["preset"]["name"]) == (200, "Haiku")
    changed = {**SETTINGS, "temperature": 0.9}
    status, data = _post(client, reverse("api-preset", args=[preset["id"]]), {"settings": changed})
    assert data["preset"]["settings"]["temperature"] == 0.9

    status, _ = _post(client, reverse("api-preset-delete", args=[preset["id"]]), {})
    assert status == 200
    assert not ChatPreset.objects.filter(owner=alice).exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "", "settings": {}}, "empty"),
        ({"name": "x" * 81, "settings": {}}, "too_long"),
        ({"name": "Hot", "settings": {"temperature": 9}}, "invalid"),
        ({"name": "Odd", "settings": {"colour": "red"}}, "invalid"),
        ({"name": "Bad", "settings": "nope"}, "invalid"),
    ],
)
def test_bad_presets_are_refused_with_a_reason(people, body, code):
    client, alice, _ = people
    status, data = _post(client, reverse("api-presets"), body)
    assert (status, data["error"]) == (400, code)
    assert data["detail"]
    assert not ChatPreset.objects.filter(owner=alice).exists()


def test_two_presets_cannot_share_a_name(people):
    client, alice, _ = people
    _post(client, reverse("api-presets"), {"name": "Poet", "settings": SETTINGS})
    status, data = _post(client, reverse("api-presets"), {"name": "Poet", "settings": {}})
    assert (status, data["error"]) == (400, "duplicate")
    assert "Poet" in data["detail"]
    assert ChatPreset.objects.filter(owner=alice).count() == 1


def test_another_users_preset_is_not_found(people):
    client, _alice, bob = people
    preset = ChatPreset.objects.create(owner=bob, name="Bob's", settings=SETTINGS)
    assert client.post(reverse("api-preset", args=[preset.pk]), {"name": "Mine"},
                       content_type="application/json").status_code == 404  # fmt: skip
    assert client.post(reverse("api-preset-delete", args=[preset.pk])).status_code == 404
    assert client.get(reverse("api-presets")).json()["presets"] == []
    preset.refresh_from_db()
    assert preset.name == "Bob's"


def test_presets_need_a_signed_in_user(db):
    response = Client().get(reverse("api-presets"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db(transaction=True)
async def test_a_conversation_remembers_the_preset_it_was_used_with(simulator):
    simulator.reset()
    alice = await sync_to_async(make_user)("alice")
    bob = await sync_to_async(make_user)("bob")
    backend = await sync_to_async(make_backend)(simulator.base_url)
    preset = await ChatPreset.objects.acreate(
        owner=alice, name="Terse", settings={"model": "deepseek-chat", "temperature": 0.2}
    )
    others = await ChatPreset.objects.acreate(owner=bob, name="Bob's", settings={})
    tab = await Tab.open(alice)
    # The page applies the preset's settings and names it in the frame.
    settings = {"backend": backend.pk, "model": "deepseek-chat", "temperature": 0.2,
                "deep_think": False, "preset": preset.pk}  # fmt: skip
    await tab.send({"type": "send", "conversation": None, "content": "Hi",
                    "client_id": uuid.uuid4().hex, "settings": settings})  # fmt: skip
    created = await tab.until("conversation.created")
    await tab.until("generation.done", timeout=15)
    conv = await Conversation.objects.aget(uuid=created["conversation"]["id"])
    assert conv.settings["preset"] == preset.pk
    assert (conv.settings["model"], conv.settings["temperature"]) == ("deepseek-chat", 0.2)
    # The chat page shows the conversation with its preset.
    client = Client()
    await sync_to_async(client.force_login)(alice)
    page = await sync_to_async(client.get)(reverse("conversation-detail", args=[conv.uuid]))
    assert _config(page.content.decode())["settings"]["preset"] == preset.pk

    # A later question without a preset in its settings keeps it; "0" clears it; another
    # user's preset is no preset.
    for chosen, kept in ((None, preset.pk), (0, None), (others.pk, None)):
        frame_settings = {"backend": backend.pk, "model": "deepseek-chat", "deep_think": False}
        if chosen is not None:
            frame_settings["preset"] = chosen
        await tab.send({"type": "send", "conversation": str(conv.uuid), "content": "Again",
                        "client_id": uuid.uuid4().hex, "settings": frame_settings})  # fmt: skip
        await tab.until("generation.done", timeout=15)
        await conv.arefresh_from_db()
        assert conv.settings.get("preset") == kept
    await tab.close()
