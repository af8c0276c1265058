"""The chat page and the HTTP endpoints around it (the live part is the WebSocket consumer)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.formats import get_format
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from r1chat.text import clean_text
from review.models import Feedback

from . import attachments
from .chat import protocol
from .exporting import conversation_document, conversation_markdown, file_stem
from .guards import chat_required
from .markup import message_html, thread_html
from .models import STALE_AFTER, Conversation, Message
from .page_strings import keyboard_strings
from .turns.actions import effective_settings
from .turns.threads import Tree, serialize_thread

SIDEBAR_PAGE = 40
THEMES = ("system", "light", "dark")


# --- access -----------------------------------------------------------------------------------


def _get_conversation(request: HttpRequest, conversation_id: uuid.UUID) -> Conversation:
    """The user's conversation, or 404: another user's id is *not found*, never forbidden."""
    conversation = Conversation.objects.filter(uuid=conversation_id, owner=request.user).first()
    if conversation is None:
        raise Http404(_("That conversation does not exist."))
    return conversation


def _run_action(action: Callable[..., Any], *args: Any) -> Any:
    """Call one of the (async) actions from a view; their "not found" becomes a 404."""
    try:
        return async_to_sync(action)(*args)
    except protocol.ClientError as exc:
        if exc.code == "not_found":
            raise Http404(exc.detail) from None
        raise


# --- the sidebar ------------------------------------------------------------------------------


def _user_timezone(request: HttpRequest) -> dt.tzinfo:
    """The browser's time zone (a cookie the page sets), so "Today" is the user's today."""
    name = request.COOKIES.get("tz", "")
    if name and len(name) < 64:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return timezone.get_current_timezone()


def _group(conversation: Conversation, today: dt.date, tz: dt.tzinfo) -> tuple[str, str]:
    if conversation.pinned:
        return "pinned", _("Pinned")
    day = conversation.updated_at.astimezone(tz).date()
    age = (today - day).days
    if age <= 0:
        return "today", _("Today")
    if age == 1:
        return "yesterday", _("Yesterday")
    if age < 7:
        return "week", _("Previous 7 days")
    if age < 30:
        return "month", _("Previous 30 days")
    return day.strftime("%Y-%m"), format_date(day, get_format("YEAR_MONTH_FORMAT"))


def _encode_cursor(conversation: Conversation) -> str:
    raw = f"{int(conversation.pinned)}|{conversation.updated_at.isoformat()}|{conversation.uuid}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _after_cursor(queryset: QuerySet[Conversation], user: Any, cursor: str) -> QuerySet:
    """Keyset pagination on (pinned, updated_at, id), newest first."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        pinned_text, updated_text, uuid_text = raw.split("|")
        pinned = pinned_text == "1"
        updated_at = dt.datetime.fromisoformat(updated_text)
        last_uuid = uuid.UUID(uuid_text)
    except (ValueError, UnicodeDecodeError):
        raise Http404(_("That page does not exist.")) from None
    # The cursor names a conversation, not its internal id; if it was deleted since, the
    # tie-break on equal timestamps is lost, which only matters for identical microseconds.
    last_id = (
        Conversation.objects.filter(owner=user, uuid=last_uuid).values_list("id", flat=True).first()
    )
    same_time = Q(updated_at=updated_at, id__lt=last_id) if last_id else Q(pk__in=[])
    within = Q(pinned=pinned) & (Q(updated_at__lt=updated_at) | same_time)
    return queryset.filter(within | Q(pinned=False)) if pinned else queryset.filter(within)


def sidebar_page(request: HttpRequest, cursor: str = "") -> dict[str, Any]:
    """One page of the user's conversations, grouped, and the cursor of the next page.
    (Searching is `/api/search`: conversations.search.)"""
    queryset = Conversation.objects.filter(owner=request.user)
    if cursor:
        queryset = _after_cursor(queryset, request.user, cursor)
    # An answer being written there (any tab, any process): the sidebar's mark. A generation
    # whose process died without a beat for STALE_AFTER is not.
    running = Message.objects.filter(
        conversation=OuterRef("pk"),
        status=Message.Status.STREAMING,
        heartbeat_at__gte=timezone.now() - STALE_AFTER,
    )
    rows = list(
        queryset.only("id", "uuid", "title", "pinned", "updated_at")
        .annotate(generating=Exists(running))
        .order_by("-pinned", "-updated_at", "-id")[: SIDEBAR_PAGE + 1]
    )
    more = len(rows) > SIDEBAR_PAGE
    rows = rows[:SIDEBAR_PAGE]
    tz = _user_timezone(request)
    today = timezone.now().astimezone(tz).date()
    items = []
    for conversation in rows:
        group, label = _group(conversation, today, tz)
        items.append(
            {
                "id": str(conversation.uuid),
                "title": conversation.title or _("New chat"),
                "pinned": conversation.pinned,
                "updated_at": conversation.updated_at.isoformat(),
                "generating": conversation.generating,
                "group": group,
                "group_label": label,
                "url": reverse("conversation-detail", args=[conversation.uuid]),
            }
        )
    return {"items": items, "next": _encode_cursor(rows[-1]) if more else None}


@require_GET
@chat_required
def conversation_list(request: HttpRequest) -> JsonResponse:
    return JsonResponse(sidebar_page(request, request.GET.get("cursor", "")))


# --- the chat page ----------------------------------------------------------------------------


def _thinking_label(seconds: float | None) -> str:
    if seconds is None:
        return _("Thought")
    count = max(1, round(seconds))
    return ngettext("Thought for %(count)d second", "Thought for %(count)d seconds", count) % {
        "count": count
    }


def _notice(message: dict[str, Any]) -> str:
    if message.get("reasoning_unterminated"):
        return _(
            "The model ran out of tokens while thinking. Raise the maximum length and regenerate."
        )
    if message.get("finish_reason") == "length":
        return _("The answer was cut off at the maximum length.")
    if message["status"] == Message.Status.STOPPED:
        return _("Stopped.")
    return ""


def _labels() -> dict[str, str]:
    """The fixed words of a message (`markup.py`) and `_sidebar_item.html`, once a page."""
    return {
        "copy": _("Copy"),
        "edit": _("Edit"),
        "regenerate": _("Regenerate"),
        "retry": _("Retry"),
        "usage": _("Usage"),
        "previous": _("Previous version"),
        "next": _("Next version"),
        "options": _("Options"),
        "good": _("Good answer"),
        "bad": _("Bad answer"),
        "continue": _("Continue generating"),
    }


def reasoning_expanded(user: Any) -> bool:
    """Whether the user keeps the reasoning open (the default, as DeepSeek does) or folded:
    one click on a reasoning header saves the choice (`api_settings`), for every device."""
    defaults = getattr(user, "chat_defaults", None)
    return not (isinstance(defaults, dict) and defaults.get("reasoning_expanded") is False)


def _for_template(message: dict[str, Any], expanded: bool = True) -> dict[str, Any]:
    """A serialised message with what its markup (`markup.message_html`) shows besides the
    text; `expanded`: the reasoning is shown open (while it streams and after)."""
    versions = message["versions"]
    message["versions_json"] = json.dumps(versions["ids"])
    message["versions_label"] = f"{versions['index']} / {versions['count']}"
    message["single"] = versions["count"] < 2
    message["first"] = versions["index"] <= 1
    message["last"] = versions["index"] >= versions["count"]
    if message["role"] != Message.Role.ASSISTANT:
        return message
    message.setdefault("reasoning", "")
    message.setdefault("reasoning_html", "")
    message.setdefault("html", "")
    message.setdefault("error", None)
    message.setdefault("rating", None)  # the user's thumbs: "up", "down" or None
    message["deep_think_attr"] = "true" if message.get("deep_think") else "false"
    streaming = message["status"] == Message.Status.STREAMING
    timings = message.get("timings") or {}
    message["usage_json"] = json.dumps(message.get("usage") or {})
    message["timings_json"] = json.dumps(timings)
    message["show_thinking"] = bool(message.get("reasoning")) or (
        streaming and message.get("deep_think")
    )
    message["thinking_open"] = expanded
    message["can_continue"] = (
        message["status"] == Message.Status.COMPLETE
        and message.get("finish_reason") == "length"
        and not message.get("reasoning_unterminated")
        and bool(message.get("content"))
    )
    message["typing"] = streaming and not message.get("content") and not message["show_thinking"]
    message["thinking_label"] = (
        _("Thinking…") if streaming else _thinking_label(timings.get("thought_seconds"))
    )
    message["notice"] = "" if streaming else _notice(message)
    return message


def _blank(role: str, expanded: bool = True) -> dict[str, Any]:
    return _for_template(
        {
            "id": "",
            "role": role,
            "content": "",
            "status": "streaming",
            "deep_think": True,
            "versions": {"index": 1, "count": 1, "ids": []},
            "timings": {},
        },
        expanded,
    )


def js_strings() -> dict[str, str]:
    """Every string the page's scripts show, translated here (the scripts have no catalog)."""
    return {
        "thinking": _("Thinking…"),
        "thinking_seconds": _("Thinking… %(count)ss"),
        "thought": _("Thought"),
        "new_chat": _("New chat"),
        "pinned": _("Pinned"),
        "today": _("Today"),
        "yesterday": _("Yesterday"),
        "week": _("Previous 7 days"),
        "month": _("Previous 30 days"),
        "connecting": _("Connecting…"),
        "connected": _("Connected"),
        "reconnecting": _("Reconnecting in %(seconds)ss…"),
        "offline": _("Offline"),
        "not_connected": _("Not connected. Your message was kept; it will send when you retry."),
        "copied": _("Copied"),
        "copy": _("Copy"),
        "copy_failed": _("Could not copy."),
        "send": _("Send"),
        "stop": _("Stop"),
        "save": _("Send"),
        "cancel": _("Cancel"),
        "retry": _("Retry"),
        "stopped": _("Stopped."),
        "cut_off": _("The answer was cut off at the maximum length."),
        "unterminated": _(
            "The model ran out of tokens while thinking. Raise the maximum length and regenerate."
        ),
        "chars_left": _("%(count)s characters left"),
        "chars_over": _("%(count)s characters over the limit"),
        "delete_text": _(
            "“%(title)s” and all its messages will be deleted. This cannot be undone."
        ),
        "deleted": _("Chat deleted."),
        "rename_failed": _("Could not rename the chat."),
        "request_failed": _("The request failed. Try again."),
        "saved_defaults": _("Saved as your defaults."),
        "saved_local": _("Saved in this browser."),
        "models_failed": _("Could not load the models."),
        "no_models": _("No model available"),
        "simulator": _("Simulator (offline demo)"),
        "unavailable": _("unavailable"),
        "always_thinks": _("This model always thinks."),
        "cannot_think": _("This model cannot think."),
        "deep_think_hint": _("Reason step by step before answering."),
        "usage_tokens": _("%(count)s tokens"),
        "usage_prompt": _("%(count)s prompt tokens"),
        "usage_reasoning": _("%(count)s reasoning"),
        "usage_speed": _("%(rate)s tokens/s"),
        "usage_time": _("%(seconds)s s"),
        "usage_first_token": _("first token after %(seconds)s s"),
        "edit_placeholder": _("Edit your message"),
        "max_tokens_model": _("This model writes at most %(count)s tokens."),
        "unknown_error": _("Something went wrong."),
        "feedback_reason": _("What was wrong with this answer? (optional)"),
        "feedback_thanks": _("Thanks for your feedback."),
        "feedback_failed": _("Could not save your feedback. Try again."),
        **attachments.page_strings(),
        **_think_strings(),
    }


def _think_strings() -> dict[str, str]:
    """The strings of the model picker, the presets and the length setting."""
    return {
        "picker_search": _("Search models"),
        "picker_none": _("No model matches."),
        "picker_thinks": _("Thinks"),
        "picker_thinks_hint": _("A reasoning model: it thinks before it answers."),
        "picker_unavailable": _("Unavailable: %(reason)s"),
        "max_tokens_plain": _("The most tokens the answer may have."),
        "max_tokens_reasoning": _(
            "The most tokens the answer may have. This model's limit also counts its "
            "reasoning, so r1chat asks for %(extra)s more tokens for it."
        ),
        "preset_none": _("No preset"),
        "preset_name": _("Name of the preset"),
        "preset_saved": _("Preset saved."),
        "preset_renamed": _("Preset renamed."),
        "preset_deleted": _("Preset deleted."),
        "preset_delete_confirm": _("Delete the preset “%(name)s”?"),
        "continue": _("Continue generating"),
    }


def _thread_with_ratings(
    user: Any, conversation: Conversation | None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The visible thread for the template, each answer with the user's thumbs, and the thumbs
    of every version ({message uuid: rating}) for the scripts. One query for the ratings."""
    if conversation is None:
        return [], {}
    tree = Tree.load(conversation)
    thread = serialize_thread(conversation, tree)
    answers = [pk for pk, m in tree.by_id.items() if m.role == Message.Role.ASSISTANT]
    ratings = Feedback.ratings_for(user.pk, answers) if answers else {}
    by_uuid = {str(tree.by_id[pk].uuid): entry["rating"] for pk, entry in ratings.items()}
    for message in thread:
        if message["role"] == Message.Role.ASSISTANT:
            message["rating"] = by_uuid.get(message["id"])
    expanded = reasoning_expanded(user)
    return [_for_template(m, expanded) for m in thread], by_uuid


def _chat_context(request: HttpRequest, conversation: Conversation | None) -> dict[str, Any]:
    from .presets import presets_of
    from .turns.budget import reasoning_allowance

    thread, ratings = _thread_with_ratings(request.user, conversation)
    labels = _labels()
    return {
        "conversation": conversation,
        "thread": thread,
        "thread_html": thread_html(thread, labels),
        "blank_user": message_html(_blank("user"), labels),
        "blank_assistant": message_html(
            _blank("assistant", reasoning_expanded(request.user)), labels
        ),
        "blank_item": {"id": "", "title": "", "pinned": False, "updated_at": "", "group": ""},
        "chat_strings": js_strings() | keyboard_strings(),
        "t": labels,
        "sidebar": sidebar_page(request),
        "chat_config": {
            "conversation": str(conversation.uuid) if conversation else None,
            "title": conversation.title if conversation else "",
            "settings": effective_settings(request.user, conversation, {}),
            "max_chars": protocol.MAX_CONTENT_CHARS,
            "max_system_prompt_chars": protocol.MAX_SYSTEM_PROMPT_CHARS,
            "undo_seconds": settings.R1CHAT_DELETE_UNDO_SECONDS,
            "theme_saved": hasattr(request.user, "theme"),
            "defaults_saved": hasattr(request.user, "chat_defaults"),
            "reasoning_expanded": reasoning_expanded(request.user),
            "reasoning_allowance": reasoning_allowance(),
            "presets": presets_of(request.user),
            "feedback": ratings,
            "attachments": attachments.page_config(),
            "urls": {
                "home": reverse("home"),
                "ws": "/ws/chat/",
                "models": reverse("api-models"),
                "conversations": reverse("api-conversations"),
                "settings": reverse("api-settings"),
                "theme": reverse("api-theme"),
                "presets": reverse("api-presets"),
                "conversation": reverse("conversation-detail", args=[uuid.UUID(int=0)]),
                "feedback": reverse("review:feedback", args=[uuid.UUID(int=0)]),
                "attachments": reverse("api-attachments"),
            },
        },
    }


@never_cache
@require_GET
@chat_required
def home(request: HttpRequest) -> HttpResponse:
    """A new chat: the empty state with the composer."""
    return render(request, "conversations/chat.html", _chat_context(request, None))


@never_cache
@require_GET
@chat_required
def conversation_detail(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _get_conversation(request, conversation_id)
    from .search.views import show_message

    show_message(request, conversation)  # ?m=<message>: a search result's version is shown
    return render(request, "conversations/chat.html", _chat_context(request, conversation))


@never_cache
@require_GET
@chat_required
def conversation_thread(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    """The visible thread as JSON: what a tab reloads after its socket reconnects."""
    conversation = _get_conversation(request, conversation_id)
    return JsonResponse(
        {
            "conversation": str(conversation.uuid),
            "title": conversation.title,
            "pinned": conversation.pinned,
            "messages": serialize_thread(conversation),
        }
    )


# --- rename, pin, delete ----------------------------------------------------------------------


def _form_or_json(request: HttpRequest) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return request.POST.dict()


def _sidebar_item(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.uuid),
        "title": conversation.title,
        "pinned": conversation.pinned,
        "updated_at": conversation.updated_at.isoformat(),
    }


@require_POST
@chat_required
def conversation_rename(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    from .turns import actions

    title = _form_or_json(request).get("title")
    if isinstance(title, str):
        title = clean_text(title)  # (as the database will keep it: r1chat.text)
    if not isinstance(title, str) or not title.strip():
        return JsonResponse({"error": "empty", "detail": _("The title is empty.")}, status=400)
    conversation = _run_action(
        actions.rename_conversation, request.user, conversation_id, title[:1000]
    )
    return JsonResponse({"conversation": _sidebar_item(conversation)})


@require_POST
@chat_required
def conversation_pin(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    from .turns import actions

    value = _form_or_json(request).get("pinned", True)
    pinned = value if isinstance(value, bool) else str(value).lower() in {"1", "true", "on", "yes"}
    conversation = _run_action(actions.pin_conversation, request.user, conversation_id, pinned)
    return JsonResponse({"conversation": _sidebar_item(conversation)})


@require_POST
@chat_required
def conversation_delete(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    from .turns import actions

    _run_action(actions.delete_conversation, request.user, conversation_id)
    return JsonResponse(
        {"deleted": str(conversation_id), "undo_seconds": settings.R1CHAT_DELETE_UNDO_SECONDS}
    )


@require_POST
@chat_required
def conversation_restore(request: HttpRequest, conversation_id: uuid.UUID) -> JsonResponse:
    """Undo a delete, within R1CHAT_DELETE_UNDO_SECONDS; after it the conversation is gone."""
    from .turns import actions

    conversation = _run_action(actions.restore_conversation, request.user, conversation_id)
    return JsonResponse({"conversation": _sidebar_item(conversation)})


# --- exports ----------------------------------------------------------------------------------


def _attachment(
    content: str, conversation: Conversation, extension: str, content_type: str
) -> HttpResponse:
    # The title as it reads ("–", CJK and all); content_disposition_header adds RFC 5987's
    # filename* when it is not plain ASCII.
    name = f"{file_stem(conversation.title)}.{extension}"
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, name)
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_GET
@chat_required
def export_markdown(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = _get_conversation(request, conversation_id)
    content = conversation_markdown(conversation, request=request)
    return _attachment(content, conversation, "md", "text/markdown; charset=utf-8")


@require_GET
@chat_required
def export_json(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """The r1chat JSON (conversations.exporting): every version, re-importable."""
    conversation = _get_conversation(request, conversation_id)
    content = json.dumps(conversation_document(conversation), ensure_ascii=False, indent=2)
    return _attachment(content, conversation, "json", "application/json; charset=utf-8")


# --- models and settings ----------------------------------------------------------------------


@never_cache
@require_GET
@chat_required
def api_models(request: HttpRequest) -> JsonResponse:
    """The model picker: enabled backends and their models (never a URL or a key)."""
    from .turns import catalog

    backends = async_to_sync(catalog.picker)(request.user)
    safe_keys = ("id", "name", "kind", "simulated", "default_model", "available", "reason")
    return JsonResponse(
        {"backends": [{k: b.get(k) for k in safe_keys} | {"models": b["models"]} for b in backends]}
    )


@require_POST
@chat_required
def api_settings(request: HttpRequest) -> JsonResponse:
    """Save the user's default chat settings (and the reasoning's open or folded state)."""
    try:
        data = json.loads(request.body or b"{}")
        cleaned = protocol.clean_settings(data)
    except ValueError:
        return JsonResponse({"error": "invalid", "detail": _("Send a JSON object.")}, status=400)
    except protocol.ClientError as exc:
        return JsonResponse({"error": exc.code, "detail": exc.detail}, status=400)
    cleaned.pop("preset", None)  # (a conversation's, not a default)
    user = request.user
    if not hasattr(user, "chat_defaults"):
        return JsonResponse({"saved": False, "settings": cleaned})
    defaults = user.chat_defaults if isinstance(user.chat_defaults, dict) else {}
    user.chat_defaults = {**defaults, **cleaned}
    user.save(update_fields=["chat_defaults"])
    return JsonResponse({"saved": True, "settings": user.chat_defaults})


@require_POST
@chat_required
def api_theme(request: HttpRequest) -> JsonResponse:
    theme = _form_or_json(request).get("theme")
    if theme not in THEMES:
        return JsonResponse({"error": "invalid", "detail": _("Unknown theme.")}, status=400)
    user = request.user
    if not hasattr(user, "theme"):
        return JsonResponse({"saved": False, "theme": theme})
    user.theme = theme
    user.save(update_fields=["theme"])
    return JsonResponse({"saved": True, "theme": theme})
