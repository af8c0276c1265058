"""The chat page in a real browser: streaming, Stop, resume after a reload, the sidebar,
themes and languages. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
import time

import pytest

from conversations.models import Conversation, Message
from conversations.simulator import DEFAULT_SCRIPT, Scenario
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.timeout(90)

# The reasoning has begun to show (its rendered blocks: stable or the open tail).
REASONING_SHOWN = ".msg-assistant .thinking-text :is(.thinking-stable, .thinking-tail) > *"


def open_chat(page, url):
    page.goto(url)
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")


def send(page, text):
    page.fill("#composer-input", text)
    page.keyboard.press("Enter")


def test_a_question_streams_its_reasoning_then_the_answer(signed_in, live_server_url, simulator):
    simulator.scenario = Scenario(token_rate=60)
    page, _user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    screenshot(page, "chat-empty-light")
    send(page, "How are mass and energy related?")

    # The Thinking block streams under a running timer…
    thinking = page.locator(".msg-assistant .thinking")
    page.wait_for_selector(REASONING_SHOWN)
    assert thinking.evaluate("el => el.open")
    label = page.locator(".msg-assistant .thinking-label")
    assert re.fullmatch(r"Thinking… \d+s", label.inner_text())
    first = page.locator(".msg-assistant .thinking-text").inner_text()
    page.wait_for_function(
        "n => document.querySelector('.msg-assistant .thinking-text').textContent.length > n",
        arg=len(first) + 20,
    )
    page.wait_for_function(
        "() => /Thinking… [1-9]\\d*s/.test(document.querySelector('.thinking-label').textContent)"
    )
    screenshot(page, "chat-thinking-light")
    # The new conversation is in the sidebar and the address at once.
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    assert page.locator(".conv-item.is-active").count() == 1

    # …then says "Thought for N seconds" and stays open as the answer streams below it.
    page.wait_for_selector(".msg-assistant .answer-stable > *, .msg-assistant .answer-tail > *")
    page.wait_for_function(
        "() => /Thought for/.test(document.querySelector('.thinking-label').textContent)"
    )
    assert thinking.evaluate("el => el.open")
    assert re.fullmatch(r"Thought for \d+ seconds?", label.inner_text())
    screenshot(page, "chat-answering-light")

    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    answer = page.locator(".msg-assistant .answer")
    assert answer.locator(".code-block pre code").count() == 1
    assert "rest_energy" in answer.locator(".code-block").inner_text()
    assert answer.locator("math").count() >= 2  # inline and display MathML
    assert page.locator(".msg-assistant .thinking-text").text_content().strip() == (
        DEFAULT_SCRIPT.reasoning.strip()
    )
    # The thought time comes from the stored timings: the same after a reload.
    shown = label.inner_text()
    assert page.locator(".msg-assistant .thinking").evaluate("el => el.open")
    page.reload()
    page.wait_for_selector(".msg-assistant[data-status=complete]")
    assert page.locator(".msg-assistant .thinking-label").inner_text() == shown
    assert page.locator(".msg-assistant .thinking").evaluate("el => el.open")
    # The title the model wrote arrives live; the usage is there on hover.
    page.locator(".msg-assistant .msg-info").hover()
    assert "tokens" in page.locator(".msg-assistant .msg-usage").inner_text()
    screenshot(page, "chat-complete-light")
    assert watch.errors == [] and watch.dialogs == [] and watch.foreign_requests == []


def test_copy_buttons_and_regenerate(signed_in, live_server_url, simulator):
    page, _user, watch = signed_in()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_chat(page, live_server_url + "/")
    send(page, "Show me code")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    page.locator("button.copy-code[data-copy]").first.click()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert "def rest_energy" in copied
    page.locator(".msg-assistant .act-regenerate").click()
    page.wait_for_selector(".msg-assistant .versions-label:has-text('2 / 2')")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    page.locator(".msg-assistant .version-prev").click()
    page.wait_for_selector(".msg-assistant .versions-label:has-text('1 / 2')")
    assert watch.errors == []


def test_stop_closes_the_upstream_connection(signed_in, live_server_url, simulator):
    simulator.scenario = Scenario(token_rate=15)
    page, _user, _watch = signed_in()
    open_chat(page, live_server_url + "/")
    send(page, "Think slowly")
    page.wait_for_selector(REASONING_SHOWN)
    page.wait_for_selector("#send-btn.is-stop")
    started = time.monotonic()
    page.keyboard.press("Escape")  # Esc stops, like the Stop button
    gone = simulator.wait_for_disconnect(timeout=5)
    assert gone is not None and gone.path.endswith("/chat/completions")
    assert time.monotonic() - started < 2.5
    page.wait_for_selector(".msg-assistant[data-status=stopped]")
    assert page.locator(".msg-assistant .msg-notice").inner_text() == "Stopped."
    assert page.locator(".msg-assistant .thinking-text").text_content()  # partial text kept
    assert not page.locator("#send-btn").evaluate("b => b.classList.contains('is-stop')")
    # A new question is accepted at once.
    simulator.scenario = Scenario(token_rate=0)
    send(page, "Again")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    assert page.locator(".msg").count() == 4


def test_reloading_mid_stream_continues_to_the_exact_text(signed_in, live_server_url, simulator):
    simulator.scenario = Scenario(token_rate=40)
    page, _user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    send(page, "Answer slowly")
    page.wait_for_selector(".msg-assistant .answer-stable > *, .msg-assistant .answer-tail > *")
    page.reload()
    page.wait_for_selector("#conn[data-state=open]")
    assert page.locator(".msg-assistant[data-status=streaming]").count() == 1
    # Live again from the snapshot: the blocks before it stay, none twice.
    page.wait_for_selector(".msg-assistant .answer h2")
    for _ in range(8):
        if page.locator(".msg-assistant[data-status=complete]").count():
            break
        assert page.locator(".msg-assistant .answer h2").count() == 1
        assert page.locator(".msg-assistant .answer ul").count() <= 1
        page.wait_for_timeout(150)
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    live_text = page.locator(".msg-assistant .answer").inner_text()
    live_reasoning = page.locator(".msg-assistant .thinking-text").text_content()
    page.reload()
    page.wait_for_selector(".msg-assistant[data-status=complete]")
    assert page.locator(".msg-assistant .answer").inner_text() == live_text
    assert live_reasoning.strip() == DEFAULT_SCRIPT.reasoning.strip()
    message = Message.objects.get(role="assistant")
    assert message.content.strip() == DEFAULT_SCRIPT.answer.strip()
    assert watch.errors == []


def test_rename_pin_and_delete_from_the_sidebar(signed_in, live_server_url):
    page, user, watch = signed_in()
    keep = Conversation.objects.create(owner=user, title="Keep me")
    doomed = Conversation.objects.create(owner=user, title="Delete me")
    open_chat(page, f"{live_server_url}/c/{keep.uuid}/")
    item = page.locator(f".conv-item[data-id='{keep.uuid}']")
    item.hover()
    item.locator(".conv-menu-btn").click()
    page.locator("#conv-menu [data-action=rename]").click()
    page.locator(".conv-rename").fill("Renamed chat")
    page.keyboard.press("Enter")
    page.wait_for_selector("#conv-title:has-text('Renamed chat')")
    keep.refresh_from_db()
    assert keep.title == "Renamed chat"

    item.hover()
    item.locator(".conv-menu-btn").click()
    page.locator("#conv-menu [data-action=pin]").click()
    page.wait_for_selector(".conv-group[data-group=pinned]")
    keep.refresh_from_db()
    assert keep.pinned

    other = page.locator(f".conv-item[data-id='{doomed.uuid}']")
    other.hover()
    other.locator(".conv-menu-btn").click()
    page.locator("#conv-menu [data-action=delete]").click()
    assert page.locator("#confirm-dialog").evaluate("d => d.open")
    screenshot(page, "sidebar-delete-dialog")
    page.locator("#confirm-ok").click()
    page.wait_for_selector(f".conv-item[data-id='{doomed.uuid}']", state="detached")
    assert not Conversation.objects.filter(pk=doomed.pk).exists()
    assert watch.dialogs == []  # a real <dialog>, not window.confirm


def test_other_tabs_see_new_and_renamed_chats(signed_in, live_server_url, simulator):
    # Paced, so the first-line title stays until the answer ends: at full speed the model's
    # title could replace it before the other tab was polled (seen on a loaded machine).
    simulator.scenario = Scenario(token_rate=60)
    page, user, _watch = signed_in()
    other, _, _ = signed_in(user)
    open_chat(page, live_server_url + "/")
    open_chat(other, live_server_url + "/")
    send(page, "Hello from tab one")
    other.wait_for_selector(".conv-item .conv-title:has-text('Hello from tab one')")
    # The model's short title replaces the first line in every tab.
    other.wait_for_selector(".conv-item .conv-title:has-text('Mass–energy')", timeout=30_000)


def test_dark_theme_and_a_phone(signed_in, live_server_url, simulator):
    page, user, _watch = signed_in(color_scheme="dark")
    open_chat(page, live_server_url + "/")
    send(page, "Dark mode please")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(41, 42, 45)"  # the system theme follows the browser: dark
    screenshot(page, "chat-complete-dark")
    # The user's switch: light, saved on the account.
    page.locator("#user-btn").click()
    page.locator("[data-theme-value=light]").click()
    page.wait_for_function("() => document.documentElement.dataset.theme === 'light'")
    user.refresh_from_db()
    for _ in range(20):
        user.refresh_from_db()
        if user.theme == "light":
            break
        time.sleep(0.1)
    assert user.theme == "light"
    page.locator("[data-theme-value=dark]").click()
    phone, _, _ = signed_in(user, viewport=(390, 844), color_scheme="dark")
    open_chat(phone, page.url)
    assert phone.locator("#sidebar").evaluate("el => el.getBoundingClientRect().right <= 0")
    screenshot(phone, "chat-phone-dark")
    phone.locator("#sidebar-open").click()
    phone.wait_for_function(
        "() => document.querySelector('#sidebar').getBoundingClientRect().left >= 0"
    )
    screenshot(phone, "chat-phone-drawer-dark")


def test_the_page_in_chinese(signed_in, live_server_url):
    page, _user, _watch = signed_in(locale="zh-CN")
    page.set_extra_http_headers({"Accept-Language": "zh-Hans,zh;q=0.9"})
    open_chat(page, live_server_url + "/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    screenshot(page, "chat-empty-zh")
    from django.utils import translation

    with translation.override("zh-hans"):
        expected = translation.gettext("New chat")
    assert expected != "New chat", "the compiled zh_Hans catalogue is used"
    assert page.locator("#new-chat").inner_text().strip() == expected
