from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from . import readiness, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", readiness.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("account/api-keys/", include("api.account_urls")),
    path("account/", include("accounts.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("review/", include("review.urls")),
    path("v1/", include("api.urls")),
    path("", include("conversations.urls")),
]
