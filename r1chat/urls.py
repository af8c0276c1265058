from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from . import i18n, readiness, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", readiness.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("account/transfer/", include("transfer.urls")),
    path("account/api-keys/", include("api.account_urls")),
    path("account/", include("accounts.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", i18n.javascript_catalog, name="javascript-catalog"),
    path("review/", include("review.urls")),
    path("", include("sharing.urls")),
    path("v1/", include("api.urls")),
    path("", include("conversations.urls")),
]
