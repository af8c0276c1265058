"""Attaching files in a real browser: the paperclip and a drop into the composer upload each
file, its chip shows with its size, the question goes out with the files, and the chips stay on
the sent message (after a reload too), opening the text the model was given. Screenshots go to
test-artifacts/."""

from __future__ import annotations

import base64

import pytest

from conversations.models import Attachment, Message
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.timeout(90)

CODE = "def greet(name):\n    return 'Hello, ' + name\n"


def open_chat(page, url):
    page.goto(url)
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")


def test_a_file_is_attached_shown_as_a_chip_and_sent_with_the_question(
    signed_in, live_server_url, simulator
):
    page, user, watch = signed_in()
    open_chat(page, live_server_url + "/")

    # The paperclip opens the file chooser; the file uploads at once and shows as a chip.
    with page.expect_file_chooser() as chooser:
        page.click("#attach-btn")
    chooser.value.set_files(
        files=[{"name": "greet.py", "mimeType": "text/x-python", "buffer": CODE.encode()}]
    )
    chip = page.locator("#composer-files .file-chip")
    page.wait_for_selector("#composer-files .file-chip:not(.is-uploading)")
    assert chip.locator(".file-chip-name").inner_text() == "greet.py"
    assert chip.locator(".file-chip-kind").inner_text() == "PY"
    assert chip.locator(".file-chip-size").inner_text() == f"{len(CODE)} bytes"

    # A second file dropped on the page, then removed with its ×.
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["a list\\n"], "notes.md", { type: "text/markdown" }));
            const main = document.getElementById("main");
            main.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true }));
            main.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true }));
        }"""
    )
    ready = "#composer-files .file-chip:not(.is-uploading)"
    page.wait_for_function("s => document.querySelectorAll(s).length == 2", arg=ready)
    page.fill("#composer-input", "What does this code do?")
    screenshot(page, "attach-composer-chips")
    page.locator("#composer-files .file-chip", has_text="notes.md").locator(
        ".file-chip-remove"
    ).click()
    assert chip.count() == 1

    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    sent = page.locator(".msg-user .msg-files .file-chip")
    assert sent.count() == 1 and sent.locator(".file-chip-name").inner_text() == "greet.py"
    assert page.locator("#composer-files .file-chip").count() == 0  # the tray is empty again
    assert page.locator(".msg-user .user-text").inner_text() == "What does this code do?"
    page.locator(".msg-user").scroll_into_view_if_needed()
    screenshot(page, "attach-sent-message")

    # Stored with the question; the removed file is gone.
    question = Message.objects.get(role="user", conversation__owner=user)
    assert [a.name for a in Attachment.objects.filter(message=question)] == ["greet.py"]
    assert not Attachment.objects.filter(name="notes.md").exists()

    # After a reload the chip is still there and opens the text the model was given.
    page.reload()
    page.wait_for_selector(".msg-user .msg-files .file-chip")
    page.click(".msg-user .msg-files .file-chip")
    page.wait_for_selector("#file-dialog[open]")
    assert page.locator("#file-dialog .file-dialog-text").inner_text().strip() == CODE.strip()
    screenshot(page, "attach-file-dialog")
    assert not watch.errors and not watch.foreign_requests


def test_a_file_that_cannot_be_read_is_refused_and_the_text_is_kept(
    signed_in, live_server_url, simulator
):
    page, _user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    page.fill("#composer-input", "Summarise the report")
    with page.expect_file_chooser() as chooser:
        page.click("#attach-btn")
    chooser.value.set_files(
        files=[{"name": "report.pdf", "mimeType": "application/pdf", "buffer": b"not a pdf"}]
    )
    toast = page.locator(".toast.is-error")
    toast.wait_for()
    assert "“report.pdf” is not a PDF." in toast.inner_text()
    screenshot(page, "attach-refused")
    page.wait_for_function("() => !document.querySelector('#composer-files .file-chip')")
    assert page.input_value("#composer-input") == "Summarise the report"

    # An image, for the simulator's model that does not accept images: refused, said so.
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    with page.expect_file_chooser() as chooser:
        page.click("#attach-btn")
    chooser.value.set_files(files=[{"name": "photo.png", "mimeType": "image/png", "buffer": png}])
    refusal = page.locator(".toast.is-error", has_text="does not accept images")
    refusal.wait_for()
    assert "photo.png" in refusal.inner_text()
    page.wait_for_function("() => !document.querySelector('#composer-files .file-chip')")
    assert page.input_value("#composer-input") == "Summarise the report"
    assert Message.objects.count() == 0
    assert not Attachment.objects.exists()
    assert not watch.errors
