"""The OpenAI-compatible endpoints: `GET /v1/models` and `POST /v1/chat/completions`.

Async views, served by the same Daphne processes as the chat page. Each call is checked in this
order, and the first refusal is the answer (OpenAI's error shape, nothing recorded): the key
(401), the account (403), the body (400), the model (404) and the key's scope (403), then the
user's question rate and daily token quota, shared with the chat page (429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from accounts.access import can_chat
from conversations.backends.base import BackendError, ErrorKind
from conversations.chat.protocol import ClientError
from conversations.errors import describe_error
from conversations.runner import shutdown
from conversations.runner.db import in_db_pool
from conversations.turns.actions import check_quota, count_this_minute

from . import offers, parsing, relay
from .errors import ApiError
from .models import ApiKey, digest

logger = logging.getLogger(__name__)

MAX_BODY = settings.R1CHAT_API_MAX_BODY
SEND_RATE_PER_MINUTE = settings.R1CHAT_SEND_RATE_PER_MINUTE
LAST_USED_EVERY = dt.timedelta(seconds=60)  # `last_used_at` is written at most this often
CACHE_HEADER = "X-R1chat-Cache"

# What a model server's failure before the first token answers: (status, OpenAI's type).
BACKEND_STATUS = {
    ErrorKind.RATE_LIMITED: (429, "rate_limit_error"),
    ErrorKind.OVERLOADED: (503, "server_error"),
    ErrorKind.MODEL_NOT_FOUND: (404, "not_found_error"),
    ErrorKind.NO_THINKING: (400, "invalid_request_error"),
    ErrorKind.BAD_REQUEST: (400, "invalid_request_error"),
    ErrorKind.CONTENT_FILTER: (400, "invalid_request_error"),
    ErrorKind.TIMEOUT: (504, "server_error"),
    ErrorKind.GATEWAY: (504, "server_error"),
}


# --- the key ----------------------------------------------------------------------------------


def _bearer(request: HttpRequest) -> str:
    scheme, _sep, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            _("No API key given. Send it as 'Authorization: Bearer r1-…'."),
            code="missing_api_key",
        )
    return token


@in_db_pool
def _key_for(token: str) -> ApiKey:
    """The key whose digest this is, its owner loaded; refused unless it may be used now."""
    key = ApiKey.objects.select_related("owner").filter(hashed=digest(token)).first()
    if key is None:
        raise ApiError(401, _("Incorrect API key provided."), code="invalid_api_key")
    if key.is_revoked:
        raise ApiError(401, _("This API key was revoked."), code="revoked_api_key")
    if key.is_expired:
        raise ApiError(401, _("This API key has expired."), code="expired_api_key")
    if not can_chat(key.owner):
        raise ApiError(
            403,
            _("This account may not use the API now: it is deactivated or not approved yet."),
            code="account_inactive",
        )
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


async def _authenticate(request: HttpRequest) -> ApiKey:
    return await _key_for(_bearer(request))


# --- limits -----------------------------------------------------------------------------------


def _seconds_to_midnight() -> float:
    now = timezone.localtime()
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


async def _check_limits(key: ApiKey) -> None:
    """The user's question rate and daily token quota, as the chat page counts them."""
    if shutdown.is_shutting_down():
        raise ApiError(
            503,
            _("The server is restarting. Try again in a moment."),
            code="shutting_down",
            retry_after=5,
        )
    if await count_this_minute("sends", key.owner_id) > SEND_RATE_PER_MINUTE:
        raise ApiError(
            429,
            _("You are sending requests too fast. Wait a minute."),
            code="rate_limit_exceeded",
            retry_after=60 - time.time() % 60,
        )
    try:
        await check_quota(key.owner)
    except ClientError as exc:
        raise ApiError(
            429, exc.detail, code="insufficient_quota", retry_after=_seconds_to_midnight()
        ) from None


# --- GET /v1/models -------------------------------------------------------------------------


@never_cache
async def models(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        key = await _authenticate(request)
    except ApiError as exc:
        return exc.response()
    data = [_model(offer) for offer in await offers.offers() if key.allows(offer.ids)]
    return JsonResponse({"object": "list", "data": data})


@never_cache
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    """`GET /v1/models/<id>`: one model this key may use (`client.models.retrieve`)."""
    if request.method != "GET":
        return _method_not_allowed("GET")
    try:
        key = await _authenticate(request)
    except ApiError as exc:
        return exc.response()
    offer = offers.find(await offers.offers(), model_id)
    if offer is None or not key.allows(offer.ids):
        return _unknown_model(model_id).response()
    return JsonResponse(_model(offer))


def _model(offer: offers.Offer) -> dict[str, Any]:
    return {"id": offer.id, "object": "model", "created": 0, "owned_by": offer.backend.name}


def _unknown_model(model_id: str) -> ApiError:
    return ApiError(
        404,
        _("The model '%(model)s' does not exist. GET /v1/models lists the models you may use.")
        % {"model": model_id[:100]},
        param="model",
        code="model_not_found",
    )


# --- POST /v1/chat/completions ----------------------------------------------------------------


def _body(request: HttpRequest) -> bytes:
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        raise _too_large()
    try:
        raw = request.body
    except RequestDataTooBig:
        raise _too_large() from None
    if len(raw) > MAX_BODY:
        raise _too_large()
    return raw


def _too_large() -> ApiError:
    return ApiError(
        413,
        _("The request body is too large: the limit is %(limit)s bytes.") % {"limit": MAX_BODY},
        param="messages",
        code="request_too_large",
    )


async def _prepare(request: HttpRequest) -> relay.Exchange:
    key = await _authenticate(request)
    call = parsing.parse(_body(request))
    offered = await offers.offers()
    offer = offers.find(offered, call.model)
    if offer is None:
        raise _unknown_model(call.model)
    if not key.allows(offer.ids):
        raise ApiError(
            403,
            _("This API key may not use the model '%(model)s'.") % {"model": offer.id},
            param="model",
            code="model_not_allowed",
        )
    await _check_limits(key)
    use_cache = relay.uses_cache(call, request.headers.get(CACHE_HEADER, ""))
    exchange = relay.Exchange(
        user_id=key.owner_id,
        key_id=key.pk,
        record=key.record,
        offer=offer,
        call=call,
        cache_key=relay.cache_key(offer, call) if use_cache else None,
    )
    if exchange.cache_key:
        try:
            exchange.cached = await cache.aget(exchange.cache_key)
        except Exception as exc:  # the cache being down: the model answers
            logger.warning("could not read the API response cache: %s", exc)
    return exchange


@csrf_exempt
@never_cache
async def chat_completions(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _method_not_allowed("POST")
    try:
        exchange = await _prepare(request)
    except ApiError as exc:
        return exc.response()
    cache_state = "hit" if exchange.cached is not None else "miss" if exchange.cache_key else None
    if exchange.call.stream:
        upstream = relay.Upstream(exchange)
        try:
            await upstream.first()
        except BackendError as exc:
            exchange.error = exc
            await exchange.finish("error")
            return _backend_failure(exc)
        response: HttpResponse = StreamingHttpResponse(
            relay.sse(upstream, _error_body), content_type="text/event-stream; charset=utf-8"
        )
        response["X-Accel-Buffering"] = "no"  # nginx passes each chunk on at once
    else:
        try:
            async for event in exchange.events():
                exchange.take(event)
        except asyncio.CancelledError:  # the client went away: what was used still counts
            exchange.finish_later("stopped")
            raise
        except BackendError as exc:
            exchange.error = exc
            await exchange.finish("error")
            if exchange.answer or exchange.reasoning:
                return _backend_failure(exc, status=502)
            return _backend_failure(exc)
        await exchange.finish("complete")
        response = JsonResponse(exchange.completion())
    if cache_state:
        response[CACHE_HEADER] = cache_state
    return response


def _error_body(exc: Exception) -> dict[str, Any]:
    """A failure of the model server (or of r1chat) in OpenAI's error shape."""
    if isinstance(exc, BackendError):
        code = exc.kind.value
        kind = BACKEND_STATUS.get(exc.kind, (502, "server_error"))[1]
    else:
        code, kind = "internal", "server_error"
    return {
        "error": {
            "message": str(describe_error(code)["message"]),
            "type": kind,
            "param": None,
            "code": code,
        }
    }


def _backend_failure(exc: BackendError, status: int | None = None) -> JsonResponse:
    status = status or BACKEND_STATUS.get(exc.kind, (502, ""))[0]
    response = JsonResponse(_error_body(exc), status=status)
    if status in (429, 503) and exc.retry_after:
        response["Retry-After"] = str(max(1, round(exc.retry_after)))
    return response


def _method_not_allowed(allowed: str) -> JsonResponse:
    response = ApiError(405, _("Use %(method)s here.") % {"method": allowed}).response()
    response["Allow"] = allowed
    return response
