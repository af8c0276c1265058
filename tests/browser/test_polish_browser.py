"""Sign-in friction and polish in a real browser: the code form's countdown, the waiting room,
the admin's waiting count, the copy label in Chinese, centred display math, scripts' plurals.

Screenshots (light and dark) go to test-artifacts/polish-*.png.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from review.testing import make_conversation
from tests.browser.conftest import ARTIFACTS, screenshot
from tests.chat_support import PASSWORD, make_user, session_cookie

pytestmark = pytest.mark.timeout(120)

CODE_ANSWER = (
    "Here is the function:\n\n```python\ndef square(x):\n    return x * x\n```\n\n"
    "$$\n\\int_0^1 x^2\\,dx = \\frac{1}{3}\n$$\n\nThat is all."
)


def new_page(browser: Any, base_url: str, *, user: Any = None, scheme: str = "light",
             locale: str = "en-US", viewport: tuple[int, int] = (1280, 860)) -> Any:  # fmt: skip
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]},
        color_scheme=scheme,
        locale=locale,
        timezone_id="UTC",
    )
    if user is not None:
        name, value = session_cookie(user).split("=", 1)
        context.add_cookies([{"name": name, "value": value, "url": base_url}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors  # type: ignore[attr-defined]
    return page


@pytest.fixture(scope="module")
def approval_server_url(django_db_setup: Any, django_db_blocker: Any) -> Iterator[str]:
    """A second live server, in approval mode (the sign-up mode is read at start-up)."""
    from tests.processes import app_env, free_port, stop, wait_http

    ARTIFACTS.mkdir(exist_ok=True)
    with django_db_blocker.unblock():
        env = app_env(LOG_LEVEL="WARNING", R1CHAT_SIGNUP_MODE="approval")
    port = free_port()
    log = (ARTIFACTS / "browser-daphne-approval.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
         "r1chat.asgi:application"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30, proc=proc)
        yield f"http://localhost:{port}"
    finally:
        stop(proc, sig=signal.SIGTERM, timeout=5)
        log.close()


# --- the code sign-in form ----------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_asking_for_a_code_again_counts_down_on_the_form(
    browser: Any, live_server_url: str, transactional_db: Any, scheme: str
) -> None:
    make_user(f"kim{scheme}")
    page = new_page(browser, live_server_url, scheme=scheme)
    form_url = live_server_url + reverse("account_request_login_code")
    page.goto(form_url)
    field = page.locator("#request-code-form input[name=login]")
    assert page.evaluate("document.activeElement.name") == "login"
    field.fill(f"kim{scheme}@example.com")
    page.click("#request-code-submit")
    page.wait_for_url(re.compile(r"/code/confirm/"))
    code = page.locator("input[name=code]")
    assert code.get_attribute("inputmode") == "numeric"
    assert code.get_attribute("autocomplete") == "one-time-code"
    assert page.evaluate("document.activeElement.name") == "code"

    # the confirm page counts down its resend button
    resend = page.locator("#resend-code")
    assert resend.is_disabled() and re.fullmatch(r"Resend code in \d+ s", resend.inner_text())

    # asked again from another browser (this one goes back to its code page)
    page = new_page(browser, live_server_url, scheme=scheme)
    page.goto(form_url)
    page.fill("#request-code-form input[name=login]", f"kim{scheme}@example.com")
    page.click("#request-code-submit")
    button = page.locator("#request-code-submit")
    page.wait_for_function(
        "() => /Resend code in \\d+ s/.test(document.querySelector('#request-code-submit')"
        ".textContent)"
    )
    assert button.is_disabled()
    first = int(re.search(r"\d+", button.inner_text()).group(0))
    assert 50 <= first <= 60
    page.wait_for_function(
        f"() => !document.querySelector('#request-code-submit').textContent.includes('{first} s')"
    )
    assert "You can ask for another in" in page.locator("#field-login").inner_text()
    screenshot(page, f"polish-code-sign-in-countdown-{scheme}")
    # another address may be asked for at once
    page.fill("#request-code-form input[name=login]", "+86 139 0013 9000")
    assert button.is_enabled() and button.inner_text() == "Send code"
    assert not page.errors  # type: ignore[attr-defined]


# --- the waiting room and the admin's count ---------------------------------------------------
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_signing_in_to_wait_for_approval_shows_no_stale_banner(
    browser: Any, approval_server_url: str, transactional_db: Any, scheme: str
) -> None:
    make_user(f"wen{scheme}", approved=False)
    page = new_page(browser, approval_server_url, scheme=scheme)
    page.goto(approval_server_url + reverse("account_login"))
    page.fill("input[name=login]", f"wen{scheme}@example.com")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#waiting-title")
    assert page.locator("#auth-messages").count() == 0
    assert "Successfully signed in" not in page.content()
    screenshot(page, f"polish-waiting-{scheme}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_admin_home_shows_the_people_waiting(
    browser: Any, approval_server_url: str, transactional_db: Any, scheme: str
) -> None:
    for name in ("ann", "bo", "cy"):
        make_user(f"{name}{scheme}", approved=False)
    root = make_user(f"root{scheme}", is_staff=True, is_superuser=True)
    page = new_page(browser, approval_server_url, user=root, scheme=scheme)
    page.goto(approval_server_url + "/admin/")
    link = page.locator("#waiting-link")
    assert link.inner_text() == "3 people waiting for approval"
    screenshot(page, f"polish-admin-waiting-{scheme}")
    link.click()
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 3


# --- the chat page: copy label, math, plurals ----------------------------------------------
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_code_blocks_and_math_in_chinese(
    browser: Any, live_server_url: str, chat_backend: Any, scheme: str
) -> None:
    user = make_user(f"lin{scheme}")
    conversation, _asked, _answer = make_conversation(
        user, title="平方", question="写一个平方函数", answer=CODE_ANSWER
    )
    page = new_page(browser, live_server_url, user=user, scheme=scheme, locale="zh-CN")
    page.goto(f"{live_server_url}/c/{conversation.uuid}/")
    button = page.locator(".msg-assistant button.copy-code").first
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant button.copy-code')?.textContent === '复制'"
    )
    assert button.is_visible()
    # display math sits in the middle of the column
    box = page.locator(".msg-assistant .math-display").first.bounding_box()
    math = page.locator(".msg-assistant .math-display math").first.bounding_box()
    assert box and math and math["width"] < box["width"] / 2
    middle = box["x"] + box["width"] / 2
    assert abs((math["x"] + math["width"] / 2) - middle) < 2, (box, math)
    page.locator(".msg-assistant .code-block").first.scroll_into_view_if_needed()
    screenshot(page, f"polish-code-and-math-zh-{scheme}")
    # the scripts' plurals come from Django's catalog, with the language's plural rule
    thought = page.evaluate(
        "import('/static/js/chat/i18n.js').then(m => [m.thoughtFor(1), m.thoughtFor(12)])"
    )
    assert thought == ["已深度思考（用时 1 秒）", "已深度思考（用时 12 秒）"]
    button.click()
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant button.copy-code').textContent !== '复制'"
    )
    assert not page.errors  # type: ignore[attr-defined]


def test_code_blocks_in_english_and_english_plurals(
    browser: Any, live_server_url: str, chat_backend: Any
) -> None:
    user = make_user("lee")
    conversation, _asked, _answer = make_conversation(user, answer=CODE_ANSWER)
    page = new_page(browser, live_server_url, user=user)
    page.goto(f"{live_server_url}/c/{conversation.uuid}/")
    page.wait_for_function(
        "() => document.querySelector('.msg-assistant button.copy-code')?.textContent === 'Copy'"
    )
    thought = page.evaluate(
        "import('/static/js/chat/i18n.js').then(m => [m.thoughtFor(1), m.thoughtFor(12)])"
    )
    assert thought == ["Thought for 1 second", "Thought for 12 seconds"]
