"""Thumbs up and down on an answer in a real browser: the inline reason form, the stored row,
the pressed state after a reload, switching and removing. Screenshots go to test-artifacts/."""

from __future__ import annotations

import pytest

from conversations.simulator import Scenario
from review.models import Feedback
from tests.browser.conftest import ARTIFACTS, screenshot

pytestmark = pytest.mark.timeout(90)

UP = ".msg-assistant .act-rate[data-rating=up]"
DOWN = ".msg-assistant .act-rate[data-rating=down]"


def open_chat(page, url):
    page.goto(url)
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")


def ask(page, text):
    page.fill("#composer-input", text)
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)


def snap_actions(page, name):
    """The action row (and the form under it, if open): what the thumbs look like, close up."""
    box = page.locator(".msg-assistant .msg-actions").bounding_box()
    form = page.locator(".msg-assistant .feedback-form")
    bottom = form.bounding_box() if form.count() else box
    clip = {"x": box["x"] - 8, "y": box["y"] - 8, "width": 560,
            "height": bottom["y"] + bottom["height"] - box["y"] + 16}  # fmt: skip
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), clip=clip)


def pressed(page):
    return (
        page.locator(UP).get_attribute("aria-pressed"),
        page.locator(DOWN).get_attribute("aria-pressed"),
    )


def wait_pressed(page, up, down):
    page.wait_for_function(
        "([up, down]) => document.querySelector("
        "'.msg-assistant .act-rate[data-rating=up]').getAttribute('aria-pressed') === up && "
        "document.querySelector('.msg-assistant .act-rate[data-rating=down]')"
        ".getAttribute('aria-pressed') === down",
        arg=[up, down],
    )


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_thumbs_down_with_a_reason_then_thumbs_up(signed_in, live_server_url, simulator, scheme):
    simulator.scenario = Scenario(token_rate=0)
    page, user, watch = signed_in(color_scheme=scheme)
    open_chat(page, live_server_url + "/")
    ask(page, "What is 2 + 2?")
    assert pressed(page) == ("false", "false")  # a live answer starts unrated
    answer_id = page.locator(".msg-assistant").get_attribute("data-id")

    # Thumbs down opens the reason form; nothing is stored until it is sent.
    page.locator(".msg-assistant").hover()
    page.locator(DOWN).click()
    form = page.locator(".msg-assistant .feedback-form")
    form.locator("textarea").wait_for()
    assert page.locator(DOWN).get_attribute("aria-expanded") == "true"
    assert page.evaluate("document.activeElement.tagName") == "TEXTAREA"
    # Cancel changes nothing.
    form.locator(".feedback-cancel").click()
    assert form.count() == 0 and pressed(page) == ("false", "false")
    assert not Feedback.objects.exists()

    page.locator(DOWN).click()
    form.locator("textarea").fill("The sum is wrong: 2 + 2 is 4, not 5.")
    # The form is scrolled into view above the composer.
    scroller = page.locator("#thread-scroll").bounding_box()
    box = form.bounding_box()
    assert box["y"] + box["height"] <= scroller["y"] + scroller["height"] + 1
    screenshot(page, f"feedback-form-{scheme}")
    snap_actions(page, f"feedback-form-{scheme}-row")
    form.locator(".feedback-send").click()
    wait_pressed(page, "false", "true")
    page.wait_for_selector(".msg-assistant .feedback-form", state="detached")
    page.wait_for_selector(".toast:has-text('Thanks for your feedback.')")
    entry = Feedback.objects.get()
    assert (entry.user_id, str(entry.message.uuid), entry.rating, entry.reason) == (
        user.pk,
        answer_id,
        "down",
        "The sum is wrong: 2 + 2 is 4, not 5.",
    )

    # The choice survives a reload (pre-rendered from the server).
    page.reload()
    page.wait_for_selector(".msg-assistant[data-status=complete]")
    assert pressed(page) == ("false", "true")
    page.locator(".msg-assistant").hover()
    screenshot(page, f"feedback-down-{scheme}")
    snap_actions(page, f"feedback-down-{scheme}-row")

    # Thumbs up switches it; clicking it again removes it.
    page.locator(UP).click()
    wait_pressed(page, "true", "false")
    entry.refresh_from_db()
    assert (entry.rating, entry.reason) == ("up", "")
    screenshot(page, f"feedback-up-{scheme}")
    snap_actions(page, f"feedback-up-{scheme}-row")
    page.locator(UP).click()
    wait_pressed(page, "false", "false")  # shown once the server confirmed it
    assert not Feedback.objects.exists()
    assert watch.errors == [] and watch.dialogs == [] and watch.foreign_requests == []
