"""The Simplified Chinese catalog: complete, compiled, and served.

locale/zh_Hans/LC_MESSAGES/django.po is refreshed with `makemessages -l zh_Hans` and compiled
into django.mo, which is committed: nothing at run or test time needs GNU gettext.
"""

from __future__ import annotations

import gettext
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import translation

LC_MESSAGES = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
PO = LC_MESSAGES / "django.po"
MO = LC_MESSAGES / "django.mo"

CJK = re.compile(r"[\u3400-\u9fff]")
# %(name)s, %s, %d, %% ; {name} ; HTML tags.
PLACEHOLDER = re.compile(
    r"%%|%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|%[sd]|\{\w*\}|</?\w+[^>]*>"
)
# Entries whose Chinese is, rightly, the English text (or, for the label suffix ":", the
# full-width colon, which has no CJK ideograph to find).
SAME_IN_CHINESE = {"Ollama", "%(count)s tokens", ":", "%(count).1f KB", "%(count).1f MB",
                   "%(count)s KB", "%(count)s MB"}  # fmt: skip


@dataclass
class Entry:
    msgid: str
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    line: int = 0

    @property
    def key(self) -> str:
        return self.msgid if self.msgctxt is None else f"{self.msgctxt}\x04{self.msgid}"


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unquote(text: str) -> str:
    text = text.strip()
    assert text.startswith('"') and text.endswith('"'), text
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], text[1:-1])


def parse_po(path: Path) -> list[Entry]:
    """The entries of a .po file (header included, obsolete `#~` entries left out)."""
    entries: list[Entry] = []
    flags: set[str] = set()
    entry: Entry | None = None
    current: tuple[str, int] | None = None  # (keyword, plural index)
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#~"):
            continue
        if line.startswith("#,"):
            flags |= {flag.strip() for flag in line[2:].split(",") if flag.strip()}
            continue
        if line.startswith("#"):
            continue
        match = re.match(r"(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+(\".*\")$", line)
        if match:
            keyword, index, text = (
                match.group(1),
                int(match.group(2) or 0),
                _unquote(match.group(3)),
            )
            # An entry starts at its msgctxt, or at a msgid that no msgctxt precedes.
            if keyword == "msgctxt" or (keyword == "msgid" and (current or ("",))[0] != "msgctxt"):
                entry = Entry(msgid="", flags=flags, line=number)
                entries.append(entry)
                flags = set()
            assert entry is not None, f"{path}:{number}: {raw}"
            if keyword == "msgstr":
                entry.msgstr[index] = text
            else:
                setattr(entry, keyword, text)
            current = (keyword, index)
        elif line.startswith('"') and entry is not None and current is not None:
            keyword, index = current
            if keyword == "msgstr":
                entry.msgstr[index] += _unquote(line)
            else:
                setattr(entry, keyword, getattr(entry, keyword) + _unquote(line))
        else:
            raise AssertionError(f"{path}:{number}: cannot read {raw!r}")
    return entries


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return parse_po(PO)


@pytest.fixture(scope="module")
def messages(entries: list[Entry]) -> list[Entry]:
    return [entry for entry in entries if entry.msgid]


def _where(entry: Entry) -> str:
    return f"django.po:{entry.line} {entry.msgid!r}"


def test_the_header_is_for_simplified_chinese(entries: list[Entry]) -> None:
    header = entries[0]
    assert header.msgid == "" and "fuzzy" not in header.flags
    assert "Language: zh_Hans\n" in header.msgstr[0]
    assert "Content-Type: text/plain; charset=UTF-8\n" in header.msgstr[0]
    assert "Plural-Forms: nplurals=1; plural=0;\n" in header.msgstr[0]


def test_every_entry_is_translated(messages: list[Entry]) -> None:
    assert len(messages) > 400  # the parser read the catalog
    empty = [_where(e) for e in messages if not e.msgstr or any(not s for s in e.msgstr.values())]
    fuzzy = [_where(e) for e in messages if "fuzzy" in e.flags]
    assert not empty, "untranslated:\n" + "\n".join(empty)
    assert not fuzzy, "fuzzy (check, then drop the flag):\n" + "\n".join(fuzzy)


def test_plurals_have_the_one_chinese_form(messages: list[Entry]) -> None:
    plurals = [e for e in messages if e.msgid_plural is not None]
    assert plurals
    wrong = [_where(e) for e in plurals if set(e.msgstr) != {0}]
    assert not wrong, "Chinese has one plural form, msgstr[0] only:\n" + "\n".join(wrong)


def test_translations_keep_the_placeholders_and_tags(messages: list[Entry]) -> None:
    wrong = []
    for entry in messages:
        wanted = Counter(PLACEHOLDER.findall(entry.msgid_plural or entry.msgid))
        for text in entry.msgstr.values():
            if Counter(PLACEHOLDER.findall(text)) != wanted:
                wrong.append(f"{_where(entry)} → {text!r}")
    assert not wrong, "placeholders or tags differ:\n" + "\n".join(wrong)


def test_translations_are_chinese(messages: list[Entry]) -> None:
    english = [
        f"{_where(e)} → {s!r}"
        for e in messages
        if e.msgid not in SAME_IN_CHINESE
        for s in e.msgstr.values()
        if not CJK.search(s)
    ]
    assert not english, "left in English:\n" + "\n".join(english)


def test_the_compiled_catalog_matches_the_po(messages: list[Entry]) -> None:
    """django.mo was compiled from this django.po (run compilemessages after editing it)."""
    with MO.open("rb") as handle:
        catalog = dict(gettext.GNUTranslations(handle)._catalog)  # type: ignore[attr-defined]
    catalog.pop("", None)
    expected: dict[object, str] = {}
    for entry in messages:
        if entry.msgid_plural is None:
            expected[entry.key] = entry.msgstr[0]
        else:
            for index, text in entry.msgstr.items():
                expected[(entry.key, index)] = text
    stale = sorted(repr(k) for k in expected.keys() ^ catalog.keys())
    assert not stale, "django.mo is out of date; run compilemessages:\n" + "\n".join(stale[:20])
    changed = sorted(repr(k) for k in expected if catalog[k] != expected[k])
    assert not changed, "django.mo is out of date; run compilemessages:\n" + "\n".join(changed[:20])


KEY_STRINGS = {
    # The chat page.
    "New chat": "开启新对话",
    "Deep Think": "深度思考",
    "Thinking…": "思考中…",
    "Send": "发送",
    "Chat history": "历史对话",
    # Accounts.
    "Sign in": "登录",
    "Sign up": "注册",
    "Sign out": "退出登录",
    "Code": "验证码",
    "Password": "密码",
    # Review in the admin.
    "Review queue": "审核队列",
    "Token usage": "Token 用量",
}


def test_key_strings_come_out_in_chinese() -> None:
    with translation.override("zh-hans"):
        got = {msgid: translation.gettext(msgid) for msgid in KEY_STRINGS}
        thought = translation.ngettext(
            "Thought for %(count)d second", "Thought for %(count)d seconds", 12
        ) % {"count": 12}
        approved = translation.ngettext(
            "%(count)d account approved.", "%(count)d accounts approved.", 1
        ) % {"count": 1}
    assert got == KEY_STRINGS
    assert thought == "已深度思考（用时 12 秒）"
    assert "1" in approved and CJK.search(approved)
    with translation.override("en"):
        assert translation.gettext("New chat") == "New chat"


def test_every_generation_error_is_in_chinese() -> None:
    from conversations.errors import ERROR_MESSAGES, describe_error

    with translation.override("zh-hans"):
        described = {code: describe_error(code)["message"] for code in ERROR_MESSAGES}
    english = {code: text for code, text in described.items() if not CJK.search(str(text))}
    assert not english


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("how", "value"),
    [("header", "zh-CN"), ("header", "zh-Hans,zh;q=0.9"), ("cookie", "zh-hans")],
)
def test_the_sign_in_page_is_served_in_chinese(how: str, value: str) -> None:
    client = Client()
    if how == "cookie":
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = value
        response = client.get(reverse("account_login"))
    else:
        response = client.get(reverse("account_login"), HTTP_ACCEPT_LANGUAGE=value)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<html lang="zh-hans"' in html
    assert "欢迎回来" in html and "忘记密码？" in html
    assert "Welcome back" not in html


@pytest.mark.django_db
def test_the_sign_in_page_stays_english_for_english_browsers() -> None:
    html = Client().get(reverse("account_login"), HTTP_ACCEPT_LANGUAGE="en-US").content.decode()
    assert "Welcome back" in html and "欢迎回来" not in html


@pytest.mark.django_db
def test_the_chat_page_is_served_in_chinese() -> None:
    from tests.chat_support import make_user

    client = Client()
    client.force_login(make_user("lin"))
    response = client.get(reverse("home"), HTTP_ACCEPT_LANGUAGE="zh-CN")
    html = response.content.decode()
    assert response.status_code == 200
    for text in ("开启新对话", "深度思考", "历史对话", "发送"):
        assert text in html, text
    # The strings the scripts show come from the server, in the page's language.
    assert "思考中…" in html
    for text in ("New chat", "Deep Think", "Chat history"):
        assert f">{text}<" not in html, text


@pytest.mark.django_db
def test_the_admin_review_links_are_in_chinese() -> None:
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456!")
    client = Client()
    client.force_login(admin)
    response = client.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="zh-CN")
    html = response.content.decode()
    assert response.status_code == 200
    assert "审核队列" in html and "Review queue" not in html
