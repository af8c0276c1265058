from __future__ import annotations

import sys
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _

FIRST_ADMIN_HINT = """
  There is no administrator yet. Create the first one with:

      .venv/bin/python manage.py createsuperuser

  then sign in at /admin/ on the address the server prints when it starts.
"""


def _hint_first_admin(sender: AppConfig, verbosity: int = 1, **kwargs: Any) -> None:
    """After `migrate` (so on every `make run`): say how to make the first admin, if none."""
    if verbosity < 1:
        return
    from django.contrib.auth import get_user_model
    from django.db import DatabaseError

    try:
        exists = get_user_model().objects.filter(is_superuser=True).exists()
    except DatabaseError:
        return
    if not exists:
        sys.stdout.write(FIRST_ADMIN_HINT + "\n")


class AccountsConfig(AppConfig):
    name = "accounts"
    # Not "Accounts": that is the title of allauth's app (email addresses) in the admin.
    verbose_name = _("Users and invitations")

    def ready(self) -> None:
        from . import signals  # noqa: F401

        post_migrate.connect(_hint_first_admin, sender=self, dispatch_uid="accounts.first_admin")
