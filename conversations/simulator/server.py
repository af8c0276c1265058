"""The simulator's HTTP/1.1 server, on raw asyncio streams so every byte and TCP write is ours.

One connection is served by two tasks: a pump that reads whatever the client sends (so an EOF is
seen at once, even while a response is sleeping between tokens) and the handler that parses
requests from the pump's buffer and writes responses. Keep-alive and chunked transfer encoding
let httpx reuse connections as it would with a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import socket
import struct
import threading
import time
from email.utils import formatdate
from typing import Any

import orjson

from .scenario import (
    OLLAMA_PROFILES,
    OPENAI_MODELS_ALL,
    Scenario,
    SimRequest,
)
from .wire import (
    Chat,
    Reply,
    error_reply,
    fixed_ctx,
    json_reply,
    live_ctx,
    ollama_body,
    ollama_stream,
    openai_body,
    openai_stream,
    prepare_ollama,
    prepare_openai,
    profile_for,
    protocol_of,
    reason_phrase,
)

MAX_BODY = 10 * 1024 * 1024
MAX_HEAD = 64 * 1024
# Reply status of fault "no_response": the connection is closed instead of answering.
NO_RESPONSE = 0
_RESET_GRACE = 0.05  # let the client read the partial frames before the RST discards them
_FAMILIES = {
    "deepseek-r1": ("qwen2", "8.2B"),
    "qwen3": ("qwen3", "8.2B"),
    "llama3.2": ("llama", "3.2B"),
}
_DEFAULT_PROMPT = [{"role": "user", "content": "How are mass and energy related?"}]


def _wake(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _default_body(protocol: str) -> dict[str, Any]:
    model = "deepseek-r1:sim" if protocol == "ollama" else "deepseek-v4-flash"
    return {"model": model, "messages": _DEFAULT_PROMPT, "stream": True}


def _prepare(scenario: Scenario, protocol: str, body: Any) -> Chat | Reply:
    if protocol == "ollama":
        return prepare_ollama(scenario, body)
    return prepare_openai(scenario, body)


class _Connection:
    def __init__(
        self, sim: Simulator, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.eof = False
        self.closing = False  # we end it ourselves: not a client disconnect
        self.current: SimRequest | None = None
        self.task: asyncio.Task[None] | None = None
        self._data_waiter: asyncio.Future[None] | None = None
        self._pause_waiter: asyncio.Future[None] | None = None
        self.peer = writer.get_extra_info("peername")

    # --- reading ---

    async def pump(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.buf += data
                _wake(self._data_waiter)
        except (ConnectionError, OSError):
            pass
        finally:
            self.eof = True
            request = self.current
            if request is not None and not self.closing and request.ended_at is None:
                self.sim._mark_disconnected(request)
            _wake(self._data_waiter)
            _wake(self._pause_waiter)

    async def _wait_data(self) -> None:
        future = self.loop.create_future()
        self._data_waiter = future
        try:
            await future
        finally:
            self._data_waiter = None

    async def pause_until(self, deadline: float) -> bool:
        """Sleep until `deadline` (monotonic) or the client leaves; False if it left."""
        if self.eof:
            return False
        delay = deadline - time.monotonic()
        if delay <= 0:
            return True
        future = self.loop.create_future()
        self._pause_waiter = future
        handle = self.loop.call_later(delay, _wake, future)
        try:
            await future
        finally:
            handle.cancel()
            self._pause_waiter = None
        return not self.eof

    async def read_request(self) -> SimRequest | None:
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            if len(self.buf) > MAX_HEAD:
                await self._refuse(431, "request headers too large")
                return None
            if self.eof:
                return None
            await self._wait_data()
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            await self._refuse(400, "malformed request line")
            return None
        method, target, _version = parts
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                await self._refuse(400, "malformed header line")
                return None
            headers[name.strip().lower()] = value.strip()
        path, _, query = target.partition("?")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._refuse(501, "chunked request bodies are not supported")
            return None
        try:
            length = int(headers.get("content-length", "0") or "0")
        except ValueError:
            await self._refuse(400, "bad Content-Length")
            return None
        if length > MAX_BODY:
            await self._refuse(413, "request body too large")
            return None
        while len(self.buf) < length:
            if self.eof:
                return None
            await self._wait_data()
        raw = bytes(self.buf[:length])
        del self.buf[:length]
        body: Any = None
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
        request = SimRequest(
            method=method,
            path=path,
            headers=headers,
            body=body,
            started_at=time.monotonic(),
            query=query,
            raw_body=raw,
            extra={"peer": self.peer},
        )
        self.sim.requests.append(request)
        return request

    async def _refuse(self, status: int, message: str) -> None:
        body = orjson.dumps({"error": message})
        self.writer.write(
            self._head(status, [("Content-Type", "application/json")], length=len(body), close=True)
            + body
        )
        self.closing = True
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    # --- writing ---

    @staticmethod
    def _head(
        status: int,
        headers: list[tuple[str, str]],
        *,
        length: int | None = None,
        chunked: bool = False,
        close: bool = False,
    ) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason_phrase(status)}", f"Date: {formatdate(usegmt=True)}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif length is not None:
            lines.append(f"Content-Length: {length}")
        lines.append("Connection: close" if close else "Connection: keep-alive")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _finish(self, request: SimRequest, status: int) -> None:
        request.status = status
        request.ended_at = time.monotonic()

    async def respond(self, request: SimRequest, reply: Reply, scenario: Scenario) -> bool:
        """Send `reply`; True if the connection can serve another request."""
        keep = request.headers.get("connection", "").lower() != "close"
        self.current = request
        if reply.status == NO_RESPONSE:
            # The request was read; the connection ends without a byte of answer, as when a
            # server closes an idle keep-alive connection just as a request arrives on it.
            self._finish(request, NO_RESPONSE)
            self.closing = True
            self.current = None
            return False
        try:
            if reply.delay > 0 and not await self.pause_until(time.monotonic() + reply.delay):
                return False
            if reply.steps is None:
                if self.eof:
                    return False
                self._finish(request, reply.status)
                head = self._head(
                    reply.status, reply.headers, length=len(reply.body), close=not keep
                )
                # A HEAD response announces the body's length but never carries it.
                self.writer.write(head if request.method == "HEAD" else head + reply.body)
                await self.writer.drain()
                return keep
            return await self._stream(request, reply, scenario, keep)
        except (ConnectionError, OSError):
            if not self.closing and request.ended_at is None:
                self.sim._mark_disconnected(request)
            return False
        finally:
            self.current = None

    async def _stream(
        self, request: SimRequest, reply: Reply, scenario: Scenario, keep: bool
    ) -> bool:
        assert reply.steps is not None
        chunked = scenario.transfer == "chunked"
        writer = self.writer
        writer.write(
            self._head(reply.status, reply.headers, chunked=chunked, close=not (keep and chunked))
        )

        def send(data: bytes) -> None:
            if request.first_data_at is None and (
                b"data:" in data or b"{" in data or b"error:" in data
            ):
                request.first_data_at = time.monotonic()
            writer.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)

        end: str | None = "ok"
        forever: tuple[float, bytes] | None = None
        if scenario.split_at is not None:
            # Pre-render the body and write it in exactly the requested pieces.
            parts: list[bytes] = []
            for delay, data, mode in reply.steps:
                if mode == "forever":
                    forever = (delay, data)
                    end = None
                    break
                parts.append(data)
                if mode is not None:
                    end = mode
                    break
            body = b"".join(parts)
            cuts = sorted({o for o in scenario.split_at if 0 < o < len(body)})
            for i, (a, b) in enumerate(itertools.pairwise([0, *cuts, len(body)])):
                if i and not await self.pause_until(time.monotonic() + scenario.split_pause):
                    return False
                if self.eof:
                    return False
                send(body[a:b])
                await writer.drain()
        else:
            deadline = time.monotonic()
            burst = 0
            for delay, data, mode in reply.steps:
                if delay > 0:
                    deadline += delay
                    if not await self.pause_until(deadline):
                        return False
                    burst = 0
                elif self.eof:
                    return False
                else:
                    burst += 1
                    if burst >= 64:  # as-fast-as-possible streams still let others run
                        burst = 0
                        await asyncio.sleep(0)
                if mode == "forever":
                    forever = (delay, data)
                    end = None
                    if data:
                        send(data)
                    break
                if data:
                    send(data)
                    await writer.drain()
                if mode is not None:
                    end = mode
                    break
        if forever is not None:
            interval, comment = forever
            interval = max(interval, 0.01)
            while await self.pause_until(time.monotonic() + interval):
                send(comment)
                await writer.drain()
            return False
        if end == "ok":
            self._finish(request, reply.status)
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                return keep
            self.closing = True
            writer.close()
            return False
        self._finish(request, reply.status)
        self.closing = True
        if end == "reset":
            await writer.drain()
            await asyncio.sleep(_RESET_GRACE)
            sock = writer.get_extra_info("socket")
            if sock is not None:
                # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:  # "drop": FIN after the partial body, no terminator
            writer.close()
        return False

    async def serve(self) -> None:
        pump = asyncio.ensure_future(self.pump())
        try:
            while not self.eof or self.buf:
                request = await self.read_request()
                if request is None:
                    break
                scenario = self.sim.scenario
                reply = self.sim._dispatch(request, scenario)
                if not await self.respond(request, reply, scenario):
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self.closing = True
            pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
            if not self.writer.transport.is_closing():
                self.writer.close()

    def abort(self) -> None:
        self.closing = True
        self.writer.transport.abort()
        if self.task is not None:
            self.task.cancel()


class Simulator:
    """A simulated reasoning model behind real Ollama and OpenAI-compatible HTTP endpoints."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        scenario: Scenario | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self._scenario = scenario or Scenario()
        self._default = self._scenario
        self._served = 0  # chat requests under the current scenario (for fail_first)
        self.requests: list[SimRequest] = []
        self._reported: set[int] = set()  # ids of requests wait_for_disconnect returned
        self._cond = threading.Condition()
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- configuration ---

    @property
    def scenario(self) -> Scenario:
        return self._scenario

    @scenario.setter
    def scenario(self, scenario: Scenario) -> None:
        self._served = 0
        self._scenario = scenario

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def reset(self) -> None:
        """Back to the default scenario; forget recorded requests."""
        self.scenario = self._default
        self.requests.clear()
        with self._cond:
            self._reported.clear()

    # --- lifecycle ---

    async def start(self) -> str:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.port, backlog=2048, limit=MAX_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.base_url

    async def stop_async(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        tasks = [conn.task for conn in conns if conn.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)

    def start_in_thread(self) -> str:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="r1chat-simulator", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self.base_url

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.stop_async(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._loop = self._thread = None

    # --- what tests ask ---

    def _next_disconnect(self) -> SimRequest | None:
        for request in list(self.requests):
            if request.client_disconnected and id(request) not in self._reported:
                self._reported.add(id(request))
                return request
        return None

    def wait_for_disconnect(self, timeout: float = 5.0) -> SimRequest | None:
        """The next request whose client went away (blocks up to `timeout` seconds)."""
        with self._cond:
            found: list[SimRequest | None] = [None]

            def ready() -> bool:
                found[0] = self._next_disconnect()
                return found[0] is not None

            self._cond.wait_for(ready, timeout)
            return found[0]

    async def await_disconnect(self, timeout: float = 5.0) -> SimRequest | None:
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                request = self._next_disconnect()
            if request is not None or time.monotonic() >= deadline:
                return request
            await asyncio.sleep(0.005)

    def _mark_disconnected(self, request: SimRequest) -> None:
        if request.client_disconnected:
            return
        request.disconnected_at = time.monotonic()
        request.client_disconnected = True
        with self._cond:
            self._cond.notify_all()

    def expected(
        self,
        scenario: Scenario | None = None,
        request_body: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> tuple[str, str]:
        """(reasoning, answer) a correct client keeps, after §4.3's whitespace rules."""
        scenario = scenario or self.scenario
        protocol = self._protocol_for(scenario, path)
        if scenario.fault in ("http_error", "no_response"):
            return ("", "")
        chat = _prepare(scenario, protocol, request_body or _default_body(protocol))
        if isinstance(chat, Reply):
            return ("", "")
        return chat.plan.kept

    def render_body(
        self,
        scenario: Scenario | None = None,
        request_body: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> bytes:
        """The decoded response body `scenario` produces (endless keep-alives: three of them)."""
        scenario = scenario or self.scenario
        protocol = self._protocol_for(scenario, path)
        reply = self._chat_reply(scenario, protocol, request_body or _default_body(protocol), True)
        if reply.steps is None:
            return reply.body
        parts: list[bytes] = []
        for _delay, data, mode in reply.steps:
            parts.append(data * 3 if mode == "forever" else data)
            if mode is not None:
                break
        return b"".join(parts)

    @staticmethod
    def _protocol_for(scenario: Scenario, path: str | None) -> str:
        if path is not None:
            return protocol_of(path) or "openai"
        return "ollama" if scenario.profile in OLLAMA_PROFILES else "openai"

    # --- serving ---

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(self, reader, writer)
        conn.task = asyncio.current_task()  # type: ignore[assignment]
        self._conns.add(conn)
        try:
            await conn.serve()
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(conn)

    def _auth_error(self, request: SimRequest, scenario: Scenario) -> Reply | None:
        if not self.api_key:
            return None
        header = request.headers.get("authorization", "")
        if header == f"Bearer {self.api_key}":
            return None
        given = header.removeprefix("Bearer ").strip()
        message = (
            f"Authentication Fails, Your api key: ****{given[-4:]} is invalid"
            if given
            else "Authentication Fails (no such user)"
        )
        return error_reply(profile_for(scenario, "openai"), 401, message=message)

    def _dispatch(self, request: SimRequest, scenario: Scenario) -> Reply:
        method, path = request.method, request.path
        protocol = protocol_of(path)
        if protocol is not None:
            if method != "POST":
                return _plain(405, "405 method not allowed")
            if protocol == "openai" and (denied := self._auth_error(request, scenario)):
                return denied
            request.profile = profile_for(scenario, protocol)
            self._served += 1
            if self._served <= scenario.fail_first:
                return error_reply(
                    request.profile,
                    scenario.http_status,
                    message=scenario.error_message,
                    envelope=scenario.error_envelope,
                    retry_after=scenario.retry_after,
                )
            body = request.body
            if protocol == "ollama" and not request.raw_body:
                body = None
            return self._chat_reply(scenario, protocol, body, False)
        if path in ("/models", "/v1/models", "/user/balance", "/v1/user/balance"):
            if method != "GET":
                return _plain(405, "405 method not allowed")
            if denied := self._auth_error(request, scenario):
                return denied
            if path.endswith("/models"):
                return json_reply(200, _openai_models())
            return json_reply(200, _BALANCE)
        if path.startswith("/api/"):
            return self._ollama_meta(request, scenario)
        if path == "/" and method in ("GET", "HEAD"):
            return Reply(200, [("Content-Type", "text/plain; charset=utf-8")], b"Ollama is running")
        return _plain(404, "404 page not found")

    def _chat_reply(self, scenario: Scenario, protocol: str, body: Any, fixed: bool) -> Reply:
        profile = profile_for(scenario, protocol)
        if scenario.fault == "no_response" and not fixed:
            return Reply(NO_RESPONSE, [])
        if scenario.fault == "http_error":
            return error_reply(
                profile,
                scenario.http_status,
                message=scenario.error_message,
                envelope=scenario.error_envelope,
                retry_after=scenario.retry_after,
            )
        chat = _prepare(scenario, protocol, body)
        if isinstance(chat, Reply):
            return chat
        ctx = fixed_ctx(scenario, chat) if fixed else live_ctx(scenario, chat)
        if chat.stream:
            if protocol == "ollama":
                headers = [("Content-Type", "application/x-ndjson")]
                return Reply(200, headers, steps=ollama_stream(ctx))
            headers = [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Cache-Control", "no-cache"),
            ]
            return Reply(200, headers, steps=openai_stream(ctx))
        return _whole_reply(ctx, protocol)

    def _ollama_meta(self, request: SimRequest, scenario: Scenario) -> Reply:
        method, path = request.method, request.path
        models = scenario.models
        if path == "/api/version" and method == "GET":
            return json_reply(200, {"version": scenario.ollama_version})
        if path == "/api/tags" and method == "GET":
            return json_reply(200, {"models": [_ollama_tag(name) for name in models]})
        if path == "/api/show" and method == "POST":
            body = request.body if isinstance(request.body, dict) else {}
            name = body.get("model") or body.get("name")
            if not isinstance(name, str) or not name:
                return json_reply(400, {"error": "model is required"})
            if name not in models:
                return json_reply(404, {"error": f"model '{name}' not found"})
            return json_reply(200, _ollama_show(name, models[name]))
        return _plain(404, "404 page not found")


def _whole_reply(ctx: Any, protocol: str) -> Reply:
    """A `stream: false` reply: the whole message at once, after the time generating it takes."""
    scenario, plan = ctx.scenario, ctx.chat.plan
    body = ollama_body(ctx) if protocol == "ollama" else openai_body(ctx)
    headers = [("Content-Type", "application/json; charset=utf-8")]
    tokens = len(plan.reasoning) + len(plan.answer)
    delay = scenario.first_token_delay + (
        tokens / scenario.token_rate if scenario.token_rate else 0
    )
    fault = plan.fault
    if fault == "stall":
        delay += scenario.stall_seconds
    if fault == "midstream_error":
        reply = error_reply(ctx.chat.profile, 500, message=scenario.error_message)
        reply.delay = delay
        return reply
    if fault in ("drop", "reset", "cut_mid_line"):
        end = "reset" if fault == "reset" else "drop"
        part = body[: len(body) // 2] if fault == "cut_mid_line" else b""
        return Reply(200, headers, steps=iter([(delay, part, None), (0.0, b"", end)]))
    if fault == "malformed_line":
        return Reply(200, headers, b"<html>upstream hiccup</html>", delay=delay)
    # DeepSeek holds a waiting non-streaming request open with blank lines (docs §1.2).
    blank = protocol == "openai" and ctx.chat.profile in ("deepseek", "deepseek-legacy")
    if fault == "keepalive_only":
        filler = b"\n" if blank else b""
        return Reply(200, headers, steps=iter([(scenario.keepalive_interval, filler, "forever")]))
    if blank and scenario.keepalives_before:
        steps: list[tuple[float, bytes, str | None]] = [
            (scenario.keepalive_interval, b"\n", None) for _ in range(scenario.keepalives_before)
        ]
        steps += [(delay, body, None), (0.0, b"", "ok")]
        return Reply(200, headers, steps=iter(steps))
    return Reply(200, headers, body, delay=delay)


def _plain(status: int, text: str) -> Reply:
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8")], text.encode())


def _openai_models() -> dict[str, Any]:
    owners = {"r1-distill-sim": "vllm"}
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "owned_by": owners.get(name, "deepseek")}
            for name in OPENAI_MODELS_ALL
        ],
    }


_BALANCE = {
    "is_available": True,
    "balance_infos": [
        {
            "currency": "CNY",
            "total_balance": "110.00",
            "granted_balance": "10.00",
            "topped_up_balance": "100.00",
        }
    ],
}


def _family(name: str) -> tuple[str, str]:
    return _FAMILIES.get(name.split(":")[0], ("llama", "8.0B"))


def _ollama_details(name: str) -> dict[str, Any]:
    family, size = _family(name)
    return {
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": size,
        "quantization_level": "Q4_K_M",
    }


def _ollama_tag(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": name,
        "modified_at": "2026-03-09T20:20:30.224918890Z",
        "size": 5_225_376_047,
        "digest": hashlib.sha256(name.encode()).hexdigest(),
        "details": _ollama_details(name),
    }


def _ollama_show(name: str, capabilities: list[str]) -> dict[str, Any]:
    family, _size = _family(name)
    thinking = "thinking" in capabilities
    template = "{{ .Prompt }}<｜Assistant｜>" + ("<think>\n" if thinking else "")
    return {
        "modelfile": f'# Modelfile generated by "ollama show"\nFROM {name}\n',
        "parameters": 'stop "<｜end▁of▁sentence｜>"\ntemperature 0.6',
        "template": template,
        "details": _ollama_details(name),
        "model_info": {
            "general.architecture": family,
            "general.parameter_count": 8_190_735_360,
            f"{family}.context_length": 131072,
        },
        "capabilities": list(capabilities),
        "modified_at": "2026-03-09T20:20:30.224918890Z",
    }
