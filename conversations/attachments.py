"""Files attached to questions: read by content, text extracted once, given to the model in one
template.

A file is uploaded over HTTP before its question is sent (`views_attachments.py`) and is then an
`Attachment` without a message; the `send` frame names it by id and the question claims it
(`claim`, inside the transaction that stores the question). What the file is comes from its
bytes: `%PDF-` makes a PDF, an image signature an image, UTF-8 (or UTF-16 with its byte-order
mark) without NUL makes text. The name only chooses the code fence's language and is checked
against the content where it claims to be a PDF.

What the model is given (`with_files`, the one template): the question's text, then each file
after a blank line as

    File: <name>                          (PDFs: "File: <name> (PDF, <n> pages)")
    ```<extension>
    <the file's text>
    ```

with a fence longer than any run of backticks in the text. An image is the line
"Image: <name>" there, and the image itself goes with the message to models that accept
images. The same template serves the question, the history of later turns, regenerations and
edits (`turns.threads.history_for`).
"""

from __future__ import annotations

import base64
import io
import logging
import re
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .backends.base import ModelInfo
from .chat.protocol import MAX_ATTACHMENTS, ClientError, attachments_not_found
from .models import Attachment, Backend, Message

logger = logging.getLogger(__name__)

MAX_FILES_PER_MESSAGE = MAX_ATTACHMENTS
# Uploaded files no question claimed are deleted after this long.
UNSENT_LIFETIME = timedelta(days=1)
MAX_NAME_CHARS = 255

FILE_TEMPLATE = "File: {name}{about}\n{fence}{language}\n{text}\n{fence}"
IMAGE_TEMPLATE = "Image: {name}"
IMAGE_NOT_SHOWN_TEMPLATE = "Image: {name} (not shown: this model does not accept images)"

IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# C0 controls other than tab, line feed, form feed and carriage return: a text file has none
# to speak of; a binary file decodable as UTF-8 has many.
CONTROL = re.compile(r"[\x01-\x08\x0b\x0e-\x1f\x7f]")


class AttachmentError(Exception):
    """A file that cannot be attached; `message` says why, for the user."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


def limits() -> tuple[int, int, int]:
    """Bytes per file, pages per PDF, characters of text per file (the settings)."""
    return (
        settings.R1CHAT_ATTACHMENT_MAX_BYTES,
        settings.R1CHAT_ATTACHMENT_MAX_PAGES,
        settings.R1CHAT_ATTACHMENT_MAX_CHARS,
    )


def human_size(size: int) -> str:
    if size < 1024:
        return _("%(count)d bytes") % {"count": size}
    if size < 1024 * 1024:
        return _("%(count).1f KB") % {"count": size / 1024}
    return _("%(count).1f MB") % {"count": size / (1024 * 1024)}


def too_large(name: str) -> AttachmentError:
    return AttachmentError(
        "too_large",
        _("“%(name)s” is too large: files may be at most %(limit)s.")
        % {"name": name, "limit": human_size(limits()[0])},
    )


# --- reading a file -------------------------------------------------------------------------


def sniff(data: bytes) -> tuple[str, str]:
    """(kind, content type) from the bytes alone; ("", "") for a file of no kind we take."""
    head = data[:1024]
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"%PDF-"):
        return Attachment.Kind.PDF, "application/pdf"
    if b"%PDF-" in head and decode_text(data) is None:  # (readers allow junk before the header)
        return Attachment.Kind.PDF, "application/pdf"
    for signature, content_type in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return Attachment.Kind.IMAGE, content_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Attachment.Kind.IMAGE, "image/webp"
    if decode_text(data) is not None:
        return Attachment.Kind.TEXT, "text/plain"
    return "", ""


def decode_text(data: bytes) -> str | None:
    """The text of a UTF-8 (or UTF-16 with a byte-order mark) file; None for anything else."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            return None
    else:
        if b"\x00" in data:
            return None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            return None
    if "\x00" in text or len(CONTROL.findall(text[:65536])) > 8:
        return None
    return text.replace("\r\n", "\n")


def extract_pdf(name: str, data: bytes) -> tuple[str, int]:
    """The text and page count of a PDF, within the page and character limits."""
    from pypdf import PdfReader

    _bytes, max_pages, max_chars = limits()
    unreadable = AttachmentError(
        "unreadable", _("“%(name)s” could not be read as a PDF.") % {"name": name}
    )
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:  # many PDFs are "encrypted" with an empty password, only to restrict printing
                opened = reader.decrypt("")
            except Exception:
                opened = 0
            if not opened:
                raise AttachmentError(
                    "encrypted",
                    _("“%(name)s” is protected by a password. Remove the password and try again.")
                    % {"name": name},
                )
        pages = len(reader.pages)
        if pages > max_pages:
            raise AttachmentError(
                "too_many_pages",
                _("“%(name)s” has %(pages)d pages; the limit is %(limit)d.")
                % {"name": name, "pages": pages, "limit": max_pages},
            )
        texts: list[str] = []
        total = 0
        for page in reader.pages:
            text = (page.extract_text() or "").strip()
            total += len(text)
            if total > max_chars:
                raise too_much_text(name)
            texts.append(text)
    except AttachmentError:
        raise
    except Exception as exc:  # pypdf raises many kinds of errors on malformed files
        logger.info("PDF %r unreadable: %s: %s", name[:80], type(exc).__name__, str(exc)[:200])
        raise unreadable from None
    text = "\n\n".join(t for t in texts if t)
    if not text.strip():
        raise AttachmentError(
            "no_text",
            _("“%(name)s” has no text to read (a scanned PDF?).") % {"name": name},
        )
    return text, pages


def too_much_text(name: str) -> AttachmentError:
    return AttachmentError(
        "too_long",
        _("“%(name)s” has more than %(limit)s characters of text.")
        % {"name": name, "limit": f"{limits()[2]:,}"},
    )


def clean_name(name: str) -> str:
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:MAX_NAME_CHARS] or _("file")


def read_file(name: str, data: bytes) -> dict[str, Any]:
    """The fields of an Attachment for this file; AttachmentError when it cannot be attached."""
    max_bytes, _pages, max_chars = limits()
    name = clean_name(name)
    if len(data) > max_bytes:
        raise too_large(name)
    if not data:
        raise AttachmentError("empty", _("“%(name)s” is empty.") % {"name": name})
    kind, content_type = sniff(data)
    if name.lower().endswith(".pdf") and kind != Attachment.Kind.PDF:
        raise AttachmentError("not_pdf", _("“%(name)s” is not a PDF.") % {"name": name})
    fields: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "content_type": content_type,
        "size": len(data),
    }
    if kind == Attachment.Kind.PDF:
        fields["text"], fields["pages"] = extract_pdf(name, data)
    elif kind == Attachment.Kind.IMAGE:
        fields["data"] = data
    elif kind == Attachment.Kind.TEXT:
        text = decode_text(data) or ""
        if len(text) > max_chars:
            raise too_much_text(name)
        if not text.strip():
            raise AttachmentError("empty", _("“%(name)s” is empty.") % {"name": name})
        fields["text"] = text
    else:
        raise AttachmentError(
            "unsupported",
            _("“%(name)s” is not a text, code, PDF or image file.") % {"name": name},
        )
    return fields


def store_upload(user: Any, name: str, data: bytes) -> Attachment:
    """Read one uploaded file and keep it, not yet attached to a message."""
    fields = read_file(name, data)
    Attachment.objects.filter(
        owner=user, message__isnull=True, created_at__lt=timezone.now() - UNSENT_LIFETIME
    ).delete()
    return Attachment.objects.create(owner=user, **fields)


# --- sending ----------------------------------------------------------------------------------


async def for_send(user: Any, ids: list[uuid.UUID]) -> list[Attachment]:
    """The user's unsent attachments with these ids, in the order given; else a ClientError."""
    if not ids:
        return []
    found = {
        a.uuid: a
        async for a in Attachment.objects.filter(uuid__in=ids, owner=user, message__isnull=True)
    }
    if len(found) != len(set(ids)):
        raise attachments_not_found()
    return [found[i] for i in dict.fromkeys(ids)]


def accepts_images(backend: Backend | None, model: str, info: ModelInfo | None) -> bool:
    """Whether this model takes images: Ollama says so (its "vision" capability); for an
    OpenAI-compatible server the admin lists such models on the backend."""
    if backend is None:
        return False
    return bool(info is not None and info.vision) or model in (backend.vision_models or [])


def check_images(attachments: list[Attachment], config: dict[str, Any]) -> None:
    """Refuse images for a model that does not accept them, before anything is stored."""
    images = [a for a in attachments if a.kind == Attachment.Kind.IMAGE]
    if images and not config["accepts_images"]:
        raise ClientError(
            "images_unsupported",
            _(
                "%(model)s does not accept images (“%(name)s”). Pick a model that sees images, "
                "or remove the image."
            )
            % {"model": config["model"] or _("This model"), "name": images[0].name},
        )


def claim(attachments: list[Attachment], message: Message) -> None:
    """Bind the uploaded files to the stored question (inside its transaction); a file another
    question claimed meanwhile makes the whole send fail."""
    if not attachments:
        return
    fresh = [a for a in attachments if a.pk is None]
    waiting = [a.pk for a in attachments if a.pk is not None]
    if waiting:
        taken = Attachment.objects.filter(pk__in=waiting, message__isnull=True).update(
            message=message
        )
        if taken != len(waiting):
            raise attachments_not_found()
        for position, pk in enumerate(waiting):
            Attachment.objects.filter(pk=pk).update(position=position)
    for position, attachment in enumerate(fresh, start=len(waiting)):
        attachment.message = message
        attachment.position = position
    Attachment.objects.bulk_create(fresh)
    for attachment in attachments:
        attachment.message = message


async def copies_for(message: Message) -> list[Attachment]:
    """New, unsaved rows with the files of `message`: an edited question keeps its files."""
    copied = ("owner_id", "name", "kind", "content_type", "size", "text", "pages", "data")
    return [
        Attachment(**{name: getattr(a, name) for name in copied})
        async for a in Attachment.objects.filter(message=message).order_by("position", "id")
    ]


def by_message(message_ids: list[int], *, with_data: bool = False) -> dict[int, list[Attachment]]:
    """The attachments of these messages, in order, in one query."""
    out: dict[int, list[Attachment]] = {}
    if not message_ids:
        return out
    rows = Attachment.objects.filter(message_id__in=message_ids).order_by(
        "message_id", "position", "id"
    )
    if not with_data:
        rows = rows.defer("data")
    for attachment in rows:
        out.setdefault(attachment.message_id, []).append(attachment)  # type: ignore[arg-type]
    return out


def user_message_ids(messages: list[Message]) -> list[int]:
    return [m.pk for m in messages if m.role == Message.Role.USER and m.pk is not None]


def chip(attachment: Attachment) -> dict[str, Any]:
    """An attachment as the page shows it (no text, no bytes)."""
    return {
        "id": str(attachment.uuid),
        "name": attachment.name,
        "size": attachment.size,
        "size_label": human_size(attachment.size),
        "kind": attachment.kind,
        "content_type": attachment.content_type,
        "pages": attachment.pages,
        "chars": len(attachment.text),
        "label": kind_label(attachment),
        "thumbnail": (
            reverse("api-attachment-content", args=[attachment.uuid])
            if attachment.kind == Attachment.Kind.IMAGE
            else ""
        ),
    }


def kind_label(attachment: Attachment) -> str:
    """The short word on a chip: the extension of a text file (PY, MD), else PDF or IMG."""
    if attachment.kind == Attachment.Kind.PDF:
        return "PDF"
    if attachment.kind == Attachment.Kind.IMAGE:
        return "IMG"
    extension = attachment.name.rsplit(".", 1)[1] if "." in attachment.name else ""
    return extension.upper() if extension.isalnum() and len(extension) <= 4 else "TXT"


def page_config() -> dict[str, Any]:
    """What the chat page's scripts need to know (`chat_config.attachments`)."""
    return {"max_bytes": limits()[0], "max_files": MAX_FILES_PER_MESSAGE}


def page_strings() -> dict[str, str]:
    """The attachment strings of the page's scripts, translated."""
    return {
        "attach": _("Attach files"),
        "remove_file": _("Remove file"),
        "uploading": _("Uploading…"),
        "upload_failed": _("Could not upload “%(name)s”. Try again."),
        "file_too_large": _("“%(name)s” is too large: files may be at most %(limit)s."),
        "too_many_files": _("Attach at most %(limit)s files to one message."),
        "file_bytes": _("%(count)s bytes"),
        "file_kb": _("%(count)s KB"),
        "file_mb": _("%(count)s MB"),
        "file_pages": _("%(count)s pages"),
    }


# --- what the model is given ------------------------------------------------------------------


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _language(name: str) -> str:
    if "." not in name:
        return ""
    extension = name.rsplit(".", 1)[1].lower()
    return extension if extension.isalnum() and len(extension) <= 12 and extension != "txt" else ""


def file_block(attachment: Attachment, *, images: bool = True) -> str:
    if attachment.kind == Attachment.Kind.IMAGE:
        template = IMAGE_TEMPLATE if images else IMAGE_NOT_SHOWN_TEMPLATE
        return template.format(name=attachment.name)
    about = ""
    if attachment.kind == Attachment.Kind.PDF:
        about = f" (PDF, {attachment.pages} page{'s' if attachment.pages != 1 else ''})"
        language = ""
    else:
        language = _language(attachment.name)
    text = attachment.text
    return FILE_TEMPLATE.format(
        name=attachment.name, about=about, fence=_fence(text), language=language, text=text
    )


def with_files(content: str, attachments: list[Attachment], *, images: bool = True) -> str:
    """The one template: the question's text, then each file as a fenced block with its name."""
    blocks = [file_block(a, images=images) for a in attachments]
    return "\n\n".join(part for part in (content, *blocks) if part)


def image_payloads(attachments: list[Attachment]) -> list[dict[str, str]]:
    return [
        {"content_type": a.content_type, "data": base64.b64encode(bytes(a.data)).decode()}
        for a in attachments
        if a.kind == Attachment.Kind.IMAGE and a.data
    ]
