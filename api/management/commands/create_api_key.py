"""`manage.py create_api_key USERNAME [--name NAME] [--expires DAYS]`: a new API key for a
user, printed as the last word of the output (for admins' automation)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.models import ApiKey


class Command(BaseCommand):
    help = "Make an API key for a user and print it (the last word of the output)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="what the key is for")
        parser.add_argument("--expires", type=int, metavar="DAYS", help="expire after DAYS days")
        parser.add_argument(
            "--model", action="append", default=[], dest="models",
            help="a model id the key may use (repeatable; none: every model)",
        )  # fmt: skip
        parser.add_argument(
            "--record", action="store_true", help="save calls in the user's history"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"No user named {options['username']!r}.")
        expires = options["expires"]
        if expires is not None and expires < 1:
            raise CommandError("--expires must be at least 1 day.")
        key, token = ApiKey.issue(
            user,
            options["name"].strip() or "manage.py create_api_key",
            expires_in_days=expires,
            models=options["models"],
            record=options["record"],
        )
        when = f"expires {key.expires_at:%Y-%m-%d %H:%M %Z}" if key.expires_at else "no expiry"
        self.stdout.write(f"API key {key.name!r} for {user.username} ({when}):\n{token}")
