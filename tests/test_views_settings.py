from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Backend
from tests.views_support import conversation, personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    alice, bob = personas()
    client = Client()
    client.force_login(alice)
    return client, alice, bob


def test_defaults_are_saved_on_the_account(people):
    client, alice, _ = people
    response = client.post(
        reverse("api-settings"),
        {"temperature": 0.3, "max_tokens": 4096, "deep_think": False, "system_prompt": "Be brief"},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json()["saved"] is True
    alice.refresh_from_db()
    assert alice.chat_defaults["temperature"] == 0.3
    assert alice.chat_defaults["deep_think"] is False
    # A new chat starts from them.
    html = client.get(reverse("home")).content.decode()
    assert '"temperature": 0.3' in html
    assert '"system_prompt": "Be brief"' in html


def test_a_conversation_keeps_its_own_settings(people):
    client, alice, _ = people
    alice.chat_defaults = {"temperature": 0.3}
    alice.save()
    conv = conversation(alice)
    conv.settings = {"temperature": 0.9, "max_tokens": 1024}
    conv.save()
    html = client.get(reverse("conversation-detail", args=[conv.uuid])).content.decode()
    assert '"temperature": 0.9' in html
    assert '"max_tokens": 1024' in html


@pytest.mark.parametrize(
    "body",
    [{"temperature": "hot"}, {"max_tokens": 0}, {"unknown": 1}, {"deep_think": "yes"}, [1, 2]],
)
def test_bad_settings_are_refused(people, body):
    client, alice, _ = people
    response = client.post(reverse("api-settings"), body, content_type="application/json")
    assert response.status_code == 400
    alice.refresh_from_db()
    assert alice.chat_defaults == {}


def test_settings_need_the_csrf_token(people):
    _, alice, _ = people
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(
        reverse("api-settings"), {"temperature": 0.2}, content_type="application/json"
    )
    assert response.status_code == 403
    response = client.post(reverse("api-theme"), {"theme": "dark"})
    assert response.status_code == 403


def test_the_theme_is_saved(people):
    client, alice, _ = people
    assert client.post(reverse("api-theme"), {"theme": "dark"}).json()["saved"] is True
    alice.refresh_from_db()
    assert alice.theme == "dark"
    assert client.post(reverse("api-theme"), {"theme": "pink"}).status_code == 400


def test_models_lists_enabled_backends_without_secrets(people, simulator):
    client, _, _ = people
    Backend.objects.create(
        name="Sim", kind="openai", base_url=simulator.base_url, api_key="sk-very-secret",
        source="simulator",
    )  # fmt: skip
    Backend.objects.create(name="Off", kind="openai", base_url="http://127.0.0.1:9", enabled=False)
    Backend.objects.create(name="Down", kind="openai", base_url="http://127.0.0.1:9")
    response = client.get(reverse("api-models"))
    assert response.status_code == 200
    body = response.content.decode()
    assert "sk-very-secret" not in body
    assert simulator.base_url not in body and "127.0.0.1:9" not in body
    backends = {b["name"]: b for b in response.json()["backends"]}
    assert set(backends) == {"Sim", "Down"}
    assert backends["Sim"]["simulated"] is True
    assert backends["Sim"]["available"] is True
    assert backends["Sim"]["models"]
    assert backends["Down"]["available"] is False
    assert backends["Down"]["reason"]
