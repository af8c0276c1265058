#!/usr/bin/env python
"""Relay benchmark: N chat streams through r1chat beside the same streams read from the model
simulator directly, in one run.

    .venv/bin/python bench/relay.py --streams 100                    # the budget's steady load
    .venv/bin/python bench/relay.py --streams 200 --arrival burst    # 200 questions at once
    .venv/bin/python bench/relay.py --arrival single --streams 10    # one stream at a time

Three processes: the simulator (`manage.py simulate_models`), one r1chat server (Daphne, this
file with --serve, counting database writes), and this client. A round is two phases back to
back: the N streams read straight from the simulator (a light client on connections opened
before), and N chat messages sent over N WebSockets to r1chat; the order alternates from round
to round, and each round's added time to first token is the difference of its two phases, so
that the machine's speed, which drifts from one minute to the next, weighs on both.

Arrivals (`--arrival`): `spread` (the budget) sends the N questions evenly over
`--spread-seconds`; `burst` sends them in the same instant; `single` sends them one at a time,
each after the previous stream ended.

Printed, one line per figure: each round's time to first token on both sides, streams complete,
tokens delivered (text equal to the simulator's, every `seq` once and in order), time to first
token added by r1chat (p50/p99, the median of the rounds), added per-frame latency (p50/p99),
server CPU seconds per 1,000 tokens, server memory, and database writes per message.
`--json FILE` writes the same figures as JSON.

    .venv/bin/python bench/relay.py --streams 100 --processes 2 --redis redis://127.0.0.1:6379/8

The team shape (DESIGN.md "Scale-out"): two r1chat servers on a fresh PostgreSQL database
(`r1chat_bench_<pid>` on 127.0.0.1:5432, user postgres; dropped at the end) and Redis (keys
under a per-run prefix, deleted at the end), half of the sockets on each. CPU and database
writes are the servers' sum; memory and CPU are also given per server. In each r1chat round,
`--followers` tabs on the second server follow generations that run on the first (the same user
subscribes to the new conversation): whether they got every frame and how late; and
`--stops` extra questions on the first server are stopped from a tab on the second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from bisect import bisect_left
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
STALL_SECONDS = 30.0  # no frame for this long: the stream is reported "stalled"
SETTLE_SECONDS = 3.0  # after each phase: the last writes and title requests settle
OPEN_SECONDS = 2.0  # every connection and socket is open before the first question
SINGLE_PAUSE = 0.5  # single arrivals: the pause between one stream's end and the next question
STOP_AFTER = 2.0  # team mode: seconds after its first token that a stop question is stopped
QUESTION = "How are mass and energy related?"
MS = 1000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Marks:
    """When a stream's text arrived: seconds since its question, and its characters so far.

    Kept in arrays of machine numbers, which the garbage collector never walks: this client
    times ~10,000 frames a second, and a collection walking millions of tuples would hold every
    reader for tens of milliseconds and read as latency of whichever side was being measured."""

    __slots__ = ("chars", "times")

    def __init__(self) -> None:
        self.times = array("d")
        self.chars = array("q")

    def add(self, t: float, chars: int) -> None:
        self.times.append(t)
        self.chars.append(chars)

    def __len__(self) -> int:
        return len(self.times)


# --- the server process ---------------------------------------------------------------------


def serve(port: int, writes_file: str) -> None:
    """Run r1chat under Daphne, counting INSERT/UPDATE/DELETE statements into a file."""
    import django

    django.setup()
    from django.db.backends.signals import connection_created

    counter = {"writes": 0}
    lock = threading.Lock()

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip()[:6].upper() in {"INSERT", "UPDATE", "DELETE"}:
            with lock:
                counter["writes"] += 1
                if os.environ.get("BENCH_LOG_WRITES"):
                    with open(writes_file + ".log", "a") as log:
                        log.write(sql[:120].replace("\n", " ") + "\n")
        return execute(sql, params, many, context)

    def on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
        if count not in connection.execute_wrappers:  # the signal fires again on reconnects
            connection.execute_wrappers.append(count)

    connection_created.connect(on_connect)

    def dump() -> None:
        written = None
        while True:
            if counter["writes"] != written:
                written = counter["writes"]
                Path(writes_file).write_text(json.dumps(counter))
            time.sleep(0.5)

    threading.Thread(target=dump, daemon=True).start()
    from daphne.server import Server

    from r1chat.asgi import application

    server = Server(application, endpoints=[f"tcp:port={port}:interface=127.0.0.1"], verbosity=0)
    profile_path = os.environ.get("BENCH_PROFILE")
    if not profile_path:
        server.run()
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        server.run()  # returns when SIGTERM stops the reactor
    finally:
        profiler.disable()
        profiler.dump_stats(profile_path)


# --- arrivals ---------------------------------------------------------------------------------


async def arrive(args: Any, starts: list[Any]) -> None:
    """Run `starts` (each a function returning a stream's coroutine, called once the stream's
    connection is open) by the arrival pattern: after OPEN_SECONDS, every question at once
    (`burst`), evenly over `--spread-seconds` (`spread`), or one after another (`single`)."""
    if args.arrival == "single":
        for start in starts:
            ready = asyncio.Event()
            task = asyncio.create_task(start(ready))
            await asyncio.sleep(0.3)  # its connection open, as a kept-alive one would be
            ready.set()
            await task
            await asyncio.sleep(SINGLE_PAUSE)
        return
    go = asyncio.Event()
    spread = args.spread_seconds if args.arrival == "spread" else 0.0

    async def at(start: Any, after: float) -> None:
        ready = asyncio.Event()
        task = asyncio.create_task(start(ready))
        await go.wait()
        if after:
            await asyncio.sleep(after)
        ready.set()
        await task

    tasks = [asyncio.create_task(at(s, i * spread / len(starts))) for i, s in enumerate(starts)]
    await asyncio.sleep(OPEN_SECONDS)
    go.set()
    await asyncio.gather(*tasks)


# --- the simulator read directly -----------------------------------------------------------


def _direct_request(model: str) -> bytes:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "thinking": {"type": "enabled"},
        }
    ).encode()
    head = (
        "POST /chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _body_pieces(reader: asyncio.StreamReader, chunked: bool) -> Any:
    """The response body as it arrives: chunked transfer coding decoded, else until EOF."""
    if not chunked:
        while piece := await reader.read(65536):
            yield piece
        return
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            return
        yield (await reader.readexactly(size + 2))[:-2]


async def direct_stream(
    port: int, request: bytes, results: list[dict[str, Any]], ready: asyncio.Event
) -> None:
    """One stream read straight from the simulator, by a client as light as this file can make
    it: the connection is open before the question (as a kept-alive one would be), the request
    is one write, and the SSE lines are split by hand. (An HTTP client library spends its own
    CPU on every request before it reads the first reply, which would count as the simulator's
    time to first token.)"""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await ready.wait()
    start = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the simulator answered {head.splitlines()[0]!r}")
    chunked = b"transfer-encoding: chunked" in head.lower()
    marks = Marks()
    pieces: list[str] = []
    chars = 0
    first: float | None = None
    pending = b""
    async for piece in _body_pieces(reader, chunked):
        *lines, pending = (pending + piece).split(b"\n")
        text = ""
        done = False
        for line in lines:
            if not line.startswith(b"data: "):
                continue
            if line.startswith(b"data: [DONE]"):
                done = True
                break
            chunk = json.loads(line[6:])
            if chunk.get("choices"):
                delta = chunk["choices"][0].get("delta") or {}
                text += (delta.get("reasoning_content") or "") + (delta.get("content") or "")
        if text:
            now = time.perf_counter() - start
            first = now if first is None else first
            chars += len(text)
            pieces.append(text)
            marks.add(now, chars)
        if done:
            break
    writer.close()
    results.append(
        {"start": start, "ttft": first, "marks": marks, "chars": chars, "text": "".join(pieces)}
    )


async def phase_direct(args: Any, port: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    request = _direct_request(args.model)

    def starter(_i: int) -> Any:
        return lambda ready: direct_stream(port, request, results, ready)

    await arrive(args, [starter(i) for i in range(args.streams)])
    return {"streams": results}


# --- through r1chat ------------------------------------------------------------------------


class Seqs:
    """A tab's view of one message's `seq`s: each once and in order. A delta covers
    `from_seq`..`seq`; a snapshot sets the position."""

    def __init__(self) -> None:
        self.last = 0
        self.gaps = 0
        self.duplicates = 0

    def delta(self, frame: dict[str, Any]) -> None:
        seq = frame["seq"]
        start = frame.get("from_seq", seq)
        if start <= self.last:
            self.duplicates += 1
        elif start > self.last + 1:
            self.gaps += 1
        self.last = max(self.last, seq)

    @property
    def clean(self) -> bool:
        return not self.gaps and not self.duplicates


async def _connect(url: str, cookie: str) -> Any:
    from websockets.asyncio.client import connect

    origin = url.replace("ws://", "http://").split("/ws/")[0]
    headers = {"Cookie": cookie}
    return await connect(url, origin=origin, additional_headers=headers, max_size=2**24)  # type: ignore[arg-type]


async def _frames(ws: Any) -> Any:
    """The socket's frames, decoded, until it closes or stalls (then a `None`)."""
    from websockets.exceptions import ConnectionClosed

    while True:
        try:  # a stream whose frames stop (lost on the way) is counted, not waited for
            raw = await asyncio.wait_for(ws.recv(), STALL_SECONDS)
        except TimeoutError:
            yield {"type": "bench.stalled"}
            return
        except ConnectionClosed:
            yield {"type": "bench.closed"}
            return
        yield json.loads(raw)


async def app_stream(
    url: str,
    cookie: str,
    client_id: str,
    max_tokens: int,
    out: dict[str, Any],
    ready: asyncio.Event,
    stop: Any = None,
) -> None:
    """One question through r1chat: its frames timed, its text and `seq`s kept. `stop`, if
    given, is called with the assistant message's id once the first token is in (team mode:
    the question is stopped from another tab)."""
    async with await _connect(url, cookie) as ws:
        await ready.wait()
        start = time.perf_counter()
        out["start"] = start
        await ws.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation": None,
                    "content": QUESTION,
                    "client_id": client_id,
                    "settings": {"deep_think": True, "max_tokens": max_tokens},
                }
            )
        )
        marks = Marks()
        pieces: list[str] = []
        chars = 0
        first: float | None = None
        status = None
        seqs = Seqs()
        message = None
        async for frame in _frames(ws):
            kind = frame["type"]
            if kind == "message.created" and frame["message"]["role"] == "assistant":
                message = frame["message"]["id"]
            elif kind == "generation.delta":
                text = frame.get("reasoning", "") + frame.get("answer", "")
                seqs.delta(frame)
                if text:
                    now = time.perf_counter() - start
                    first = now if first is None else first
                    chars += len(text)
                    pieces.append(text)
                    marks.add(now, chars)
            elif kind == "generation.done":
                status = frame["status"]
                out["done_at"] = time.perf_counter()
                break
            elif kind == "error":
                status = "error:" + frame["code"]
                break
            elif kind.startswith("bench."):
                status = kind.removeprefix("bench.")
                break
            if stop is not None and first is not None and message is not None:
                stop(message)
                stop = None
    out.update(
        ttft=first, marks=marks, chars=chars, text="".join(pieces), status=status,
        gaps=seqs.gaps, duplicates=seqs.duplicates, message=message,
    )  # fmt: skip


async def follower(url: str, cookie: str, client_id: str, out: dict[str, Any]) -> None:
    """A tab on another process, of the same user, that opens the conversation a question
    (`client_id`) creates and follows its generation: snapshot, then deltas, to the end."""
    async with await _connect(url, cookie) as ws:
        out["connected"] = True
        marks = Marks()  # times here are absolute (perf_counter): the origin's start is elsewhere
        text = ""
        seqs = Seqs()
        snapshots = status = 0
        message = None
        async for frame in _frames(ws):
            kind = frame["type"]
            now = time.perf_counter()
            if kind == "conversation.created" and frame.get("client_id") == client_id:
                await ws.send(
                    json.dumps({"type": "subscribe", "conversation": frame["conversation"]["id"]})
                )
            elif kind == "generation.snapshot":
                snapshots += 1
                message = frame["message"]
                text = frame["reasoning"] + frame["answer"]
                seqs.last = frame["seq"]
                marks.add(now, len(text))
            elif kind == "generation.delta" and frame["message"] == message:
                seqs.delta(frame)
                piece = frame.get("reasoning", "") + frame.get("answer", "")
                if piece:
                    text += piece
                    marks.add(now, len(text))
            elif kind == "generation.done" and frame["message"] == message:
                status = frame["status"]
                break
            elif kind == "message.updated":
                status = "missed the live text"  # the snapshot never came: the stored message
                break
            elif kind.startswith("bench."):
                status = kind.removeprefix("bench.")
                break
    out.update(
        marks=marks, text=text, status=status, snapshots=snapshots, gaps=seqs.gaps,
        duplicates=seqs.duplicates,
    )  # fmt: skip


async def phase_app(args: Any, ports: list[int], cookies: list[str]) -> dict[str, Any]:
    """The N questions, the sockets spread evenly over the servers; in team mode also the
    followers and the stopped questions."""
    urls = [f"ws://127.0.0.1:{port}/ws/chat/" for port in ports]
    max_tokens = 2 * (args.reasoning + args.answer)
    streams: list[dict[str, Any]] = [{} for _ in range(args.streams)]
    ids = [os.urandom(8).hex() for _ in range(args.streams)]

    def starter(i: int) -> Any:
        return lambda ready: app_stream(
            urls[i % len(urls)], cookies[i], ids[i], max_tokens, streams[i], ready
        )

    followers: list[dict[str, Any]] = []
    stops: list[dict[str, Any]] = []
    side_tasks: list[asyncio.Task[None]] = []
    if len(urls) > 1:
        # Followers: the first K streams of the first server, followed from the second.
        for i in [i for i in range(args.streams) if i % len(urls) == 0][: args.followers]:
            followers.append({"origin": i})
            side_tasks.append(
                asyncio.create_task(follower(urls[1], cookies[i], ids[i], followers[-1]))
            )
        side_tasks += [
            asyncio.create_task(_stopped_question(args, urls, cookie, max_tokens, stops))
            for cookie in cookies[args.streams :]
        ]
    await arrive(args, [starter(i) for i in range(args.streams)])
    await asyncio.gather(*side_tasks)
    return {"streams": streams, "followers": followers, "stops": stops}


async def _stopped_question(
    args: Any, urls: list[str], cookie: str, max_tokens: int, stops: list[dict[str, Any]]
) -> None:
    """A question on the first server, stopped STOP_AFTER seconds after its first token by a
    tab of the same user on the second: the time from the stop frame to the end of the
    generation, as the asking tab sees it (its `generation.done`)."""
    out: dict[str, Any] = {}
    stops.append(out)
    async with await _connect(urls[1], cookie) as other:
        loop = asyncio.get_running_loop()
        sent: asyncio.Future[None] = loop.create_future()

        def stop(message: str) -> None:
            async def later() -> None:
                await asyncio.sleep(STOP_AFTER)
                out["stop_at"] = time.perf_counter()
                await other.send(json.dumps({"type": "stop", "message": message}))
                sent.set_result(None)

            out["task"] = asyncio.create_task(later())

        await asyncio.sleep(OPEN_SECONDS + args.spread_seconds / 2)  # amid the arrivals
        ready = asyncio.Event()
        ready.set()
        await app_stream(urls[0], cookie, os.urandom(8).hex(), max_tokens, out, ready, stop)
        out.pop("task", None)
        out["seconds"] = (
            out["done_at"] - out["stop_at"] if sent.done() and "done_at" in out else None
        )


# --- figures --------------------------------------------------------------------------------


def _reference(direct: list[dict[str, Any]]) -> dict[str, Any]:
    """The direct stream that ended in the middle: the reference for characters → token."""
    return sorted(direct, key=lambda d: d["marks"].times[-1])[len(direct) // 2]


def stream_starts(
    streams: list[dict[str, Any]], reference: dict[str, Any], rate: float
) -> list[list[float]]:
    """For each stream, how late each of its frames came against its own pace.

    The simulator writes token k of every stream k / rate seconds after the stream's start, so
    a frame carrying text up to token k is on time at `start + k / rate`. A stream's `start` is
    taken from its most punctual frame, and each frame is measured by the newest text it
    carries: what it adds on its way (r1chat's coalescing, its loop, the socket), not when the
    stream began, which the time to first token measures. The same for the streams read
    directly gives the floor of the simulator and this client themselves."""
    token_chars = reference["marks"].chars  # characters after each token
    out = []
    for result in streams:
        marks = result.get("marks") or Marks()
        due = [
            t - (bisect_left(token_chars, c) + 1) / rate
            for t, c in zip(marks.times, marks.chars, strict=True)
        ]
        start = min(due, default=0.0)
        out.append([d - start for d in due])
    return out


def pace_start(stream: dict[str, Any], reference: dict[str, Any], rate: float) -> float:
    """The moment (perf_counter) a stream's token 0 was due, from its most punctual frame."""
    token_chars = reference["marks"].chars
    marks = stream["marks"]
    return stream["start"] + min(
        t - (bisect_left(token_chars, c) + 1) / rate
        for t, c in zip(marks.times, marks.chars, strict=True)
    )


def follower_lateness(
    followers: list[dict[str, Any]], streams: list[dict[str, Any]], reference: dict[str, Any],
    rate: float,
) -> list[float]:  # fmt: skip
    """How late each frame reached a following tab, against the simulator's time for its
    newest token (its stream's pace, as its asking tab measured it)."""
    token_chars = reference["marks"].chars
    out = []
    for f in followers:
        origin = streams[f["origin"]]
        if not f.get("marks") or not origin.get("marks"):
            continue
        start = pace_start(origin, reference, rate)
        for t, c in zip(f["marks"].times, f["marks"].chars, strict=True):
            out.append(t - (start + (bisect_left(token_chars, c) + 1) / rate))
    return out


def figures(args: Any, rounds: list[dict[str, Any]], server: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the run, by name (what `--json` writes and the summary prints)."""
    directs = [d for r in rounds for d in r["direct"]["streams"]]
    apps = [a for r in rounds for a in r["r1chat"]["streams"]]
    texts: dict[str, int] = {}
    for d in directs:
        texts[d["text"]] = texts.get(d["text"], 0) + 1
    expected = max(texts, key=texts.__getitem__)  # the simulator's text (the same every time)
    statuses: dict[str, int] = {}
    for a in apps:
        statuses[str(a["status"])] = statuses.get(str(a["status"]), 0) + 1
    whole = [a for a in apps if a["status"] == "complete" and a["text"] == expected]
    per_stream = args.reasoning + args.answer

    def ttft(streams: list[dict[str, Any]], q: float) -> float:
        return pct([s["ttft"] for s in streams if s.get("ttft") is not None], q) * MS

    per_round = []
    late_app: list[float] = []
    late_direct: list[float] = []
    followers: list[dict[str, Any]] = []
    late_follow: list[float] = []
    late_origin: list[float] = []
    stops: list[dict[str, Any]] = []
    for r in rounds:
        direct, app = r["direct"]["streams"], r["r1chat"]["streams"]
        reference = _reference(direct)
        per_round.append(
            {
                "order": r["order"],
                "direct_ttft_ms": [ttft(direct, 50), ttft(direct, 99)],
                "r1chat_ttft_ms": [ttft(app, 50), ttft(app, 99)],
                "added_ttft_ms": [
                    ttft(app, 50) - ttft(direct, 50),
                    ttft(app, 99) - ttft(direct, 99),
                ],
            }
        )
        late_app += [x for s in stream_starts(app, reference, args.rate) for x in s]
        late_direct += [x for s in stream_starts(direct, reference, args.rate) for x in s]
        for f in r["r1chat"].get("followers", []):
            f["equal"] = f.get("text") == app[f["origin"]].get("text") == expected
            followers.append(f)
        late_follow += follower_lateness(
            r["r1chat"].get("followers", []), app, reference, args.rate
        )
        origins = [app[f["origin"]] for f in r["r1chat"].get("followers", [])]
        late_origin += [x for s in stream_starts(origins, reference, args.rate) for x in s]
        stops += r["r1chat"].get("stops", [])
    added = [p["added_ttft_ms"] for p in per_round]
    result: dict[str, Any] = {
        "arrival": args.arrival,
        "streams": args.streams,
        "processes": args.processes,
        "rounds": per_round,
        "streams_complete": len([a for a in apps if a["status"] == "complete"]),
        "streams_asked": len(apps),
        "statuses": statuses,
        "tokens_delivered": per_stream * len(whole),
        "tokens_asked": per_stream * len(apps),
        "streams_with_gaps": sum(1 for a in apps if a["gaps"]),
        "streams_with_duplicates": sum(1 for a in apps if a["duplicates"]),
        "added_ttft_ms": [
            statistics.median(a for a, _ in added),
            statistics.median(b for _, b in added),
        ],
        "added_frame_ms": [
            (pct(late_app, 50) - pct(late_direct, 50)) * MS,
            (pct(late_app, 99) - pct(late_direct, 99)) * MS,
        ],
        "frame_behind_pace_ms": {
            "r1chat": [pct(late_app, 50) * MS, pct(late_app, 99) * MS],
            "direct": [pct(late_direct, 50) * MS, pct(late_direct, 99) * MS],
            "frames": len(late_app),
        },
        **server,
    }
    tokens = result["tokens_asked"]
    result["cpu_per_1k_tokens"] = server["cpu_seconds"] / (tokens / 1000)
    result["cpu_per_1k_tokens_per_process"] = [
        c / (tokens / len(server["cpu_seconds_per_process"]) / 1000)
        for c in server["cpu_seconds_per_process"]
    ]
    result["db_writes_per_message"] = server["db_writes"] / max(1, len(apps) + len(stops))
    if followers:
        result["followers"] = {
            "tabs": len(followers),
            "every_frame": sum(
                1
                for f in followers
                if f.get("status") == "complete"
                and f["equal"]
                and f["gaps"] == 0
                and f["duplicates"] == 0
                and f["snapshots"] == 1
            ),
            "statuses": {
                s: sum(1 for f in followers if str(f.get("status")) == s)
                for s in {str(f.get("status")) for f in followers}
            },
            "text_equal": sum(1 for f in followers if f["equal"]),
            "gaps": sum(f.get("gaps", 0) for f in followers),
            "duplicates": sum(f.get("duplicates", 0) for f in followers),
            "snapshots": sum(f.get("snapshots", 0) for f in followers),
            "late_ms": [pct(late_follow, 50) * MS, pct(late_follow, 99) * MS],
            "origin_late_ms": [pct(late_origin, 50) * MS, pct(late_origin, 99) * MS],
            "frames": len(late_follow),
        }
    if stops:
        stopped = [s for s in stops if s.get("status") == "stopped"]
        seconds = [s["seconds"] for s in stopped if s.get("seconds") is not None]
        result["stops"] = {
            "asked": len(stops),
            "stopped": len(stopped),
            "seconds_p50": pct(seconds, 50),
            "seconds_max": max(seconds, default=float("nan")),
        }
    return result


def print_summary(f: dict[str, Any]) -> None:
    def line(label: str, value: str) -> None:
        print(f"  {label + ':':<44}{value}")

    for n, r in enumerate(f["rounds"], 1):
        d, a, x = r["direct_ttft_ms"], r["r1chat_ttft_ms"], r["added_ttft_ms"]
        line(
            f"round {n} ({r['order']}) TTFT p50/p99",
            f"simulator {d[0]:.1f} / {d[1]:.1f}, r1chat {a[0]:.1f} / {a[1]:.1f}, "
            f"added {x[0]:.1f} / {x[1]:.1f} ms",
        )
    line("streams complete", f"{f['streams_complete']}/{f['streams_asked']} {f['statuses']}")
    line(
        "tokens delivered",
        f"{f['tokens_delivered']:,}/{f['tokens_asked']:,} (text equal to the simulator's; "
        f"streams with a seq gap {f['streams_with_gaps']}, with a duplicate "
        f"{f['streams_with_duplicates']})",
    )
    x = f["added_ttft_ms"]
    line("added TTFT p50/p99", f"{x[0]:.1f} / {x[1]:.1f} ms (median of the rounds)")
    x, b = f["added_frame_ms"], f["frame_behind_pace_ms"]
    line(
        "added per-frame latency p50/p99",
        f"{x[0]:.1f} / {x[1]:.1f} ms (behind pace: r1chat {b['r1chat'][0]:.1f} / "
        f"{b['r1chat'][1]:.1f}, simulator {b['direct'][0]:.1f} / {b['direct'][1]:.1f} ms; "
        f"{b['frames']:,} frames)",
    )
    per = ", ".join(f"{c:.3f}" for c in f["cpu_per_1k_tokens_per_process"])
    line(
        "server CPU per 1,000 tokens",
        f"{f['cpu_per_1k_tokens']:.3f} CPU-s ({f['cpu_seconds']:.1f} s in all"
        + (f"; per process {per})" if f["processes"] > 1 else ")"),
    )
    line(
        "server RSS idle/peak",
        ", ".join(
            f"{i:.0f} / {p:.0f}" for i, p in zip(f["rss_idle_mib"], f["rss_peak_mib"], strict=True)
        )
        + " MiB"
        + (" (per process)" if f["processes"] > 1 else ""),
    )
    line(
        "database writes per message",
        f"{f['db_writes_per_message']:.1f} ({f['db_writes']} in all, titles included)",
    )
    if "followers" in f:
        x = f["followers"]
        line(
            "tabs following from the other process",
            f"{x['every_frame']}/{x['tabs']} got every frame ({x['statuses']}; text equal "
            f"{x['text_equal']}, gaps {x['gaps']}, duplicates {x['duplicates']}, snapshots "
            f"{x['snapshots']})",
        )
        line(
            "their lateness p50/p99",
            f"{x['late_ms'][0]:.0f} / {x['late_ms'][1]:.0f} ms behind the simulator's token "
            f"times (their asking tabs {x['origin_late_ms'][0]:.0f} / "
            f"{x['origin_late_ms'][1]:.0f} ms; {x['frames']:,} frames)",
        )
    if "stops" in f:
        x = f["stops"]
        line(
            "Stop from the other process",
            f"{x['stopped']}/{x['asked']} stopped (the others ended first, complete); the "
            f"stopped ones ended p50 {x['seconds_p50'] * MS:.0f} ms, max "
            f"{x['seconds_max'] * MS:.0f} ms after the stop frame",
        )


# --- the run --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--arrival", choices=("spread", "burst", "single"), default="spread")
    parser.add_argument(
        "--spread-seconds", type=float, default=2.0, help="--arrival spread: over how long"
    )
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--reasoning", type=int, default=800)
    parser.add_argument("--answer", type=int, default=1600)
    parser.add_argument("--model", default="deepseek-v4-flash")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="phases on each side, alternating between the simulator directly and r1chat",
    )
    parser.add_argument(
        "--processes",
        type=int,
        choices=(1, 2),
        default=1,
        help="r1chat servers (2 needs --redis; PostgreSQL on 127.0.0.1:5432)",
    )
    parser.add_argument("--redis", help="REDIS_URL of the channel layer and cache (--processes 2)")
    parser.add_argument(
        "--pg",
        default="postgres://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server (its maintenance database) for --processes 2",
    )
    parser.add_argument(
        "--followers", type=int, default=20, help="--processes 2: tabs following from the other"
    )
    parser.add_argument(
        "--stops", type=int, default=5, help="--processes 2: questions stopped from the other"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--writes-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.writes_file)
        return

    if args.processes > 1 and not args.redis:
        parser.error("--processes 2 needs --redis URL")
    if args.processes == 1:
        args.followers = args.stops = 0
    elif args.followers > (args.streams + 1) // 2:
        parser.error("--followers: at most the streams of the first process")
    # SIGTERM (e.g. `timeout`) still stops the servers and drops the bench database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    data_dir, env = bench_env("r1chat-bench-", send_rate=1000)
    if args.processes > 1:
        env["DATABASE_URL"] = create_database(args.pg, f"r1chat_bench_{os.getpid()}")
        env["REDIS_URL"] = args.redis
        env["R1CHAT_REDIS_PREFIX"] = f"r1chat-bench-{os.getpid()}"
    os.environ.update(env)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        _run_bench(args, env, data_dir, servers)
    finally:
        for child in servers:
            child.terminate()
        for child in servers:
            child.wait(10)
        if args.processes > 1:
            _clean_up(args, env)
        remove_data_dir(data_dir)


def bench_env(prefix: str, send_rate: int) -> tuple[str, dict[str, str]]:
    """A fresh data folder, and the environment of a bench's servers and simulator."""
    data_dir = tempfile.mkdtemp(prefix=prefix)
    return data_dir, {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "r1chat.settings",
        "R1CHAT_DATA_DIR": data_dir,
        "DEBUG": "0",
        "R1CHAT_HTTPS": "0",
        "R1CHAT_STATIC_MANIFEST": "0",
        "R1CHAT_SIMULATOR": "off",
        "R1CHAT_SEND_RATE_PER_MINUTE": str(send_rate),
        "LOG_LEVEL": "WARNING",
    }


def remove_data_dir(data_dir: str) -> None:
    """The bench's data folder goes at the end, unless BENCH_LOG_WRITES asked for its log."""
    if os.environ.get("BENCH_LOG_WRITES"):
        print(f"  the database writes were logged in {data_dir}")
        return
    shutil.rmtree(data_dir, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """A fresh PostgreSQL database; its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def _clean_up(args: Any, env: dict[str, str]) -> None:
    """Drop the bench database and delete this run's Redis keys."""
    import psycopg
    from django.db import connections

    connections.close_all()
    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    remove_redis_keys(args.redis, env["R1CHAT_REDIS_PREFIX"])


def remove_redis_keys(url: str, prefix: str) -> None:
    """Delete a run's keys (those under its R1CHAT_REDIS_PREFIX)."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def _run_bench(
    args: Any, env: dict[str, str], data_dir: str, servers: list[subprocess.Popen[bytes]]
) -> None:
    import psutil

    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    sim_port = free_port()
    app_ports = [free_port() for _ in range(args.processes)]
    writes_files = [str(Path(data_dir) / f"writes-{i}.json") for i in range(args.processes)]
    sim = subprocess.Popen(
        [PYTHON, "manage.py", "simulate_models", "--port", str(sim_port), "--rate", str(args.rate),
         "--reasoning-tokens", str(args.reasoning), "--answer-tokens", str(args.answer)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    servers.append(sim)
    for port, writes_file in zip(app_ports, writes_files, strict=True):
        servers.append(
            subprocess.Popen(
                [PYTHON, __file__, "--serve", str(port), "--writes-file", writes_file],
                cwd=ROOT,
                env=env,
            )
        )
    app_servers = servers[1:]
    try:
        import django

        django.setup()
        from conversations.models import Backend
        from tests.chat_support import make_user, session_cookie

        base_url = f"http://127.0.0.1:{sim_port}"
        Backend.objects.create(name="Simulator", kind="openai", base_url=base_url,
                               default_model=args.model)  # fmt: skip
        cookies = [
            session_cookie(make_user(f"bench{i}", password=None))
            for i in range(args.streams + args.stops)
        ]
        for port in app_ports:
            _wait_for(f"http://127.0.0.1:{port}/healthz")
        _wait_for(f"{base_url}/models")

        arrival = {
            "spread": f"the questions sent evenly over {args.spread_seconds:g} s",
            "burst": "the questions sent in the same instant",
            "single": "one question at a time",
        }[args.arrival]
        print(f"r1chat relay benchmark: {args.streams} streams × {args.rate:g} tokens/s, "
              f"{args.reasoning} reasoning + {args.answer} answer tokens each")  # fmt: skip
        print(f"  {args.rounds} rounds; {arrival}")
        if args.processes > 1:
            print(f"  {args.processes} r1chat processes, PostgreSQL + Redis ({args.redis}), "
                  f"half of the sockets on each; {args.followers} tabs following from the "
                  f"other process, {args.stops} questions stopped from it, per round")  # fmt: skip
        else:
            print("  one r1chat process, SQLite, in-process channel layer")
        print(f"  load average before: {_load()}")
        procs = [psutil.Process(server.pid) for server in app_servers]
        rss_idle = [p.memory_info().rss for p in procs]
        peak = {"rss": list(rss_idle)}
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak["rss"] = [
                    max(old, p.memory_info().rss) for old, p in zip(peak["rss"], procs, strict=True)
                ]
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        sim_proc, me = psutil.Process(sim.pid), psutil.Process()
        rounds: list[dict[str, Any]] = []
        cpu = [0.0] * len(procs)
        writes = 0
        for number in range(args.rounds):
            # Alternate the order (direct first, then r1chat first, ...): a machine that slows
            # down or speeds up during the run weighs on both sides alike.
            order = ("direct", "r1chat") if number % 2 == 0 else ("r1chat", "direct")
            round_: dict[str, Any] = {"order": ", ".join(order)}
            for side in order:
                writes_before = _writes(writes_files)
                cpu_before = [sum(p.cpu_times()[:2]) for p in procs]
                others_before = sum(sim_proc.cpu_times()[:2]), sum(me.cpu_times()[:2])
                gc.collect()  # (this client's garbage of the phase before, not during this one)
                t = time.perf_counter()
                if side == "direct":
                    round_[side] = asyncio.run(phase_direct(args, sim_port))
                else:
                    round_[side] = asyncio.run(phase_app(args, app_ports, cookies))
                elapsed = time.perf_counter() - t
                if side == "r1chat":
                    cpu = [
                        c + sum(p.cpu_times()[:2]) - b
                        for c, p, b in zip(cpu, procs, cpu_before, strict=True)
                    ]
                others = (
                    sum(sim_proc.cpu_times()[:2]) - others_before[0],
                    sum(me.cpu_times()[:2]) - others_before[1],
                )
                time.sleep(SETTLE_SECONDS)  # the last persistence writes and titles settle
                if side == "r1chat":
                    writes += _writes(writes_files) - writes_before
                print(
                    f"  round {number + 1}, {side + ':':<8} {elapsed:5.1f} s "
                    f"(CPU of the simulator / this client {others[0]:.1f} / {others[1]:.1f} s; "
                    f"server RSS now {_rss(procs)})",
                    flush=True,
                )
            rounds.append(round_)
        sampling.set()
        print(f"  load average after: {_load()}")
        server = {
            "cpu_seconds": sum(cpu),
            "cpu_seconds_per_process": cpu,
            "rss_idle_mib": [r / 2**20 for r in rss_idle],
            "rss_peak_mib": [r / 2**20 for r in peak["rss"]],
            "db_writes": writes,
        }
        result = figures(args, rounds, server)
        print_summary(result)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    finally:
        for server_process in reversed(servers):  # the app servers first, the simulator last
            server_process.terminate()
        for server_process in servers:
            server_process.wait(10)
        servers.clear()


def _rss(procs: list[Any]) -> str:
    return ", ".join(f"{p.memory_info().rss / 2**20:.0f}" for p in procs) + " MiB"


def _writes(files: list[str]) -> int:
    return sum(json.loads(Path(f).read_text())["writes"] for f in files)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def _wait_for(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
