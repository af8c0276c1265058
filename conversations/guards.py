"""The access check of the chat's own views and API calls (and of the apps beside it: sharing,
transfer, attachments)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse


def _chat_redirect(user: Any) -> str | None:
    """Where someone who may not chat yet goes (None when they may)."""
    try:
        from accounts.access import chat_redirect_url
    except ImportError:  # the accounts rules are not there: any active user may chat
        return None if user.is_active else reverse("account_login")
    try:
        return chat_redirect_url(user)
    except NoReverseMatch:
        return reverse("account_login")


def chat_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in and allowed to chat; pages redirect, API calls answer 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            if request.path.startswith("/api/") or request.method != "GET":
                return JsonResponse({"error": "login_required"}, status=403)
            return redirect_to_login(request.get_full_path())
        target = _chat_redirect(request.user)
        if target is not None:
            if request.path.startswith("/api/") or request.method != "GET":
                return JsonResponse({"error": "cannot_chat", "redirect": target}, status=403)
            return redirect(target)
        return view(request, *args, **kwargs)

    return login_required(wrapper)
