"""The `httpx.AsyncClient` of one backend: transport, limits, timeouts, TLS and proxy.

The transport is `httpx_aiohttp.AiohttpTransport` (httpx's API over aiohttp's connection pool):
reading a streamed answer costs about a third less CPU per token than httpx's default
transport (bench/backend.py measures both). A custom transport makes httpx ignore the proxy
variables, so they are read here, as curl reads them: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and
NO_PROXY (upper or lower case). An http:// proxy is used as curl uses it: https model servers
through a CONNECT tunnel with TLS end to end inside it, http ones by forwarding; the proxy's
Basic credentials come from its URL. A proxy of another kind (socks5://, https://) is an error
on every message, never a silent direct connection.

Nothing is sent twice underneath the backends' own retry policy (retry.HTTPBackend._retry_delay):
aiohttp sends a request again on a kept-alive connection the server had closed only for
idempotent methods (RFC 9112 §9.3.1: the GETs of model lists and versions), never a POST such
as a chat request; httpcore never does.
"""

from __future__ import annotations

import base64
import functools
import os
import ssl
import urllib.request
from typing import Literal

import httpx
from httpx_aiohttp import AiohttpTransport

from .base import BackendConfig, BackendError, ErrorKind

Transport = Literal["aiohttp", "httpcore"]

# 200 concurrent streams per process are the budget: a request never queues for a connection.
# aiohttp has no separate idle limit; httpcore keeps at most `max_keepalive_connections`.
LIMITS = httpx.Limits(max_connections=1024, max_keepalive_connections=256, keepalive_expiry=30.0)
WRITE_TIMEOUT = 30.0  # sending a request body (a long history) to a server that reads slowly


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context(verify=True, trust_env=bool(cafile or capath))


def tls_context() -> ssl.SSLContext:
    """Certificates from SSL_CERT_FILE or SSL_CERT_DIR when set, else certifi's bundle (what
    httpx does); one context per process and setting, as loading a bundle takes milliseconds."""
    return _tls_context(
        os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None
    )


def proxy_for(url: httpx.URL) -> httpx.Proxy | None:
    """The proxy the environment names for `url`, or None to connect directly.

    Raises BackendError for a proxy that cannot be used: the request must not go around it."""
    proxies = urllib.request.getproxies_environment()
    proxy_url = proxies.get(url.scheme) or proxies.get("all")
    port = url.port or (443 if url.scheme == "https" else 80)
    if not proxy_url or urllib.request.proxy_bypass_environment(f"{url.host}:{port}", proxies):
        return None
    if "://" not in proxy_url:
        proxy_url = "http://" + proxy_url  # curl's default scheme for a proxy
    try:
        parsed = httpx.URL(proxy_url)
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme != "http" or not parsed.host:
        shown = f"{parsed.scheme}://{parsed.host}" if parsed is not None else "(unreadable)"
        raise BackendError(
            ErrorKind.UNREACHABLE,
            f"unsupported proxy {shown} for {url.scheme}://{url.host} (an http:// proxy is needed)",
            retryable=False,
        )
    headers = {}
    if parsed.username or parsed.password:
        # As a header rather than httpx.Proxy's `auth`, which httpx_aiohttp hands to a
        # deprecated aiohttp parameter; the same Proxy-Authorization either way.
        secret = f"{parsed.username}:{parsed.password}".encode()
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(secret).decode("ascii")
        parsed = parsed.copy_with(username=None, password=None)
    return httpx.Proxy(parsed, headers=headers)


def make_client(
    config: BackendConfig, base_url: httpx.URL, transport: Transport = "aiohttp"
) -> httpx.AsyncClient:
    """A client for one backend on the running event loop (its connections belong to it)."""
    headers = {"User-Agent": "r1chat", "Accept-Encoding": "identity"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    # read=None: body reads are timed by retry.TimedBody (idle, no-data, total); a plain read
    # timeout would also fire during a long, legitimate model load.
    timeout = httpx.Timeout(
        connect=config.connect_timeout, read=None, write=WRITE_TIMEOUT, pool=config.connect_timeout
    )
    proxy = proxy_for(base_url)
    if proxy is not None and transport == "aiohttp" and base_url.scheme == "http":
        # aiohttp sends proxy headers only with a CONNECT; a forwarded plain http request
        # carries its Proxy-Authorization itself (never an https one: that goes to the server).
        headers.update(proxy.headers)
    if transport == "httpcore":
        return httpx.AsyncClient(
            headers=headers,
            timeout=timeout,
            limits=LIMITS,
            verify=tls_context(),
            proxy=proxy,
            trust_env=False,
        )
    return httpx.AsyncClient(
        headers=headers,
        timeout=timeout,
        transport=AiohttpTransport(verify=tls_context(), limits=LIMITS, proxy=proxy),
        trust_env=False,
    )
