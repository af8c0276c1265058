"""A malformed id in any admin URL of an object answers 404, for every model in the admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, reverse

pytestmark = pytest.mark.django_db

MALFORMED = ["not-an-id", "1x", "-", "99999999999999999999999999", "%00", "1.5"]


def _admin_models() -> list[Any]:
    return [model for model in apps.get_models() if admin.site.is_registered(model)]


def test_every_model_in_the_admin_is_checked() -> None:
    names = {model._meta.label for model in _admin_models()}
    assert {"conversations.Conversation", "conversations.Message", "accounts.User"} <= names


@pytest.mark.parametrize("view", ["change", "history", "delete"])
def test_a_malformed_id_is_not_found(admin_client: Client, view: str) -> None:
    admin_client.raise_request_exception = False  # a 500 is an answer here, not an error
    answers = {}
    for model in _admin_models():
        for bad in MALFORMED:
            try:
                url = reverse(
                    f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=[bad]
                )
            except NoReverseMatch:
                continue
            answers[(model._meta.label, bad)] = admin_client.get(url).status_code
    assert answers
    assert {key: code for key, code in answers.items() if code != 404} == {}
