#!/usr/bin/env python
"""Relay benchmark: N concurrent chat streams through r1chat beside the same streams read from
the model simulator directly, in one run.

    .venv/bin/python bench/relay.py --streams 200 --rate 50 --reasoning 800 --answer 1600

Three processes: the simulator (`manage.py simulate_models`), one r1chat server (Daphne, this
file with --serve, counting database writes), and this client. Phase 1 reads N streams straight
from the simulator; phase 2 sends N chat messages at once over N WebSockets and reads the
frames. Printed: tokens delivered, time to first token added by r1chat (p50/p99), added
per-frame latency (p50/p99), server CPU seconds per 1,000 tokens, server memory, and database
writes per message.

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


# --- phase 1: the simulator directly --------------------------------------------------------


async def direct_stream(client: Any, url: str, model: str, results: list[dict[str, Any]]) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "How are mass and energy related?"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "thinking": {"type": "enabled"},
    }
    start = time.perf_counter()
    marks: list[tuple[float, int]] = []  # (time since start, cumulative characters)
    chars = 0
    first: float | None = None
    async with client.stream("POST", url, json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if not chunk.get("choices"):
                continue
            delta = chunk["choices"][0].get("delta") or {}
            text = (delta.get("reasoning_content") or "") + (delta.get("content") or "")
            if text:
                now = time.perf_counter() - start
                first = now if first is None else first
                chars += len(text)
                marks.append((now, chars))
    results.append({"ttft": first, "marks": marks, "chars": chars})


async def phase_direct(base_url: str, streams: int, model: str) -> list[dict[str, Any]]:
    import httpx

    results: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=streams)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        await asyncio.gather(
            *(
                direct_stream(client, f"{base_url}/chat/completions", model, results)
                for _ in range(streams)
            )
        )
    return results


# --- phase 2: through r1chat ----------------------------------------------------------------


async def app_stream(
    url: str, cookie: str, results: list[dict[str, Any]], go: asyncio.Event, max_tokens: int
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(
        url, origin="http://127.0.0.1", additional_headers={"Cookie": cookie}, max_size=2**24
    ) as ws:  # type: ignore[arg-type]
        await go.wait()
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


async def phase_app(ports: list[int], cookies: list[str], max_tokens: int) -> list[dict[str, Any]]:
    """Every client sends at once; the sockets are spread evenly over the servers."""
    results: list[dict[str, Any]] = []
    go = asyncio.Event()
    urls = [f"ws://127.0.0.1:{port}/ws/chat/" for port in ports]
    tasks = [
        asyncio.create_task(app_stream(urls[i % len(urls)], cookie, results, go, max_tokens))
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

    data_dir = tempfile.mkdtemp(prefix="r1chat-bench-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "r1chat.settings",
        "R1CHAT_DATA_DIR": data_dir,
        "DEBUG": "0",
        "R1CHAT_HTTPS": "0",
        "R1CHAT_STATIC_MANIFEST": "0",
        "R1CHAT_SIMULATOR": "off",
        "R1CHAT_SEND_RATE_PER_MINUTE": "1000",
        "LOG_LEVEL": "WARNING",
    }
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
    import redis
    from django.db import connections

    connections.close_all()
    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect(args.pg, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    client = redis.Redis.from_url(args.redis)
    keys = list(client.scan_iter(match=env["R1CHAT_REDIS_PREFIX"] + "*", count=1000))
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
        if args.processes > 1:
            print(f"  {args.processes} r1chat processes, PostgreSQL + Redis channel layer "
                  f"({args.redis}), half of the sockets on each")  # fmt: skip
        else:
            print("  one r1chat process")
        print(f"  load average before: {_load()}")
        t = time.perf_counter()
        with steady_clock():
            direct = asyncio.run(phase_direct(base_url, args.streams, args.model))
        print(f"  phase 1 (simulator directly): {time.perf_counter() - t:.1f} s")

        procs = [psutil.Process(server.pid) for server in app_servers]
        rss_idle = [p.memory_info().rss for p in procs]
        writes_before = _writes(writes_files)
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
        cpu_before = sum(sum(p.cpu_times()[:2]) for p in procs)
        others_before = sum(sim_proc.cpu_times()[:2]), sum(me.cpu_times()[:2])
        t = time.perf_counter()
        with steady_clock():
            app = asyncio.run(phase_app(app_ports, cookies, 2 * (args.reasoning + args.answer)))
        elapsed = time.perf_counter() - t
        cpu_after = sum(sum(p.cpu_times()[:2]) for p in procs)
        others = [
            after - before
            for after, before in zip(
                (sum(sim_proc.cpu_times()[:2]), sum(me.cpu_times()[:2])), others_before, strict=True
            )
        ]
        print(f"  phase 2 CPU of the simulator / this client: {others[0]:.1f} / {others[1]:.1f} s")
        sampling.set()
        time.sleep(2.0)  # the last persistence writes and title requests settle
        writes = _writes(writes_files) - writes_before
        print(f"  phase 2 (through r1chat):     {elapsed:.1f} s")
        print(f"  load average after: {_load()}")
        _report(args, direct, app, cpu_after - cpu_before, rss_idle, peak["rss"], writes)
    finally:
        for server in reversed(servers):  # the app servers first, the simulator last
            server.terminate()
        for server in servers:
            server.wait(10)
        servers.clear()


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


def _report(args: Any, direct: list, app: list, cpu: float, rss_idle: list[int],
            rss_peak: list[int], writes: int) -> None:  # fmt: skip
    expected_chars = statistics.median(d["chars"] for d in direct)
    complete = [a for a in app if a["status"] == "complete"]
    whole = [a for a in complete if a["chars"] >= expected_chars - 2]
    gapless = sum(a["gapless"] for a in app)
    tokens = args.streams * (args.reasoning + args.answer)
    delivered = tokens * len(whole) // max(1, args.streams)
    d_ttft = [d["ttft"] for d in direct if d["ttft"] is not None]
    a_ttft = [a["ttft"] for a in app if a["ttft"] is not None]
    lat = frame_latencies(app, direct)
    late_app = lateness(app, direct, args.rate)
    late_direct = lateness(direct, direct, args.rate)
    statuses: dict[str, int] = {}
    for a in app:
        statuses[str(a["status"])] = statuses.get(str(a["status"]), 0) + 1
    ms = 1000.0
    rows = [
        ("streams complete", f"{len(complete)}/{args.streams} {statuses}"),
        (
            "tokens delivered",
            f"{delivered:,}/{tokens:,} ({len(whole)} streams with every character, "
            f"{gapless} with gapless seq)",
        ),
        ("simulator TTFT p50/p99", f"{pct(d_ttft, 50) * ms:.1f} / {pct(d_ttft, 99) * ms:.1f} ms"),
        ("r1chat TTFT p50/p99", f"{pct(a_ttft, 50) * ms:.1f} / {pct(a_ttft, 99) * ms:.1f} ms"),
        (
            "added TTFT p50/p99",
            f"{(pct(a_ttft, 50) - pct(d_ttft, 50)) * ms:.1f} / "
            f"{(pct(a_ttft, 99) - pct(d_ttft, 99)) * ms:.1f} ms",
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
            f"{pct(lat, 50) * ms:.1f} / {pct(lat, 99) * ms:.1f} ms (beside the median direct "
            "stream; a late first token delays its whole stream)",
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
            f"{writes / max(1, args.streams):.1f} ({writes} in all, conversations and titles "
            "included)",
        ),
    ]
    for label, value in rows:
        print(f"  {label + ':':<34}{value}")


if __name__ == "__main__":
    main()
