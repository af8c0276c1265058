"""Sign-up in a real browser: by email with the emailed code, by phone with the SMS code.

The live server writes mail into files and SMS into a JSON-lines file (see `live_outbox` in
conftest.py); each test reads its code from there, enters it, and lands in the chat with the
socket connected. Screenshots (desktop and phone-sized) go to test-artifacts/.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from accounts.access import has_verified_contact
from tests.browser.conftest import Watch, screenshot

pytestmark = pytest.mark.timeout(90)

DESKTOP = (1280, 860)
PHONE = (390, 844)
PASSWORD = "correct horse battery 42"
MESSAGE_SEPARATOR = b"\n" + b"-" * 79 + b"\n"  # between messages in a file-based mail log


def wait_for(read: Callable[[], str | None], what: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = read()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s")


def emailed_code(outbox: Path, address: str) -> str | None:
    """The 6-digit code in the last message to `address` the live server wrote."""
    found = None
    for path in sorted((outbox / "mail").glob("*.log"), key=lambda p: p.stat().st_mtime):
        for raw in path.read_bytes().split(MESSAGE_SEPARATOR):
            if not raw.strip():
                continue
            message = email.message_from_bytes(raw.lstrip(), policy=email.policy.default)
            if address not in str(message["To"] or ""):
                continue
            body = message.get_body(("plain",))
            text = body.get_content() if body is not None else ""
            match = re.search(r"^\s*(\d{6})\s*$", text, re.MULTILINE)
            if match:
                found = match.group(1)
    return found


def texted_code(outbox: Path, phone: str) -> str | None:
    """The code in the last SMS to `phone` (E.164) the live server wrote."""
    path = outbox / "sms.jsonl"
    if not path.exists():
        return None
    found = None
    for line in path.read_text(encoding="utf-8").splitlines():
        sms = json.loads(line)
        if sms["phone"] == phone:
            match = re.search(r"\b(\d{6})\b", sms["message"])
            found = (sms["params"] or {}).get("code") or (match.group(1) if match else None)
    return found


@pytest.fixture
def new_page(browser: Any, live_server_url: str, chat_backend: Any) -> Iterator[Any]:
    """A factory: a page in a fresh, signed-out browser context of the given viewport."""
    contexts: list[Any] = []

    def open_page(viewport: tuple[int, int]) -> tuple[Any, Watch]:
        context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]},
            locale="en-US",
            timezone_id="UTC",
            is_mobile=viewport == PHONE,
            has_touch=viewport == PHONE,
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        watch = Watch(live_server_url)
        watch.attach(page)
        return page, watch

    yield open_page
    for context in contexts:
        context.close()


def sign_up(page: Any, live_server_url: str, method: str, contact: str, shot: str) -> None:
    """Fill in and submit the sign-up form with the Email or Phone tab."""
    page.goto(live_server_url + "/accounts/signup/")
    page.wait_for_selector("#signup-form")
    screenshot(page, f"{shot}-signup-empty")
    page.locator(f"label[for=method-{method}]").click()
    assert page.locator(f"#method-{method}").is_checked()
    other = "phone" if method == "email" else "email"
    assert page.locator(f".auth-pane-{method}").is_visible()
    assert not page.locator(f".auth-pane-{other}").is_visible()
    page.fill(f"#signup-form [name={method}]", contact)
    page.fill("#signup-form [name=password1]", PASSWORD)
    page.fill("#signup-form [name=password2]", PASSWORD)
    screenshot(page, f"{shot}-signup-filled")
    page.click("#signup-submit")
    page.wait_for_url(re.compile(r"/account/verify/$"))
    page.wait_for_selector("#code-form")


def confirm_and_land_in_chat(page: Any, code: str, shot: str) -> None:
    screenshot(page, f"{shot}-verify")
    page.fill("#code-form [name=code]", code)
    page.click("#code-submit")
    page.wait_for_selector("#composer-input", state="visible")
    page.wait_for_selector("#conn[data-state=open]")
    screenshot(page, f"{shot}-chat")


def test_sign_up_by_email_with_the_emailed_code(
    new_page: Any, live_server_url: str, live_outbox: Path, django_user_model: Any
) -> None:
    page, watch = new_page(DESKTOP)
    address = f"new-{uuid.uuid4().hex[:10]}@example.com"
    sign_up(page, live_server_url, "email", address, "signup-email-desktop")
    assert address in page.inner_text("body")  # "We sent a 6-digit code to …"
    code = wait_for(lambda: emailed_code(live_outbox, address), f"email to {address}")

    # Not in the chat yet: the account cannot chat until the code is entered.
    user = django_user_model.objects.get(email=address)
    assert not has_verified_contact(user)
    confirm_and_land_in_chat(page, code, "signup-email-desktop")
    assert page.url.rstrip("/") == live_server_url
    user.refresh_from_db()
    assert has_verified_contact(user)
    assert user.emailaddress_set.get(email=address).verified

    # The same pages on a phone-sized screen (a second new user).
    phone_page, phone_watch = new_page(PHONE)
    other = f"new-{uuid.uuid4().hex[:10]}@example.com"
    sign_up(phone_page, live_server_url, "email", other, "signup-email-phone")
    code = wait_for(lambda: emailed_code(live_outbox, other), f"email to {other}")
    confirm_and_land_in_chat(phone_page, code, "signup-email-phone")
    for w in (watch, phone_watch):
        assert w.errors == [] and w.dialogs == [] and w.foreign_requests == []


def test_sign_up_by_phone_with_the_sms_code(
    new_page: Any, live_server_url: str, live_outbox: Path, django_user_model: Any
) -> None:
    page, watch = new_page(PHONE)
    digits = f"{uuid.uuid4().int % 10**4:04d}"
    written = f"138 0013 {digits}"  # a mainland number without +86 (the default region, CN)
    e164 = f"+861380013{digits}"
    sign_up(page, live_server_url, "phone", written, "signup-phone-phone")
    code = wait_for(lambda: texted_code(live_outbox, e164), f"SMS to {e164}")

    user = django_user_model.objects.get(phone=e164)
    assert not has_verified_contact(user)
    confirm_and_land_in_chat(page, code, "signup-phone-phone")
    assert page.url.rstrip("/") == live_server_url
    user.refresh_from_db()
    assert user.phone_verified and has_verified_contact(user)

    # And on a desktop screen, written in full international form.
    desk_page, desk_watch = new_page(DESKTOP)
    digits2 = f"{(int(digits) + 1) % 10**4:04d}"
    other = f"+861380013{digits2}"
    sign_up(desk_page, live_server_url, "phone", f"+86 138 0013 {digits2}", "signup-phone-desktop")
    code = wait_for(lambda: texted_code(live_outbox, other), f"SMS to {other}")
    confirm_and_land_in_chat(desk_page, code, "signup-phone-desktop")
    for w in (watch, desk_watch):
        assert w.errors == [] and w.dialogs == [] and w.foreign_requests == []
