"""Backends in the admin: write-only API keys, Check now, and edits the chat follows at once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from conversations.backends import get_backend
from conversations.models import Backend
from conversations.simulator import Simulator
from conversations.turns import catalog
from review.testing import make_personas

pytestmark = pytest.mark.django_db

KEY = "sk-test-5b1f0c9e7d2a4e8f9a3c6d1e0b7f2a4c"
UNREACHABLE = "http://127.0.0.1:9/v1"  # the discard port: connection refused


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(make_personas()["root"])
    return client


@pytest.fixture
def keyed_simulator() -> Iterator[Simulator]:
    """A model server that insists on KEY, like the DeepSeek API."""
    sim = Simulator(api_key=KEY)
    sim.start_in_thread()
    yield sim
    sim.stop()


def form_data(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "DeepSeek",
        "kind": "openai",
        "base_url": UNREACHABLE,
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
    return {k: v for k, v in data.items() if v is not None}


def add_backend(root: Client, **overrides: Any) -> Backend:
    response = root.post(reverse("admin:conversations_backend_add"), form_data(**overrides))
    assert response.status_code == 302, response.content.decode()[:2000]
    return Backend.objects.get(name=overrides.get("name", "DeepSeek"))


def admin_pages(backend: Backend) -> list[str]:
    return [
        reverse("admin:conversations_backend_changelist"),
        reverse("admin:conversations_backend_change", args=[backend.pk]),
        reverse("admin:conversations_backend_history", args=[backend.pk]),
        reverse("admin:conversations_backend_delete", args=[backend.pk]),
        reverse("admin:index"),
    ]


def test_the_api_key_never_appears_in_admin_html_after_saving(root: Client) -> None:
    backend = add_backend(root, new_api_key=KEY)
    assert backend.api_key == KEY
    change = reverse("admin:conversations_backend_change", args=[backend.pk])
    root.post(change, form_data(default_model="deepseek-v4-flash"))  # an edit, key kept
    for url in admin_pages(backend):
        html = root.get(url).content.decode()
        assert KEY not in html, url
        assert KEY[-8:] not in html, url
    # A form shown again with errors does not echo the key typed into it.
    response = root.post(change, form_data(base_url="not a url", new_api_key=KEY + "x"))
    assert response.status_code == 200
    assert KEY not in response.content.decode()
    assert all(KEY not in entry.change_message for entry in LogEntry.objects.all())
    assert KEY not in repr(backend) and KEY not in str(backend)


def test_blank_keeps_the_key_and_clear_removes_it(root: Client) -> None:
    backend = add_backend(root, new_api_key=KEY)
    change = reverse("admin:conversations_backend_change", args=[backend.pk])
    html = root.get(change).content.decode()
    assert "stored (never shown)" in html
    assert 'type="password"' in html
    assert reverse("admin:conversations_backend_check", args=[backend.pk]) in html  # Check now

    root.post(change, form_data(name="DeepSeek 2"))
    backend.refresh_from_db()
    assert (backend.name, backend.api_key) == ("DeepSeek 2", KEY)

    root.post(change, form_data(name="DeepSeek 2", new_api_key="sk-new"))
    backend.refresh_from_db()
    assert backend.api_key == "sk-new"

    response = root.post(change, form_data(name="DeepSeek 2", new_api_key="x", clear_api_key="on"))
    assert response.status_code == 200  # both at once is refused
    root.post(change, form_data(name="DeepSeek 2", clear_api_key="on"))
    backend.refresh_from_db()
    assert backend.api_key == ""


def test_the_allowlist_is_edited_one_model_per_line(root: Client) -> None:
    backend = add_backend(root, model_allowlist="deepseek-v4-flash\n deepseek-v4-pro ,\n\n")
    assert backend.model_allowlist == ["deepseek-v4-flash", "deepseek-v4-pro"]
    change = reverse("admin:conversations_backend_change", args=[backend.pk])
    assert "deepseek-v4-flash\ndeepseek-v4-pro</textarea>" in root.get(change).content.decode()


def test_check_now_shows_reachability_version_models_and_latency(
    root: Client, keyed_simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = add_backend(root, base_url=keyed_simulator.base_url + "/v1", new_api_key=KEY)
    check = reverse("admin:conversations_backend_check", args=[backend.pk])
    assert root.get(check).status_code == 405  # a button, not a link
    response = root.post(check, follow=True)
    html = response.content.decode()
    backend.refresh_from_db()
    assert backend.last_checked_at is not None
    assert backend.last_health["reachable"] is True
    assert "deepseek-v4-flash" in backend.last_health["models"]
    assert backend.last_health["latency_ms"] is not None
    assert "DeepSeek: reachable" in html
    assert "deepseek-v4-flash" in html
    assert KEY not in html
    assert KEY not in caplog.text


def test_check_now_action_reports_a_wrong_key_without_showing_it(
    root: Client, keyed_simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-0123456789abcdef0123456789"
    good = add_backend(root, base_url=keyed_simulator.base_url + "/v1", new_api_key=KEY)
    bad = add_backend(
        root, name="Wrong key", base_url=keyed_simulator.base_url + "/v1", new_api_key=wrong
    )
    down = add_backend(root, name="Down", base_url=UNREACHABLE)
    response = root.post(
        reverse("admin:conversations_backend_changelist"),
        {"action": "check_now", "_selected_action": [good.pk, bad.pk, down.pk]},
        follow=True,
    )
    html = response.content.decode()
    bad.refresh_from_db()
    down.refresh_from_db()
    assert "auth" in (bad.last_health.get("error") or "")
    assert down.last_health["reachable"] is False
    assert "Down: unreachable" in html
    for secret in (KEY, wrong):
        assert secret not in html
        assert secret not in caplog.text
        assert secret not in str(bad.last_health)


def test_a_backend_edited_in_the_admin_is_used_by_the_next_message(
    root: Client, simulator: Simulator
) -> None:
    simulator.reset()
    backend = add_backend(root, name="Team server", base_url=UNREACHABLE)

    async def pick() -> tuple[Any, str, Any, list[Any], str | None]:
        chosen, model, info = await catalog.resolve({"backend": backend.pk})
        models, error = await catalog.backend_models(chosen)
        await get_backend(chosen.config()).aclose()
        return chosen, model, info, models, error

    _, _, info, models, error = async_to_sync(pick)()
    assert info is None and models == [] and error

    change = reverse("admin:conversations_backend_change", args=[backend.pk])
    response = root.post(
        change,
        form_data(
            name="Team server",
            base_url=simulator.base_url + "/v1",
            default_model="deepseek-v4-pro",
        ),
    )
    assert response.status_code == 302
    chosen, model, info, models, error = async_to_sync(pick)()  # no restart in between
    assert chosen.base_url == simulator.base_url + "/v1"
    assert error is None
    assert model == "deepseek-v4-pro" and info is not None
    assert any(r.path.endswith("/models") for r in simulator.requests)
