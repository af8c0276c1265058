"""Model backends: `get_backend(config)` returns the shared client for one model server.

One client object per distinct configuration, so every generation for a backend shares one
`httpx.AsyncClient` and its connection pool (and Ollama's capability cache). The client's
transport is `httpx_aiohttp.AiohttpTransport`, with explicit limits, timeouts, TLS settings
and the environment's proxy (client.py). A changed configuration (the admin edited the row)
gets a new client; `close_all()` closes them all at shutdown.

The modules, in the order a request passes them: base.py (requests, events, errors),
client.py (the httpx client), retry.py (requests, deadlines, error mapping, retries),
streams.py (SSE, NDJSON and `<think>` parsers), openai.py and ollama.py (the protocols).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import BackendConfig, ModelBackend
from .ollama import OllamaBackend
from .openai import OpenAIBackend

__all__ = ["close_all", "config_key", "get_backend"]

_backends: dict[tuple[Any, ...], OpenAIBackend | OllamaBackend] = {}


def config_key(config: BackendConfig) -> tuple[Any, ...]:
    """Every field, lists as tuples: any change (URL, key, timeouts) is a different client."""
    return tuple(
        tuple(value) if isinstance(value, list) else value
        for value in (getattr(config, f.name) for f in dataclasses.fields(config))
    )


def get_backend(config: BackendConfig) -> ModelBackend:
    key = config_key(config)
    backend = _backends.get(key)
    if backend is None:
        if config.kind == "ollama":
            backend = OllamaBackend(config)
        elif config.kind == "openai":
            backend = OpenAIBackend(config)
        else:
            raise ValueError(f"unknown backend kind {config.kind!r}")
        if config.name:
            # An edited row replaces its old client. It is dropped, not closed: generations
            # still streaming through it keep their reference and finish normally.
            for old_key, old in list(_backends.items()):
                if old.config.name == config.name:
                    del _backends[old_key]
        _backends[key] = backend
    return backend


async def close_all() -> None:
    """Close every shared client (at shutdown, or between tests)."""
    backends = list(_backends.values())
    _backends.clear()
    for backend in backends:
        await backend.aclose()
