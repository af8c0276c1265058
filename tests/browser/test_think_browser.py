"""The answer and its reasoning, the model picker and presets, in Chromium."""

from __future__ import annotations

import re

import pytest

from conversations.models import ChatPreset, Message
from conversations.simulator import Scenario
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.timeout(120)


def open_chat(page, url):
    page.goto(url)
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_selector("#picker-button:not([disabled])")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")


def send(page, text):
    page.fill("#composer-input", text)
    page.keyboard.press("Enter")


def pick(page, text):
    """Choose a model with the keyboard: open, type, Enter."""
    page.locator("#picker-button").click()
    page.keyboard.type(text)
    page.keyboard.press("Enter")


def test_the_reasoning_stays_open_and_folding_it_is_remembered(signed_in, live_server_url,
                                                                simulator):  # fmt: skip
    simulator.scenario = Scenario(token_rate=80)
    page, user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    send(page, "How are mass and energy related?")
    thinking = page.locator(".msg-assistant .thinking")
    page.wait_for_selector(".msg-assistant .thinking-text .thinking-tail > *, "
                           ".msg-assistant .thinking-text .thinking-stable > *")  # fmt: skip
    assert thinking.evaluate("el => el.open")
    # The answer starts: the reasoning stays open (DeepSeek's habit).
    page.wait_for_selector(".msg-assistant .answer-stable > *, .msg-assistant .answer-tail > *")
    assert thinking.evaluate("el => el.open")
    screenshot(page, "think-reasoning-open-light")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    assert thinking.evaluate("el => el.open")
    label = page.locator(".msg-assistant .thinking-label").inner_text()
    assert re.fullmatch(r"Thought for \d+ seconds?", label)

    # One click folds it; the choice is the user's, kept on the server.
    page.locator(".msg-assistant .thinking-summary").click()
    assert not thinking.evaluate("el => el.open")
    for _ in range(50):
        user.refresh_from_db()
        if user.chat_defaults.get("reasoning_expanded") is False:
            break
        page.wait_for_timeout(100)
    assert user.chat_defaults.get("reasoning_expanded") is False
    page.reload()
    page.wait_for_selector(".msg-assistant[data-status=complete]")
    assert not page.locator(".msg-assistant .thinking").evaluate("el => el.open")
    assert page.locator(".msg-assistant .thinking-label").inner_text() == label
    # A new answer comes folded too; and on another device (a new browser context).
    other, _same, _watch = signed_in(user, color_scheme="dark")
    other.goto(page.url)
    other.wait_for_selector(".msg-assistant[data-status=complete]")
    assert not other.locator(".msg-assistant .thinking").evaluate("el => el.open")
    other.locator(".msg-assistant .thinking-summary").click()
    assert other.locator(".msg-assistant .thinking").evaluate("el => el.open")
    screenshot(other, "think-reasoning-open-dark")
    assert watch.errors == [] and watch.dialogs == []


def test_the_picker_filters_by_typing_and_the_keyboard_chooses(signed_in, live_server_url):
    page, _user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    button = page.locator("#picker-button")
    button.click()
    search = page.locator("#picker-search")
    assert search.evaluate("el => el === document.activeElement")
    options = page.locator("#picker-list [role=option]:not([hidden])")
    assert options.count() == 5
    # Every full name is there, and thinking models carry a badge.
    names = options.locator(".picker-option-name").all_inner_texts()
    assert "r1-distill-sim" in names and "deepseek-v4-flash" in names
    badge = page.locator("#picker-list [role=option]", has_text="deepseek-reasoner")
    assert badge.locator(".picker-badge").inner_text() == "Thinks"
    screenshot(page, "think-picker-light")

    page.emulate_media(color_scheme="dark")
    screenshot(page, "think-picker-dark")
    page.emulate_media(color_scheme="light")
    page.keyboard.type("v4")
    assert options.count() == 2
    page.keyboard.type(" pro")
    assert options.locator(".picker-option-name").all_inner_texts() == ["deepseek-v4-pro"]
    page.keyboard.press("Enter")
    assert page.locator("#picker-pop").is_hidden()
    assert "deepseek-v4-pro" in button.inner_text()
    assert page.evaluate("window.r1chat.settings.current().model") == "deepseek-v4-pro"

    # ↓/↑ move through the list; Esc closes without choosing.
    button.click()
    page.keyboard.type("deepseek")
    page.keyboard.press("ArrowDown")
    active = page.locator("#picker-list .is-active .picker-option-name").inner_text()
    page.keyboard.press("Escape")
    assert page.locator("#picker-pop").is_hidden()
    assert page.evaluate("window.r1chat.settings.current().model") == "deepseek-v4-pro"
    button.click()
    page.keyboard.type("deepseek")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    assert page.evaluate("window.r1chat.settings.current().model") == active
    # Nothing matches: it says so.
    button.click()
    page.keyboard.type("no such model")
    assert page.locator(".picker-empty").is_visible()
    page.keyboard.press("Escape")
    assert watch.errors == [] and watch.dialogs == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_picker_on_a_phone(signed_in, live_server_url, scheme):
    page, _user, watch = signed_in(viewport=(390, 844), color_scheme=scheme)
    open_chat(page, live_server_url + "/")
    page.locator("#picker-button").click()
    pop = page.locator("#picker-pop").bounding_box()
    assert pop["x"] >= 0 and pop["x"] + pop["width"] <= 390
    screenshot(page, f"think-picker-phone-{scheme}")
    page.keyboard.type("distill")
    page.keyboard.press("Enter")
    assert "r1-distill-sim" in page.locator("#picker-button").inner_text()
    assert watch.errors == []


def test_continue_generating_goes_on_in_the_same_message(signed_in, live_server_url, simulator):
    # A long answer from a model that does not think, cut at the shortest maximum length.
    simulator.scenario = Scenario(token_rate=150, answer_tokens=600)
    page, user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    pick(page, "deepseek-chat")
    page.locator("#deep-think").click()  # (with Deep Think the pair answers as the reasoner)
    assert page.locator("#deep-think").get_attribute("aria-pressed") == "false"
    page.evaluate("""() => {
      const slider = document.querySelector('#set-max-tokens');
      slider.value = slider.min;
      slider.dispatchEvent(new Event('input'));
    }""")
    send(page, "Write a long essay")
    message = page.locator(".msg-assistant")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    button = message.locator(".continue-btn")
    assert button.is_visible()
    assert "maximum length" in message.locator(".msg-notice").inner_text()
    screenshot(page, "think-continue-light")
    first = message.locator(".answer").inner_text()
    stored = Message.objects.get(role="assistant", conversation__owner=user)
    assert stored.finish_reason == "length"

    button.click()
    page.wait_for_selector(".msg-assistant[data-status=streaming]")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    assert page.locator(".msg-assistant").count() == 1
    longer = message.locator(".answer").inner_text()
    assert longer.startswith(first[:200]) and len(longer) > len(first)
    stored.refresh_from_db()
    assert len(stored.content) > 256 * 3  # (two requests' worth of words)
    assert Message.objects.filter(role="assistant", conversation__owner=user).count() == 1
    # The page after a reload shows the same text (stored as it was shown).
    page.reload()
    page.wait_for_selector(".msg-assistant[data-status=complete]")
    assert page.locator(".msg-assistant .answer").inner_text() == longer
    page.emulate_media(color_scheme="dark")
    screenshot(page, "think-continued-dark")
    assert watch.errors == [] and watch.dialogs == []


def test_a_preset_is_saved_chosen_and_remembered_by_the_chat(signed_in, live_server_url,
                                                             simulator):  # fmt: skip
    simulator.scenario = Scenario(token_rate=400, reasoning_text="", answer_text="Short.")
    page, user, watch = signed_in()
    open_chat(page, live_server_url + "/")
    pick(page, "deepseek-v4-pro")
    page.locator("#settings-btn").click()
    page.fill("#set-system-prompt", "Answer in haiku.")
    page.locator("#preset-new").click()
    page.fill("#preset-name", "Poet")
    page.keyboard.press("Enter")
    page.wait_for_selector("#set-preset option:has-text('Poet')", state="attached")
    assert page.locator("#set-preset").evaluate("s => s.selectedOptions[0].text") == "Poet"
    preset = ChatPreset.objects.get(owner=user)
    assert preset.settings["model"] == "deepseek-v4-pro"
    assert preset.settings["system_prompt"] == "Answer in haiku."
    screenshot(page, "think-presets-light")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "think-presets-dark")
    page.emulate_media(color_scheme="light")

    # Other settings, then the preset again: its model and prompt come back.
    page.fill("#set-system-prompt", "")
    page.locator("#set-preset").select_option(label="No preset")
    page.locator("#settings-close").click()
    pick(page, "deepseek-v4-flash")
    page.locator("#settings-btn").click()
    page.locator("#set-preset").select_option(label="Poet")
    assert page.input_value("#set-system-prompt") == "Answer in haiku."
    assert "deepseek-v4-pro" in page.locator("#picker-button").inner_text()
    page.locator("#settings-close").click()
    send(page, "Hello")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    # The chat remembers its preset after a reload.
    page.reload()
    page.wait_for_selector("#picker-button:not([disabled])")
    page.locator("#settings-btn").click()
    assert page.locator("#set-preset").evaluate("s => s.selectedOptions[0].text") == "Poet"

    # Renamed, then deleted.
    page.locator("#preset-rename").click()
    page.fill("#preset-name", "Haiku poet")
    page.keyboard.press("Enter")
    page.wait_for_selector("#set-preset option:has-text('Haiku poet')", state="attached")
    page.locator("#preset-delete").click()
    page.wait_for_function("() => document.querySelector('#set-preset').options.length === 1")
    assert not ChatPreset.objects.filter(owner=user).exists()
    assert watch.errors == [] and watch.dialogs == []
