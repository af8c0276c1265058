#!/usr/bin/env python
"""API relay benchmark: N streams through r1chat's OpenAI-compatible API (`POST
/v1/chat/completions`, `stream: true`) beside the same streams read from the model simulator
directly, in one run: the figures bench/relay.py gives for the chat socket.

    .venv/bin/python bench/api.py --streams 200            # 200 API streams arriving over 2 s
    .venv/bin/python bench/api.py --streams 200 --arrival burst

Three processes, as in bench/relay.py (whose helpers this reuses: arrivals, the direct phase,
the figures and their summary): the simulator, one r1chat server (Daphne, SQLite, counting
database writes) and this client. Each API stream has its own user and key. Both sides are read
by the same light client (one connection opened before the question, one write, SSE lines split
by hand), so its own cost weighs on both alike. A stream is complete when its text equals the
simulator's and it ended with `finish_reason: "stop"` and `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import relay
from relay import PYTHON, QUESTION, ROOT, SETTLE_SECONDS, Marks


def api_request(port: int, token: str, model: str, max_tokens: int) -> bytes:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": QUESTION}],
            "stream": True,
            "max_tokens": max_tokens,
        }
    ).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def api_stream(port: int, request: bytes, out: dict[str, Any], ready: asyncio.Event) -> None:
    """One streamed API call, read as bench/relay.py reads the simulator directly."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await ready.wait()
    start = time.perf_counter()
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line = head.split(b"\r\n")[0]
    marks = Marks()
    pieces: list[str] = []
    chars = 0
    first: float | None = None
    status = "http " + status_line.decode(errors="replace")
    if status_line.startswith(b"HTTP/1.1 200"):
        status = "truncated"
        chunked = b"transfer-encoding: chunked" in head.lower()
        pending = b""
        finish = None
        async for piece in relay._body_pieces(reader, chunked):
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
                if "error" in chunk:
                    status = "error:" + str(chunk["error"].get("code"))
                    done = True
                    break
                if chunk.get("choices"):
                    choice = chunk["choices"][0]
                    delta = choice.get("delta") or {}
                    text += (delta.get("reasoning_content") or "") + (delta.get("content") or "")
                    finish = choice.get("finish_reason") or finish
            if text:
                now = time.perf_counter() - start
                first = now if first is None else first
                chars += len(text)
                pieces.append(text)
                marks.add(now, chars)
            if done:
                if status == "truncated":
                    status = "complete" if finish == "stop" else f"finish {finish}"
                break
    writer.close()
    out.update(
        start=start, ttft=first, marks=marks, chars=chars, text="".join(pieces), status=status,
        gaps=0, duplicates=0,
    )  # fmt: skip


async def phase_api(args: Any, port: int, tokens: list[str]) -> dict[str, Any]:
    max_tokens = 2 * (args.reasoning + args.answer)
    streams: list[dict[str, Any]] = [{} for _ in range(args.streams)]
    requests = [api_request(port, token, args.model, max_tokens) for token in tokens]

    def starter(i: int) -> Any:
        return lambda ready: api_stream(port, requests[i], streams[i], ready)

    await relay.arrive(args, [starter(i) for i in range(args.streams)])
    return {"streams": streams}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--arrival", choices=("spread", "burst", "single"), default="spread")
    parser.add_argument("--spread-seconds", type=float, default=2.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--reasoning", type=int, default=800)
    parser.add_argument("--answer", type=int, default=1600)
    parser.add_argument("--model", default="deepseek-v4-flash")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    args.processes, args.followers, args.stops = 1, 0, 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data_dir, env = relay.bench_env("r1chat-bench-api-", send_rate=100_000)
    os.environ.update(env)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        _run(args, env, data_dir, servers)
    finally:
        for child in reversed(servers):
            child.terminate()
        for child in servers:
            child.wait(10)
        relay.remove_data_dir(data_dir)


def _run(
    args: Any, env: dict[str, str], data_dir: str, servers: list[subprocess.Popen[bytes]]
) -> None:
    import psutil

    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    sim_port, app_port = relay.free_port(), relay.free_port()
    writes_file = str(Path(data_dir) / "writes-0.json")
    sim = subprocess.Popen(
        [PYTHON, "manage.py", "simulate_models", "--port", str(sim_port), "--rate",
         str(args.rate), "--reasoning-tokens", str(args.reasoning), "--answer-tokens",
         str(args.answer)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    servers.append(sim)
    # The server of bench/relay.py: r1chat under Daphne, counting its database writes.
    app = subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / "relay.py"), "--serve", str(app_port),
         "--writes-file", writes_file],
        cwd=ROOT, env=env,
    )  # fmt: skip
    servers.append(app)
    import django

    django.setup()
    from api.models import ApiKey
    from conversations.models import Backend
    from tests.chat_support import make_user

    base_url = f"http://127.0.0.1:{sim_port}"
    Backend.objects.create(
        name="Simulator", kind="openai", base_url=base_url, default_model=args.model
    )
    tokens = [
        ApiKey.issue(make_user(f"bench{i}", password=None), "bench")[1] for i in range(args.streams)
    ]
    relay._wait_for(f"http://127.0.0.1:{app_port}/healthz")
    relay._wait_for(f"{base_url}/models")
    print(
        f"r1chat API relay benchmark: {args.streams} streams × {args.rate:g} tokens/s, "
        f"{args.reasoning} reasoning + {args.answer} answer tokens each"
    )
    print(f"  {args.rounds} rounds; arrival {args.arrival}; one r1chat process, SQLite")
    print(f"  load average before: {relay._load()}")
    proc = psutil.Process(app.pid)
    rss_idle = proc.memory_info().rss
    peak = {"rss": rss_idle}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak["rss"] = max(peak["rss"], proc.memory_info().rss)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    sim_proc, me = psutil.Process(sim.pid), psutil.Process()
    rounds: list[dict[str, Any]] = []
    cpu = 0.0
    writes = 0
    for number in range(args.rounds):
        order = ("direct", "r1chat") if number % 2 == 0 else ("r1chat", "direct")
        round_: dict[str, Any] = {"order": ", ".join(order)}
        for side in order:
            writes_before = relay._writes([writes_file])
            cpu_before = sum(proc.cpu_times()[:2])
            others_before = sum(sim_proc.cpu_times()[:2]), sum(me.cpu_times()[:2])
            gc.collect()
            t = time.perf_counter()
            if side == "direct":
                round_[side] = asyncio.run(relay.phase_direct(args, sim_port))
            else:
                round_[side] = asyncio.run(phase_api(args, app_port, tokens))
            elapsed = time.perf_counter() - t
            if side == "r1chat":
                cpu += sum(proc.cpu_times()[:2]) - cpu_before
            others = (
                sum(sim_proc.cpu_times()[:2]) - others_before[0],
                sum(me.cpu_times()[:2]) - others_before[1],
            )
            time.sleep(SETTLE_SECONDS)
            if side == "r1chat":
                writes += relay._writes([writes_file]) - writes_before
            print(
                f"  round {number + 1}, {side + ':':<8} {elapsed:5.1f} s (CPU of the simulator /"
                f" this client {others[0]:.1f} / {others[1]:.1f} s; server RSS now "
                f"{proc.memory_info().rss / 2**20:.0f} MiB)",
                flush=True,
            )
        rounds.append(round_)
    sampling.set()
    print(f"  load average after: {relay._load()}")
    server = {
        "cpu_seconds": cpu,
        "cpu_seconds_per_process": [cpu],
        "rss_idle_mib": [rss_idle / 2**20],
        "rss_peak_mib": [peak["rss"] / 2**20],
        "db_writes": writes,
    }
    result = relay.figures(args, rounds, server)
    relay.print_summary(result)
    print('  ("r1chat" in the lines above is its API)')
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
