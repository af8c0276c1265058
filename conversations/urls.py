from __future__ import annotations

from django.urls import path

from . import attachment_views, presets, views
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
        "c/<uuid:conversation_id>/restore", views.conversation_restore, name="conversation-restore"
    ),
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
    path("api/attachments", attachment_views.attachment_upload, name="api-attachments"),
    path(
        "api/attachments/<uuid:attachment_id>",
        attachment_views.attachment_detail,
        name="api-attachment",
    ),
    path(
        "api/attachments/<uuid:attachment_id>/content",
        attachment_views.attachment_content,
        name="api-attachment-content",
    ),
    path(
        "api/attachments/<uuid:attachment_id>/delete",
        attachment_views.attachment_delete,
        name="api-attachment-delete",
    ),
    path("api/models", views.api_models, name="api-models"),
    path("api/search", search_views.search, name="api-search"),
    path("api/settings", views.api_settings, name="api-settings"),
    path("api/theme", views.api_theme, name="api-theme"),
    path("api/presets", presets.preset_list, name="api-presets"),
    path("api/presets/<int:preset_id>", presets.preset_update, name="api-preset"),
    path("api/presets/<int:preset_id>/delete", presets.preset_delete, name="api-preset-delete"),
]
