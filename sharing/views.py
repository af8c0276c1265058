"""Share links: make one (chat page), the shared page itself, continue it, revoke it."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST, require_safe

from accounts.access import chat_redirect_url
from conversations.guards import chat_required

from . import actions
from .markup import shared_thread_html
from .models import SharedLink

DESCRIPTION_CHARS = 200
ACCOUNT_SECTION = "#section-shared"


def _link_json(request: HttpRequest, link: SharedLink) -> dict[str, Any]:
    return {
        "url": request.build_absolute_uri(link.get_absolute_url()),
        "title": link.title,
        "include_reasoning": link.include_reasoning,
        "messages": link.message_count,
        "created_at": link.created_at.isoformat(),
    }


def _include_reasoning(request: HttpRequest) -> bool:
    """The dialog's one choice, from JSON (a boolean) or a form ("on", "true", "1", or absent)."""
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            raise actions.ShareError("invalid", _("Send a JSON object.")) from None
        if not isinstance(data, dict):
            raise actions.ShareError("invalid", _("Send a JSON object."))
        value = data.get("include_reasoning", False)
        if not isinstance(value, bool):
            raise actions.ShareError("invalid", _("“include_reasoning” must be true or false."))
        return value
    value = request.POST.get("include_reasoning", "").lower()
    if value not in ("", "on", "true", "1", "false", "0"):
        raise actions.ShareError("invalid", _("“include_reasoning” must be true or false."))
    return value in ("on", "true", "1")


# --- /c/<uuid>/share: the chat page's dialog -----------------------------------------------


@require_POST
@chat_required
def create_link(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    try:
        link = actions.share_conversation(
            request.user, conversation_id, include_reasoning=_include_reasoning(request)
        )
    except actions.ShareError as exc:
        return JsonResponse({"error": exc.code, "detail": exc.detail}, status=exc.status)
    return JsonResponse({"link": _link_json(request, link)}, status=201)


@require_GET
@chat_required
def conversation_links(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    """The conversation's live links (the dialog says when there are some already)."""
    conversation = actions.own_conversation(request.user, conversation_id)
    links = SharedLink.objects.filter(conversation=conversation)
    return JsonResponse({"links": [_link_json(request, link) for link in links]})


# --- /s/<token>/: the shared page, open to anyone with the link ------------------------------


def _description(link: SharedLink, shared: list[Any]) -> str:
    first = next((m.content for m in shared if m.role == "user" and m.content.strip()), "")
    text = " ".join(first.split())
    if len(text) > DESCRIPTION_CHARS:
        text = text[: DESCRIPTION_CHARS - 1] + "…"
    count = link.message_count
    summary = ngettext(
        "A conversation on r1chat (%(count)d message).",
        "A conversation on r1chat (%(count)d messages).",
        count,
    ) % {"count": count}
    return f"{text} — {summary}" if text else summary


def _thought_label(seconds: float | None) -> str:
    if seconds is None:
        return _("Thought")
    count = max(1, round(seconds))
    return ngettext("Thought for %(count)d second", "Thought for %(count)d seconds", count) % {
        "count": count
    }


@never_cache
@require_safe
def shared_page(request: HttpRequest, token: str) -> HttpResponse:
    link = actions.get_link(token)
    shared = list(link.messages.all())
    labels = {"unfinished": _("This answer was not finished.")}
    user = request.user
    context = {
        "link": link,
        "thread_html": shared_thread_html(shared, _thought_label, labels),
        "title": link.title or _("Shared conversation"),
        "description": _description(link, shared),
        "page_url": request.build_absolute_uri(link.get_absolute_url()),
        "is_owner": user.is_authenticated and user.pk == link.owner_id,
        "login_url": f"{reverse('account_login')}?next={link.get_absolute_url()}",
        "page_strings": {
            "copy": _("Copy"),
            "copied": _("Copied"),
            "copy_failed": _("Could not copy."),
        },
    }
    response = render(request, "sharing/shared.html", context)
    # Search engines leave it out of their index; the page says so too (<meta name="robots">).
    response["X-Robots-Tag"] = "noindex"
    return response


# --- /s/<token>/continue: a copy into the viewer's own history ------------------------------


@require_POST
def continue_link(request: HttpRequest, token: str) -> HttpResponse:
    link = actions.get_link(token)
    if not request.user.is_authenticated:
        # Back to the shared page after signing in, where the button now continues.
        return redirect_to_login(link.get_absolute_url())
    target = chat_redirect_url(request.user)
    if target is not None:
        return redirect(target)
    try:
        conversation = actions.continue_conversation(request.user, link)
    except actions.ShareError as exc:
        messages.error(request, exc.detail)
        return redirect(link.get_absolute_url())
    return redirect("conversation-detail", conversation.uuid)


# --- revoking (the account page) ----------------------------------------------------------


@require_POST
@login_required
def revoke_link(request: HttpRequest, token: str) -> HttpResponse:
    actions.revoke_link(request.user, token)
    if request.accepts("application/json") and not request.accepts("text/html"):
        return JsonResponse({"revoked": True})
    messages.success(request, _("The link was revoked: it no longer opens."))
    return redirect(reverse("accounts:account") + ACCOUNT_SECTION)


@require_POST
@login_required
def revoke_all(request: HttpRequest) -> HttpResponse:
    count = actions.revoke_all_links(request.user)
    messages.success(
        request,
        ngettext("%(count)d link was revoked.", "%(count)d links were revoked.", count)
        % {"count": count},
    )
    return redirect(reverse("accounts:account") + ACCOUNT_SECTION)
