"""Refusals of the API, in OpenAI's error shape and raised as the `openai` package's exception
types: bad, revoked and expired keys (401), an account that may not chat or a model outside
the key's scope (403), an unknown model (404), bad fields (400 naming the field). None of them
leaves a traceback in the server's log, reaches the model server, or records anything."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import openai
import pytest
from django.utils import timezone

from conversations.models import Conversation, Message
from review.models import UsageRecord
from tests.api_support import *  # noqa: F403
from tests.api_support import client_for, key_for
from tests.chat_support import make_user

pytestmark = pytest.mark.timeout(90)

QUESTION = [{"role": "user", "content": "How are mass and energy related?"}]


@pytest.fixture
def alice(api_backend: Any) -> Any:
    return make_user("alice")


def _chat_requests(sim: Any) -> list[Any]:
    return [r for r in sim.requests if r.path.endswith("/chat/completions")]


def _nothing_recorded(sim: Any) -> None:
    assert not _chat_requests(sim)
    assert not UsageRecord.objects.exists()
    assert not Conversation.objects.exists() and not Message.objects.exists()


def _ask(server: Any, token: str, **extra: Any) -> Any:
    params = {"model": "deepseek-v4-flash", "messages": QUESTION, **extra}
    return client_for(server, token).chat.completions.create(**params)


# --- keys -------------------------------------------------------------------------------------


def test_a_wrong_key_is_an_authentication_error(api_server: Any, alice: Any, sim: Any) -> None:
    key_for(alice)
    with pytest.raises(openai.AuthenticationError) as caught:
        _ask(api_server, "r1-not-a-key")
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"
    assert caught.value.body["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        client_for(api_server, "r1-not-a-key").models.list()
    _nothing_recorded(sim)


def test_no_key_at_all_is_refused(api_server: Any, alice: Any) -> None:
    response = httpx.post(
        f"{api_server.url}/v1/chat/completions",
        json={"model": "deepseek-v4-flash", "messages": QUESTION},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_an_expired_key_is_refused(api_server: Any, alice: Any, sim: Any) -> None:
    key, token = key_for(alice, expires_in_days=30)
    key.expires_at = timezone.now() - dt.timedelta(seconds=1)
    key.save(update_fields=["expires_at"])
    with pytest.raises(openai.AuthenticationError) as caught:
        _ask(api_server, token)
    assert caught.value.body["code"] == "expired_api_key"
    _nothing_recorded(sim)


def test_a_deactivated_user_is_refused(api_server: Any, alice: Any, sim: Any) -> None:
    _key, token = key_for(alice)
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _ask(api_server, token)
    assert caught.value.body["code"] == "account_inactive"
    _nothing_recorded(sim)


def test_a_user_without_a_confirmed_address_is_refused(api_server: Any, api_backend: Any) -> None:
    from allauth.account.models import EmailAddress

    bob = make_user("bob")
    EmailAddress.objects.filter(user=bob).update(verified=False)  # not confirmed yet
    _key, token = key_for(bob)
    with pytest.raises(openai.PermissionDeniedError):
        _ask(api_server, token)


# --- models and scope -------------------------------------------------------------------------


def test_an_unknown_model_is_not_found(api_server: Any, alice: Any, sim: Any) -> None:
    _key, token = key_for(alice)
    with pytest.raises(openai.NotFoundError) as caught:
        _ask(api_server, token, model="gpt-17")
    assert caught.value.body["param"] == "model"
    assert caught.value.body["code"] == "model_not_found"
    _nothing_recorded(sim)


def test_a_model_outside_the_keys_scope_is_forbidden(api_server: Any, alice: Any, sim: Any) -> None:
    _key, token = key_for(alice, models=["deepseek-chat"])
    client = client_for(api_server, token)
    assert [m.id for m in client.models.list()] == ["deepseek-chat"]
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _ask(api_server, token, model="deepseek-v4-flash")
    assert caught.value.body["code"] == "model_not_allowed"
    assert caught.value.body["param"] == "model"
    _nothing_recorded(sim)
    answer = _ask(api_server, token, model="deepseek-chat")
    assert answer.choices[0].message.content


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"top_p": -0.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2}, "n"),
        ({"extra_body": {"frequency_penalty": 1}}, "frequency_penalty"),
        ({"extra_body": {"cache": "yes"}}, "cache"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "hi", "tool_calls": []}]},
         "messages[0].tool_calls"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
         "messages[0].content[0]"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)  # fmt: skip
def test_a_bad_field_is_a_bad_request_naming_it(
    api_server: Any, alice: Any, sim: Any, extra: dict[str, Any], param: str
) -> None:
    _key, token = key_for(alice)
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(api_server, token, **extra)
    assert caught.value.body["param"] == param
    assert caught.value.body["type"] == "invalid_request_error"
    assert caught.value.body["message"]
    _nothing_recorded(sim)


def test_a_message_list_over_the_limit_is_refused(api_server: Any, alice: Any, sim: Any) -> None:
    from django.conf import settings

    _key, token = key_for(alice)
    many = [{"role": "user", "content": "hi"}] * (settings.R1CHAT_API_MAX_MESSAGES + 1)
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(api_server, token, messages=many)
    assert caught.value.body["code"] == "too_many_messages"
    assert caught.value.body["param"] == "messages"
    _nothing_recorded(sim)


def test_a_body_over_the_size_limit_is_refused(api_server: Any, alice: Any, sim: Any) -> None:
    from django.conf import settings

    _key, token = key_for(alice)
    huge = "x" * (settings.R1CHAT_API_MAX_BODY + 1)
    with pytest.raises(openai.APIStatusError) as caught:
        _ask(api_server, token, messages=[{"role": "user", "content": huge}])
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"
    _nothing_recorded(sim)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", '"é"'.encode("latin-1"), b""])
def test_a_malformed_body_is_a_bad_request(
    api_server: Any, alice: Any, sim: Any, body: bytes
) -> None:
    _key, token = key_for(alice)
    response = httpx.post(
        f"{api_server.url}/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and error["type"] == "invalid_request_error"
    _nothing_recorded(sim)


def test_bad_input_leaves_no_traceback_in_the_log(api_server: Any, alice: Any) -> None:
    _key, token = key_for(alice)
    before = len(api_server.log())
    headers = {"Authorization": f"Bearer {token}"}
    for body in (b"{", json.dumps({"model": 5}).encode(), json.dumps({"messages": "x"}).encode()):
        httpx.post(f"{api_server.url}/v1/chat/completions", content=body, headers=headers)
    httpx.get(f"{api_server.url}/v1/chat/completions", headers=headers)
    httpx.post(f"{api_server.url}/v1/models", headers=headers)
    with pytest.raises(openai.BadRequestError):
        _ask(api_server, token, temperature=-1)
    log = api_server.log()[before:]
    assert "Traceback" not in log
    assert "Error" not in log.replace("Bad Request", "").replace("Unauthorized", "")


def test_a_wrong_method_is_refused_in_the_error_shape(api_server: Any, alice: Any) -> None:
    _key, token = key_for(alice)
    response = httpx.get(
        f"{api_server.url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert "error" in response.json()
