"""The admin: a backend's key does not follow its URL to another server, and listings and
searches of everyone's conversations are in the admin audit log, which superusers read."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from conversations.models import Backend
from conversations.simulator import Simulator
from review.models import AdminAudit
from review.testing import make_conversation, make_personas

pytestmark = pytest.mark.django_db

KEY = "sk-test-5b1f0c9e7d2a4e8f9a3c6d1e0b7f2a4c"
HOME = "https://api.deepseek.com/v1"


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


@pytest.fixture
def root(people: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(people["root"])
    return client


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "DeepSeek",
        "kind": "openai",
        "base_url": HOME,
        "enabled": "on",
        "position": "0",
        "default_model": "",
        "model_allowlist": "",
        "assume_open_think": "",
        "connect_timeout": "2",
        "idle_timeout": "5",
        "no_data_timeout": "5",
        "total_timeout": "30",
        "max_tries": "1",
        "new_api_key": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def backend() -> Backend:
    return Backend.objects.create(
        name="DeepSeek", kind="openai", base_url=HOME, api_key=KEY, max_tries=1
    )


def save(root: Client, backend: Backend, **overrides: Any) -> Backend:
    url = reverse("admin:conversations_backend_change", args=[backend.pk])
    response = root.post(url, form_data(**overrides))
    assert response.status_code == 302, response.content.decode()[:2000]
    backend.refresh_from_db()
    return backend


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://evil.example.net/v1",  # another host
        "http://api.deepseek.com/v1",  # another scheme
        "https://api.deepseek.com:8443/v1",  # another port
        "https://API.deepseek.com.evil.example/v1",
    ],
)
def test_moving_a_backend_to_another_server_clears_its_key(
    root: Client, backend: Backend, elsewhere: str
) -> None:
    backend = save(root, backend, base_url=elsewhere)
    assert backend.base_url == elsewhere
    assert backend.api_key == ""
    entry = AdminAudit.objects.get(action=AdminAudit.Action.BACKEND_MOVED)
    assert entry.actor_name == "root"
    assert entry.details["from"] == "https://api.deepseek.com:443"
    assert entry.details["key"] == "cleared"
    assert KEY not in str(entry.details)


def test_the_key_entered_again_in_the_same_save_is_kept(root: Client, backend: Backend) -> None:
    backend = save(root, backend, base_url="https://proxy.example.org/v1", new_api_key="sk-new")
    assert backend.api_key == "sk-new"
    entry = AdminAudit.objects.get(action=AdminAudit.Action.BACKEND_MOVED)
    assert entry.details["key"] == "entered again"
    assert entry.details["to"] == "https://proxy.example.org:443"


@pytest.mark.parametrize(
    "same_server",
    [
        "https://api.deepseek.com/",  # another path
        "https://api.deepseek.com:443/v1",  # the default port spelled out
        "https://API.DeepSeek.com/v1",  # host names are case-insensitive
    ],
)
def test_the_same_server_keeps_its_key(root: Client, backend: Backend, same_server: str) -> None:
    backend = save(root, backend, base_url=same_server)
    assert backend.api_key == KEY
    assert not AdminAudit.objects.filter(action=AdminAudit.Action.BACKEND_MOVED).exists()


def test_check_now_after_a_move_sends_no_key(
    root: Client, backend: Backend, simulator: Simulator
) -> None:
    """The attack: point the URL at one's own server, press Check now, read the header."""
    simulator.reset()
    backend = save(root, backend, base_url=f"{simulator.base_url}/v1")
    root.post(reverse("admin:conversations_backend_check", args=[backend.pk]))
    seen = [request.headers.get("authorization", "") for request in simulator.requests]
    simulator.reset()
    assert seen, "the check reached the server"
    assert not any(KEY in value for value in seen)


# --- listing and searching everyone's conversations ---------------------------------------------


def test_listing_and_searching_conversations_is_audited(
    root: Client, people: dict[str, Any]
) -> None:
    make_conversation(people["alice"], title="Salary talk")
    url = reverse("admin:conversations_conversation_changelist")
    assert root.get(url).status_code == 200
    assert root.get(url, {"q": "salary", "owner__id__exact": people["alice"].pk}).status_code == 200
    assert (
        root.get(reverse("admin:conversations_message_changelist"), {"q": "x"}).status_code == 200
    )
    entries = list(AdminAudit.objects.order_by("id"))
    assert [e.action for e in entries] == [
        AdminAudit.Action.LIST_CONVERSATIONS,
        AdminAudit.Action.LIST_CONVERSATIONS,
        AdminAudit.Action.LIST_MESSAGES,
    ]
    assert entries[0].search == "" and entries[0].actor == people["root"]
    assert entries[1].search == "salary"
    assert entries[1].details == {"owner__id__exact": str(people["alice"].pk)}
    assert entries[1].ip_address == "127.0.0.1"
    # Superusers read the log, with the terms.
    page = root.get(reverse("admin:review_adminaudit_changelist"))
    assert page.status_code == 200
    assert b"salary" in page.content


def test_a_search_with_nul_is_audited_without_error(root: Client) -> None:
    url = reverse("admin:conversations_conversation_changelist")
    assert root.get(url, {"q": "a\x00b"}).status_code == 200
    assert AdminAudit.objects.get().search == "a\ufffdb"


def test_refused_listings_are_not_logged_and_only_superusers_read_the_log(
    people: dict[str, Any], settings: Any
) -> None:
    settings.R1CHAT_REVIEW_ACCESS = "permission"
    for name in ("carol", "rita"):
        client = Client()
        client.force_login(people[name])
        listing = client.get(reverse("admin:conversations_conversation_changelist"))
        assert listing.status_code == (200 if name == "rita" else 403)
        assert client.get(reverse("admin:review_adminaudit_changelist")).status_code == 403
    assert list(AdminAudit.objects.values_list("actor_name", flat=True)) == ["rita"]
