"""The model picker's data: no group for a backend that is not configured, reasons in the
page's language."""

from __future__ import annotations

import socket

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from conversations.models import Backend
from conversations.turns import catalog
from tests.views_support import personas

pytestmark = pytest.mark.django_db


def _closed_port_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def alice_client():
    alice, _bob = personas()
    client = Client()
    client.force_login(alice)
    catalog.forget()
    yield client
    catalog.forget()


def _groups(client: Client, language: str = "en") -> list[dict]:
    response = client.get(reverse("api-models"), HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 200
    return response.json()["backends"]


def test_no_ollama_group_when_ollama_is_not_configured_and_does_not_answer(alice_client):
    with override_settings(OLLAMA_BASE_URL="", OLLAMA_PROBE_URL=_closed_port_url()):
        assert catalog.ensure_env_backends() == []
    assert not Backend.objects.filter(kind="ollama").exists()
    assert [g["name"] for g in _groups(alice_client)] == []


def test_an_ollama_answering_at_the_default_address_is_added(alice_client, simulator):
    simulator.reset()
    with override_settings(OLLAMA_BASE_URL="", OLLAMA_PROBE_URL=simulator.base_url):
        created = catalog.ensure_env_backends()
    assert [(b.name, b.base_url) for b in created] == [("Ollama", simulator.base_url)]
    assert [g["name"] for g in _groups(alice_client)] == ["Ollama"]


def test_a_dead_ollama_made_from_the_old_default_is_disabled(alice_client):
    dead = _closed_port_url()
    Backend.objects.create(name="Ollama", kind="ollama", base_url=dead, source="env")
    with override_settings(OLLAMA_BASE_URL="", OLLAMA_PROBE_URL=dead):
        catalog.ensure_env_backends()
    assert Backend.objects.get(name="Ollama").enabled is False
    assert _groups(alice_client) == []


def test_a_configured_ollama_is_created_even_when_down(alice_client):
    with override_settings(OLLAMA_BASE_URL=_closed_port_url()):
        created = catalog.ensure_env_backends()
    assert [b.name for b in created] == ["Ollama"]


def test_a_backends_error_is_in_the_pages_language(alice_client):
    Backend.objects.create(name="Down", kind="openai", base_url=_closed_port_url())
    chinese = _groups(alice_client, "zh-hans")
    assert chinese[0]["available"] is False
    assert "无法" in chinese[0]["reason"]
    # The same cached list, in English for an English page.
    english = _groups(alice_client, "en")
    assert english[0]["reason"] == (
        "The model server could not be reached. It may be down or starting."
    )


def test_the_page_has_the_searchable_picker(alice_client):
    html = alice_client.get(reverse("home")).content.decode()
    assert 'role="combobox"' in html and 'role="listbox"' in html
    assert "<select" not in html.split('id="model-picker"')[1].split("</div>")[0]
