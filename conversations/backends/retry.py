"""What both HTTP backends share: the pooled client, timers, error mapping and the retry loop.

The protocol modules (`openai.py`, `ollama.py`) only build request bodies and turn parsed
chunks into events; everything about connections, deadlines and trying again lives here so
the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from .base import (
    RETRYABLE_KINDS,
    BackendConfig,
    BackendError,
    ErrorKind,
)

if TYPE_CHECKING:
    from . import http11

log = logging.getLogger("r1chat.backends")

# Bodies of error responses are read up to this size: enough for any JSON envelope or the
# start of a proxy's HTML page, never a whole unexpected download.
MAX_ERROR_BODY = 64 * 1024
# Timeout for small metadata requests (/models, /api/tags, /api/show, /version).
META_TIMEOUT = 15.0
# Idle keep-alive connections kept per backend: one per open chat tab that may ask it (`warm`)
# and those its answers left, up to this many.
MAX_IDLE_CONNECTIONS = 256
KEEPALIVE_EXPIRY = 30.0  # seconds; a connection idle longer is closed, not reused


# --- Errors ---------------------------------------------------------------------------------


def redact(text: str, api_key: str) -> str:
    """Remove the API key from anything that may reach a log line or a person."""
    if api_key and api_key in text:
        text = text.replace(api_key, "***")
    return text


def error_message(payload: Any) -> str | None:
    """The message of any of the three error envelopes, or None if `payload` is not one.

    `{"error": {"message": ...}}` (OpenAI, DeepSeek, vLLM new, OpenRouter, llama.cpp),
    `{"error": "..."}` (Ollama) and `{"object": "error", "message": ...}` (vLLM old).
    """
    if not isinstance(payload, dict):
        return None
    err = payload.get("error")
    if isinstance(err, dict):
        msg = err.get("message") or err.get("msg") or err.get("type") or err.get("code")
        return str(msg) if msg is not None else orjson.dumps(err).decode()
    if isinstance(err, str) and err:
        return err
    if payload.get("object") == "error":
        return str(payload.get("message") or payload.get("type") or "error")
    return None


def _error_code(payload: Any) -> int | None:
    if isinstance(payload, dict):
        err = payload.get("error")
        code = err.get("code") if isinstance(err, dict) else payload.get("code")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
        if isinstance(code, str) and code.isdigit():
            return int(code)
    return None


def _error_type(payload: Any) -> str:
    if isinstance(payload, dict):
        err = payload.get("error")
        src = err if isinstance(err, dict) else payload
        return str(src.get("type") or "")
    return ""


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _text_of(body: str) -> str:
    """A short, single-line, tag-free summary of a non-JSON body (the title of an HTML page)."""
    text = body.strip()
    if text.startswith("<"):
        low = text.lower()
        start, end = low.find("<title>"), low.find("</title>")
        if 0 <= start < end:
            text = text[start + len("<title>") : end]
        else:
            text = re.sub(r"<[^>]*>", " ", text)
    return " ".join(text.split())[:300]


def kind_for_status(status: int, message: str = "") -> ErrorKind:
    low = message.lower()
    if status in (401, 403):
        return ErrorKind.AUTH
    if status == 402:
        return ErrorKind.NO_BALANCE
    if status == 404:
        return ErrorKind.MODEL_NOT_FOUND
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (400, 422):
        if "does not support thinking" in low:
            return ErrorKind.NO_THINKING
        # DeepSeek answers an unknown model with 400 "Model Not Exist".
        if "model" in low and ("not exist" in low or "not found" in low):
            return ErrorKind.MODEL_NOT_FOUND
        return ErrorKind.BAD_REQUEST
    if status in (502, 503, 504):
        return ErrorKind.OVERLOADED
    if status >= 500:
        return ErrorKind.SERVER
    if status == 408:
        return ErrorKind.TIMEOUT
    return ErrorKind.BAD_REQUEST


def error_from_response(
    status: int, body: bytes, headers: Mapping[str, str], api_key: str = ""
) -> BackendError:
    """Classify a non-2xx response; the server's own message becomes the detail."""
    message: str | None = None
    with contextlib.suppress(orjson.JSONDecodeError):
        message = error_message(orjson.loads(body))
    if message is None:
        # Not JSON (a proxy's HTML 502 page): keep a short, single-line piece of the text.
        message = _text_of(body.decode("utf-8", "replace")) or httpx.codes.get_reason_phrase(status)
    kind = kind_for_status(status, message)
    retry_after = parse_retry_after(headers.get("retry-after"))
    return BackendError(
        kind,
        redact(f"HTTP {status}: {message}", api_key),
        status=status,
        retry_after=retry_after,
    )


def stream_error(payload: Any, api_key: str = "") -> BackendError:
    """An error reported inside a 200 stream, in any of its shapes.

    Retryable unless the server says the request itself is wrong (a 4xx code or an
    `invalid_request_error`, e.g. llama.cpp's "exceeds the available context size"): the
    runner shows a retry button for retryable ones; nothing is retried automatically once
    text has been shown."""
    message = error_message(payload)
    if message is None:
        message = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
    code = _error_code(payload)
    etype = _error_type(payload)
    if code is not None and 400 <= code < 500 and code != 429:
        retryable = False
    else:
        retryable = "invalid_request" not in etype
    return BackendError(ErrorKind.STREAM, redact(message, api_key), retryable=retryable)


def should_retry(exc: BackendError) -> bool:
    return exc.kind in RETRYABLE_KINDS and exc.retryable


def backoff_delay(config: BackendConfig, failures: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After wins, capped by the max."""
    if retry_after is not None:
        return min(retry_after, config.backoff_max)
    ceiling = min(config.backoff_max, config.backoff_base * (2 ** (failures - 1)))
    return random.uniform(0.0, ceiling)


# --- Timers ---------------------------------------------------------------------------------


class StreamTimer:
    """Idle, no-data and total deadlines around one response body.

    `body.RawBody` arms it only while waiting for bytes, never while the consumer holds an
    event, so a slow consumer cannot trip it.
    """

    __slots__ = ("_config", "_loop", "cap", "last_byte", "last_data", "total_deadline")

    def __init__(self, config: BackendConfig, total_deadline: float) -> None:
        self._config = config
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.last_byte = now
        self.last_data = now
        self.total_deadline = total_deadline
        self.cap: float | None = None  # an extra, shorter deadline (grace after the finish)

    def data_seen(self) -> None:
        self.last_data = self.last_byte

    def deadline(self) -> float:
        """When waiting for the next byte must stop (loop time)."""
        cfg = self._config
        deadline = min(
            self.last_byte + cfg.idle_timeout,
            self.last_data + cfg.no_data_timeout,
            self.total_deadline,
        )
        if self.cap is not None and self.cap < deadline:
            deadline = self.cap
        return deadline

    def _timeout_error(self) -> BackendError:
        cfg = self._config
        now = self._loop.time()
        if now >= self.total_deadline:
            detail = f"total deadline: the generation took longer than {cfg.total_timeout:g} s"
        elif self.cap is not None and now >= self.cap:
            detail = "grace period after the finish ran out"
        elif now >= self.last_byte + cfg.idle_timeout:
            detail = f"idle timeout: no bytes for {cfg.idle_timeout:g} s"
        else:
            detail = f"no-data timeout: no data for {cfg.no_data_timeout:g} s (keep-alives only)"
        return BackendError(ErrorKind.TIMEOUT, detail, retryable=True)


def describe_transport(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]


# --- The shared client ----------------------------------------------------------------------


class HTTPBackend:
    """The transport half of a backend: its connection pool (http11.py), retries, timers.

    Subclasses stream in one generator each (one hop per event), trying again as
    `_retry_delay` decides: never once any text has been yielded, since a person has seen it and
    a second answer must not be glued onto it.
    """

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self._pool: http11.Pool | None = None
        self._pool_loop: asyncio.AbstractEventLoop | None = None
        self._head, self._json_head = _request_heads(config.api_key)
        # Each endpoint's URL parsed once (parsing, with its IP-address check, was a tenth of
        # the cost of sending a request).
        self._urls: dict[str, httpx.URL] = {}

    # The pool belongs to the event loop that first used it (connections cannot move between
    # loops). A server has one loop, so this is one pool per backend; a test run or a
    # management command with a new loop gets a fresh one instead of a broken pool.
    @property
    def pool(self) -> http11.Pool:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop or self._pool.closed:
            from . import http11

            self._pool = http11.Pool(
                None, max_idle=MAX_IDLE_CONNECTIONS, keepalive_expiry=KEEPALIVE_EXPIRY
            )
            self._pool_loop = loop
        return self._pool

    def tab_opened(self) -> None:
        """A chat tab whose next question comes here opened: keep one more connection to the
        server open and idle (`http11.Pool.expect`)."""
        self._expect(1)

    def tab_closed(self) -> None:
        if self._pool is not None:
            self._expect(-1)

    def _expect(self, change: int) -> None:
        url = self._urls.get("")
        if url is None:
            try:
                url = self._urls[""] = httpx.URL(self.base_url)
            except httpx.InvalidURL:
                return  # a question says what is wrong with it
        if url.scheme in ("http", "https") and url.host:
            self.pool.expect(url, change)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    # --- requests ---

    def _transport_error(self, exc: httpx.TransportError) -> BackendError:
        where = self.base_url
        if isinstance(exc, httpx.ConnectTimeout):
            return BackendError(
                ErrorKind.TIMEOUT,
                f"connect timeout: {where} did not accept a connection within "
                f"{self.config.connect_timeout:g} s",
                retryable=True,
            )
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(ErrorKind.TIMEOUT, f"{where}: {describe_transport(exc)}")
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return BackendError(ErrorKind.BAD_REQUEST, f"bad backend URL {where!r}")
        # Refused, reset before a response, DNS, TLS: the server cannot be talked to now.
        if isinstance(exc, httpx.ProxyError):
            detail = f"cannot reach {where} through the proxy: {exc}"
        elif isinstance(exc, httpx.ConnectError):
            detail = (
                f"cannot connect to {where} (is the server running?): {describe_transport(exc)}"
            )
        else:
            detail = f"no response from {where}: {describe_transport(exc)}"
        return BackendError(ErrorKind.UNREACHABLE, redact(detail, self.config.api_key))

    async def _open(
        self, method: str, path: str, body: dict[str, Any] | None, deadline: float
    ) -> http11.Response:
        """Send a request and return the streaming response once its headers arrived."""
        if self._head is None or self._json_head is None:
            raise BackendError(
                ErrorKind.AUTH, "the API key has characters that cannot be sent in a header"
            )
        url = self._urls.get(path)
        if url is None:
            absolute = path.startswith(("http://", "https://"))
            url = httpx.URL(path if absolute else self.base_url + path)
            if len(self._urls) < 32:
                self._urls[path] = url
        content = orjson.dumps(body) if body is not None else None
        loop = asyncio.get_running_loop()
        # Waiting for the headers counts against the idle limit (no byte yet) and the total.
        header_deadline = min(
            deadline, loop.time() + self.config.connect_timeout + self.config.idle_timeout
        )
        if url.scheme not in ("http", "https"):
            raise BackendError(ErrorKind.BAD_REQUEST, f"bad backend URL {self.base_url!r}")
        try:
            async with asyncio.timeout_at(header_deadline):
                return await self.pool.request(
                    method.encode(),
                    url,
                    self._json_head if content is not None else self._head,
                    content or b"",
                    connect_timeout=self.config.connect_timeout,
                    make_timer=lambda: StreamTimer(self.config, deadline),
                )
        except TimeoutError:
            which = (
                "total deadline"
                if loop.time() >= deadline
                else f"idle timeout: no response for {self.config.idle_timeout:g} s"
            )
            raise BackendError(ErrorKind.TIMEOUT, which, retryable=True) from None
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None

    async def _raise_for_status(self, response: http11.Response, deadline: float) -> None:
        if response.status_code < 400:
            return
        body = b""
        try:
            async with asyncio.timeout_at(
                min(deadline, asyncio.get_running_loop().time() + META_TIMEOUT)
            ):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_ERROR_BODY:
                        break
        except (TimeoutError, httpx.TransportError, BackendError):
            pass  # classify by status with whatever arrived
        raise error_from_response(
            response.status_code, body[:MAX_ERROR_BODY], response.headers, self.config.api_key
        )

    async def _get_json(
        self, path: str, body: dict[str, Any] | None = None, timeout: float = META_TIMEOUT
    ) -> Any:
        """A small metadata request (GET, or POST when `body` is given)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        response = await self._open("GET" if body is None else "POST", path, body, deadline)
        try:
            await self._raise_for_status(response, deadline)
            try:
                async with asyncio.timeout_at(deadline):
                    raw = await response.aread()
            except TimeoutError:
                raise BackendError(
                    ErrorKind.TIMEOUT, f"{path} took longer than {timeout:g} s"
                ) from None
            except httpx.TransportError as exc:
                raise self._transport_error(exc) from None
        finally:
            await response.aclose()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BackendError(ErrorKind.PROTOCOL, f"{path} did not return JSON") from None

    # --- streaming with retries ---

    def _retry_delay(
        self, exc: BackendError, failures: int, text_sent: bool, deadline: float
    ) -> float:
        """How long to wait before trying again after `exc`; re-raises it when trying again
        is not allowed: text was shown, the failure is not retryable, the tries are used up,
        or the wait would pass the total deadline. The one retry policy of every backend."""
        cfg = self.config
        if text_sent or not should_retry(exc) or failures >= max(1, cfg.max_tries):
            raise exc
        delay = backoff_delay(cfg, failures, exc.retry_after)
        if asyncio.get_running_loop().time() + delay >= deadline:
            raise exc
        log.info(
            "backend %s: %s (try %d of %d), retrying in %.2f s",
            cfg.name or self.base_url,
            exc,
            failures,
            cfg.max_tries,
            delay,
        )
        return delay


# --- Shared request and model helpers -------------------------------------------------------


def _request_heads(api_key: str) -> tuple[bytes | None, bytes | None]:
    """The header lines of every direct request (http11.py), without and with a JSON body;
    None if the API key cannot be sent as a header value."""
    lines = "User-Agent: r1chat\r\nAccept: */*\r\nAccept-Encoding: identity\r\n"
    if api_key:
        if any(c in api_key for c in "\r\n\0") or not api_key.isprintable():
            return None, None
        lines += f"Authorization: Bearer {api_key}\r\n"
    try:
        head = lines.encode("ascii")
    except UnicodeEncodeError:
        return None, None
    return head, head + b"Content-Type: application/json\r\n"


def clean_history(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """History as `{role, content}` only (§4.5): reasoning is never sent back to a model.

    Extra keys (`reasoning_content`, `thinking`) are dropped: DeepSeek R1-era models answer
    400 to them. An assistant turn that still starts with a `<think>` block (text stored by
    an older client) loses that block.
    """
    out: list[dict[str, str]] = []
    for message in messages:
        role = str(message.get("role", "user"))
        content = str(message.get("content") or "")
        if role == "assistant" and content.lstrip().startswith("<think>"):
            end = content.find("</think>")
            if end >= 0:
                content = content[end + len("</think>") :].lstrip()
        out.append({"role": role, "content": content})
    return out


def name_always_thinks(name: str) -> bool:
    """Model names that by convention always reason (R1 distills, QwQ, "-thinking" variants)."""
    low = name.lower()
    return any(part in low for part in ("r1", "reasoner", "qwq", "think"))
