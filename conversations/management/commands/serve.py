"""`manage.py serve`: what `make run` starts.

Creates the backends the environment describes (once), and when none of the enabled backends
answers, starts the bundled model simulator and registers it as "Simulator (offline demo)" so
every part of the interface can be tried. Then serves HTTP and WebSockets with Daphne.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from conversations.backends import get_backend
from conversations.models import Backend
from conversations.turns import catalog

SIMULATOR_NAME = "Simulator (offline demo)"


async def _reachable(backends: list[Backend]) -> list[Backend]:
    async def check(backend: Backend) -> bool:
        try:
            health = await asyncio.wait_for(get_backend(backend.config()).health(), timeout=3)
        except Exception:
            return False
        return bool(health.reachable)

    results = await asyncio.gather(*(check(b) for b in backends))
    return [b for b, ok in zip(backends, results, strict=True) if ok]


def site_url(host: str, port: int) -> str:
    """The address to open for a server bound to ``host``:``port`` (every interface: loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "[::]": "[::1]", "": "127.0.0.1"}.get(
        host, host
    )
    if ":" in shown and not shown.startswith("["):  # an IPv6 literal
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def banner(host: str, port: int, *, has_admin: bool) -> str:
    """What `serve` prints before serving: the site and its admin, on the port it serves."""
    url = site_url(host, port)
    lines = [f"r1chat: {url}", f"Admin:  {url}admin/"]
    if not has_admin:
        lines.append(
            "        (no administrator yet: create one with "
            ".venv/bin/python manage.py createsuperuser)"
        )
    return "\n".join(lines)


def _has_admin() -> bool:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.filter(is_superuser=True).exists()


class Command(BaseCommand):
    help = "Serve r1chat (HTTP and WebSockets) on one port; start the offline demo if needed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        for backend in catalog.ensure_env_backends():
            self.stdout.write(
                f"Added backend {backend.name} ({backend.base_url}) from the environment."
            )
        self._offline_demo()
        self.stdout.write(banner(options["host"], options["port"], has_admin=_has_admin()))
        call_command("runserver", f"{options['host']}:{options['port']}", use_reloader=False)

    def _offline_demo(self) -> None:
        mode = settings.R1CHAT_SIMULATOR
        demo = Backend.objects.filter(source="simulator").first()
        real = list(Backend.objects.filter(enabled=True).exclude(source="simulator"))
        needed = mode == "on" or (mode == "auto" and not asyncio.run(_reachable(real)))
        if not needed:
            if demo is not None and demo.enabled:
                demo.enabled = False
                demo.save(update_fields=["enabled", "updated_at"])
            return
        from conversations.simulator import Simulator

        simulator = Simulator(host="127.0.0.1", port=0)
        base_url = simulator.start_in_thread()
        simulator.scenario.token_rate = 40.0  # a readable pace for the demo
        Backend.objects.update_or_create(
            source="simulator",
            defaults={
                "name": SIMULATOR_NAME,
                "kind": "openai",
                "base_url": base_url,
                "enabled": True,
                "default_model": "deepseek-v4-flash",
                "position": 1000,
            },
        )
        self.stdout.write(
            f"No model server answered, so the offline demo simulator runs at {base_url}.\n"
            "Connect a real model with OLLAMA_BASE_URL, DEEPSEEK_API_KEY or R1CHAT_OPENAI_BASE_URL."
        )
