"""Which pages may open the chat socket: only the exact origins the site is served from.

A WebSocket is not bound by the same-origin policy, so the server checks the `Origin` header
(cross-site WebSocket hijacking): scheme, host and port must be those of the request itself
(its `Host`, which must be one of ALLOWED_HOSTS, and `wss`/`https` when it came over TLS), or
one of CSRF_TRUSTED_ORIGINS. A page on another port, or on http:// of an https:// site, is
refused. The matching is Channels' own `OriginValidator`.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http.request import split_domain_port, validate_host


class SameOriginValidator:
    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        return await OriginValidator(self.application, allowed_origins(scope))(scope, receive, send)


def allowed_origins(scope: dict[str, Any]) -> list[str]:
    origins = [origin.lower() for origin in settings.CSRF_TRUSTED_ORIGINS]
    host = next((v.decode("latin1") for k, v in scope.get("headers", []) if k == b"host"), "")
    domain, _port = split_domain_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    if domain and validate_host(domain, allowed_hosts):
        scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
        origins.append(f"{scheme}://{host.lower()}")
    return origins
