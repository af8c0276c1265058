"""Personal API keys: made on the account page (shown once, stored hashed), listed and revoked
there and in the admin, made by `manage.py create_api_key`; a revoked key is refused on its
next request while a stream already open finishes."""

from __future__ import annotations

import io
import re
from typing import Any

import openai
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from api.models import ApiKey, digest
from conversations.simulator import Scenario
from review.testing import make_personas
from tests.api_support import *  # noqa: F403
from tests.api_support import client_for, key_for
from tests.chat_support import make_user

pytestmark = pytest.mark.timeout(90)

QUESTION = [{"role": "user", "content": "How are mass and energy related?"}]


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- the key itself -----------------------------------------------------------------------


@pytest.mark.django_db
def test_only_the_digest_of_a_key_is_stored() -> None:
    user = make_user("alice", password=None)
    key, token = ApiKey.issue(user, "laptop")
    assert token.startswith("r1-") and len(token) > 40
    stored = ApiKey.objects.filter(pk=key.pk).values()[0]
    assert token not in [str(v) for v in stored.values()]
    assert stored["hashed"] == digest(token)
    assert token.startswith(key.prefix) and key.shown.endswith("…")


# --- revocation -------------------------------------------------------------------------------


def test_a_revoked_key_is_refused_but_its_open_stream_finishes(
    api_server: Any, api_backend: Any, sim: Any
) -> None:
    sim.scenario = Scenario(token_rate=20, reasoning_tokens=10, answer_tokens=20)
    alice = make_user("alice")
    key, token = key_for(alice)
    client = client_for(api_server, token)
    stream = client.chat.completions.create(
        model="deepseek-v4-flash", messages=QUESTION, stream=True
    )
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.role == "assistant"
    key.revoke()
    rest = list(chunks)
    assert rest[-1].choices[0].finish_reason == "stop"
    answer = "".join(c.choices[0].delta.content or "" for c in [first, *rest])
    assert len(answer.split()) == 20
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="deepseek-v4-flash", messages=QUESTION)
    assert caught.value.body["code"] == "revoked_api_key"


def test_last_use_is_noted(api_server: Any, api_backend: Any) -> None:
    alice = make_user("alice")
    key, token = key_for(alice)
    assert key.last_used_at is None
    client_for(api_server, token).models.list()
    key.refresh_from_db()
    assert key.last_used_at is not None


# --- the account page -------------------------------------------------------------------------


def test_a_key_made_on_the_account_page_is_shown_once_and_works(
    api_server: Any, api_backend: Any
) -> None:
    alice = make_user("alice")
    client = signed_in(alice)
    page = client.get(reverse("accounts:account"))
    assert page.status_code == 200
    assert b'id="section-api-keys"' in page.content
    assert b'value="deepseek-v4-flash"' in page.content  # the scope's choices
    made = client.post(
        reverse("api_keys:create"),
        {"name": "laptop", "expires": "30", "models": ["deepseek-chat"], "record": "on"},
    )
    assert made.status_code == 200
    assert "no-store" in made["Cache-Control"]
    token = re.search(rb'value="(r1-[^"]+)"', made.content).group(1).decode()
    key = ApiKey.objects.get(owner=alice)
    assert (key.name, key.scope, key.record) == ("laptop", ["deepseek-chat"], True)
    assert key.expires_at is not None and key.hashed == digest(token)
    listed = client.get(reverse("accounts:account")).content.decode()
    assert "laptop" in listed and key.prefix in listed
    assert token not in listed  # never shown again
    models = [m.id for m in client_for(api_server, token).models.list()]
    assert models == ["deepseek-chat"]


def test_a_key_needs_a_name(api_backend: Any) -> None:
    alice = make_user("alice", password=None)
    made = signed_in(alice).post(reverse("api_keys:create"), {"name": "  "})
    assert made.status_code == 400
    assert not ApiKey.objects.exists()


def test_a_key_is_revoked_from_the_account_page(api_server: Any, api_backend: Any) -> None:
    alice = make_user("alice")
    key, token = key_for(alice, name="old laptop")
    response = signed_in(alice).post(reverse("api_keys:revoke", args=[key.public_id]))
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert "old laptop" not in signed_in(alice).get(reverse("accounts:account")).content.decode()
    with pytest.raises(openai.AuthenticationError):
        client_for(api_server, token).models.list()


@pytest.mark.django_db
def test_another_users_key_is_not_found() -> None:
    alice = make_user("alice", password=None)
    bob = make_user("bob", password=None)
    key, _token = key_for(alice)
    response = signed_in(bob).post(reverse("api_keys:revoke", args=[key.public_id]))
    assert response.status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None


@pytest.mark.django_db
def test_signed_out_visitors_cannot_make_keys(client: Client) -> None:
    response = client.post(reverse("api_keys:create"), {"name": "x"})
    assert response.status_code == 302
    assert not ApiKey.objects.exists()


# --- the admin --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admins_list_and_revoke_keys() -> None:
    people = make_personas()
    key, _token = key_for(people["alice"], name="ci runner")
    other, _ = key_for(people["bob"], name="notebook")
    admin = signed_in(people["root"])
    listing = admin.get(reverse("admin:api_apikey_changelist"))
    assert listing.status_code == 200
    text = listing.content.decode()
    assert "ci runner" in text and "notebook" in text and key.prefix in text
    assert key.hashed not in text
    response = admin.post(
        reverse("admin:api_apikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    key.refresh_from_db()
    other.refresh_from_db()
    assert key.revoked_at is not None and other.revoked_at is None
    assert admin.get(reverse("admin:api_apikey_add")).status_code == 403
    assert signed_in(people["alice"]).get(reverse("admin:api_apikey_changelist")).status_code == 302


# --- manage.py create_api_key -----------------------------------------------------------------


def test_the_command_prints_a_working_key_last(api_server: Any, api_backend: Any) -> None:
    make_user("alice")
    out = io.StringIO()
    call_command("create_api_key", "alice", "--name", "nightly", "--expires", "7", stdout=out)
    token = out.getvalue().split()[-1]
    key = ApiKey.objects.get(hashed=digest(token))
    assert key.name == "nightly" and key.expires_at is not None
    answer = client_for(api_server, token).chat.completions.create(
        model="deepseek-v4-flash", messages=QUESTION
    )
    assert answer.choices[0].message.content


@pytest.mark.django_db
def test_the_command_refuses_an_unknown_user() -> None:
    with pytest.raises(CommandError):
        call_command("create_api_key", "nobody", stdout=io.StringIO())
