"""Search in a real browser: Ctrl+K opens the dialog, typing finds, the arrows choose, Enter
jumps to the message (on whichever version it is), highlighted; the sidebar's box opens the
same dialog. A screenshot of the dialog goes to test-artifacts/."""

from __future__ import annotations

import re

import pytest

from conversations.models import Message
from tests.browser.conftest import screenshot
from tests.chat_support import make_user
from tests.views_support import conversation

pytestmark = pytest.mark.timeout(90)

FILLER = "A long answer about something else entirely. " * 40


def in_view(page, selector: str) -> bool:
    return page.evaluate(
        """selector => {
            const box = document.querySelector(selector).getBoundingClientRect();
            const view = document.getElementById('thread-scroll').getBoundingClientRect();
            return box.top >= view.top - 1 && box.top < view.bottom;
        }""",
        selector,
    )


def test_ctrl_k_finds_and_enter_jumps_to_the_message(signed_in, live_server_url):
    alice = make_user("alice")
    turns = [(f"Question {i}", "", FILLER) for i in range(6)]
    turns.insert(1, ("Where is my 指南针?", "", "In the <b>drawer</b>, next to the 指南针 case."))
    trip = conversation(alice, "Camping trip", turns=turns)
    conversation(alice, "Compass repair", turns=[("指南针坏了", "", "Replace the needle.")])
    conversation(make_user("bob"), "Bob's 指南针", turns=[("指南针", "", "指南针")])
    target = Message.objects.get(content__startswith="In the <b>drawer</b>")

    page, _user, watch = signed_in(alice)
    page.goto(live_server_url + "/")
    page.wait_for_selector("#conn[data-state=open]")
    page.keyboard.press("Control+k")
    dialog = page.locator("#search-dialog")
    assert dialog.evaluate("el => el.open")
    page.keyboard.type("指南针")
    page.wait_for_selector(".search-hit")
    hits = page.locator(".search-hit")
    assert hits.count() == 2  # Bob's never shows
    assert hits.nth(0).locator(".search-hit-title").inner_text() == "Compass repair"
    camping = hits.nth(1)
    assert camping.locator(".search-hit-title").inner_text() == "Camping trip"
    # The snippet shows the markup as text and marks the matches.
    snippet = camping.locator(".search-hit-snippet")
    assert "In the <b>drawer</b>, next to the 指南针 case." in snippet.inner_text()
    assert snippet.locator("b").count() == 0
    assert snippet.locator("mark").count() == 1
    assert hits.nth(0).get_attribute("aria-selected") == "true"
    page.keyboard.press("ArrowDown")
    assert camping.get_attribute("aria-selected") == "true"
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowDown")
    screenshot(page, "search-dialog")

    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/c/{trip.uuid}/\?m={target.uuid}$"))
    found = f'.msg[data-id="{target.uuid}"]'
    page.wait_for_selector(f"{found}.search-found")
    page.wait_for_function(
        """selector => {
            const box = document.querySelector(selector).getBoundingClientRect();
            const view = document.getElementById('thread-scroll').getBoundingClientRect();
            return box.top >= view.top - 1 && box.top < view.bottom;
        }""",
        arg=found,
    )
    assert page.locator(".msg").last.evaluate(
        "el => el.getBoundingClientRect().top > window.innerHeight"
    )  # the thread did not jump to its end
    screenshot(page, "search-found-message")

    # Esc closes; the sidebar's box opens the same dialog, typing goes into it.
    page.keyboard.press("Control+k")
    page.keyboard.press("Escape")
    assert not dialog.evaluate("el => el.open")
    page.click("#sidebar-search")
    assert dialog.evaluate("el => el.open")
    assert watch.errors == [] and watch.dialogs == []


def test_a_message_on_another_version_is_shown_with_its_version(signed_in, live_server_url):
    alice = make_user("alice")
    conv = conversation(alice, "Geography", turns=[("Capital of France?", "", "Lyon, surely")])
    question = conv.messages.get(role="user")
    newer = Message.objects.create(
        conversation=conv, parent=question, role="assistant", content="Paris", status="complete"
    )
    conv.current_leaf = newer
    conv.save(update_fields=["current_leaf"])
    older = conv.messages.get(content="Lyon, surely")

    page, _user, watch = signed_in(alice)
    page.goto(f"{live_server_url}/c/{conv.uuid}/")
    page.wait_for_selector("#conn[data-state=open]")
    assert page.locator(".msg-assistant .answer").inner_text().strip() == "Paris"
    page.keyboard.press("Control+k")
    page.keyboard.type("lyon")
    page.wait_for_selector(".search-hit")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"\?m={older.uuid}$"))
    page.wait_for_selector(f'.msg[data-id="{older.uuid}"].search-found')
    assert page.locator(".msg-assistant .answer").inner_text().strip() == "Lyon, surely"
    assert page.locator(".msg-assistant .versions-label").inner_text().replace(" ", "") == "1/2"
    assert watch.errors == []
