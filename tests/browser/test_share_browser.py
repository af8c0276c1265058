"""Share links in a real browser: share from the chat page (header button and sidebar menu),
open the link signed out, continue it as another user. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re

import pytest

from conversations.models import Conversation
from conversations.simulator import Scenario
from sharing.models import SharedLink
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.timeout(120)

# What hostile content must never become on the shared page.
INERT = ("script", "iframe", "object", "img", "style", "image", "[onerror]", "[onload]",
         "a[href^='javascript']", "a[href^='data']", "[style]")  # fmt: skip


def open_chat(page, url):
    page.goto(url)
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")


def ask(page, text):
    page.fill("#composer-input", text)
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)


def create_link(page, *, reasoning: bool = False) -> str:
    dialog = page.locator("#share-dialog")
    dialog.wait_for(state="visible")
    assert not page.locator("#share-reasoning").is_checked()  # off unless chosen
    if reasoning:
        page.locator("label[for=share-reasoning]").click()
    page.locator("#share-create").click()
    page.wait_for_function("() => document.querySelector('#share-url').value.includes('/s/')")
    return page.locator("#share-url").input_value()


def test_share_open_signed_out_and_continue(signed_in, browser, live_server_url, simulator):
    simulator.scenario = Scenario(token_rate=0)
    page, alice, watch = signed_in()
    open_chat(page, live_server_url + "/")
    assert page.locator("#share-btn").is_hidden()  # nothing to share in a new chat
    ask(page, "Why is the sky blue?")
    answer = page.locator(".msg-assistant .answer").inner_text()
    reasoning = page.locator(".msg-assistant .thinking-text").text_content()
    assert reasoning.strip()

    # The header's Share button: the dialog, then the link.
    page.locator("#share-btn").click()
    page.locator("#share-dialog").wait_for(state="visible")
    assert page.locator("#share-subject").inner_text() == page.locator("#conv-title").inner_text()
    screenshot(page, "share-dialog")
    url = create_link(page)
    assert re.fullmatch(re.escape(live_server_url) + r"/s/[\w-]{32}/", url)
    screenshot(page, "share-dialog-link")
    page.locator("#share-copy").click()
    page.wait_for_function("() => document.querySelector('#share-copy').textContent === 'Copied'")
    page.locator("#share-close").click()
    page.locator("#share-dialog").wait_for(state="hidden")

    # Shared again later, the dialog says a link exists already.
    page.locator("#share-btn").click()
    page.locator("#share-existing").wait_for(state="visible")
    assert "already has a shared link" in page.locator("#share-existing").inner_text()
    page.locator("#share-choose button[value=cancel]").click()
    page.locator("#share-dialog").wait_for(state="hidden")

    # What Alice writes next is not in the snapshot.
    ask_more = page.locator(".msg-assistant").count()
    page.fill("#composer-input", "A private follow-up")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('.msg-assistant[data-status=complete]').length > n",
        arg=ask_more,
    )

    # Someone signed out opens the link.
    guest = browser.new_context(viewport={"width": 1280, "height": 860}, color_scheme="light")
    try:
        shared = guest.new_page()
        response = shared.goto(url)
        assert response.status == 200 and response.headers["x-robots-tag"] == "noindex"
        title = SharedLink.objects.get().title
        assert title and shared.locator("#shared-title").inner_text() == title
        assert shared.locator(".msg-assistant .answer").inner_text() == answer
        assert shared.locator(".thinking").count() == 0  # reasoning not chosen
        assert "A private follow-up" not in shared.content()
        assert alice.email not in shared.content()
        # Code blocks' copy buttons are labelled in the page's language, as in the chat.
        copy_code = shared.locator("button.copy-code").first
        shared.wait_for_function(
            "() => document.querySelector('button.copy-code').textContent === 'Copy'"
        )
        assert copy_code.is_visible()
        screenshot(shared, "shared-page")
        shared.locator("#continue-chat").click()
        shared.wait_for_url(re.compile(r"/accounts/login/\?next=/s/"))
    finally:
        guest.close()

    # Bob, signed in, continues it into his own history and goes on asking.
    bob_page, bob, bob_watch = signed_in()
    bob_page.goto(url)
    bob_page.locator("#continue-chat").click()
    bob_page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}/$"))
    bob_page.wait_for_selector("#conn[data-state=open]")
    copy = Conversation.objects.get(owner=bob)
    assert bob_page.url.endswith(f"/c/{copy.uuid}/")
    assert bob_page.locator(".msg-user .user-text").first.inner_text() == "Why is the sky blue?"
    assert bob_page.locator(".msg-assistant .answer").first.inner_text() == answer
    assert bob_page.locator(".conv-item.is-active .conv-title").inner_text() == copy.title
    screenshot(bob_page, "shared-continued")
    bob_page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")
    ask_count = bob_page.locator(".msg-assistant[data-status=complete]").count()
    bob_page.fill("#composer-input", "And at sunset?")
    bob_page.keyboard.press("Enter")
    bob_page.wait_for_function(
        "n => document.querySelectorAll('.msg-assistant[data-status=complete]').length > n",
        arg=ask_count,
        timeout=30_000,
    )
    assert copy.messages.count() == 4

    # Alice revokes the link on her account page: it is gone for everyone.
    page.goto(live_server_url + "/account/#section-shared")
    row = page.locator("#shared-links .shared-link")
    assert row.count() == 1 and row.locator(".shared-link-url").input_value() == url
    row.scroll_into_view_if_needed()
    screenshot(page, "shared-links-account")
    row.locator(".shared-revoke").click()
    page.wait_for_selector("#shared-empty")
    assert "The link was revoked" in page.locator("#auth-messages").inner_text()
    assert bob_page.goto(url).status == 404
    for w in (watch, bob_watch):
        assert not w.errors and not w.dialogs and not w.foreign_requests


@pytest.mark.parametrize("scheme", ["dark"])
def test_share_from_the_sidebar_menu_with_reasoning(
    signed_in, browser, live_server_url, simulator, scheme
):
    simulator.scenario = Scenario(token_rate=0)
    page, _alice, watch = signed_in(color_scheme=scheme)
    open_chat(page, live_server_url + "/")
    ask(page, "What is 2 + 2?")
    reasoning = page.locator(".msg-assistant .thinking-text").text_content().strip()

    item = page.locator(".conv-item.is-active")
    item.hover()
    item.locator(".conv-menu-btn").click()
    page.locator('#conv-menu [data-action="share"]').click()
    url = create_link(page, reasoning=True)
    assert SharedLink.objects.get().include_reasoning
    screenshot(page, f"share-dialog-reasoning-{scheme}")

    guest = browser.new_context(viewport={"width": 900, "height": 900}, color_scheme=scheme)
    try:
        shared = guest.new_page()
        shared.goto(url)
        thinking = shared.locator(".msg-assistant details.thinking")
        assert thinking.count() == 1 and not thinking.evaluate("el => el.open")
        thinking.locator("summary").click()
        assert thinking.evaluate("el => el.open")
        assert shared.locator(".thinking-text").text_content().strip() == reasoning
        screenshot(shared, f"shared-page-reasoning-{scheme}")
    finally:
        guest.close()
    assert not watch.errors and not watch.dialogs


def test_hostile_content_stays_inert_on_the_shared_page(signed_in, browser, live_server_url):
    from conversations.rendering import render_markdown
    from review.testing import make_conversation
    from tests.browser.conftest import Watch
    from tests.browser.test_xss_browser import EVIL, PAYLOAD

    page, alice, _watch = signed_in()
    title = "\"><img src=x onerror=alert('title')>"
    conversation, _, answer = make_conversation(
        alice, title=title, question=PAYLOAD, answer=PAYLOAD, reasoning=PAYLOAD
    )
    answer.reasoning_html = render_markdown(PAYLOAD)
    answer.save(update_fields=["reasoning_html"])
    open_chat(page, f"{live_server_url}/c/{conversation.uuid}/")
    page.locator("#share-btn").click()
    url = create_link(page, reasoning=True)

    guest = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        shared = guest.new_page()
        watch = Watch(live_server_url)
        watch.attach(shared)
        shared.goto(url)
        shared.locator("details.thinking summary").click()  # the reasoning shown, too
        shared.wait_for_timeout(500)  # let any (wrongly) triggered load or handler happen
        assert watch.dialogs == [] and watch.errors == []
        assert [u for u in watch.foreign_requests if EVIL in u] == []
        thread = shared.locator("#shared-thread")
        for selector in INERT:
            assert thread.locator(selector).count() == 0, selector
        assert shared.locator("#shared-title").inner_text() == title
        text = shared.locator(".msg-user .user-text").inner_text()
        assert "<script>alert('script')</script>" in text
        screenshot(shared, "shared-page-hostile")
    finally:
        guest.close()


def test_the_admin_shows_the_shared_conversations(signed_in, live_server_url):
    from review.testing import make_conversation, make_person

    page, alice, _watch = signed_in()
    shared, _, _ = make_conversation(alice, title="Shared primes")
    make_conversation(alice, title="Private primes")
    open_chat(page, f"{live_server_url}/c/{shared.uuid}/")
    page.locator("#share-btn").click()
    url = create_link(page)

    root = make_person("root", is_staff=True, is_superuser=True)
    admin, _root, watch = signed_in(root)
    admin.goto(f"{live_server_url}/admin/conversations/conversation/?shared=yes")
    rows = admin.locator("#result_list tbody tr")
    assert rows.count() == 1 and "Shared primes" in rows.first.inner_text()
    assert rows.first.locator("td.field-shared").inner_text() == "1 link"
    screenshot(admin, "admin-shared-filter")
    rows.first.locator("a", has_text="Shared primes").click()
    section = admin.locator("#review-shared")
    assert section.locator("a").inner_text() == url
    section.scroll_into_view_if_needed()
    screenshot(admin, "admin-review-shared-links")
    assert not watch.errors
