#!/usr/bin/env python
"""Relay benchmark: N concurrent chat streams through r1chat beside the same streams read from
the model simulator directly, in one run.

    .venv/bin/python bench/relay.py --streams 200 --rate 50 --reasoning 800 --answer 1600

Three processes: the simulator (`manage.py simulate_models`), one r1chat server (Daphne, this
file with --serve, counting database writes), and this client. A round is two bursts back to
back: N streams read straight from the simulator (a light client on connections opened before
the burst), and N chat messages sent at once over N WebSockets to r1chat; the order alternates
from round to round, and each round's added time to first token is the difference of its two
bursts, so that the machine's speed, which drifts from one minute to the next, weighs on both.
Printed: each round's time to first token on both sides, tokens delivered, time to first token
added by r1chat (p50/p99, the median of the rounds), added per-frame latency (p50/p99), server
CPU seconds per 1,000 tokens, server memory, and database writes per message.

    .venv/bin/python bench/relay.py --streams 200 --processes 2 --redis redis://127.0.0.1:6379/8

The team shape (DESIGN.md "Scale-out"): two r1chat servers on a fresh PostgreSQL database
(`r1chat_bench_<pid>` on 127.0.0.1:5432, user postgres; dropped at the end) and the Redis channel
layer and cache (keys under a per-run prefix, deleted at the end), half of the sockets on each.
CPU and database writes are the servers' sum; memory is given per server.
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
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
STALL_SECONDS = 30.0  # no frame for this long: the stream is reported "stalled"
SETTLE_SECONDS = 3.0  # after each burst: the last writes and title requests settle


@contextlib.contextmanager
def steady_clock() -> Iterator[None]:
    """No collector pauses in this client while it times frames: a full collection walking the
    marks of 200 streams held every reader for tens of milliseconds, at random, and read as
    latency of whichever side was being measured. Collected once the phase is over."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gc.collect()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


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

    if os.environ.get("BENCH_FLOOR"):  # bench/bursts.py --floor: the thinnest relay instead
        from floor_app import application  # (this folder is on the path: the script's own)

        gc.collect()
        gc.freeze()
    else:
        from r1chat.asgi import application

    server = Server(application, endpoints=[f"tcp:port={port}:interface=127.0.0.1"], verbosity=0)
    if os.environ.get("BENCH_SAMPLE"):
        _start_sampler(os.environ["BENCH_SAMPLE"])
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


def _start_sampler(path: str) -> None:
    """Sample the event-loop thread's stack every 2 ms (a poor man's py-spy): where its time goes,
    written as folded stacks ("a;b;c count") when the process exits."""
    import atexit
    import collections

    counts: collections.Counter[str] = collections.Counter()

    def sample() -> None:
        me = threading.get_ident()
        while True:
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack = []
                while frame is not None:
                    code = frame.f_code
                    stack.append(f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_name}")
                    frame = frame.f_back
                name = names.get(ident, "?").split("_")[0].split("-")[0]
                counts[name + ";" + ";".join(reversed(stack))] += 1
            time.sleep(0.002)

    def dump() -> None:
        with open(path, "w") as out:
            for stack, n in counts.most_common():
                out.write(f"{stack} {n}\n")

    threading.Thread(target=sample, daemon=True).start()
    atexit.register(dump)


# --- the simulator read directly -----------------------------------------------------------


def _direct_request(model: str) -> bytes:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "How are mass and energy related?"}],
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
    port: int, request: bytes, results: list[dict[str, Any]], go: asyncio.Event, after: float
) -> None:
    """One stream read straight from the simulator, by a client as light as this file can make
    it: the connection is open before the burst (as a kept-alive one would be), the request is
    one write, and the SSE lines are split by hand. (An httpx client spent ~110 ms of its own
    CPU on a burst of 200 requests before it read the first reply, which made the simulator's
    time to first token look like ~135 ms instead of ~20.)"""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await go.wait()
    if after:
        await asyncio.sleep(after)
    start = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the simulator answered {head.splitlines()[0]!r}")
    chunked = b"transfer-encoding: chunked" in head.lower()
    marks: list[tuple[float, int]] = []  # (time since start, cumulative characters)
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
            marks.append((now, chars))
        if done:
            break
    writer.close()
    results.append({"ttft": first, "marks": marks, "chars": chars})


async def phase_direct(port: int, streams: int, model: str, spread: float) -> list[dict[str, Any]]:
    """Every client sends at once, on connections opened before."""
    results: list[dict[str, Any]] = []
    go = asyncio.Event()
    request = _direct_request(model)
    tasks = [
        asyncio.create_task(direct_stream(port, request, results, go, i * spread / streams))
        for i in range(streams)
    ]
    await asyncio.sleep(2.0)  # every connection open before the burst
    go.set()
    await asyncio.gather(*tasks)
    return results


# --- through r1chat ------------------------------------------------------------------------


async def app_stream(
    url: str,
    cookie: str,
    results: list[dict[str, Any]],
    go: asyncio.Event,
    max_tokens: int,
    after: float,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(
        url, origin="http://127.0.0.1", additional_headers={"Cookie": cookie}, max_size=2**24
    ) as ws:  # type: ignore[arg-type]
        await go.wait()
        if after:
            await asyncio.sleep(after)
        start = time.perf_counter()
        await ws.send(
            json.dumps(
                {
                    "type": "send",
                    "conversation": None,
                    "content": "How are mass and energy related?",
                    "client_id": os.urandom(8).hex(),
                    "settings": {"deep_think": True, "max_tokens": max_tokens},
                }
            )
        )
        marks: list[tuple[float, int]] = []
        chars = 0
        first: float | None = None
        status = None
        seqs: list[int] = []
        while True:
            try:  # a stream whose frames stop (lost on the way) is counted, not waited for
                raw = await asyncio.wait_for(ws.recv(), STALL_SECONDS)
            except TimeoutError:
                status = "stalled"
                break
            except ConnectionClosed:
                status = status or "closed"
                break
            frame = json.loads(raw)
            kind = frame["type"]
            if kind == "generation.delta":
                text = frame.get("reasoning", "") + frame.get("answer", "")
                seqs.append(frame["seq"])
                if text:
                    now = time.perf_counter() - start
                    first = now if first is None else first
                    chars += len(text)
                    marks.append((now, chars))
            elif kind == "generation.done":
                status = frame["status"]
                break
            elif kind == "error":
                status = "error:" + frame["code"]
                break
    gapless = seqs == list(range(1, len(seqs) + 1))
    results.append(
        {"ttft": first, "marks": marks, "chars": chars, "status": status, "gapless": gapless}
    )


async def phase_app(
    ports: list[int], cookies: list[str], max_tokens: int, spread: float
) -> list[dict[str, Any]]:
    """Every client sends at once; the sockets are spread evenly over the servers."""
    results: list[dict[str, Any]] = []
    go = asyncio.Event()
    urls = [f"ws://127.0.0.1:{port}/ws/chat/" for port in ports]
    tasks = [
        asyncio.create_task(
            app_stream(
                urls[i % len(urls)], cookie, results, go, max_tokens, i * spread / len(cookies)
            )
        )
        for i, cookie in enumerate(cookies)
    ]
    await asyncio.sleep(2.0)  # every socket open before the burst
    go.set()
    await asyncio.gather(*tasks)
    return results


def _median_stream(direct: list[dict[str, Any]]) -> dict[str, Any]:
    """The direct stream that ended in the middle: the reference for characters → time."""
    return sorted(direct, key=lambda d: d["marks"][-1][0])[len(direct) // 2]


def frame_latencies(app: list[dict[str, Any]], direct: list[dict[str, Any]]) -> list[float]:
    """Each frame's arrival beside when the simulator's own reader had the same text, both
    measured from the moment the question was sent (a late start delays every frame of its
    stream). The simulator serves every stream on the same schedule, so the median direct
    stream is the reference clock (characters → seconds)."""
    reference = _median_stream(direct)
    ref_chars = [c for _, c in reference["marks"]]
    ref_times = [t for t, _ in reference["marks"]]
    out = []
    for result in app:
        for t, chars in result["marks"]:
            i = min(bisect_left(ref_chars, chars), len(ref_times) - 1)
            out.append(t - ref_times[i])
    return out


def lateness(
    streams: list[dict[str, Any]], direct: list[dict[str, Any]], rate: float
) -> list[float]:
    """How much later than its stream's own pace each frame came, once the stream runs.

    The simulator writes token k of every stream k / rate seconds after the stream's start, so
    a frame carrying text up to token k is on time at `start + k / rate`. A stream's `start`
    is taken from its most punctual frame, and each frame is measured by the newest text it
    carries: what it adds on its way (r1chat's coalescing, its loop, the socket), not when the
    stream began, which the time to first token measures. The same for the streams read
    directly gives the floor of the simulator and this client themselves.

    (Measured against one direct stream's own arrivals instead, the floor was up to 80 ms:
    that stream's first token is as late as the simulator's start of the burst made it.)"""
    reference = _median_stream(direct)
    token_chars = [c for _, c in reference["marks"]]  # characters after each token
    out = []
    for result in streams:
        due = [t - (bisect_left(token_chars, chars) + 1) / rate for t, chars in result["marks"]]
        if due:
            start = min(due)
            out.extend(d - start for d in due)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--reasoning", type=int, default=800)
    parser.add_argument("--answer", type=int, default=1600)
    parser.add_argument("--model", default="deepseek-v4-flash")
    parser.add_argument(
        "--spread",
        type=float,
        default=0.0,
        help="seconds over which the questions of a burst are sent, evenly (0: all at once)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="bursts on each side, alternating between the simulator directly and r1chat",
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
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--writes-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.writes_file)
        return

    if args.processes > 1 and not args.redis:
        parser.error("--processes 2 needs --redis URL")
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
        cookies = [session_cookie(make_user(f"bench{i}")) for i in range(args.streams)]
        for port in app_ports:
            _wait_for(f"http://127.0.0.1:{port}/healthz")
        _wait_for(f"{base_url}/models")

        print(f"r1chat relay benchmark: {args.streams} streams × {args.rate:g} tokens/s, "
              f"{args.reasoning} reasoning + {args.answer} answer tokens each")  # fmt: skip
        print(f"  {args.rounds} rounds; the questions of a burst sent "
              + (f"evenly over {args.spread:g} s" if args.spread else "all at once"))  # fmt: skip
        if args.processes > 1:
            print(f"  {args.processes} r1chat processes, PostgreSQL + Redis channel layer "
                  f"({args.redis}), half of the sockets on each")  # fmt: skip
        else:
            print("  one r1chat process")
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
        rounds: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = []
        cpu = writes = 0.0
        for number in range(args.rounds):
            # Alternate the order (direct first, then r1chat first, ...): a machine that slows
            # down or speeds up during the run weighs on both sides alike.
            order = ("direct", "r1chat") if number % 2 == 0 else ("r1chat", "direct")
            results: dict[str, list[dict[str, Any]]] = {}
            for side in order:
                writes_before = _writes(writes_files)
                cpu_before = sum(sum(p.cpu_times()[:2]) for p in procs)
                others_before = sum(sim_proc.cpu_times()[:2]), sum(me.cpu_times()[:2])
                t = time.perf_counter()
                with steady_clock():
                    if side == "direct":
                        burst = phase_direct(sim_port, args.streams, args.model, args.spread)
                    else:
                        tokens = 2 * (args.reasoning + args.answer)
                        burst = phase_app(app_ports, cookies, tokens, args.spread)
                    results[side] = asyncio.run(burst)
                elapsed = time.perf_counter() - t
                if side == "r1chat":
                    cpu += sum(sum(p.cpu_times()[:2]) for p in procs) - cpu_before
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
                    f"server RSS now {_rss(procs)})"
                )
            rounds.append((", ".join(order), results["direct"], results["r1chat"]))
        sampling.set()
        print(f"  load average after: {_load()}")
        _report(args, rounds, cpu, rss_idle, peak["rss"], int(writes))
    finally:
        for server in reversed(servers):  # the app servers first, the simulator last
            server.terminate()
        for server in servers:
            server.wait(10)
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


def _report(args: Any, rounds: list[tuple[str, list, list]], cpu: float, rss_idle: list[int],
            rss_peak: list[int], writes: int) -> None:  # fmt: skip
    ms = 1000.0
    directs = [d for _, direct, _ in rounds for d in direct]
    apps = [a for _, _, app in rounds for a in app]
    expected_chars = statistics.median(d["chars"] for d in directs)
    complete = [a for a in apps if a["status"] == "complete"]
    whole = [a for a in complete if a["chars"] >= expected_chars - 2]
    gapless = sum(a["gapless"] for a in apps)
    tokens = len(apps) * (args.reasoning + args.answer)
    delivered = (args.reasoning + args.answer) * len(whole)
    statuses: dict[str, int] = {}
    for a in apps:
        statuses[str(a["status"])] = statuses.get(str(a["status"]), 0) + 1

    def ttft(streams: list[dict[str, Any]], q: float) -> float:
        return pct([s["ttft"] for s in streams if s["ttft"] is not None], q) * ms

    print(f"  {'time to first token, ms':<40}simulator directly | through r1chat | added by r1chat")
    added: list[tuple[float, float]] = []
    late_app: list[float] = []
    late_direct: list[float] = []
    from_question: list[float] = []
    for number, (order, direct, app) in enumerate(rounds, 1):
        pair = (ttft(app, 50) - ttft(direct, 50), ttft(app, 99) - ttft(direct, 99))
        added.append(pair)
        print(
            f"  {f'  round {number} ({order}), p50 / p99:':<40}"
            f"{ttft(direct, 50):.1f} / {ttft(direct, 99):.1f} | "
            f"{ttft(app, 50):.1f} / {ttft(app, 99):.1f} | {pair[0]:.1f} / {pair[1]:.1f}"
        )
        late_app += lateness(app, direct, args.rate)
        late_direct += lateness(direct, direct, args.rate)
        from_question += frame_latencies(app, direct)
    rows = [
        ("streams complete", f"{len(complete)}/{len(apps)} {statuses}"),
        (
            "tokens delivered",
            f"{delivered:,}/{tokens:,} ({len(whole)} streams with every character, "
            f"{gapless} with gapless seq)",
        ),
        (
            "added TTFT p50/p99",
            f"{statistics.median(a for a, _ in added):.1f} / "
            f"{statistics.median(b for _, b in added):.1f} ms (the median of the "
            f"{len(rounds)} rounds' differences)",
        ),
        (
            "added per-frame latency p50/p99",
            f"{(pct(late_app, 50) - pct(late_direct, 50)) * ms:.1f} / "
            f"{(pct(late_app, 99) - pct(late_direct, 99)) * ms:.1f} ms once each stream runs "
            f"(frames behind their stream's pace: r1chat {pct(late_app, 50) * ms:.1f} / "
            f"{pct(late_app, 99) * ms:.1f}, simulator directly {pct(late_direct, 50) * ms:.1f} / "
            f"{pct(late_direct, 99) * ms:.1f} ms; {len(late_app):,} frames)",
        ),
        (
            "per-frame latency from the question",
            f"{pct(from_question, 50) * ms:.1f} / {pct(from_question, 99) * ms:.1f} ms (beside "
            "the median direct stream of its round; a late first token delays its whole stream)",
        ),
        ("server CPU", f"{cpu:.2f} s = {cpu / (tokens / 1000):.4f} CPU-s per 1,000 tokens"),
        (
            "server RSS idle/peak",
            ", ".join(
                f"{i / 2**20:.0f} / {p / 2**20:.0f}"
                for i, p in zip(rss_idle, rss_peak, strict=True)
            )
            + " MiB"
            + (" (per process)" if len(rss_idle) > 1 else ""),
        ),
        (
            "database writes per message",
            f"{writes / max(1, len(apps)):.1f} ({writes} in all, conversations and titles "
            "included)",
        ),
    ]
    for label, value in rows:
        print(f"  {label + ':':<40}{value}")


if __name__ == "__main__":
    main()
