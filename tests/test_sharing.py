"""Share links: a read-only snapshot at an unguessable URL, revocable, continued by others.

- alice shares her conversations.
- bob is another user: he may read and continue alice's links, never revoke or make them.
- root reviews conversations in the admin.
"""

from __future__ import annotations

import html
import json
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.deletion import purge_deleted
from conversations.models import Conversation, Message
from review.testing import add_answer, make_conversation, make_personas
from sharing import actions
from sharing.models import SharedLink

pytestmark = pytest.mark.django_db


@pytest.fixture
def people() -> dict[str, Any]:
    return make_personas()


def client_for(user: Any | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def share(client: Client, conversation: Conversation, **body: Any) -> Any:
    return client.post(
        reverse("conversation-share", args=[conversation.uuid]),
        data=json.dumps(body),
        content_type="application/json",
    )


def make_link(owner: Any, conversation: Conversation, **body: Any) -> str:
    """The shared page's path, made through the chat page's endpoint."""
    response = share(client_for(owner), conversation, **body)
    assert response.status_code == 201, response.content
    url = response.json()["link"]["url"]
    return url.removeprefix("http://testserver")


def test_a_link_opens_for_someone_signed_out(people: dict[str, Any]) -> None:
    conversation, _, answer = make_conversation(people["alice"])
    response = share(client_for(people["alice"]), conversation)
    assert response.status_code == 201
    link = response.json()["link"]
    assert link["url"].startswith("http://testserver/s/")
    assert link["include_reasoning"] is False and link["messages"] == 2

    page = Client().get(link["url"].removeprefix("http://testserver"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "Is 91 prime?" in text
    assert answer.html in text  # the renderer's cached HTML, byte for byte
    assert "<strong>91 = 7 × 13</strong>" in text
    assert "Sign in to continue this chat" in text


def test_the_token_is_long_random_and_new_each_time(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    first = make_link(people["alice"], conversation)
    second = make_link(people["alice"], conversation)
    tokens = [path.split("/")[2] for path in (first, second)]
    assert tokens[0] != tokens[1]
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token)  # 24 random bytes: 192 bits
        assert str(conversation.uuid) not in token


def test_the_page_asks_search_engines_not_to_index_it(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    page = Client().get(make_link(people["alice"], conversation))
    assert page["X-Robots-Tag"] == "noindex"
    assert '<meta name="robots" content="noindex">' in page.content.decode()


def test_open_graph_title_and_description(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"], title="Primes & factors")
    text = Client().get(make_link(people["alice"], conversation)).content.decode()
    assert '<meta property="og:title" content="Primes &amp; factors">' in text
    assert "<title>Primes &amp; factors · r1chat</title>" in text
    description = re.search(r'<meta property="og:description" content="([^"]*)">', text)
    assert description and description.group(1).startswith("Is 91 prime?")
    assert re.search(r'<meta property="og:url" content="http://testserver/s/[\w-]{32}/">', text)


def test_the_owners_email_and_phone_are_never_shown(people: dict[str, Any]) -> None:
    alice = people["alice"]
    alice.phone = "+8613800138000"
    alice.save(update_fields=["phone"])
    conversation, _, _ = make_conversation(alice)
    path = make_link(alice, conversation)
    for viewer in (None, people["bob"]):
        text = client_for(viewer).get(path).content.decode()
        assert "alice@example.com" not in text
        assert "13800138000" not in text
        assert "alice" not in text.lower()


def test_reasoning_is_left_out_unless_chosen(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"], reasoning="Secret line of thought.")
    without = Client().get(make_link(people["alice"], conversation)).content.decode()
    assert "Secret line of thought." not in without
    assert 'class="thinking"' not in without
    assert SharedLink.objects.get().messages.filter(reasoning__contains="Secret").count() == 0

    with_reasoning = (
        Client()
        .get(make_link(people["alice"], conversation, include_reasoning=True))
        .content.decode()
    )
    assert "Secret line of thought." in with_reasoning
    assert '<details class="thinking">' in with_reasoning  # folded until opened
    assert "Thought for 3 seconds" in with_reasoning


def test_a_form_post_chooses_the_same_way(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"], reasoning="Thinking aloud.")
    client = client_for(people["alice"])
    url = reverse("conversation-share", args=[conversation.uuid])
    assert client.post(url).json()["link"]["include_reasoning"] is False
    assert client.post(url, {"include_reasoning": "on"}).json()["link"]["include_reasoning"]


@pytest.mark.parametrize(
    "body", [{"include_reasoning": "yes"}, {"include_reasoning": 1}, [True], "x"]
)
def test_a_bad_choice_is_refused_with_a_reason(people: dict[str, Any], body: Any) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    response = client_for(people["alice"]).post(
        reverse("conversation-share", args=[conversation.uuid]),
        data=json.dumps(body),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid" and response.json()["detail"]
    assert not SharedLink.objects.exists()


def test_the_snapshot_leaves_out_what_comes_later(people: dict[str, Any]) -> None:
    conversation, _, answer = make_conversation(people["alice"], title="Before")
    path = make_link(people["alice"], conversation)
    # Alice goes on, edits her first answer's text and renames the chat after sharing.
    follow = Message.objects.create(
        conversation=conversation, parent=answer, role="user", content="A later question"
    )
    later = add_answer(follow, "A later answer")
    conversation.current_leaf = later
    conversation.title = "After"
    conversation.save(update_fields=["current_leaf", "title"])
    Message.objects.filter(pk=answer.pk).update(content="Changed", html="<p>Changed</p>")

    text = Client().get(path).content.decode()
    assert "A later question" not in text and "A later answer" not in text
    assert "<p>Changed</p>" not in text and "91 = 7 × 13" in text
    assert "<title>Before · r1chat</title>" in text


def test_the_visible_thread_is_what_is_shared(people: dict[str, Any]) -> None:
    conversation, asked, first = make_conversation(people["alice"], answer="First try")
    second = add_answer(asked, "Second try")
    conversation.current_leaf = first  # the user went back to version 1
    conversation.save(update_fields=["current_leaf"])
    text = Client().get(make_link(people["alice"], conversation)).content.decode()
    assert "First try" in text and "Second try" not in text
    assert Message.objects.filter(pk=second.pk).exists()  # still in the tree, not shared


def test_an_answer_without_cached_html_is_rendered_by_the_same_renderer(
    people: dict[str, Any],
) -> None:
    conversation, _, answer = make_conversation(people["alice"], answer="A *fresh* answer")
    Message.objects.filter(pk=answer.pk).update(html="")
    text = Client().get(make_link(people["alice"], conversation)).content.decode()
    assert "A <em>fresh</em> answer" in text


def test_unfinished_answers_say_so_and_failed_empty_ones_are_left_out(
    people: dict[str, Any],
) -> None:
    conversation, _, answer = make_conversation(people["alice"], answer="Half an ans")
    Message.objects.filter(pk=answer.pk).update(status=Message.Status.STOPPED)
    again = Message.objects.create(
        conversation=conversation, parent=answer, role="user", content="Go on"
    )
    failed = add_answer(again, "", status=Message.Status.ERROR)
    conversation.current_leaf = failed
    conversation.save(update_fields=["current_leaf"])
    path = make_link(people["alice"], conversation)
    text = Client().get(path).content.decode()
    assert "Half an ans" in text and "This answer was not finished." in text
    assert text.count('class="msg msg-assistant"') == 1
    assert SharedLink.objects.get().message_count == 3  # two questions, one answer


def test_an_answer_being_written_is_not_shared_half_way(people: dict[str, Any]) -> None:
    conversation, _, answer = make_conversation(people["alice"])
    Message.objects.filter(pk=answer.pk).update(
        status=Message.Status.STREAMING,
        heartbeat_at=answer.created_at.now(answer.created_at.tzinfo),
    )
    response = share(client_for(people["alice"]), conversation)
    assert response.status_code == 409
    assert "finished" in response.json()["detail"]
    assert not SharedLink.objects.exists()


def test_an_empty_conversation_has_nothing_to_share(people: dict[str, Any]) -> None:
    conversation = Conversation.objects.create(owner=people["alice"], title="Empty")
    response = share(client_for(people["alice"]), conversation)
    assert response.status_code == 400 and response.json()["error"] == "empty"


def test_nobody_shares_someone_elses_conversation(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    assert share(client_for(people["bob"]), conversation).status_code == 404
    assert share(Client(), conversation).status_code == 302  # to sign in
    assert not SharedLink.objects.exists()


def _not_found_parts(response: Any) -> tuple[int, bytes, str | None, str | None]:
    return (
        response.status_code,
        response.content,
        response.get("Content-Type"),
        response.get("X-Robots-Tag"),
    )


def test_a_revoked_link_is_the_same_404_as_an_unknown_one(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    path = make_link(people["alice"], conversation)
    token = path.split("/")[2]
    owner = client_for(people["alice"])
    response = owner.post(reverse("shared-revoke", args=[token]))
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:account") + "#section-shared"

    revoked = Client().get(path)
    unknown = Client().get(reverse("shared-conversation", args=["x" * 32]))
    assert revoked.status_code == 404
    assert _not_found_parts(revoked) == _not_found_parts(unknown)
    assert _not_found_parts(client_for(people["bob"]).get(path)) == _not_found_parts(unknown)
    too_long = Client().get(reverse("shared-conversation", args=["y" * 500]))
    assert _not_found_parts(too_long) == _not_found_parts(unknown)
    assert not SharedLink.objects.exists()  # the snapshot is gone with it
    # Continue on a revoked link: the same 404.
    assert client_for(people["bob"]).post(f"{path}continue").status_code == 404


def test_other_users_cannot_revoke(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    path = make_link(people["alice"], conversation)
    token = path.split("/")[2]
    for client in (client_for(people["bob"]), client_for(people["root"])):
        assert client.post(reverse("shared-revoke", args=[token])).status_code == 404
        assert client.post(reverse("shared-revoke-all")).status_code == 302  # their own: none
    assert Client().post(reverse("shared-revoke", args=[token])).status_code == 302  # sign in
    assert Client().get(path).status_code == 200


def test_revoke_answers_json_when_asked(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    token = make_link(people["alice"], conversation).split("/")[2]
    response = client_for(people["alice"]).post(
        reverse("shared-revoke", args=[token]), headers={"Accept": "application/json"}
    )
    assert response.json() == {"revoked": True}


def test_the_account_page_lists_and_revokes_links(people: dict[str, Any]) -> None:
    alice = people["alice"]
    first, _, _ = make_conversation(alice, title="First shared")
    second, _, _ = make_conversation(alice, title="Second shared")
    first_path = make_link(alice, first, include_reasoning=True)
    second_path = make_link(alice, second)
    make_conversation(people["bob"], title="Bob's own")
    client = client_for(alice)
    text = client.get(reverse("accounts:account")).content.decode()
    assert 'id="section-shared"' in text
    assert "First shared" in text and "Second shared" in text and "Bob&#x27;s own" not in text
    assert f'value="http://testserver{first_path}"' in text
    assert "reasoning included" in text and "without reasoning" in text
    assert f'action="{first_path}revoke"' in text

    response = client.post(reverse("shared-revoke-all"), follow=True)
    assert "2 links were revoked." in response.content.decode()
    assert Client().get(first_path).status_code == 404
    assert Client().get(second_path).status_code == 404
    assert "You have not shared any conversation." in response.content.decode()


def test_deleting_the_conversation_revokes_its_links(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    path = make_link(people["alice"], conversation)
    client = client_for(people["alice"])
    assert client.post(reverse("conversation-delete", args=[conversation.uuid])).status_code == 200
    assert Client().get(path).status_code == 404
    assert path not in client.get(reverse("accounts:account")).content.decode()
    # Undo within the window brings the link back; once the window has passed it is gone.
    assert client.post(reverse("conversation-restore", args=[conversation.uuid])).status_code == 200
    assert Client().get(path).status_code == 200
    assert client.post(reverse("conversation-delete", args=[conversation.uuid])).status_code == 200
    Conversation.all_objects.filter(pk=conversation.pk).update(
        deleted_at=timezone.now() - timedelta(hours=1)
    )
    async_to_sync(purge_deleted)()
    assert Client().get(path).status_code == 404
    assert not SharedLink.objects.exists()


def test_deleting_the_account_revokes_its_links(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    path = make_link(people["alice"], conversation)
    people["alice"].delete()
    assert Client().get(path).status_code == 404


def test_continue_copies_the_chat_into_the_viewers_history(people: dict[str, Any]) -> None:
    alice, bob = people["alice"], people["bob"]
    conversation, _, _ = make_conversation(alice, reasoning="Alice's model thought this.")
    path = make_link(alice, conversation)
    bob_client = client_for(bob)
    page = bob_client.get(path).content.decode()
    assert 'id="continue-form"' in page and "Continue this chat" in page

    response = bob_client.post(f"{path}continue")
    copy = Conversation.objects.get(owner=bob)
    assert response.status_code == 302
    assert response["Location"] == reverse("conversation-detail", args=[copy.uuid])
    assert copy.title == "Primes"
    messages = list(copy.messages.order_by("created_at", "id"))
    assert [(m.role, m.content) for m in messages] == [
        ("user", "Is 91 prime?"), ("assistant", "No: **91 = 7 × 13**."),
    ]  # fmt: skip
    assert messages[1].parent == messages[0] and copy.current_leaf == messages[1]
    assert messages[1].reasoning == ""  # it was not shared, so it is not copied
    assert messages[0].sender is None and messages[1].usage == {}
    # Bob's chat page shows it; Alice's conversation is untouched and still hers alone.
    chat = bob_client.get(response["Location"]).content.decode()
    assert "<strong>91 = 7 × 13</strong>" in chat
    assert Conversation.objects.filter(owner=alice).count() == 1
    assert client_for(alice).get(response["Location"]).status_code == 404


def test_continue_keeps_the_reasoning_when_it_was_shared(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"], reasoning="Try 7 first.")
    path = make_link(people["alice"], conversation, include_reasoning=True)
    client_for(people["bob"]).post(f"{path}continue")
    answer = Message.objects.get(conversation__owner=people["bob"], role="assistant")
    assert answer.reasoning == "Try 7 first."
    assert answer.thought_seconds() == pytest.approx(3.0)


def test_signed_out_viewers_sign_in_and_come_back(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    path = make_link(people["alice"], conversation)
    page = Client().get(path).content.decode()
    login = f"{reverse('account_login')}?next={path}"
    assert f'href="{html.escape(login)}"' in page
    response = Client().post(f"{path}continue")
    assert response.status_code == 302
    assert response["Location"] == login
    assert Conversation.objects.count() == 1


def test_someone_who_cannot_chat_yet_is_sent_to_confirm_first(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    path = make_link(people["alice"], conversation)
    carol = get_user_model().objects.create_user(username="newcomer", email="new@example.com")
    response = client_for(carol).post(f"{path}continue")
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:verify_required")
    assert not Conversation.objects.filter(owner=carol).exists()


XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_shared_content_stays_escaped(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(
        people["alice"],
        title=f'"><{XSS}',
        question=XSS,
        answer=f"Look: {XSS} [a](javascript:alert(1))",
        reasoning=XSS,
    )
    path = make_link(people["alice"], conversation, include_reasoning=True)
    text = Client().get(path).content.decode()
    assert "<script>alert" not in text
    assert "<img src=x" not in text
    assert 'href="javascript:' not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text  # the question, as text
    head = text.split("</head>")[0]
    assert 'content="&quot;&gt;&lt;&lt;script&gt;' in head  # og:title, escaped
    # Continued, it stays text in the viewer's own chat too.
    response = client_for(people["bob"]).post(f"{path}continue")
    chat = client_for(people["bob"]).get(response["Location"]).content.decode()
    assert "<script>alert" not in chat


def test_the_admin_shows_which_conversations_are_shared(people: dict[str, Any]) -> None:
    shared, _, _ = make_conversation(people["alice"], title="Shared one")
    make_conversation(people["alice"], title="Private one")
    path = make_link(people["alice"], shared)
    make_link(people["alice"], shared, include_reasoning=True)
    root = client_for(people["root"])
    changelist = reverse("admin:conversations_conversation_changelist")

    text = root.get(changelist).content.decode()
    assert "column-shared" in text and '<span class="r1-shared">2 links</span>' in text
    only_shared = root.get(changelist, {"shared": "yes"}).content.decode()
    assert "Shared one" in only_shared and "Private one" not in only_shared
    not_shared = root.get(changelist, {"shared": "no"}).content.decode()
    assert "Private one" in not_shared and "Shared one" not in not_shared

    review = root.get(
        reverse("admin:conversations_conversation_review", args=[shared.uuid])
    ).content.decode()
    assert 'id="review-shared"' in review
    assert f'href="{path}"' in review and "included" in review and "not included" in review
    # A reviewer without the review right sees neither.
    assert client_for(people["carol"]).get(changelist).status_code == 403


@pytest.fixture
def low_limits(monkeypatch: pytest.MonkeyPatch) -> int:
    """Two links and two continued chats a minute, counted within one minute."""
    monkeypatch.setattr(actions, "SHARES_PER_MINUTE", 2)
    monkeypatch.setattr(actions, "CONTINUES_PER_MINUTE", 2)
    if time.time() % 60 > 50:  # the count is per calendar minute: start a fresh one
        time.sleep(61 - time.time() % 60)
    return 2


def test_making_links_too_fast_is_refused_with_a_reason(
    people: dict[str, Any], low_limits: int
) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    client = client_for(people["alice"])
    for _ in range(low_limits):
        assert share(client, conversation).status_code == 201
    response = share(client, conversation)
    assert response.status_code == 429
    assert response.json() == {
        "error": "throttled",
        "detail": "You are making links too fast. Wait a minute.",
    }
    assert SharedLink.objects.count() == low_limits
    assert share(client_for(people["bob"]), make_conversation(people["bob"])[0]).status_code == 201


def test_continuing_too_fast_is_refused_on_the_shared_page(
    people: dict[str, Any], low_limits: int
) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    path = make_link(people["alice"], conversation)
    bob = client_for(people["bob"])
    for _ in range(low_limits):
        assert bob.post(f"{path}continue").status_code == 302
    response = bob.post(f"{path}continue", follow=True)
    assert response.redirect_chain == [(path, 302)]
    assert "You are copying chats too fast. Wait a minute." in response.content.decode()
    assert Conversation.objects.filter(owner=people["bob"]).count() == low_limits


def test_the_shared_page_speaks_the_viewers_language(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"], reasoning="想一想。")
    path = make_link(people["alice"], conversation, include_reasoning=True)
    text = Client(headers={"Accept-Language": "zh-Hans"}).get(path).content.decode()
    assert "登录后继续此对话" in text
    assert "包含推理过程" in text
    assert "Sign in to continue" not in text


def test_the_dialog_learns_the_chats_live_links(people: dict[str, Any]) -> None:
    conversation, _, _ = make_conversation(people["alice"])
    url = reverse("conversation-shares", args=[conversation.uuid])
    alice = client_for(people["alice"])
    assert alice.get(url).json() == {"links": []}
    path = make_link(people["alice"], conversation, include_reasoning=True)
    links = alice.get(url).json()["links"]
    assert [(link["url"], link["include_reasoning"]) for link in links] == [
        (f"http://testserver{path}", True)
    ]
    assert client_for(people["bob"]).get(url).status_code == 404
    page = alice.get(reverse("conversation-detail", args=[conversation.uuid])).content.decode()
    assert 'data-many="This chat already has %(count)s shared links.' in page
