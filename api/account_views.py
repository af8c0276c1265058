"""The account page's API keys: make one (its secret shown once), revoke one."""

from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from . import offers
from .forms import ApiKeyForm
from .models import ApiKey

MAX_KEYS = 50  # live keys per user


def model_ids() -> list[str]:
    """The ids of the models offered now, for ticking a key's scope."""
    return [offer.id for offer in async_to_sync(offers.offers)()]


def keys_of(user: object) -> list[ApiKey]:
    return list(ApiKey.objects.filter(owner=user, revoked_at__isnull=True))


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def create_key(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(request.POST or None, model_ids=model_ids())
    if request.method == "POST" and form.is_valid():
        if ApiKey.objects.filter(owner=request.user, revoked_at__isnull=True).count() >= MAX_KEYS:
            form.add_error(None, _("You have too many keys. Revoke one you no longer use."))
        else:
            data = form.cleaned_data
            key, token = ApiKey.issue(
                request.user,
                data["name"],
                expires_in_days=data["expires"],
                models=data["models"],
                record=data["record"],
            )
            # (never_cache: the page with the secret is kept by no cache, the browser's included)
            return render(request, "api/key_created.html", {"key": key, "token": token})
    status = 400 if form.errors else 200
    return render(request, "api/new_key.html", {"form": form}, status=status)


@login_required
@require_POST
def revoke_key(request: HttpRequest, key_id: uuid.UUID) -> HttpResponse:
    key = ApiKey.objects.filter(public_id=key_id, owner=request.user).first()
    if key is None:
        raise Http404  # another user's key is not found, never forbidden
    key.revoke()
    messages.success(request, _("The key “%(name)s” was revoked.") % {"name": key.name})
    return redirect("accounts:account")
