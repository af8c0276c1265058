"""Import jobs: check and count an upload, then import it conversation by conversation.

A job runs in a thread of the server process that accepted it (``R1CHAT_IMPORT_IN_BACKGROUND``
off runs it inside the request, as tests do). Each conversation is written in one transaction
together with the job's progress, so a crash leaves every conversation either whole or absent,
and a job whose process died (its heartbeat stale) is taken over by the next process that looks
at it, from the conversation after the last one committed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from conversations.models import Attachment, Conversation, Message
from conversations.rendering import render_markdown

from . import formats, reading
from .formats import Conv, Unreadable
from .models import ImportedConversation, ImportJob

log = logging.getLogger(__name__)

SKIPPED_KEPT = 200  # reasons kept for the summary; the count goes on


class Skip(Exception):
    """A conversation that is fine but not imported (already there, empty)."""


# --- preview ----------------------------------------------------------------------------------


def create_job(user: Any, filename: str, data: bytes) -> ImportJob:
    """Check and count an upload; the job waits for the user's confirmation. Raises
    `Unreadable` for a file that cannot be imported at all."""
    loaded = reading.load(data)
    readable, messages = 0, 0
    for raw in loaded.conversations:
        try:
            conv = formats.read(loaded.source, raw)
        except Unreadable:
            continue
        readable += 1
        messages += len(conv.messages)
    if not readable:
        raise Unreadable(_("None of the file's conversations can be read."))
    return ImportJob.objects.create(
        owner=user,
        source=loaded.source,
        filename=filename[:255],
        size=len(data),
        payload=data,
        total_conversations=len(loaded.conversations),
        total_messages=messages,
    )


def start_job(job: ImportJob) -> None:
    """Queue a previewed job and start it."""
    updated = ImportJob.objects.filter(pk=job.pk, status=ImportJob.Status.READY).update(
        status=ImportJob.Status.QUEUED, heartbeat_at=timezone.now()
    )
    if updated:
        launch(job.pk)


def launch(job_id: int) -> None:
    if getattr(settings, "R1CHAT_IMPORT_IN_BACKGROUND", True):
        thread = threading.Thread(
            target=_run_in_thread, args=(job_id,), name=f"import-{job_id}", daemon=True
        )
        thread.start()
    else:
        run_job(job_id)


def _run_in_thread(job_id: int) -> None:
    try:
        run_job(job_id)
    finally:
        connection.close()  # this thread's own connection


def resume_stale(user: Any) -> None:
    """Take over the user's jobs whose process died (a stale heartbeat)."""
    for job in ImportJob.objects.filter(
        owner=user, status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    ):
        if not job.is_stale:
            continue
        # Compare-and-set on the heartbeat: one process wins the takeover.
        claimed = ImportJob.objects.filter(pk=job.pk, heartbeat_at=job.heartbeat_at).update(
            status=ImportJob.Status.QUEUED, heartbeat_at=timezone.now()
        )
        if claimed:
            log.warning("Resuming import job %s after %s conversations", job.uuid, job.processed)
            launch(job.pk)


# --- the run ----------------------------------------------------------------------------------


def run_job(job_id: int) -> None:
    claimed = ImportJob.objects.filter(pk=job_id, status=ImportJob.Status.QUEUED).update(
        status=ImportJob.Status.RUNNING, heartbeat_at=timezone.now()
    )
    if not claimed:
        return
    job = ImportJob.objects.select_related("owner").get(pk=job_id)
    if job.started_at is None:
        job.started_at = timezone.now()
        job.save(update_fields=["started_at"])
    language = getattr(job.owner, "language", "") or settings.LANGUAGE_CODE
    with translation.override(language):
        try:
            _run(job)
        except Unreadable as exc:  # the file no longer passes (the limits changed)
            ImportJob.objects.filter(pk=job.pk).update(
                status=ImportJob.Status.FAILED,
                error=str(exc)[:500],
                finished_at=timezone.now(),
                payload=b"",
            )
        except Exception:
            log.exception("Import job %s failed", job.uuid)
            ImportJob.objects.filter(pk=job.pk).update(
                status=ImportJob.Status.FAILED,
                error=_("The import stopped because of an error on the server."),
                finished_at=timezone.now(),
                payload=b"",
            )


def _run(job: ImportJob) -> None:
    loaded = reading.load(bytes(job.payload))
    skipped = list(job.skipped or [])
    for index in range(job.processed, len(loaded.conversations)):
        raw = loaded.conversations[index]
        if ImportJob.objects.filter(pk=job.pk, cancel_requested=True).exists():
            _finish(job, ImportJob.Status.CANCELLED)
            return
        title = formats.title_of(raw)
        try:
            conv = formats.read(loaded.source, raw)
            title = conv.title or title
            _render(conv)  # before the transaction: it holds SQLite's write lock
            with transaction.atomic():
                count = import_conversation(job, conv)
                ImportJob.objects.filter(pk=job.pk).update(
                    processed=F("processed") + 1,
                    imported=F("imported") + 1,
                    imported_messages=F("imported_messages") + count,
                    heartbeat_at=timezone.now(),
                )
            continue
        except (Unreadable, Skip) as exc:
            reason = str(exc)
        except DatabaseError as exc:
            # A value the database's constraints refuse (the last check on what a file holds):
            # the transaction is rolled back, so nothing of this conversation is kept.
            log.warning("Import job %s: conversation %d refused: %s", job.uuid, index, exc)
            reason = _("The database refused it.")
        if len(skipped) < SKIPPED_KEPT:
            skipped.append({"title": title or _("Untitled conversation"), "reason": reason})
        ImportJob.objects.filter(pk=job.pk).update(
            processed=F("processed") + 1,
            skipped_count=F("skipped_count") + 1,
            skipped=skipped,
            heartbeat_at=timezone.now(),
        )
    _finish(job, ImportJob.Status.DONE)


def _render(conv: Conv) -> None:
    """The answers' HTML, cached on the messages as the chat caches it."""
    for msg in conv.messages:
        if msg.role == Message.Role.ASSISTANT:
            msg.fields["html"] = render_markdown(msg.content) if msg.content else ""
            msg.fields["reasoning_html"] = render_markdown(msg.reasoning) if msg.reasoning else ""


def _finish(job: ImportJob, status: str) -> None:
    ImportJob.objects.filter(pk=job.pk).update(
        status=status, finished_at=timezone.now(), payload=b"", heartbeat_at=timezone.now()
    )


def _free_uuid(candidate: str | None, model: type[Conversation] | type[Message]) -> uuid.UUID:
    try:
        wanted = uuid.UUID(candidate) if candidate else None
    except ValueError:
        wanted = None
    # Conversations waiting out their Undo window still hold their ids.
    rows = Conversation.all_objects if model is Conversation else Message.objects
    if wanted and not rows.filter(uuid=wanted).exists():
        return wanted
    return uuid.uuid4()


def import_conversation(job: ImportJob, conv: Conv) -> int:
    """Write one conversation (call inside a transaction); the number of messages written."""
    owner = job.owner
    if not conv.messages:
        raise Skip(_("It has no messages."))
    if conv.source_id:
        if ImportedConversation.objects.filter(
            owner=owner, source=job.source, source_id=conv.source_id[:200]
        ).exists():
            raise Skip(_("It was imported before."))
        if (
            job.source == formats.R1CHAT
            and Conversation.all_objects.filter(owner=owner, uuid=_uuid_or_none(conv.uuid)).exists()
        ):
            raise Skip(_("It is already in your history."))
    now = timezone.now()
    times = [m.created_at for m in conv.messages if m.created_at]
    created = conv.created_at or (min(times) if times else now)
    updated = conv.updated_at or (max(times) if times else created)
    conversation = Conversation.objects.create(
        uuid=_free_uuid(conv.uuid, Conversation) if conv.uuid else uuid.uuid4(),
        owner=owner,
        title=conv.title.strip()[:200],
        title_generated=conv.title_generated,
        pinned=conv.pinned,
        created_at=created,
        updated_at=updated,
        settings=conv.settings,
    )
    taken: set[uuid.UUID] = set()
    if job.source == formats.R1CHAT:
        wanted = [u for u in (_uuid_or_none(m.key) for m in conv.messages) if u]
        taken = set(Message.objects.filter(uuid__in=wanted).values_list("uuid", flat=True))
    rows: list[Message] = []
    when: dict[str, dt.datetime] = {}
    for msg in conv.messages:
        at = msg.created_at or (when.get(msg.parent) if msg.parent else None) or created
        when[msg.key] = at
        fields = dict(msg.fields)
        kept_uuid = _uuid_or_none(msg.key) if job.source == formats.R1CHAT else None
        row = Message(
            uuid=kept_uuid if kept_uuid and kept_uuid not in taken else uuid.uuid4(),
            conversation=conversation,
            role=msg.role,
            content=msg.content,
            reasoning=msg.reasoning,
            status=fields.pop("status", Message.Status.COMPLETE),
            model=msg.model[:200],
            backend_name=str(fields.pop("backend", "") or "")[:80],
            created_at=at,
            sender=owner if msg.role == Message.Role.USER else None,
            # Answers of other apps: Deep Think was on where there is reasoning.
            deep_think=fields.get(
                "deep_think", bool(msg.reasoning) if msg.role == Message.Role.ASSISTANT else True
            ),
        )
        for name, value in fields.items():
            if name in {"deep_think", "html", "reasoning_html"}:
                continue
            setattr(row, name, value)
        if row.status == Message.Status.STREAMING:
            row.status = Message.Status.INTERRUPTED  # nothing is generating it here
        if row.role == Message.Role.ASSISTANT:
            row.finished_at = row.finished_at or at
            row.html = msg.fields.get("html", "")
            row.reasoning_html = msg.fields.get("reasoning_html", "")
        rows.append(row)
    Message.objects.bulk_create(rows, batch_size=500)
    by_key = {msg.key: row for msg, row in zip(conv.messages, rows, strict=True)}
    linked = []
    for msg, row in zip(conv.messages, rows, strict=True):
        if msg.parent:
            row.parent = by_key[msg.parent]
            linked.append(row)
    if linked:
        Message.objects.bulk_update(linked, ["parent"], batch_size=500)
    files = [
        Attachment(owner=owner, message=row, position=position, **attached)
        for msg, row in zip(conv.messages, rows, strict=True)
        for position, attached in enumerate(msg.attachments)
    ]
    if files:
        Attachment.objects.bulk_create(files, batch_size=200)
    leaf = by_key.get(conv.current) if conv.current else None
    if leaf is not None:
        conversation.current_leaf = leaf
        conversation.save(update_fields=["current_leaf"])
    if conv.source_id:
        ImportedConversation.objects.create(
            owner=owner,
            source=job.source,
            source_id=conv.source_id[:200],
            conversation=conversation,
            job=job,
        )
    return len(rows)


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None
