"""The account page's import-and-export section (templates/transfer/_account.html)."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.translation import gettext as _

register = template.Library()


@register.simple_tag
def transfer_panel(user: Any) -> dict[str, Any]:
    from ..views import panel_context

    return panel_context(user)


@register.simple_tag
def transfer_strings() -> dict[str, str]:
    """The words the section's script shows (static/js/transfer/transfer.js)."""
    return {
        "checking": _("Checking the file…"),
        "failed": _("The request failed. Try again."),
    }
