"""Which backends and models a user can pick, and which one a generation uses."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext_lazy as _

from ..backends import get_backend
from ..backends.base import BackendError, ModelInfo
from ..models import Backend, ModelCapability

logger = logging.getLogger(__name__)

BACKENDS_VERSION_KEY = "r1chat:backends-version"
MODEL_CACHE_SECONDS = 60.0
UNREACHABLE_CACHE_SECONDS = 10.0

# backend id → (checked at, updated_at of the row, models, error). The error is a lazy
# translation: the same cached list answers pages in every language.
_model_cache: dict[int, tuple[float, Any, list[ModelInfo], Any]] = {}
# backend id → the fetch in flight, so a burst of requests makes one /models call
_fetching: dict[int, asyncio.Future[tuple[list[ModelInfo], Any]]] = {}

# What models were seen doing (ModelCapability), laid over the catalog's first guess:
# (read at, {(backend id, model): thinking}). Read again after LEARNED_SECONDS (another
# process may have learned something) and at once after this process learns.
LEARNED_SECONDS = 30.0
_learned: tuple[float, dict[tuple[int, str], str]] | None = None
# How long the default Ollama address is given to answer when OLLAMA_BASE_URL is unset.
OLLAMA_PROBE_SECONDS = 1.0

# The enabled backends, read from the database when the version in the shared cache changes
# (every save or delete of a Backend bumps it) and refreshed after BACKENDS_SECONDS (a change
# made by another process that does not share the cache, e.g. `manage.py shell`).
BACKENDS_SECONDS = 2.0
_backends: tuple[float, Any, list[Backend]] | None = None
# The lookup in flight and the version it reads for: one query however many questions ask.
_lookup: tuple[Any, asyncio.Task[list[Backend]]] | None = None


def backends_changed(**kwargs: Any) -> None:
    """Signal receiver: a Backend row was saved or deleted."""
    global _backends
    _backends = None
    cache.set(BACKENDS_VERSION_KEY, time.time_ns(), None)
    forget(getattr(kwargs.get("instance"), "pk", None))


async def enabled_backends() -> list[Backend]:
    """The enabled backends. A list older than BACKENDS_SECONDS is still answered at once while
    a fresh one is read in the background: every question needs it, and a question after a
    quiet moment would otherwise wait for a database round trip."""
    version = await cache.aget(BACKENDS_VERSION_KEY)
    if _backends is not None and _backends[1] == version:
        if time.monotonic() - _backends[0] >= BACKENDS_SECONDS:
            _look_up(version)
        return _backends[2]
    return await asyncio.shield(_look_up(version))


def _look_up(version: Any) -> asyncio.Task[list[Backend]]:
    global _lookup
    loop = asyncio.get_running_loop()
    if (
        _lookup is None
        or _lookup[0] != version
        or _lookup[1].done()
        or (_lookup[1].get_loop() is not loop)
    ):
        _lookup = (version, loop.create_task(_read_backends(version)))
    return _lookup[1]


async def _read_backends(version: Any) -> list[Backend]:
    global _backends
    started = time.monotonic()
    rows = [b async for b in Backend.objects.filter(enabled=True)]
    if await cache.aget(BACKENDS_VERSION_KEY) == version:  # (not if a change came meanwhile)
        _backends = (started, version, rows)
    return rows


def _ollama_answers(base_url: str) -> bool:
    """Whether an Ollama answers at `base_url` (its /api/version), within a second."""
    try:
        response = httpx.get(base_url.rstrip("/") + "/api/version", timeout=OLLAMA_PROBE_SECONDS)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "version" in response.text


def ensure_env_backends() -> list[Backend]:
    """Create the Backend rows the environment describes, once; the admin owns them after.

    Ollama is created when OLLAMA_BASE_URL is set, or when an Ollama answers at its default
    address (OLLAMA_PROBE_URL); otherwise the picker would show a group that can never work.
    A row made earlier from that default address, which answers no more, is disabled."""
    wanted: list[dict[str, Any]] = []
    ollama_url = settings.OLLAMA_BASE_URL
    if not ollama_url and _ollama_answers(settings.OLLAMA_PROBE_URL):
        ollama_url = settings.OLLAMA_PROBE_URL
    if ollama_url:
        wanted.append({"name": "Ollama", "kind": "ollama", "base_url": ollama_url})
    else:
        for row in Backend.objects.filter(
            source="env", kind="ollama", base_url=settings.OLLAMA_PROBE_URL, enabled=True
        ):
            row.enabled = False
            row.save(update_fields=["enabled", "updated_at"])
    if settings.DEEPSEEK_API_KEY:
        wanted.append(
            {
                "name": "DeepSeek",
                "kind": "openai",
                "base_url": settings.DEEPSEEK_BASE_URL,
                "api_key": settings.DEEPSEEK_API_KEY,
                "default_model": "deepseek-v4-flash",
            }
        )
    if settings.R1CHAT_OPENAI_BASE_URL:
        wanted.append(
            {
                "name": "OpenAI-compatible",
                "kind": "openai",
                "base_url": settings.R1CHAT_OPENAI_BASE_URL,
                "api_key": settings.R1CHAT_OPENAI_API_KEY,
            }
        )
    created = []
    for position, fields in enumerate(wanted):
        name = fields.pop("name")
        backend, was_created = Backend.objects.get_or_create(
            name=name, defaults={**fields, "source": "env", "position": position}
        )
        if was_created:
            created.append(backend)
    return created


def forget(backend_id: int | None = None) -> None:
    global _backends, _learned
    _backends = None
    if backend_id is None:
        _model_cache.clear()
        _learned = None
    else:
        _model_cache.pop(backend_id, None)


async def backend_models(backend: Backend) -> tuple[list[ModelInfo], Any]:
    """The models a backend offers (allowlist applied), or the reason it offers none now.

    A list older than its time to live is still answered at once while a fresh one is fetched
    in the background (a burst of questions must not wait on the server's /models); only the
    first fetch for a backend, or after its row changed, is waited for."""
    cached = _model_cache.get(backend.pk)
    now = time.monotonic()
    if cached and cached[1] == backend.updated_at:
        ttl = MODEL_CACHE_SECONDS if cached[3] is None else UNREACHABLE_CACHE_SECONDS
        if now - cached[0] >= ttl:
            _refresh(backend, now)
        return cached[2], cached[3]
    return await asyncio.shield(_refresh(backend, now))


async def warm() -> None:
    """Fetch the model lists not cached yet, so that a tab's first question does not wait."""
    for backend in await enabled_backends():
        if backend.pk not in _model_cache:
            _refresh(backend, time.monotonic())


def _refresh(backend: Backend, now: float) -> asyncio.Future[tuple[list[ModelInfo], Any]]:
    """The fetch in flight for this backend, started if there is none (one per burst)."""
    pending = _fetching.get(backend.pk)
    if pending is not None and pending.get_loop() is asyncio.get_running_loop():
        return pending
    task = asyncio.ensure_future(_fetch_models(backend, now))
    _fetching[backend.pk] = task
    task.add_done_callback(lambda _t: _fetching.pop(backend.pk, None))
    return task


async def _fetch_models(backend: Backend, now: float) -> tuple[list[ModelInfo], Any]:
    client = get_backend(backend.config())
    error: Any = None
    models: list[ModelInfo] = []
    try:
        models = await asyncio.wait_for(client.list_models(), timeout=5)
    except BackendError as exc:
        from ..errors import ERROR_MESSAGES

        error = ERROR_MESSAGES.get(exc.kind.value, ERROR_MESSAGES["internal"])[0]
    except TimeoutError:
        error = _("The model server did not answer in time.")
    allow = set(backend.model_allowlist or [])
    if allow:
        models = [m for m in models if m.name in allow]
    _model_cache[backend.pk] = (now, backend.updated_at, models, error)
    return models, error


# --- what models were seen doing -------------------------------------------------------------


async def learned_thinking() -> dict[tuple[int, str], str]:
    """{(backend id, model): thinking} as learned from what models streamed."""
    global _learned
    if _learned is not None and time.monotonic() - _learned[0] < LEARNED_SECONDS:
        return _learned[1]
    rows = {
        (backend_id, model): thinking
        async for backend_id, model, thinking in ModelCapability.objects.values_list(
            "backend_id", "model", "thinking"
        )
    }
    _learned = (time.monotonic(), rows)
    return rows


def with_learned(
    backend_id: int, info: ModelInfo, learned: dict[tuple[int, str], str]
) -> ModelInfo:
    """`info` with what the model was seen doing in place of the guess from its name."""
    seen = learned.get((backend_id, info.name))
    if seen is None or seen == info.thinking:
        return info
    return dataclasses.replace(info, thinking=seen)  # type: ignore[arg-type]


def learned_from_stream(guess: str, streamed_reasoning: bool) -> str | None:
    """What a reply teaches about a model whose catalog entry said `guess`: a model that
    streamed reasoning thinks; one guessed "never" that did thinks whether asked or not."""
    if streamed_reasoning and guess == "never":
        return "always"
    return None


async def learn_thinking(backend_id: int, model: str, thinking: str) -> None:
    """Remember what a model was seen doing (one row per backend and model)."""
    global _learned
    await ModelCapability.objects.aupdate_or_create(
        backend_id=backend_id, model=model[:200], defaults={"thinking": thinking}
    )
    if _learned is not None:
        _learned[1][(backend_id, model)] = thinking
    logger.info("learned that %s on backend %s: thinking %s", model, backend_id, thinking)


def forget_learned() -> None:
    global _learned
    _learned = None


def learned_changed(**kwargs: Any) -> None:
    """Signal receiver: a ModelCapability row was saved or deleted (the runner, the admin)."""
    instance = kwargs.get("instance")
    if kwargs.get("signal") is not None and instance is not None and _learned is not None:
        key = (instance.backend_id, instance.model)
        if kwargs.get("created") is None:  # deleted
            _learned[1].pop(key, None)
        else:
            _learned[1][key] = instance.thinking


async def picker(user: Any = None) -> list[dict[str, Any]]:
    """Every enabled backend with its models, for the model picker (no secrets). A reason a
    backend offers no model is in the language of the request."""
    backends = await enabled_backends()
    results = await asyncio.gather(*(backend_models(b) for b in backends))
    learned = await learned_thinking()
    return [
        {
            "id": backend.pk,
            "name": backend.name,
            "kind": backend.kind,
            "simulated": backend.source == "simulator",
            "default_model": backend.default_model,
            "available": error is None,
            "reason": None if error is None else str(error),
            "models": [with_learned(backend.pk, m, learned).as_dict() for m in models],
        }
        for backend, (models, error) in zip(backends, results, strict=True)
    ]


async def resolve(choice: dict[str, Any]) -> tuple[Backend | None, str, ModelInfo | None]:
    """The backend and model a generation uses: the chosen ones, else the first that works."""
    backends = await enabled_backends()
    if not backends:
        return None, "", None
    backend = next((b for b in backends if b.pk == choice.get("backend")), backends[0])
    models, _error = await backend_models(backend)
    names = [m.name for m in models]
    model = choice.get("model") or ""
    if model not in names:
        if not names:  # unreachable now: try what was asked; the generation reports the error
            model = model or backend.default_model
        else:
            model = backend.default_model if backend.default_model in names else names[0]
    info = next((m for m in models if m.name == model), None)
    if info is not None:
        info = with_learned(backend.pk, info, await learned_thinking())
    return backend, model, info
