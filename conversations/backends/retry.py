"""What both HTTP backends share: the client, deadlines, error mapping and the retry loop.

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
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
import orjson

from .base import (
    RETRYABLE_KINDS,
    Answer,
    BackendConfig,
    BackendError,
    ErrorKind,
    Event,
    Reasoning,
)
from .client import Transport, make_client

log = logging.getLogger("r1chat.backends")

# Bodies of error responses are read up to this size: enough for any JSON envelope or the
# start of a proxy's HTML page, never a whole unexpected download.
MAX_ERROR_BODY = 64 * 1024
# Timeout for small metadata requests (/models, /api/tags, /api/show, /version).
META_TIMEOUT = 15.0


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
    if status == 407:  # the proxy wants (other) credentials: no server was asked
        return ErrorKind.UNREACHABLE
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
    if status in (502, 504):
        # A proxy or gateway (nginx, a cloud load balancer) in front of the model server got
        # no answer from it, or no answer in time: often an HTML page, not the server's own.
        return ErrorKind.GATEWAY
    if status == 503:
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
    detail = f"HTTP {status}: {message}"
    if status == 407:
        detail = f"cannot reach the server through the proxy: {detail}"
    elif kind is ErrorKind.GATEWAY:
        detail = f"{detail} (from a proxy or gateway in front of the model server)"
    return BackendError(
        kind,
        redact(detail, api_key),
        status=status,
        retry_after=retry_after,
        retryable=False if status == 407 else None,
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


# --- Reading a body under deadlines ---------------------------------------------------------


class TimedBody:
    """A response body read chunk by chunk under the idle, no-data and total deadlines.

    Each read waits under one `asyncio.timeout_at`, armed only while waiting for bytes, never
    while the consumer holds an event: a slow consumer cannot trip it, and a deadline that
    passes cancels only the read. Any byte re-arms the idle deadline; only `data_seen` (a data
    event or line was parsed) re-arms the no-data one, so keep-alive comments do not count.
    """

    __slots__ = (
        "_chunks",
        "_config",
        "_ended",
        "_loop",
        "cap",
        "last_byte",
        "last_data",
        "response",
        "total_deadline",
    )

    def __init__(self, response: httpx.Response, config: BackendConfig, deadline: float) -> None:
        self.response = response
        self._config = config
        self._chunks = response.aiter_bytes()
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.last_byte = now
        self.last_data = now
        self.total_deadline = deadline
        self.cap: float | None = None  # an extra, shorter deadline (grace after the finish)
        self._ended = False

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    def data_seen(self) -> None:
        self.last_data = self.last_byte

    def grace(self, seconds: float) -> None:
        """The answer is complete: wait at most `seconds` more for the rest of the body."""
        cap = self._loop.time() + seconds
        self.cap = cap if self.cap is None else min(cap, self.cap)

    def _deadline(self) -> float:
        cfg = self._config
        deadline = min(
            self.last_byte + cfg.idle_timeout,
            self.last_data + cfg.no_data_timeout,
            self.total_deadline,
        )
        return deadline if self.cap is None else min(deadline, self.cap)

    async def read(self) -> bytes | None:
        """The next bytes of the body, or None at its clean end."""
        if self._ended:
            return None
        try:
            async with asyncio.timeout_at(self._deadline()):
                chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._ended = True
            return None
        except TimeoutError:
            raise self._timeout_error() from None
        except httpx.TransportError as exc:
            raise BackendError(
                ErrorKind.TRUNCATED, f"connection lost mid-stream: {describe_transport(exc)}"
            ) from None
        self.last_byte = self._loop.time()
        return chunk

    async def read_all(self, limit: int | None = None) -> bytes:
        """The rest of the body (at most about `limit` bytes)."""
        parts: list[bytes] = []
        size = 0
        while (chunk := await self.read()) is not None:
            parts.append(chunk)
            size += len(chunk)
            if limit is not None and size >= limit:
                break
        return b"".join(parts)

    async def drain(self) -> None:
        """Read what is left of a finished body (the chunked terminator) so the connection can
        serve another request. Bounded in time and in reads: a server that keeps talking after
        its terminal event is cut off (the connection is then closed, not reused)."""
        self.grace(0.25)
        with contextlib.suppress(BackendError):
            for _ in range(4):
                if await self.read() is None:
                    return

    async def aclose(self) -> None:
        """Close the body: a body not read to its end closes its connection at once."""
        await self._chunks.aclose()
        await self.response.aclose()

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


def describe_transport(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]


# --- The shared client ----------------------------------------------------------------------


class HTTPBackend:
    """The transport half of a backend: its httpx client, requests, and the retry policy.

    Subclasses implement `_attempt(request, deadline)`, one try yielding events; `_retrying`
    runs the tries as `_retry_delay` decides: never again once any text has been yielded,
    since a person has seen it and a second answer must not be glued onto it.
    """

    def __init__(self, config: BackendConfig, *, transport: Transport = "aiohttp") -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.transport: Transport = transport
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[str, httpx.URL] = {}  # each endpoint's URL, parsed once

    # The client belongs to the event loop that first used it (connections cannot move
    # between loops). A server has one loop, so this is one client per backend; a test or a
    # management command with a new loop gets a fresh one instead of a broken pool.
    @property
    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop or self._client.is_closed:
            self._client = make_client(self.config, self._url(""), self.transport)
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            # RuntimeError: made on a loop that is gone; nothing is left to close.
            with contextlib.suppress(RuntimeError):
                await client.aclose()

    # --- requests ---

    def _url(self, path: str) -> httpx.URL:
        url = self._urls.get(path)
        if url is None:
            absolute = path.startswith(("http://", "https://"))
            try:
                url = httpx.URL(path if absolute else self.base_url + path)
            except httpx.InvalidURL:
                raise BackendError(
                    ErrorKind.BAD_REQUEST, f"bad backend URL {self.base_url!r}"
                ) from None
            if url.scheme not in ("http", "https") or not url.host:
                raise BackendError(ErrorKind.BAD_REQUEST, f"bad backend URL {self.base_url!r}")
            if len(self._urls) < 32:
                self._urls[path] = url
        return url

    def _transport_error(self, exc: httpx.TransportError) -> BackendError:
        """What went wrong before a response, in words; httpx_aiohttp keeps aiohttp's own
        exception as the cause, which tells more than the httpx type it is mapped to."""
        where = self.base_url
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientHttpProxyError):
            detail = f"cannot reach {where} through the proxy: {cause.status} {cause.message}"
            if cause.status == 407:  # the proxy wants (other) credentials: no use trying again
                return BackendError(
                    ErrorKind.UNREACHABLE, redact(detail, self.config.api_key), retryable=False
                )
        elif isinstance(cause, aiohttp.ClientProxyConnectionError) or isinstance(
            exc, httpx.ProxyError
        ):
            detail = f"cannot reach {where} through the proxy: {describe_transport(exc)}"
        elif isinstance(cause, aiohttp.ConnectionTimeoutError) or (
            cause is None and isinstance(exc, httpx.ConnectTimeout)
        ):
            return BackendError(
                ErrorKind.TIMEOUT,
                f"connect timeout: {where} did not accept a connection within "
                f"{self.config.connect_timeout:g} s",
                retryable=True,
            )
        elif isinstance(cause, aiohttp.ServerDisconnectedError) or (
            cause is None and isinstance(exc, httpx.RemoteProtocolError)
        ):
            detail = f"{where} closed the connection without answering: {describe_transport(exc)}"
        elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return BackendError(ErrorKind.BAD_REQUEST, f"bad backend URL {where!r}")
        elif isinstance(cause, aiohttp.ClientConnectorError) or isinstance(exc, httpx.ConnectError):
            # Refused, DNS, TLS: the server cannot be talked to now.
            detail = (
                f"cannot connect to {where} (is the server running?): {describe_transport(exc)}"
            )
        else:
            detail = f"no response from {where}: {describe_transport(exc)}"
        return BackendError(ErrorKind.UNREACHABLE, redact(detail, self.config.api_key))

    async def _open(
        self, method: str, path: str, body: dict[str, Any] | None, deadline: float
    ) -> httpx.Response:
        """Send a request; the response once its headers arrived (its body not yet read)."""
        if any(c in self.config.api_key for c in "\r\n\0"):
            raise BackendError(
                ErrorKind.AUTH, "the API key has characters that cannot be sent in a header"
            )
        client = self.client
        request = client.build_request(
            method,
            self._url(path),
            content=orjson.dumps(body) if body is not None else None,
            headers=JSON_BODY if body is not None else None,
        )
        loop = asyncio.get_running_loop()
        # Waiting for the headers counts against the idle limit (no byte yet) and the total.
        header_deadline = min(
            deadline, loop.time() + self.config.connect_timeout + self.config.idle_timeout
        )
        try:
            async with asyncio.timeout_at(header_deadline):
                return await client.send(request, stream=True)
        except TimeoutError:
            which = (
                "total deadline"
                if loop.time() >= deadline
                else f"idle timeout: no response for {self.config.idle_timeout:g} s"
            )
            raise BackendError(ErrorKind.TIMEOUT, which, retryable=True) from None
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None

    @contextlib.asynccontextmanager
    async def _exchange(
        self, method: str, path: str, body: dict[str, Any] | None, deadline: float
    ) -> AsyncIterator[TimedBody]:
        """One request: its successful response's body, drained afterwards so the connection
        can be reused; an error status raises (`error_from_response`). Leaving early (an
        error, a Stop) closes the connection at once."""
        response = await self._open(method, path, body, deadline)
        reader = TimedBody(response, self.config, deadline)
        try:
            if response.status_code >= 400:
                await self._raise_for_status(reader, deadline)
            yield reader
            await reader.drain()
        finally:
            await reader.aclose()

    async def _raise_for_status(self, reader: TimedBody, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        reader.cap = min(deadline, loop.time() + META_TIMEOUT)
        body = b""
        with contextlib.suppress(BackendError):
            body = await reader.read_all(MAX_ERROR_BODY)  # classify with whatever arrived
        response = reader.response
        raise error_from_response(
            response.status_code, body[:MAX_ERROR_BODY], response.headers, self.config.api_key
        )

    async def _get_json(
        self, path: str, body: dict[str, Any] | None = None, timeout: float = META_TIMEOUT
    ) -> Any:
        """A small metadata request (GET, or POST when `body` is given)."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._exchange("GET" if body is None else "POST", path, body, deadline) as got:
            try:
                raw = await got.read_all()
            except BackendError as exc:
                if exc.kind is ErrorKind.TIMEOUT:
                    raise BackendError(
                        ErrorKind.TIMEOUT, f"{path} took longer than {timeout:g} s"
                    ) from None
                raise
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BackendError(ErrorKind.PROTOCOL, f"{path} did not return JSON") from None

    # --- streaming with retries ---

    def _attempt(self, request: Any, deadline: float) -> AsyncIterator[Event]:
        """One try: send the request and yield its events (the protocol modules)."""
        raise NotImplementedError

    async def _retrying(self, request: Any) -> AsyncIterator[Event]:
        """`_attempt` until one succeeds, as `_retry_delay` allows."""
        deadline = asyncio.get_running_loop().time() + self.config.total_timeout
        failures = 0
        while True:
            text_sent = False
            try:
                # aclosing: closing this generator (a Stop) closes the try's connection now,
                # not when the garbage collector finds it.
                async with contextlib.aclosing(self._attempt(request, deadline)) as events:
                    async for event in events:
                        if type(event) is Reasoning or type(event) is Answer:
                            text_sent = True
                        yield event
                return
            except BackendError as exc:
                failures += 1
                delay = self._retry_delay(exc, failures, text_sent, deadline)
            await asyncio.sleep(delay)

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


JSON_BODY = {"Content-Type": "application/json"}


# --- Shared request and model helpers -------------------------------------------------------


def clean_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """History as `{role, content}` only (§4.5): reasoning is never sent back to a model.

    Extra keys (`reasoning_content`, `thinking`) are dropped: DeepSeek R1-era models answer
    400 to them. An assistant turn that still starts with a `<think>` block (text stored by
    an older client) loses that block. A user turn's `images` (`[{content_type, data}]`,
    base64) are kept for the backend to send in its own protocol's shape.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        role = str(message.get("role", "user"))
        content = str(message.get("content") or "")
        if role == "assistant" and content.lstrip().startswith("<think>"):
            end = content.find("</think>")
            if end >= 0:
                content = content[end + len("</think>") :].lstrip()
        item: dict[str, Any] = {"role": role, "content": content}
        if role == "user" and message.get("images"):
            item["images"] = list(message["images"])
        out.append(item)
    return out


def name_always_thinks(name: str) -> bool:
    """Model names that by convention always reason (R1 distills, QwQ, "-thinking" variants)."""
    low = name.lower()
    return any(part in low for part in ("r1", "reasoner", "qwq", "think"))
