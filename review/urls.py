from __future__ import annotations

from django.urls import path

from . import views

app_name = "review"

urlpatterns = [
    # /review/feedback/<message uuid>: the chat page's thumbs up and down (JSON POST)
    path("feedback/<uuid:message>", views.feedback, name="feedback"),
]
