"""Uploading files for a question, removing one before it is sent, and reading a file's text.

Uploads come before the question: the composer posts each file here (multipart, field `file`,
CSRF token in `X-CSRFToken`), shows it as a chip, and the `send` frame names the ids.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from asgiref.sync import async_to_sync
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from . import attachments
from .guards import chat_required
from .models import Attachment

UPLOADS_PER_MINUTE = 30
# Room for the multipart envelope around the file (boundaries, headers, other fields).
ENVELOPE_BYTES = 64 * 1024


class SizeLimitHandler(FileUploadHandler):
    """Stops reading an uploaded file once it passes the attachment size limit."""

    def __init__(self, request: HttpRequest, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # (the next handlers keep the file)


def _error(code: str, detail: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


@csrf_exempt  # (checked by `_upload`, after the size limit is in place: Django's documented way)
@chat_required
def attachment_upload(request: HttpRequest) -> HttpResponse:
    """POST a file; answers its chip ({id, name, size, kind, …}) or {error, detail}."""
    if request.method != "POST":
        return _error("method", _("Upload files with POST."), status=405)
    limit = attachments.limits()[0]
    name = unquote(request.headers.get("X-File-Name", ""))[:255] or _("file")
    if _declared_length(request) > limit + ENVELOPE_BYTES:
        return _error("too_large", attachments.too_large(name).message, status=413)
    handler = SizeLimitHandler(request, limit)
    request.upload_handlers.insert(0, handler)
    return _upload(request, handler)


@csrf_protect
def _upload(request: HttpRequest, handler: SizeLimitHandler) -> HttpResponse:
    from .turns.actions import count_this_minute

    upload = request.FILES.get("file")
    if handler.exceeded:
        name = unquote(request.headers.get("X-File-Name", "")) or _("file")
        return _error("too_large", attachments.too_large(name).message, status=413)
    if upload is None:
        return _error("no_file", _("Choose a file to attach."))
    if async_to_sync(count_this_minute)("uploads", request.user.pk) > UPLOADS_PER_MINUTE:
        return _error("throttled", _("Too many files at once. Wait a minute."), status=429)
    data = upload.read(attachments.limits()[0] + 1)
    try:
        attachment = attachments.store_upload(request.user, upload.name or "", data)
    except attachments.AttachmentError as exc:
        status = 413 if exc.code == "too_large" else 400
        return _error(exc.code, exc.message, status=status)
    refusal = _image_refusal(request, attachment)
    if refusal:
        attachment.delete()
        return _error("images_unsupported", refusal)
    return JsonResponse({"attachment": attachments.chip(attachment)}, status=201)


def _image_refusal(request: HttpRequest, attachment: Attachment) -> str:
    """An image for the model the composer has chosen (fields `backend`, `model`), when that
    model does not accept images: refused at once, not only when the question is sent."""
    if attachment.kind != Attachment.Kind.IMAGE or not request.POST.get("model"):
        return ""
    from .chat.protocol import ClientError
    from .turns import catalog

    try:
        backend_id = int(request.POST.get("backend") or 0)
    except ValueError:
        backend_id = 0
    choice = {"backend": backend_id, "model": request.POST["model"][:200]}
    backend, model, info = async_to_sync(catalog.resolve)(choice)
    config = {"accepts_images": attachments.accepts_images(backend, model, info), "model": model}
    try:
        attachments.check_images([attachment], config)
    except ClientError as exc:
        return exc.detail
    return ""


def _own(request: HttpRequest, attachment_id: uuid.UUID) -> Attachment:
    """The user's attachment, or 404: another user's id is *not found*."""
    attachment = (
        Attachment.objects.defer("data").filter(uuid=attachment_id, owner=request.user).first()
    )
    if attachment is None:
        raise Http404(_("That file does not exist."))
    return attachment


@require_POST
@chat_required
def attachment_delete(request: HttpRequest, attachment_id: uuid.UUID) -> JsonResponse:
    """Remove a file from the composer before its question is sent."""
    attachment = _own(request, attachment_id)
    if attachment.message_id is not None:
        return _error("sent", _("This file was already sent with a message."))
    attachment.delete()
    return JsonResponse({"deleted": str(attachment_id)})


@require_GET
@chat_required
def attachment_content(request: HttpRequest, attachment_id: uuid.UUID) -> HttpResponse:
    """An attached image's bytes, for its thumbnail (only images are ever served back)."""
    attachment = Attachment.objects.filter(
        uuid=attachment_id, owner=request.user, kind=Attachment.Kind.IMAGE
    ).first()
    if attachment is None:
        raise Http404(_("That file does not exist."))
    response = HttpResponse(bytes(attachment.data), content_type=attachment.content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=86400"
    return response


@never_cache
@require_GET
@chat_required
def attachment_detail(request: HttpRequest, attachment_id: uuid.UUID) -> JsonResponse:
    """A file's chip and the text the model was given from it."""
    attachment = _own(request, attachment_id)
    data: dict[str, Any] = attachments.chip(attachment)
    data["text"] = attachment.text
    return JsonResponse({"attachment": data})
