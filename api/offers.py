"""The models the API offers, with the ids clients type.

The same lists as the chat page's model picker (conversations.turns.catalog: enabled backends,
their allowlists, cached model lists). A model's id is its name when one backend offers it, and
`<backend>/<name>` (the backend's name as a slug, e.g. `ollama/deepseek-r1:8b`) when several
do; the long form is accepted for every model.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass

from django.utils.text import slugify

from conversations.backends.base import ModelInfo
from conversations.models import Backend
from conversations.turns import catalog


@dataclass(frozen=True)
class Offer:
    id: str  # what /v1/models lists
    long_id: str  # `<backend slug>/<model>`
    backend: Backend
    model: str
    info: ModelInfo

    @property
    def ids(self) -> list[str]:
        return [self.id, self.long_id]


def backend_slug(backend: Backend) -> str:
    return slugify(backend.name) or f"backend-{backend.pk}"


async def offers() -> list[Offer]:
    """Every model of every enabled backend that answers now."""
    backends = await catalog.enabled_backends()
    lists = await asyncio.gather(*(catalog.backend_models(b) for b in backends))
    pairs = [(b, m) for b, (models, _error) in zip(backends, lists, strict=True) for m in models]
    counts = Counter(m.name for _b, m in pairs)
    out = []
    for backend, info in pairs:
        long_id = f"{backend_slug(backend)}/{info.name}"
        short = info.name if counts[info.name] == 1 else long_id
        out.append(Offer(short, long_id, backend, info.name, info))
    return out


def find(all_offers: list[Offer], model_id: str) -> Offer | None:
    """The offer a client's `model` names: a listed id first, then the long form."""
    for offer in all_offers:
        if offer.id == model_id:
            return offer
    for offer in all_offers:
        if offer.long_id == model_id:
            return offer
    return None
