from __future__ import annotations

from django.urls import path

from . import account_views

app_name = "api_keys"

urlpatterns = [
    # /account/api-keys/
    path("", account_views.create_key, name="create"),
    path("<uuid:key_id>/revoke", account_views.revoke_key, name="revoke"),
]
