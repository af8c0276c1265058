from __future__ import annotations

from django.urls import path

from . import views

app_name = "transfer"

urlpatterns = [
    # /account/transfer/
    path("panel", views.panel, name="panel"),
    path("import", views.import_upload, name="import-upload"),
    path("import/<uuid:job_id>", views.import_status, name="import-status"),
    path("import/<uuid:job_id>/start", views.import_start, name="import-start"),
    path("import/<uuid:job_id>/cancel", views.import_cancel, name="import-cancel"),
    path("export.zip", views.export_all, name="export-all"),
]
