"""Review pages and exports (served inside the admin), the usage report, and answer feedback."""

from __future__ import annotations

import csv
import json
import uuid
from collections import defaultdict
from typing import Any

from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from conversations.models import Conversation, Message

from .access import can_review
from .audit import record_review
from .chart import usage_chart
from .display import export_json, export_markdown, review_thread
from .forms import FeedbackForm, UsageFilterForm
from .models import Feedback, ReviewAudit
from .usage import cache_hit_ratio, usage_by_source, usage_rows

MAX_FEEDBACK_BODY = 4096
MAX_USAGE_TABLE_ROWS = 500


def _get_conversation_for_review(request: HttpRequest, conversation: uuid.UUID) -> Conversation:
    """The conversation, if this admin may review at all (R1CHAT_REVIEW_ACCESS); else refused."""
    if not can_review(request.user):
        raise PermissionDenied
    found = Conversation.objects.select_related("owner").filter(uuid=conversation).first()
    if found is None:
        raise Http404
    return found


# --- /admin/conversations/conversation/review/<uuid>/ -----------------------------------------


def review_conversation(
    request: HttpRequest, conversation: uuid.UUID, model_admin: ModelAdmin
) -> HttpResponse:
    found = _get_conversation_for_review(request, conversation)
    record_review(request, found, ReviewAudit.Action.OPEN)
    items, message_count = review_thread(found)
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": found.title or _("Untitled conversation"),
        "conversation": found,
        "items": items,
        "message_count": message_count,
        "audit": ReviewAudit.objects.filter(conversation=found)[:20],
    }
    return render(request, "admin/conversations/conversation/review.html", context)


def export_conversation(
    request: HttpRequest, conversation: uuid.UUID, fmt: str, model_admin: ModelAdmin
) -> HttpResponse:
    found = _get_conversation_for_review(request, conversation)
    if fmt == "md":
        record_review(request, found, ReviewAudit.Action.EXPORT_MD)
        response = HttpResponse(export_markdown(found), content_type="text/markdown; charset=utf-8")
    else:
        record_review(request, found, ReviewAudit.Action.EXPORT_JSON)
        response = HttpResponse(export_json(found), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="conversation-{found.uuid}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


# --- /admin/review/usagerecord/ --------------------------------------------------------------


def _usage(request: HttpRequest) -> tuple[UsageFilterForm, list[Any], dict[str, Any]]:
    form = UsageFilterForm(request.GET)  # every field optional: defaults to the last 30 days
    if not form.is_valid():
        return form, [], {}
    data = form.cleaned_data
    rows = usage_rows(data["start"], data["end"], user_id=data.get("user"), model=data["model"])
    return form, rows, data


def usage_report(request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
    form, rows, data = _usage(request)
    per_user: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    per_model: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        for bucket in (per_user[(row.user_id, row.username)], per_model[row.model or "—"]):
            bucket[0] += row.prompt_tokens
            bucket[1] += row.completion_tokens
            bucket[2] += row.messages
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": _("Token usage"),
        "form": form,
        "filters": data,
        "rows": rows[:MAX_USAGE_TABLE_ROWS],
        "truncated": len(rows) > MAX_USAGE_TABLE_ROWS,
        "per_user": sorted(
            ((uid, name, *v, v[0] + v[1]) for (uid, name), v in per_user.items()),
            key=lambda item: -item[-1],
        ),
        "per_model": sorted(
            ((name, *v, v[0] + v[1]) for name, v in per_model.items()), key=lambda i: -i[-1]
        ),
        "chart": usage_chart(rows, data["start"], data["end"], data["by"]) if data else None,
        **_sources(data),
        "csv_query": request.GET.urlencode(),
    }
    return render(request, "admin/review/usage.html", context)


def _sources(data: dict[str, Any]) -> dict[str, Any]:
    """Usage per source (chat page, API, response cache) and the cache's hit ratio."""
    if not data:
        return {"per_source": [], "cache_hit_ratio": None}
    rows = usage_by_source(
        data["start"], data["end"], user_id=data.get("user"), model=data["model"]
    )
    return {"per_source": rows, "cache_hit_ratio": cache_hit_ratio(rows)}


def _csv_cell(value: Any) -> Any:
    """Keep a spreadsheet from reading a user-chosen name as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def usage_csv(request: HttpRequest, model_admin: ModelAdmin) -> HttpResponse:
    _form, rows, data = _usage(request)
    if not data:
        return HttpResponse(_("Invalid filter."), status=400, content_type="text/plain")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="usage-{data["start"]}-{data["end"]}.csv"'
    )
    writer = csv.writer(response)
    writer.writerow(
        ["day", "user", "backend", "model", "prompt_tokens", "completion_tokens", "total_tokens",
         "messages"]
    )  # fmt: skip
    for row in rows:
        writer.writerow(
            [
                row.day.isoformat(),
                _csv_cell(row.username),
                _csv_cell(row.backend_name),
                _csv_cell(row.model),
                row.prompt_tokens,
                row.completion_tokens,
                row.total_tokens,
                row.messages,
            ]
        )
    return response


# --- /review/feedback/<uuid> -----------------------------------------------------------------


def _get_own_answer(user: Any, message: uuid.UUID) -> Message:
    """The signed-in user's own answer; anyone else's message is simply not found."""
    found = (
        Message.objects.filter(
            Q(uuid=message) & Q(conversation__owner=user) & Q(role=Message.Role.ASSISTANT)
        )
        .only("id", "uuid")
        .first()
    )
    if found is None:
        raise Http404
    return found


@require_POST
def feedback(request: HttpRequest, message: uuid.UUID) -> JsonResponse:
    if not request.user.is_authenticated:
        return JsonResponse({"error": "login_required"}, status=401)
    answer = _get_own_answer(request.user, message)
    if len(request.body) > MAX_FEEDBACK_BODY:
        return JsonResponse({"error": "too_large"}, status=413)
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return JsonResponse(
            {"error": "invalid", "detail": _("Expected a JSON object.")}, status=400
        )
    payload.setdefault("rating", "none")
    if payload["rating"] is None:
        payload["rating"] = "none"
    form = FeedbackForm({k: v for k, v in payload.items() if isinstance(v, str)})
    if not form.is_valid():
        return JsonResponse({"error": "invalid", "fields": form.errors.get_json_data()}, status=400)
    rating, reason = form.cleaned_data["rating"], form.cleaned_data["reason"]
    if rating == "none":
        Feedback.objects.filter(user=request.user, message=answer).delete()
        return JsonResponse({"message": str(answer.uuid), "rating": None, "reason": ""})
    Feedback.objects.update_or_create(
        user=request.user,
        message=answer,
        defaults={"rating": rating, "reason": reason, "updated_at": timezone.now()},
    )
    return JsonResponse({"message": str(answer.uuid), "rating": rating, "reason": reason})
