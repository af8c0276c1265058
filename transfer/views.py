"""Import (upload, preview, confirm, progress) and export all, from the account page.

Every endpoint answers JSON to the page's script (``Accept: application/json``) and redirects
back to the account page for a plain form post, so both work.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from conversations.guards import chat_required

from . import archive, jobs, reading
from .formats import Unreadable
from .models import ImportJob

RECENT_JOBS = 3
PREVIEW_KEPT = timedelta(days=1)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _get_job(request: HttpRequest, job_id: uuid.UUID) -> ImportJob:
    """The user's job, or 404: another user's id is *not found*."""
    job = ImportJob.objects.filter(uuid=job_id, owner=request.user).first()
    if job is None:
        raise Http404(_("That import does not exist."))
    return job


def panel_context(user: Any) -> dict[str, Any]:
    """What the account page's import-and-export section shows."""
    jobs.resume_stale(user)
    # A preview nobody confirmed within a day goes, with the file it holds.
    ImportJob.objects.filter(
        owner=user, status=ImportJob.Status.READY, created_at__lt=timezone.now() - PREVIEW_KEPT
    ).delete()
    recent = list(ImportJob.objects.filter(owner=user).defer("payload")[:RECENT_JOBS])
    active = any(
        job.status in {ImportJob.Status.QUEUED, ImportJob.Status.RUNNING} for job in recent
    )
    return {"jobs": recent, "active": active, "max_bytes": settings.R1CHAT_IMPORT_MAX_BYTES}


def _panel_html(request: HttpRequest) -> str:
    return render_to_string("transfer/_panel.html", panel_context(request.user), request)


def _reply(request: HttpRequest, job: ImportJob | None = None, *, error: str = "") -> HttpResponse:
    if _wants_json(request):
        if error:
            return JsonResponse({"error": "invalid", "detail": error}, status=400)
        return JsonResponse({"job": job.as_json() if job else None, "html": _panel_html(request)})
    if error:
        messages.error(request, error)
    return redirect(reverse("accounts:account") + "#section-transfer")


@never_cache
@require_POST
@chat_required
def import_upload(request: HttpRequest) -> HttpResponse:
    """Check and count an upload; the import waits for a confirmation."""
    upload = request.FILES.get("file")
    if upload is None:
        return _reply(request, error=_("Choose a file to import (.json or .zip)."))
    if error := reading.too_big(upload.size or 0):
        return _reply(request, error=str(error))
    data = upload.read()
    try:
        job = jobs.create_job(request.user, upload.name or "", data)
    except Unreadable as exc:
        return _reply(request, error=str(exc))
    # Only the newest preview is kept (each holds its file).
    ImportJob.objects.filter(owner=request.user, status=ImportJob.Status.READY).exclude(
        pk=job.pk
    ).delete()
    return _reply(request, job)


@never_cache
@require_POST
@chat_required
def import_start(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    job = _get_job(request, job_id)
    if job.status != ImportJob.Status.READY:
        return _reply(request, error=_("This import has already been started."))
    busy = ImportJob.objects.filter(
        owner=request.user, status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    ).exists()
    if busy:
        return _reply(request, error=_("Another import is still running. Wait until it ends."))
    jobs.start_job(job)
    job.refresh_from_db()
    return _reply(request, job)


@never_cache
@require_POST
@chat_required
def import_cancel(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Discard a preview, or stop a running import after the conversation it is writing."""
    job = _get_job(request, job_id)
    if job.status == ImportJob.Status.READY:
        job.delete()
        return _reply(request, None)
    if not job.finished:
        ImportJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    job.refresh_from_db()
    return _reply(request, job)


@never_cache
@require_GET
@chat_required
def import_status(request: HttpRequest, job_id: uuid.UUID) -> JsonResponse:
    """A job's progress and summary (polled by the account page)."""
    jobs.resume_stale(request.user)
    return JsonResponse({"job": _get_job(request, job_id).as_json()})


@never_cache
@require_GET
@chat_required
def panel(request: HttpRequest) -> HttpResponse:
    """The account page's import-and-export section, as the page shows it."""
    return HttpResponse(_panel_html(request))


@never_cache
@require_GET
@chat_required
def export_all(request: HttpRequest) -> StreamingHttpResponse:
    """A zip of every conversation of the user, streamed while it is written."""
    user = request.user
    # Under ASGI the chunks come from an async iterator (a sync one would be collected whole).
    chunks = (
        archive.azip_chunks(user) if isinstance(request, ASGIRequest) else archive.zip_chunks(user)
    )
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    response["Content-Disposition"] = content_disposition_header(
        True, f"{archive.folder_name()}.zip"
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response
