"""The model ids the API offers: the chat page's model lists, a model's plain name when one
backend offers it, `<backend>/<model>` when several do (the long form always works)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from api import offers
from conversations.models import Backend
from conversations.turns import catalog
from tests.chat_support import fresh_layer_and_clients  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


def make_backend(base_url: str, name: str, **extra: Any) -> Backend:
    return Backend.objects.create(name=name, kind="openai", base_url=base_url, **extra)


@pytest.fixture(autouse=True)
async def _fresh_catalog() -> AsyncIterator[None]:
    catalog.forget()
    yield
    catalog.forget()
    await sync_to_async(connections.close_all)()


async def test_a_model_offered_once_goes_by_its_name(simulator: Any) -> None:
    await sync_to_async(make_backend)(simulator.base_url, name="Sim")
    found = await offers.offers()
    ids = {o.id for o in found}
    assert {"deepseek-v4-flash", "deepseek-reasoner"} <= ids
    offer = offers.find(found, "deepseek-v4-flash")
    assert offer is not None and offer.model == "deepseek-v4-flash"
    assert offers.find(found, "sim/deepseek-v4-flash") is offer


async def test_a_model_two_backends_offer_goes_by_backend_and_name(simulator: Any) -> None:
    await sync_to_async(make_backend)(simulator.base_url, name="Lab GPU")
    await sync_to_async(make_backend)(
        simulator.base_url, name="Cloud", model_allowlist=["deepseek-v4-flash", "deepseek-chat"]
    )
    found = await offers.offers()
    ids = {o.id for o in found}
    assert {"lab-gpu/deepseek-v4-flash", "cloud/deepseek-v4-flash"} <= ids
    assert "deepseek-v4-flash" not in ids
    assert "deepseek-reasoner" in ids  # only the lab offers it
    cloud = offers.find(found, "cloud/deepseek-chat")
    assert cloud is not None and cloud.backend.name == "Cloud"
    assert offers.find(found, "deepseek-v4-flash") is None


async def test_a_disabled_backend_offers_nothing(simulator: Any) -> None:
    await sync_to_async(make_backend)(simulator.base_url, name="Off", enabled=False)
    assert await offers.offers() == []
