"""Saved presets: a user's named model and settings (temperature, maximum length, Deep Think,
system prompt), created, renamed and deleted in the chat's settings panel and chosen per
conversation (the conversation remembers its preset in its settings)."""

from __future__ import annotations

import json
from typing import Any

from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from r1chat.text import clean_text

from .chat import protocol
from .guards import chat_required
from .models import ChatPreset

MAX_PRESETS = 50
NAME_CHARS = 80
# What a preset holds: the chat settings, not the display preference or a preset itself.
PRESET_KEYS = (
    "backend", "model", "deep_think", "enhanced_reasoning", "temperature", "max_tokens",
    "system_prompt",
)  # fmt: skip


class PresetError(Exception):
    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(code)
        self.code, self.detail, self.status = code, detail, status


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise PresetError("invalid", _("Send a JSON object.")) from None
    if not isinstance(data, dict):
        raise PresetError("invalid", _("Send a JSON object."))
    return data


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise PresetError("invalid", _("Give the preset a name."))
    name = " ".join(clean_text(value).split())
    if not name:
        raise PresetError("empty", _("Give the preset a name."))
    if len(name) > NAME_CHARS:
        raise PresetError(
            "too_long",
            _("The name is too long (at most %(limit)d characters).") % {"limit": NAME_CHARS},
        )
    return name


def _settings(value: Any) -> dict[str, Any]:
    try:
        cleaned = protocol.clean_settings(value)
    except protocol.ClientError as exc:
        raise PresetError(exc.code, exc.detail) from None
    return {key: cleaned[key] for key in PRESET_KEYS if key in cleaned}


def _get(request: HttpRequest, preset_id: int) -> ChatPreset:
    preset = ChatPreset.objects.filter(pk=preset_id, owner=request.user).first()
    if preset is None:  # another user's preset is not found, like a missing one
        raise Http404(_("That preset does not exist."))
    return preset


def _save(preset: ChatPreset, fields: list[str] | None = None) -> None:
    try:
        with transaction.atomic():
            preset.save(update_fields=fields) if fields else preset.save()
    except IntegrityError:
        raise PresetError(
            "duplicate", _("You already have a preset called “%(name)s”.") % {"name": preset.name}
        ) from None


def _answer(handler: Any) -> Any:
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        try:
            return handler(request, *args, **kwargs)
        except PresetError as exc:
            return JsonResponse({"error": exc.code, "detail": exc.detail}, status=exc.status)

    view.__name__ = handler.__name__
    view.__doc__ = handler.__doc__
    return view


def presets_of(user: Any) -> list[dict[str, Any]]:
    return [p.as_dict() for p in ChatPreset.objects.filter(owner=user)]


@never_cache
@require_http_methods(["GET", "POST"])
@chat_required
@_answer
def preset_list(request: HttpRequest) -> JsonResponse:
    """GET: the user's presets. POST {name, settings}: save a new one."""
    if request.method == "GET":
        return JsonResponse({"presets": presets_of(request.user)})
    data = _body(request)
    name, settings = _name(data.get("name")), _settings(data.get("settings"))
    if ChatPreset.objects.filter(owner=request.user).count() >= MAX_PRESETS:
        raise PresetError(
            "too_many", _("You have %(count)d presets, the most there can be. Delete one first.")
            % {"count": MAX_PRESETS},
        )  # fmt: skip
    preset = ChatPreset(owner=request.user, name=name, settings=settings)
    _save(preset)
    return JsonResponse({"preset": preset.as_dict()}, status=201)


@require_POST
@chat_required
@_answer
def preset_update(request: HttpRequest, preset_id: int) -> JsonResponse:
    """{name?, settings?}: rename a preset or replace its settings."""
    preset = _get(request, preset_id)
    data = _body(request)
    fields = []
    if "name" in data:
        preset.name = _name(data["name"])
        fields.append("name")
    if "settings" in data:
        preset.settings = _settings(data["settings"])
        fields.append("settings")
    if fields:
        _save(preset, [*fields, "updated_at"])
    return JsonResponse({"preset": preset.as_dict()})


@require_POST
@chat_required
@_answer
def preset_delete(request: HttpRequest, preset_id: int) -> JsonResponse:
    preset = _get(request, preset_id)
    preset.delete()
    return JsonResponse({"deleted": preset_id})
