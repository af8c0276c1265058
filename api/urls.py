from __future__ import annotations

from django.urls import path

from . import views

app_name = "api"

urlpatterns = [
    # /v1/ (OpenAI-compatible)
    path("models", views.models, name="models"),
    path("models/<path:model_id>", views.model_detail, name="model"),
    path("chat/completions", views.chat_completions, name="chat-completions"),
]
