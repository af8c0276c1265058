from __future__ import annotations

from django.urls import path

from . import views
from .search import views as search_views

urlpatterns = [
    # /
    path("", views.home, name="home"),
    # /c/<uuid>/
    path("c/<uuid:conversation_id>/", views.conversation_detail, name="conversation-detail"),
    path("c/<uuid:conversation_id>/rename", views.conversation_rename, name="conversation-rename"),
    path("c/<uuid:conversation_id>/pin", views.conversation_pin, name="conversation-pin"),
    path("c/<uuid:conversation_id>/delete", views.conversation_delete, name="conversation-delete"),
    path(
        "c/<uuid:conversation_id>/export.md", views.export_markdown, name="conversation-export-md"
    ),
    path(
        "c/<uuid:conversation_id>/export.json", views.export_json, name="conversation-export-json"
    ),
    # /api/
    path("api/conversations", views.conversation_list, name="api-conversations"),
    path(
        "api/conversations/<uuid:conversation_id>/thread",
        views.conversation_thread,
        name="api-conversation-thread",
    ),
    path("api/models", views.api_models, name="api-models"),
    path("api/search", search_views.search, name="api-search"),
    path("api/settings", views.api_settings, name="api-settings"),
    path("api/theme", views.api_theme, name="api-theme"),
]
