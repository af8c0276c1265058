"""The chat page's keyboard, long inputs, the phone's message box, the sidebar's state (the
"generating" mark, Undo after a delete) and a server killed mid-answer, in a real browser.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import signal
import time

import pytest

from conversations.chat.protocol import MAX_CONTENT_CHARS
from conversations.models import Conversation, Message
from conversations.simulator import Scenario
from tests import processes
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.timeout(120)

REASONING_SHOWN = ".msg-assistant .thinking-text :is(.thinking-stable, .thinking-tail) > *"


def open_chat(page, url):
    page.goto(url)
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")


def send(page, text):
    page.fill("#composer-input", text)
    page.keyboard.press("Enter")


# --- keyboard ---------------------------------------------------------------------------------


def test_keyboard_shortcuts(signed_in, live_server_url, simulator):
    simulator.scenario = Scenario(reasoning_tokens=5, answer_tokens=5)
    page, _user, watch = signed_in()
    open_chat(page, live_server_url + "/")

    # Ctrl+/ lists every shortcut (Ctrl on this platform, not ⌘), search included.
    page.keyboard.press("Control+/")
    dialog = page.locator("#shortcuts-dialog")
    page.wait_for_selector("#shortcuts-dialog[open]")
    rows = dialog.locator(".shortcut").all_inner_texts()
    text = "\n".join(rows)
    for label in ("Search chats", "New chat", "Stop the answer", "Show keyboard shortcuts"):
        assert label in text
    search = dialog.locator(".shortcut", has_text="Search chats")
    assert search.locator("kbd").all_inner_texts() == ["Ctrl", "K"]
    assert "⌘" not in text
    screenshot(page, "keys-shortcuts-dialog")
    page.keyboard.press("Escape")  # (the dialog's own: closes it, stops nothing)
    page.wait_for_selector("#shortcuts-dialog", state="hidden")
    # The same list from the user menu.
    page.locator("#user-btn").click()
    page.locator("#shortcuts-btn").click()
    page.wait_for_selector("#shortcuts-dialog[open]")
    page.keyboard.press("Control+/")
    page.wait_for_selector("#shortcuts-dialog", state="hidden")

    # ↑ in the empty box edits the last message; in a box with text it moves the caret.
    send(page, "First question")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    send(page, "Second question")
    page.wait_for_function(
        "() => document.querySelectorAll('.msg-assistant[data-status=complete]').length === 2",
        timeout=30_000,
    )
    page.fill("#composer-input", "draft")
    page.locator("#composer-input").press("ArrowUp")
    assert page.locator(".msg-edit").count() == 0
    page.fill("#composer-input", "")
    page.locator("#composer-input").press("ArrowUp")
    edit = page.locator(".msg-user").last.locator(".msg-edit textarea")
    edit.wait_for()
    assert edit.input_value() == "Second question"
    assert page.locator(".msg-user").first.locator(".msg-edit").count() == 0
    edit.press("Escape")
    page.wait_for_selector(".msg-edit", state="detached")

    # Ctrl+Shift+O: a new chat.
    page.wait_for_url("**/c/*/")
    page.keyboard.press("Control+Shift+O")
    page.wait_for_url(live_server_url + "/")
    page.wait_for_selector("#empty-state:not([hidden])")
    assert watch.errors == []


def test_esc_closes_an_open_dialog_first_and_then_stops_the_answer(
    signed_in, live_server_url, simulator
):
    simulator.scenario = Scenario(token_rate=15)
    page, _user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    send(page, "Think slowly")
    page.wait_for_selector(REASONING_SHOWN)
    page.keyboard.press("Control+/")
    page.wait_for_selector("#shortcuts-dialog[open]")
    page.keyboard.press("Escape")
    page.wait_for_selector("#shortcuts-dialog", state="hidden")
    page.wait_for_timeout(400)
    assert page.locator(".msg-assistant[data-status=streaming]").count() == 1
    page.keyboard.press("Escape")
    page.wait_for_selector(".msg-assistant[data-status=stopped]")
    assert watch.errors == []


def test_a_mac_shows_and_takes_the_command_key(signed_in, live_server_url):
    page, _user, watch = signed_in()
    cdp = page.context.new_cdp_session(page)
    mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/537.36 Chrome/130 Safari/537.36"
    cdp.send(
        "Emulation.setUserAgentOverride",
        {
            "userAgent": mac,
            "platform": "MacIntel",
            "userAgentMetadata": {
                "platform": "macOS", "platformVersion": "14.0", "architecture": "x86",
                "model": "", "mobile": False,
            },
        },
    )  # fmt: skip
    open_chat(page, live_server_url + "/")
    page.keyboard.press("Control+/")  # (not the shortcut on a Mac)
    page.wait_for_timeout(200)
    assert page.locator("#shortcuts-dialog[open]").count() == 0
    page.keyboard.press("Meta+/")
    page.wait_for_selector("#shortcuts-dialog[open]")
    search = page.locator("#shortcuts-dialog .shortcut", has_text="Search chats")
    assert search.locator("kbd").all_inner_texts() == ["⌘", "K"]
    new_chat = page.locator("#shortcuts-dialog .shortcut", has_text="New chat")
    assert new_chat.locator("kbd").all_inner_texts() == ["⌘", "⇧", "O"]
    assert "Ctrl" not in page.locator("#shortcuts-dialog").inner_text()
    screenshot(page, "keys-shortcuts-dialog-mac")
    assert watch.errors == []


# --- long inputs ------------------------------------------------------------------------------


def test_a_text_over_the_limit_is_kept_whole_counted_and_not_sent(signed_in, live_server_url):
    page, user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    box = page.locator("#composer-input")
    box.focus()
    # Near the limit: the count of what is left.
    page.keyboard.insert_text("a" * (MAX_CONTENT_CHARS - 5_000))
    page.wait_for_selector("#char-count:not([hidden])")
    assert page.locator("#char-count").inner_text() == "5,000 characters left"
    assert page.locator("#composer-over").is_hidden()
    screenshot(page, "keys-composer-counter")
    # Over it (a paste, as a person would): nothing is cut, the count turns red with a
    # message, and sending is refused.
    page.keyboard.insert_text("b" * 5_010)
    assert box.evaluate("el => el.value.length") == MAX_CONTENT_CHARS + 10
    page.wait_for_selector("#char-count.is-over")
    assert page.locator("#char-count").inner_text() == "10 characters over the limit"
    over = page.locator("#composer-over")
    assert over.is_visible()
    assert "100,000 characters or fewer" in over.inner_text()
    assert page.locator("#send-btn").is_disabled()
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    assert box.evaluate("el => el.value.length") == MAX_CONTENT_CHARS + 10
    screenshot(page, "keys-composer-over-limit")
    page.keyboard.press("Backspace")
    page.keyboard.press("Control+End")
    for _ in range(10):
        page.keyboard.press("Backspace")
    page.wait_for_selector("#composer-over", state="hidden")
    assert not page.locator("#send-btn").is_disabled()

    # The server refuses one that got past the page all the same: a clear error, and the
    # message box gets the text back.
    box.fill("")
    page.evaluate(f"() => window.r1chat.thread.send('x'.repeat({MAX_CONTENT_CHARS + 1}))")
    page.wait_for_selector(".toast.is-error")
    assert "too long" in page.locator(".toast.is-error").inner_text()
    page.wait_for_function(
        f"() => document.querySelector('#composer-input').value.length === {MAX_CONTENT_CHARS + 1}"
    )
    assert not Message.objects.filter(sender=user).exists()
    assert watch.errors == []


def test_a_long_message_of_yours_is_folded_with_show_more(signed_in, live_server_url, simulator):
    simulator.scenario = Scenario(reasoning_tokens=3, answer_tokens=3)
    page, _user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    long_text = "\n".join(f"Line {i}: some pasted log output worth reading" for i in range(60))
    send(page, long_text)
    send_short = "A short one"
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    more = page.locator(".msg-user .user-more")
    more.wait_for()
    assert more.inner_text() == "Show more"
    text = page.locator(".msg-user .user-text").first
    assert text.evaluate("el => el.scrollHeight > el.clientHeight + 20")
    screenshot(page, "keys-long-message-folded")
    more.click()
    assert more.inner_text() == "Show less"
    assert more.get_attribute("aria-expanded") == "true"
    assert text.evaluate("el => el.scrollHeight <= el.clientHeight + 2")
    more.click()
    assert more.inner_text() == "Show more"
    # After a reload the same; a short message gets no button.
    send(page, send_short)
    page.wait_for_function(
        "() => document.querySelectorAll('.msg-assistant[data-status=complete]').length === 2",
        timeout=30_000,
    )
    page.reload()
    page.wait_for_selector(".msg-user .user-more")
    assert page.locator(".msg-user .user-more").count() == 1
    assert watch.errors == []


def test_on_a_phone_the_send_button_sits_bottom_right_of_the_box(signed_in, live_server_url):
    page, _user, _watch = signed_in(viewport=(390, 844))
    open_chat(page, live_server_url + "/")
    page.fill("#composer-input", "Hello from a phone")
    box = page.locator("#composer").bounding_box()
    button = page.locator("#send-btn").bounding_box()
    assert box and button
    assert box["x"] + box["width"] - (button["x"] + button["width"]) < 20  # at the right edge
    assert box["y"] + box["height"] - (button["y"] + button["height"]) < 20  # at the bottom
    assert button["x"] > box["x"] + box["width"] / 2
    screenshot(page, "keys-phone-composer")


# --- the sidebar's state ----------------------------------------------------------------------


def test_the_sidebar_marks_a_chat_whose_answer_is_being_written(
    signed_in, live_server_url, simulator
):
    simulator.scenario = Scenario(token_rate=25)
    page, user, watch = signed_in()
    other, _, _ = signed_in(user)
    open_chat(page, live_server_url + "/")
    open_chat(other, live_server_url + "/")
    send(page, "Take your time")
    page.wait_for_selector(REASONING_SHOWN)
    conversation = Conversation.objects.get(owner=user)
    item = f".conv-item[data-id='{conversation.uuid}']"
    # In the other tab (no conversation open), and in a tab opened later.
    other.wait_for_selector(f"{item}[data-generating=true]")
    third, _, _ = signed_in(user)
    open_chat(third, live_server_url + "/")
    assert third.locator(f"{item}[data-generating=true]").count() == 1
    assert (
        other.locator(f"{item} .conv-link").evaluate(
            "el => getComputedStyle(el, '::after').animationName"
        )
        == "conv-generating"
    )
    screenshot(other, "keys-sidebar-generating")
    # Stopped: the mark goes everywhere.
    page.locator("#send-btn").click()
    for tab in (page, other, third):
        tab.wait_for_selector(f"{item}[data-generating=false]")
    assert watch.errors == []


def test_deleting_a_chat_offers_undo(signed_in, live_server_url):
    page, user, watch = signed_in()
    keep = Conversation.objects.create(owner=user, title="Current chat")
    doomed = Conversation.objects.create(owner=user, title="Other chat")
    open_chat(page, f"{live_server_url}/c/{keep.uuid}/")

    def delete(conv):
        item = page.locator(f".conv-item[data-id='{conv.uuid}']")
        item.hover()
        item.locator(".conv-menu-btn").click()
        page.locator("#conv-menu [data-action=delete]").click()
        page.locator("#confirm-ok").click()

    delete(doomed)
    page.wait_for_selector(f".conv-item[data-id='{doomed.uuid}']", state="detached")
    toast = page.locator(".toast-undo")
    toast.wait_for()
    assert "Chat deleted." in toast.inner_text()
    assert not Conversation.objects.filter(pk=doomed.pk).exists()  # gone for every list
    screenshot(page, "keys-undo-toast")
    toast.locator("button", has_text="Undo").click()
    page.wait_for_selector(f".conv-item[data-id='{doomed.uuid}']")
    assert Conversation.objects.filter(pk=doomed.pk).exists()
    page.wait_for_selector(".toast:has-text('Chat restored.')")

    # The chat on screen: the page moves to a new chat, and Undo comes along.
    delete(keep)
    page.wait_for_url(live_server_url + "/")
    toast.wait_for()
    toast.locator("button", has_text="Undo").click()
    page.wait_for_url(f"{live_server_url}/c/{keep.uuid}/")
    page.wait_for_selector(f".conv-item[data-id='{keep.uuid}'].is-active")
    assert Conversation.objects.filter(pk=keep.pk).exists()

    # Without Undo it stays deleted, and the toast goes away on its own.
    delete(doomed)
    toast.wait_for()
    toast.wait_for(state="detached", timeout=15_000)
    assert not Conversation.objects.filter(pk=doomed.pk).exists()
    assert watch.errors == [] and watch.dialogs == []


# --- the server dies mid-answer -----------------------------------------------------------------


def test_a_killed_server_leaves_the_answer_interrupted_within_seconds(
    signed_in, simulator, chat_backend
):
    """Its own Daphne process (not the session's live server), killed with SIGKILL while an
    answer streams: the tab shows "interrupted" within 5 s, and after the server is back it
    still does (the new process knows the generation is dead), with its text and Retry."""
    simulator.scenario = Scenario(token_rate=20)
    env = processes.app_env(LOG_LEVEL="WARNING")
    proc, port = processes.start_daphne(env=env)
    url = f"http://localhost:{port}"
    try:
        page, user, _watch = signed_in()
        open_chat(page, url + "/")
        send(page, "Think for a while")
        page.wait_for_selector(REASONING_SHOWN)
        page.wait_for_function(
            "() => document.querySelector('.msg-assistant .thinking-text').textContent.length > 40"
        )
        shown = page.locator(".msg-assistant .thinking-text").text_content()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed = time.monotonic()
        page.wait_for_selector(".msg-assistant[data-status=interrupted]", timeout=10_000)
        took = time.monotonic() - killed
        assert took < 5.0, f"interrupted shown {took:.1f} s after the kill"
        assert page.locator(".msg-assistant .typing").is_hidden()
        assert page.locator(".msg-assistant .retry-btn").is_visible()
        assert page.locator(".msg-assistant .thinking-text").text_content().startswith(shown[:40])
        screenshot(page, "keys-interrupted-after-kill")
        print(f"interrupted shown {took:.2f} s after SIGKILL")

        # The server comes back on the same port: the tab reconnects and still shows it
        # interrupted, as stored.
        proc, _port = processes.start_daphne(env=env, port=port)
        page.wait_for_selector("#conn[data-state=open]", timeout=40_000)
        page.wait_for_timeout(500)
        page.wait_for_selector(".msg-assistant[data-status=interrupted]", timeout=5_000)
        reply = Message.objects.get(conversation__owner=user, role="assistant")
        for _ in range(50):
            reply.refresh_from_db()
            if reply.status == "interrupted":
                break
            time.sleep(0.1)
        assert reply.status == "interrupted"
    finally:
        processes.stop(proc, sig=signal.SIGKILL)
