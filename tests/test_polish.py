"""Polish: the copy label in the reader's language, the scripts' catalog and plurals, Chinese
colons, admin breadcrumbs and sections, and the address `serve` prints."""

from __future__ import annotations

import gettext
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from conversations.rendering import render_markdown
from review.testing import make_conversation, make_personas
from tests.test_translations import CJK, PLACEHOLDER, parse_po

LC_MESSAGES = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"


# --- the copy button ------------------------------------------------------------------------
def test_rendered_code_blocks_carry_no_language_of_their_own() -> None:
    html = render_markdown("```python\nprint(1)\n```\n")
    button = re.search(r"<button[^>]*>(.*?)</button>", html)
    assert button and 'class="copy-code"' in button.group(0)
    assert button.group(1) == ""  # labelled by the page's script, in the reader's language
    assert "Copy" not in html


# --- the scripts' catalog (Django's JavaScriptCatalog, "djangojs") --------------------------
def test_the_javascript_catalog_brings_chinese_and_its_plural_rule() -> None:
    response = Client().get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    body = response.content.decode()
    assert '"Copy": "\\u590d\\u5236"' in body or '"Copy": "复制"' in body
    assert "Thought for %(count)d second" in body
    assert "django.ngettext = function" in body and "django.pluralidx" in body
    english = Client().get(reverse("javascript-catalog"), HTTP_ACCEPT_LANGUAGE="en").content
    assert b"\\u590d\\u5236" not in english and "复制".encode() not in english


@pytest.mark.django_db
def test_the_chat_page_loads_the_catalog_before_its_modules() -> None:
    from tests.chat_support import make_user

    client = Client()
    client.force_login(make_user("lin"))
    html = client.get(reverse("home")).content.decode()
    catalog = html.index(f'<script src="{reverse("javascript-catalog")}"></script>')
    assert catalog < html.index('<script type="module"')
    # no singular/plural pair guessed with ngettext(…, 1) and ngettext(…, 2) any more
    assert "thought_one" not in html and "thought_other" not in html


def test_the_scripts_catalog_is_complete_and_compiled() -> None:
    entries = [e for e in parse_po(LC_MESSAGES / "djangojs.po") if e.msgid]
    assert {e.msgid for e in entries} >= {"Copy", "Thought for %(count)d second"}
    for entry in entries:
        assert "fuzzy" not in entry.flags, entry.msgid
        assert set(entry.msgstr) == {0}, entry.msgid  # Chinese: one plural form
        for text in entry.msgstr.values():
            assert CJK.search(text), entry.msgid
            wanted = sorted(PLACEHOLDER.findall(entry.msgid_plural or entry.msgid))
            assert sorted(PLACEHOLDER.findall(text)) == wanted, entry.msgid
    with (LC_MESSAGES / "djangojs.mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for entry in entries:
        if entry.msgid_plural is None:
            assert compiled.gettext(entry.msgid) == entry.msgstr[0]
        else:
            assert compiled.ngettext(entry.msgid, entry.msgid_plural, 5) == entry.msgstr[0]


# --- Chinese colons ----------------------------------------------------------------------------
@pytest.mark.django_db
def test_chinese_labels_end_in_a_full_width_colon() -> None:
    html = Client().get(reverse("account_signup"), HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    labels = re.findall(r"<label for=\"id_[^\"]+\">([^<]+)</label>", html)
    assert labels and all(label.endswith("：") for label in labels), labels
    english = Client().get(reverse("account_signup"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<label for="id_email">Email address:</label>' in english


# --- the admin -------------------------------------------------------------------------------
@pytest.fixture
def root() -> Client:
    people = make_personas()
    client = Client()
    client.force_login(people["root"])
    client.people = people  # type: ignore[attr-defined]
    return client


@pytest.mark.django_db
def test_admin_pages_of_the_project_use_the_admins_breadcrumbs(root: Client) -> None:
    conversation, _asked, _answer = make_conversation(root.people["alice"])  # type: ignore[attr-defined]
    pages = [
        reverse("admin:conversations_conversation_review", args=[conversation.uuid]),
        reverse("admin:review_usagerecord_changelist"),
    ]
    for url in pages:
        html = root.get(url).content.decode()
        assert '<div class="breadcrumbs">' not in html, url
        trail = re.search(r'<ol class="breadcrumbs">(.*?)</ol>', html, re.S)
        assert trail, url
        assert trail.group(1).count("<li") >= 3 and 'aria-current="page"' in trail.group(1)


@pytest.mark.django_db
@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_the_admin_home_has_no_two_sections_of_the_same_name(root: Client, language: str) -> None:
    html = root.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE=language).content.decode()
    captions = re.findall(r'<caption>\s*<a href="[^"]*"[^>]*>([^<]+)</a>', html)
    assert len(captions) >= 4
    assert len(captions) == len(set(captions)), captions


# --- `make run` -------------------------------------------------------------------------------
@pytest.mark.django_db
def test_migrate_names_no_port_it_cannot_know(capsys: Any) -> None:
    call_command("migrate", verbosity=1, interactive=False)
    assert ":8000" not in capsys.readouterr().out


def test_the_banner_shows_the_address_served() -> None:
    from conversations.management.commands.serve import banner

    text = banner("127.0.0.1", 8301, has_admin=False)
    assert "http://127.0.0.1:8301/admin/" in text and "8000" not in text
    assert "createsuperuser" in text
    assert "http://127.0.0.1:9000/admin/" in banner("0.0.0.0", 9000, has_admin=True)
    assert "http://[::1]:9000/admin/" in banner("::", 9000, has_admin=True)


@pytest.mark.django_db(transaction=True)
def test_serve_prints_the_admin_link_on_the_port_it_serves() -> None:
    from tests.processes import app_env, free_port, stop

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=settings.BASE_DIR,
        env=app_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.stdout is not None:
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
            if line.startswith("Admin:"):
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/admin/" in output, output
        assert ":8000" not in output
    finally:
        stop(proc, timeout=10)
