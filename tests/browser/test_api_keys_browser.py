"""API keys on the account page in a real browser: made (the secret shown once, with an example),
listed, revoked; in English and in Simplified Chinese."""

from __future__ import annotations

from typing import Any

import pytest

from api.models import ApiKey, digest
from tests.browser.conftest import screenshot
from tests.chat_support import make_user

pytestmark = pytest.mark.timeout(120)


def test_a_key_is_made_shown_once_and_revoked(
    signed_in: Any, live_server_url: str, chat_backend: Any
) -> None:
    page, alice, watch = signed_in(make_user("alice"))
    page.goto(live_server_url + "/account/")
    section = page.locator("#section-api-keys")
    assert section.locator("#api-keys-empty").is_visible()
    section.locator("#id_name").fill("laptop script")
    section.locator("#id_expires").select_option("30")
    section.locator("input[name=models][value=deepseek-v4-flash]").check()
    section.locator("#id_record").check()
    screenshot(page, "api-keys-form")
    section.locator("#api-key-submit").click()
    secret = page.locator("#api-key-secret").input_value()
    assert secret.startswith("r1-")
    assert secret in page.locator("#api-key-example").inner_text()
    screenshot(page, "api-key-created")
    key = ApiKey.objects.get(owner=alice)
    assert key.hashed == digest(secret) and key.scope == ["deepseek-v4-flash"] and key.record

    page.click("#api-key-done")
    row = page.locator(f"#api-key-{key.public_id}")
    assert "laptop script" in row.inner_text()
    assert secret not in page.content()
    screenshot(page, "api-keys-list")
    row.locator(".api-key-revoke").click()
    page.wait_for_selector("#api-keys-empty")
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert not watch.errors and not watch.dialogs and not watch.foreign_requests


def test_the_keys_section_in_chinese(
    signed_in: Any, live_server_url: str, chat_backend: Any
) -> None:
    user = make_user("li")
    user.language = "zh-hans"
    user.save(update_fields=["language"])
    ApiKey.issue(user, "夜间任务", expires_in_days=7)
    page, _user, _watch = signed_in(user, locale="zh-CN")
    page.goto(live_server_url + "/account/")
    section = page.locator("#section-api-keys")
    assert "API 密钥" in section.locator("h2").inner_text()
    assert "创建密钥" in section.locator("#api-key-submit").inner_text()
    assert "撤销" in section.locator(".api-key-revoke").inner_text()
    section.scroll_into_view_if_needed()
    screenshot(page, "api-keys-zh")
