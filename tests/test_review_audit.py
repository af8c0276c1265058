"""Every opening and export of a conversation in review writes exactly one audit entry."""

from __future__ import annotations

from typing import Any

import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.urls import reverse

from review.audit import client_ip
from review.models import ReviewAudit
from review.testing import make_conversation, make_personas

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


@pytest.fixture
def root_client(people: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(people["root"])
    return client


@pytest.mark.parametrize(
    ("url_name", "action"),
    [
        ("admin:conversations_conversation_review", "open"),
        ("admin:conversations_conversation_export_md", "export_md"),
        ("admin:conversations_conversation_export_json", "export_json"),
    ],
)
def test_each_opening_or_export_writes_exactly_one_entry(
    people: dict[str, Any], root_client: Client, url_name: str, action: str
) -> None:
    conversation, _, _ = make_conversation(people["alice"], title="Budget")
    response = root_client.get(reverse(url_name, args=[conversation.uuid]))
    assert response.status_code == 200
    entry = ReviewAudit.objects.get()
    assert (entry.reviewer, entry.owner, entry.conversation) == (
        people["root"],
        people["alice"],
        conversation,
    )
    assert (entry.action, entry.conversation_title, entry.ip_address) == (
        action,
        "Budget",
        "127.0.0.1",
    )
    root_client.get(reverse(url_name, args=[conversation.uuid]))
    assert ReviewAudit.objects.count() == 2


def test_the_generic_change_page_goes_through_the_audited_review(
    people: dict[str, Any], root_client: Client
) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    change = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    response = root_client.get(change, follow=True)
    assert response.redirect_chain[-1][0].endswith(f"/review/{conversation.uuid}/")
    assert ReviewAudit.objects.count() == 1


def test_the_changelist_alone_is_not_an_opening(
    people: dict[str, Any], root_client: Client
) -> None:
    make_conversation(people["alice"])
    assert (
        root_client.get(reverse("admin:conversations_conversation_changelist")).status_code == 200
    )
    assert not ReviewAudit.objects.exists()


def test_an_unknown_conversation_writes_nothing(root_client: Client) -> None:
    url = reverse(
        "admin:conversations_conversation_review", args=["00000000-0000-0000-0000-000000000000"]
    )
    assert root_client.get(url).status_code == 404
    assert not ReviewAudit.objects.exists()


def test_the_owner_sees_who_reviewed_which_conversation_and_when(
    people: dict[str, Any], root_client: Client
) -> None:
    conversation, _, _ = make_conversation(people["alice"], title="Holiday <plans>")
    make_conversation(people["bob"], title="Bob's secret")
    root_client.get(reverse("admin:conversations_conversation_review", args=[conversation.uuid]))
    root_client.get(reverse("admin:conversations_conversation_export_md", args=[conversation.uuid]))

    request = RequestFactory().get("/account/")
    request.user = people["alice"]
    html = Template('{% include "accounts/_reviews.html" %}').render(Context({"request": request}))
    assert html.count('class="review-entry"') == 2
    assert "root" in html
    assert "Holiday &lt;plans&gt;" in html
    assert "opened in review" in html and "exported as Markdown" in html

    request.user = people["bob"]
    html = Template('{% include "accounts/_reviews.html" %}').render(Context({"request": request}))
    assert 'id="reviews-empty"' in html
    assert "Holiday" not in html


def test_the_template_tag_lists_only_the_users_own_entries(
    people: dict[str, Any], root_client: Client
) -> None:
    mine, _, _ = make_conversation(people["alice"])
    theirs, _, _ = make_conversation(people["bob"])
    for conversation in (mine, theirs):
        root_client.get(
            reverse("admin:conversations_conversation_review", args=[conversation.uuid])
        )
    template = Template(
        "{% load review %}{% reviews_of user as reviews %}"
        "{% for r in reviews %}{{ r.conversation_uuid }};{% endfor %}"
    )
    assert template.render(Context({"user": people["alice"]})) == f"{mine.uuid};"


def test_the_entry_survives_the_conversation(people: dict[str, Any], root_client: Client) -> None:
    conversation, _, _ = make_conversation(people["alice"], title="Gone soon")
    root_client.get(reverse("admin:conversations_conversation_review", args=[conversation.uuid]))
    conversation.delete()
    entry = ReviewAudit.objects.get()
    assert entry.conversation is None
    assert entry.conversation_title == "Gone soon"


def test_the_account_page_lists_the_review(people: dict[str, Any], root_client: Client) -> None:
    conversation, _, _ = make_conversation(people["alice"], title="Account page check")
    root_client.get(reverse("admin:conversations_conversation_review", args=[conversation.uuid]))
    client = Client()
    client.force_login(people["alice"])
    html = client.get(reverse("accounts:account")).content.decode()
    assert "Account page check" in html
    assert "root" in html


class TestClientAddress:
    def request(self, remote: str, forwarded: str | None = None) -> Any:
        extra = {"REMOTE_ADDR": remote}
        if forwarded is not None:
            extra["HTTP_X_FORWARDED_FOR"] = forwarded
        return RequestFactory().get("/", **extra)

    def test_without_proxies_the_header_is_ignored(self, settings: Any) -> None:
        settings.TRUSTED_PROXY_COUNT = 0
        assert client_ip(self.request("10.0.0.5", "6.6.6.6")) == "10.0.0.5"

    def test_behind_one_proxy_the_last_forwarded_address_is_the_client(self, settings: Any) -> None:
        settings.TRUSTED_PROXY_COUNT = 1
        # The client claimed 6.6.6.6; nginx appended the address it really saw.
        assert client_ip(self.request("10.0.0.2", "6.6.6.6, 203.0.113.9")) == "203.0.113.9"

    def test_behind_two_proxies(self, settings: Any) -> None:
        settings.TRUSTED_PROXY_COUNT = 2
        forwarded = "6.6.6.6, 2001:db8::1, 10.0.0.3"
        assert client_ip(self.request("10.0.0.2", forwarded)) == "2001:db8::1"

    def test_a_short_or_garbled_header_falls_back_or_stores_nothing(self, settings: Any) -> None:
        settings.TRUSTED_PROXY_COUNT = 2
        assert client_ip(self.request("10.0.0.2", "203.0.113.9")) == "10.0.0.2"
        settings.TRUSTED_PROXY_COUNT = 1
        assert client_ip(self.request("10.0.0.2", "not-an-ip")) is None

    def test_the_audit_entry_records_the_forwarded_client(
        self, settings: Any, people: dict[str, Any], root_client: Client
    ) -> None:
        settings.TRUSTED_PROXY_COUNT = 1
        conversation, _, _ = make_conversation(people["alice"])
        root_client.get(
            reverse("admin:conversations_conversation_review", args=[conversation.uuid]),
            HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.7",
        )
        assert ReviewAudit.objects.get().ip_address == "198.51.100.7"
