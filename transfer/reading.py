"""An uploaded export, from bytes to the list of its conversations, within the limits.

Every way a file can be wrong ends in `Unreadable` with a message that names the problem: too
big, an empty or damaged zip, a zip without a JSON file, an encrypted zip, a member bigger
unpacked than allowed (read with a bounded read, whatever its header claims), not UTF-8, not
JSON, nested too deeply, a format r1chat does not know, too many conversations.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext as _

from . import formats
from .formats import Unreadable

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"


@dataclass
class Loaded:
    source: str
    conversations: list[Any]  # the raw entries of the file, one per conversation


def too_big(size: int) -> Unreadable | None:
    limit = settings.R1CHAT_IMPORT_MAX_BYTES
    if size > limit:
        return Unreadable(
            _("The file is %(size)s; the limit is %(limit)s.")
            % {"size": filesizeformat(size), "limit": filesizeformat(limit)}
        )
    return None


def _pick_member(archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    members = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and info.filename.lower().endswith(".json")
        and not info.filename.startswith("__MACOSX/")
    ]
    named = [m for m in members if m.filename.lower().rsplit("/", 1)[-1] == "conversations.json"]
    if named:
        return min(named, key=lambda m: m.filename.count("/"))
    if len(members) == 1:
        return members[0]
    if not members:
        raise Unreadable(_("The zip file holds no JSON file (looked for conversations.json)."))
    raise Unreadable(
        _("The zip file holds several JSON files and none is called conversations.json.")
    )


def _unzip(data: bytes) -> tuple[bytes, str]:
    encrypted = _("The zip file is encrypted; export it again without a password.")
    damaged = _("The zip file is damaged or uses a compression r1chat cannot read.")
    limit = settings.R1CHAT_IMPORT_MAX_JSON_BYTES
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            member = _pick_member(archive)
            if member.flag_bits & 0x1:
                raise Unreadable(encrypted)
            too_large = Unreadable(
                _("%(name)s is bigger than %(limit)s unpacked.")
                % {"name": member.filename, "limit": filesizeformat(limit)}
            )
            if member.file_size > limit:
                raise too_large
            # The header's size may lie (a zip bomb): never read more than the limit.
            with archive.open(member) as handle:
                content = handle.read(limit + 1)
            if len(content) > limit:
                raise too_large
            return content, member.filename
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, OSError):
        raise Unreadable(damaged) from None
    except RuntimeError:  # encrypted members
        raise Unreadable(encrypted) from None


def parse(data: bytes) -> Any:
    """The JSON value of an upload (a .json, or a .zip holding one)."""
    if not data.strip():
        raise Unreadable(_("The file is empty."))
    if error := too_big(len(data)):
        raise error
    if data.startswith(EMPTY_ZIP_MAGIC):
        raise Unreadable(_("The zip file is empty."))
    if data.startswith(ZIP_MAGIC):
        data, _name = _unzip(data)
    elif len(data) > settings.R1CHAT_IMPORT_MAX_JSON_BYTES:
        raise Unreadable(
            _("The file is bigger than %(limit)s.")
            % {"limit": filesizeformat(settings.R1CHAT_IMPORT_MAX_JSON_BYTES)}
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Unreadable(
            _("The file is not a JSON export (not UTF-8 text). Upload a .json or a .zip file.")
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise Unreadable(
            _("The file is not valid JSON (line %(line)d, column %(column)d: %(problem)s).")
            % {"line": exc.lineno, "column": exc.colno, "problem": exc.msg}
        ) from None
    except RecursionError:
        raise Unreadable(_("The file's JSON is nested too deeply.")) from None


def load(data: bytes) -> Loaded:
    """The format and the conversations of an upload, or `Unreadable`."""
    value = parse(data)
    source = formats.detect(value)
    conversations = formats.raw_conversations(value, source)
    limit = settings.R1CHAT_IMPORT_MAX_CONVERSATIONS
    if len(conversations) > limit:
        raise Unreadable(
            _("The file holds %(count)d conversations; at most %(limit)d can be imported at once.")
            % {"count": len(conversations), "limit": limit}
        )
    if not conversations:
        raise Unreadable(_("The file holds no conversations."))
    return Loaded(source, conversations)
