"""Importing an export from the account page in a real browser: a bad file's message, the
preview, the progress of the background import and its summary; then the conversations are in
the sidebar. Screenshots go to test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conversations.models import Conversation
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.timeout(120)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"


def many_chats(count: int) -> bytes:
    """The Open WebUI fixture's first chat `count` times (each its own id), and a broken one."""
    chats = json.loads((FIXTURES / "openwebui-chat-export.json").read_text())
    out = []
    for index in range(count):
        chat = json.loads(json.dumps(chats[0]))
        chat["id"] = f"chat-{index}"
        chat["title"] = f"Imported chat {index}"
        out.append(chat)
    out.insert(count // 2, {"id": "broken", "title": "A broken chat", "chat": {"history": 7}})
    return json.dumps(out).encode()


def test_import_shows_preview_progress_and_summary(signed_in, live_server_url):
    page, user, watch = signed_in()
    page.goto(f"{live_server_url}/account/")
    page.wait_for_selector("#section-transfer")

    page.set_input_files(
        "#import-file",
        files=[{"name": "notes.json", "mimeType": "application/json", "buffer": b"hello"}],
    )
    page.click("#import-check")
    page.wait_for_selector("#import-error:not([hidden]):has-text('not valid JSON')")
    assert not Conversation.objects.filter(owner=user).exists()

    page.set_input_files(
        "#import-file",
        files=[
            {"name": "chat-export.json", "mimeType": "application/json", "buffer": many_chats(400)}
        ],
    )
    page.click("#import-check")
    preview = page.wait_for_selector("#import-preview")
    assert "(Open WebUI export): 401 conversations, 2000 messages." in preview.inner_text()
    page.locator("#section-transfer").scroll_into_view_if_needed()
    screenshot(page, "transfer-import-preview")
    assert not Conversation.objects.filter(owner=user).exists()

    page.click("#import-start")
    # The section re-renders itself while the import runs: a progress bar, then the summary.
    page.wait_for_selector("#import-progress, #import-summary")
    if page.locator("#import-progress").count():
        screenshot(page, "transfer-import-progress")
    page.wait_for_selector("#import-summary", timeout=90_000)
    page.locator("#section-transfer").scroll_into_view_if_needed()
    screenshot(page, "transfer-import-summary")
    summary = page.inner_text("#import-summary")
    assert "Imported 400 conversations (2000 messages)." in summary
    assert "Skipped 1 conversation:" in summary
    assert "A broken chat" in summary
    assert Conversation.objects.filter(owner=user).count() == 400

    page.goto(live_server_url + "/")
    page.wait_for_selector("#sidebar :text('Imported chat')")
    assert watch.errors == [] and watch.dialogs == [] and watch.foreign_requests == []
