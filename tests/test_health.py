from __future__ import annotations

import pytest
from django.test import override_settings


@pytest.mark.django_db
def test_healthz_is_ok_when_database_and_channel_layer_work(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "backend", ["r1chat.layers.TeamChannelLayer", "channels_redis.core.RedisChannelLayer"]
)
def test_healthz_names_the_failing_channel_layer(client, backend):
    broken = {
        "default": {
            "BACKEND": backend,
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    with override_settings(CHANNEL_LAYERS=broken):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["channel_layer"].startswith("error:")


def test_the_chat_sends_anonymous_visitors_to_sign_in(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.get(response["Location"]).status_code == 200
