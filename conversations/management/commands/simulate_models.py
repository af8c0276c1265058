"""`manage.py simulate_models`: serve the bundled model simulator until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from conversations.simulator import FAULTS, OLLAMA_PROFILES, OPENAI_PROFILES, Scenario, Simulator


class Command(BaseCommand):
    help = (
        "Serve a simulated reasoning model over the Ollama (/api/chat) and OpenAI-compatible "
        "(/chat/completions, /v1/chat/completions) protocols."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=11434)
        parser.add_argument("--rate", type=float, default=50.0, help="tokens per second")
        parser.add_argument("--reasoning-tokens", type=int, default=None)
        parser.add_argument("--answer-tokens", type=int, default=None)
        parser.add_argument(
            "--profile",
            default="deepseek",
            choices=sorted(OPENAI_PROFILES | OLLAMA_PROFILES),
            help="wire profile (the other protocol's paths use its default profile)",
        )
        parser.add_argument("--api-key", default=None, help="require this Bearer key")
        parser.add_argument("--first-token-delay", type=float, default=0.0)
        parser.add_argument("--fault", default=None, choices=sorted(FAULTS))
        parser.add_argument("--ollama-version", default="0.12.5")

    def handle(self, *args: Any, **options: Any) -> None:
        sim = Simulator(host=options["host"], port=options["port"], api_key=options["api_key"])
        sim.scenario = Scenario(
            profile=options["profile"],
            token_rate=options["rate"],
            reasoning_tokens=options["reasoning_tokens"],
            answer_tokens=options["answer_tokens"],
            first_token_delay=options["first_token_delay"],
            fault=options["fault"],
            ollama_version=options["ollama_version"],
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(self._serve(sim))

    async def _serve(self, sim: Simulator) -> None:
        url = await sim.start()
        # Start-up's objects are left out of later collections (once, after start-up): a full
        # collection walking them stalls every stream for tens of milliseconds.
        gc.freeze()
        self.stdout.write(
            f"Simulated models at {url} (Ollama: {url}, OpenAI-compatible: {url}/v1). "
            "Ctrl-C to stop.",
        )
        self.stdout.flush()
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop_async()
