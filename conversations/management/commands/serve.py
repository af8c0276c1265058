"""`manage.py serve`: what `make run` starts (Daphne's development server on the given port)."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve r1chat (HTTP and WebSockets) on one port."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("runserver", f"{options['host']}:{options['port']}", use_reloader=False)
