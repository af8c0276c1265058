"""`{% api_keys_of user as panel %}`: the account page's API keys section (api/_keys.html)."""

from __future__ import annotations

from typing import Any

from django import template

from ..account_views import keys_of, model_ids
from ..forms import ApiKeyForm

register = template.Library()


@register.simple_tag
def api_keys_of(user: Any) -> dict[str, Any]:
    return {"keys": keys_of(user), "form": ApiKeyForm(model_ids=model_ids())}
