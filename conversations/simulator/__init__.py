"""The bundled model simulator: a real HTTP server on loopback speaking Ollama's and the
OpenAI-compatible (DeepSeek-style) streaming protocols, for tests, benchmarks and the offline demo.

    sim = Simulator()
    base_url = sim.start_in_thread()
    sim.scenario = Scenario(profile="vllm-new", token_rate=50, fault="drop")
    ...
    sim.stop()
"""

from __future__ import annotations

from .scenario import (
    DEFAULT_OLLAMA_MODELS,
    DEFAULT_SCRIPT,
    FAULTS,
    MARKDOWN_SCRIPT,
    OLLAMA_PROFILES,
    OPENAI_MODELS_ALL,
    OPENAI_PROFILES,
    Scenario,
    Script,
    SimRequest,
    tokenize,
)
from .server import Simulator

__all__ = [
    "DEFAULT_OLLAMA_MODELS",
    "DEFAULT_SCRIPT",
    "FAULTS",
    "MARKDOWN_SCRIPT",
    "OLLAMA_PROFILES",
    "OPENAI_MODELS_ALL",
    "OPENAI_PROFILES",
    "Scenario",
    "Script",
    "SimRequest",
    "Simulator",
    "tokenize",
]
