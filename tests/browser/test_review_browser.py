"""Admin review in a real browser: a user chats, an admin reviews, the user sees the review."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.models import Conversation
from conversations.simulator import Scenario
from review.models import ReviewAudit
from tests.browser.conftest import screenshot
from tests.chat_support import make_user

pytestmark = pytest.mark.timeout(120)

REASONING = "First, factor 91. Try 7: 7 times 13 is 91, so it is not prime."
ANSWER = "No. **91 = 7 × 13**, so it is *composite*."


def test_an_admin_reviews_a_conversation_and_the_owner_sees_it(
    signed_in: Any, live_server_url: str, simulator: Any
) -> None:
    simulator.scenario = Scenario(token_rate=400, reasoning_text=REASONING, answer_text=ANSWER)
    # Alice chats through the real chat page, so the review shows what she actually saw.
    page, alice, watch = signed_in(make_user("alice"))
    page.goto(live_server_url + "/")
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")
    page.fill("#composer-input", "Is 91 prime?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    conversation = Conversation.objects.get(owner=alice)

    admin, root, admin_watch = signed_in(make_user("root", is_staff=True, is_superuser=True))
    admin.goto(live_server_url + "/admin/conversations/conversation/")
    admin.click(f"a[href$='/review/{conversation.uuid}/']")
    admin.wait_for_selector(".r1-thread")
    answer = admin.locator(".r1-assistant .r1-body")
    assert answer.locator("strong").inner_text() == "91 = 7 × 13"
    assert answer.locator("em").inner_text() == "composite"
    reasoning = admin.locator(".r1-assistant details.r1-reasoning")
    assert not reasoning.evaluate("el => el.open")  # folded, as in the chat
    reasoning.locator("summary").click()
    assert "7 times 13 is 91" in reasoning.locator(".r1-reasoning-text").inner_text()
    assert "Is 91 prime?" in admin.locator(".r1-user").inner_text()
    screenshot(admin, "review-conversation")
    assert (
        ReviewAudit.objects.filter(
            reviewer=root, owner=alice, conversation=conversation, action="open"
        ).count()
        == 1
    )

    conversation.refresh_from_db()  # titled by the model meanwhile
    # Alice's account page now lists that review: who, which conversation, when.
    page.goto(live_server_url + "/account/")
    entry = page.locator("#reviews-list .review-entry")
    assert entry.count() == 1
    text = entry.inner_text()
    assert root.get_username() in text
    assert (conversation.title or "Untitled conversation") in text
    entry.scroll_into_view_if_needed()
    screenshot(page, "account-reviews")
    for w in (watch, admin_watch):
        assert not w.dialogs and not w.foreign_requests and not w.errors
