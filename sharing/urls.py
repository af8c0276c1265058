from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    # /c/<uuid>/share: a new link to the conversation (JSON POST from the chat page); its links
    path("c/<uuid:conversation_id>/share", views.create_link, name="conversation-share"),
    path("c/<uuid:conversation_id>/shares", views.conversation_links, name="conversation-shares"),
    # /s/<token>/: the shared page; continue and revoke
    path("s/<str:token>/", views.shared_page, name="shared-conversation"),
    path("s/<str:token>/continue", views.continue_link, name="shared-continue"),
    path("s/<str:token>/revoke", views.revoke_link, name="shared-revoke"),
    path("shared/revoke-all", views.revoke_all, name="shared-revoke-all"),
]
