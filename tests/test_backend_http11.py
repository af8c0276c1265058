"""The model requests' own HTTP/1.1 client (conversations/backends/http11.py): real loopback
servers, the simulator and small raw ones that misbehave on purpose."""

from __future__ import annotations

import asyncio
import gc
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from conversations.admission import admission
from conversations.backends import retry
from conversations.backends.base import Answer, BackendConfig, ErrorKind, Reasoning
from conversations.backends.http11 import _read_head
from conversations.backends.openai import OpenAIBackend
from conversations.backends.transport import AsyncioStream, _Protocol, request_written
from conversations.simulator import Scenario, Simulator
from tests.test_backend_scenarios import collect, make_backend, make_request


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[Simulator]:
    simulator.reset()
    simulator.scenario = Scenario(profile="deepseek", reasoning_tokens=3, answer_tokens=3)
    yield simulator
    simulator.reset()


def peers(sim: Simulator) -> set[object]:
    return {r.extra.get("peer") for r in sim.requests}


async def test_streams_and_metadata_share_one_kept_alive_connection(sim: Simulator) -> None:
    backend = make_backend(sim, "deepseek")
    for _ in range(3):
        got = await collect(backend, make_request("deepseek"))
        assert got.error is None and got.answer
    await backend.list_models()  # a Content-Length body on the same connection
    assert len(sim.requests) == 4 and len(peers(sim)) == 1
    assert backend._pool is not None and backend._pool.idle_count == 1  # type: ignore[attr-defined]
    await backend.aclose()


async def test_the_request_is_written_before_the_loop_turns(sim: Simulator) -> None:
    """On loopback the connection is made by the time connect() returns: the request leaves
    in the same turn of the event loop as the question (what lets a burst of questions reach
    the model as they come instead of in one late wave)."""
    backend = make_backend(sim, "deepseek")
    turns = 0

    def tick() -> None:
        nonlocal turns
        turns += 1

    written: list[int] = []

    def on_written() -> None:
        written.append(turns)

    for fresh in (True, False):  # a new connection, then a pooled one
        written.clear()
        request_written.set(on_written)
        turns = 0
        asyncio.get_running_loop().call_soon(tick)  # counts the first turn of the loop
        stream = backend.stream_chat(make_request("deepseek"))
        first = await anext(stream)
        assert written == [0], f"fresh={fresh}"
        assert first is not None
        async for _event in stream:
            pass
    assert len(peers(sim)) == 1
    await backend.aclose()


# --- raw servers ----------------------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        count = 0

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal count
            count += 1
            try:
                await handler(reader, writer, count)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()


def sse(*texts: str) -> bytes:
    events = b"".join(
        b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % t.encode() for t in texts
    )
    events += b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    events += b"data: [DONE]\n\n"
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(events), events)


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def backend_for(url: str) -> OpenAIBackend:
    return OpenAIBackend(
        BackendConfig(kind="openai", base_url=url, max_tries=1, backoff_base=0.01,
                      backoff_max=0.01, idle_timeout=5)
    )  # fmt: skip


async def test_a_kept_connection_the_server_dropped_is_replaced(raw_server) -> None:  # type: ignore[no-untyped-def]
    """The server answers one request per connection, then closes the next one it reads
    without a word: the second question goes again on a new connection and is answered."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + sse(f"answer {n}"))
        await writer.drain()
        await read_request(reader)  # the next request on this connection: dropped

    backend = backend_for(await raw_server(handler))
    first = await collect(backend, make_request("deepseek"))
    second = await collect(backend, make_request("deepseek"))
    assert first.error is None and first.answer == "answer 1"
    assert second.error is None and second.answer == "answer 2"
    await backend.aclose()


async def test_interim_responses_are_skipped_and_close_is_honoured(raw_server) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n")
            writer.write(STREAM_HEAD.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            writer.write(sse(f"on connection {n}"))
            await writer.drain()

    backend = backend_for(await raw_server(handler))
    for n in (1, 2):
        got = await collect(backend, make_request("deepseek"))
        assert got.error is None and got.answer == f"on connection {n}"
    assert backend._pool is not None and backend._pool.idle_count == 0
    await backend.aclose()


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (b"SPDY/3 200 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000, "headers are too long"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc",
            "compressed its answer (gzip) unasked",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "unsupported transfer coding",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "malformed Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n", "middle of the headers"),
        (b"", "disconnected without sending a response"),
    ],
)
async def test_a_broken_response_is_a_clear_error(raw_server, reply: bytes, words: str) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    backend = backend_for(await raw_server(handler))
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.UNREACHABLE
    assert words in got.error.detail
    await backend.aclose()


async def test_an_error_status_is_read_and_classified(raw_server) -> None:  # type: ignore[no-untyped-def]
    body = b'{"error": {"message": "Insufficient Balance"}}'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        request = await read_request(reader)
        assert b"Accept-Encoding: identity\r\n" in request
        assert b"Authorization: Bearer sk-test\r\n" in request
        head = b"HTTP/1.1 402 Payment Required\r\nContent-Type: application/json\r\n"
        writer.write(head + b"Content-Length: %d\r\nRetry-After: 7\r\n\r\n%s" % (len(body), body))
        await writer.drain()

    url = await raw_server(handler)
    backend = OpenAIBackend(BackendConfig(kind="openai", base_url=url, api_key="sk-test"))
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.NO_BALANCE
    assert "Insufficient Balance" in got.error.detail and got.error.retry_after == 7
    await backend.aclose()


async def test_an_api_key_that_is_no_header_value_is_refused(sim: Simulator) -> None:
    backend = make_backend(sim, "deepseek", api_key="sk\r\nX-Evil: 1")
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.AUTH
    assert "cannot be sent in a header" in got.error.detail
    assert not sim.requests
    await backend.aclose()


async def test_a_url_that_is_not_http_is_refused() -> None:
    backend = OpenAIBackend(BackendConfig(kind="openai", base_url="ftp://127.0.0.1:9"))
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind is ErrorKind.BAD_REQUEST
    assert "bad backend URL" in got.error.detail
    await backend.aclose()


async def test_the_pool_keeps_at_most_its_limit_of_idle_connections(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retry, "MAX_IDLE_CONNECTIONS", 16)
    backend = make_backend(sim, "deepseek")
    results = await asyncio.gather(*(collect(backend, make_request("deepseek")) for _ in range(20)))
    assert all(r.error is None for r in results)
    assert len(peers(sim)) == 20
    assert backend._pool is not None and backend._pool.idle_count == 16  # type: ignore[attr-defined]
    sim.requests.clear()
    await collect(backend, make_request("deepseek"))
    assert len(peers(sim)) == 1
    await backend.aclose()
    assert backend._pool is None  # type: ignore[attr-defined]


async def test_a_stream_nobody_reads_during_a_burst_waits_in_the_kernel_and_loses_nothing(
    sim: Simulator,
) -> None:
    """A stream held while a burst of questions is taken (conversations.admission) stops
    reading its socket at the next data; reading resumes when the stream is read again."""
    sim.scenario = Scenario(profile="deepseek", reasoning_tokens=30, answer_tokens=30,
                            token_rate=200)  # fmt: skip
    backend = make_backend(sim, "deepseek")
    before = set(map(id, _protocols()))  # (other tests' connections may still be open)
    stream = backend.stream_chat(make_request("deepseek"))
    events = [await anext(stream)]
    [protocol] = [p for p in _protocols() if id(p) not in before]
    gate = admission()
    flood = True

    async def tab() -> None:  # questions always waiting for their turn
        while flood:
            await gate.turn()

    feeders = [asyncio.create_task(tab()) for _ in range(3)]
    await asyncio.sleep(0.15)  # ~30 tokens come meanwhile; nobody reads them
    assert protocol.reading_paused and not protocol.transport.is_reading()
    held = len(protocol.buffer)
    await asyncio.sleep(0.1)
    assert len(protocol.buffer) == held  # the rest waits in the kernel
    flood = False
    await asyncio.gather(*feeders)
    events += [event async for event in stream]
    reasoning = "".join(e.text for e in events if isinstance(e, Reasoning))
    answer = "".join(e.text for e in events if isinstance(e, Answer))
    assert (reasoning, answer) == sim.expected()
    await backend.aclose()


def _protocols() -> list[_Protocol]:
    """The open connections of the backends' client in this process."""
    return [p for p in gc.get_objects() if type(p) is _Protocol and p.transport is not None
            and not p.transport.is_closing()]  # fmt: skip


async def test_a_paused_connection_is_read_again_for_the_next_response_head() -> None:
    """A kept-alive connection paused while nobody read it still gets its next response."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(_Protocol, "127.0.0.1", port)
    transport.pause_reading()  # as data_received does in a burst
    protocol.reading_paused = True
    stream = AsyncioStream(transport, protocol)
    await stream.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _reason, _version, _headers = await asyncio.wait_for(_read_head(stream), 2.0)
    assert status == 200 and not protocol.reading_paused
    transport.close()
    server.close()
    await server.wait_closed()


# --- connections opened ahead of the questions ---------------------------------------------


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_each_expected_tab_has_a_connection_ready_before_it_asks(raw_server) -> None:  # type: ignore[no-untyped-def]
    """Three tabs open: three connections are made before any question and kept idle; the
    three questions then go over them, with no new connection; tabs that close and open again
    find theirs still there."""
    connected: list[int] = []
    served: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        connected.append(n)
        while True:
            await read_request(reader)  # (IncompleteReadError once the client closes it)
            served.append(n)
            writer.write(STREAM_HEAD + sse("hi"))
            await writer.drain()

    backend = backend_for(await raw_server(handler))
    for _ in range(3):
        backend.tab_opened()
    pool = backend.pool
    await _until(lambda: pool.idle_count == 3)
    assert sorted(connected) == [1, 2, 3] and served == []

    results = await asyncio.gather(*(collect(backend, make_request("deepseek")) for _ in range(3)))
    assert [r.answer for r in results] == ["hi"] * 3
    assert sorted(served) == [1, 2, 3] and len(connected) == 3

    for _ in range(3):
        backend.tab_closed()
    backend.tab_opened()  # three idle connections already: nothing more to open
    await asyncio.sleep(0.05)
    assert len(connected) == 3 and pool.idle_count == 3
    await backend.aclose()


async def test_a_tab_opened_before_an_unreachable_server_changes_nothing() -> None:
    """Nothing listens: the connection made ahead fails quietly; the question says why."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    backend = backend_for(url)
    backend.tab_opened()
    pool = backend.pool
    await _until(lambda: not any(pool._warming.values()))
    assert pool.idle_count == 0
    got = await collect(backend, make_request("deepseek"))
    assert got.error is not None and got.error.kind == ErrorKind.UNREACHABLE
    await backend.aclose()


async def test_closing_the_pool_stops_the_connections_being_made(raw_server) -> None:  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.read()

    backend = backend_for(await raw_server(handler))
    for _ in range(5):
        backend.tab_opened()
    pool = backend.pool
    opening = {task for tasks in pool._warming.values() for task in tasks}
    await backend.aclose()
    await asyncio.gather(*opening, return_exceptions=True)
    assert pool.idle_count == 0
