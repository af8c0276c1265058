#!/usr/bin/env python
"""Bursts of questions, short answers, many rounds: what one burst costs r1chat.

    .venv/bin/python bench/bursts.py --rounds 8
    .venv/bin/python bench/bursts.py --rounds 8 --floor --announce

`bench/relay.py` measures whole streams (2,400 tokens each, ~50 s a round); the time to first
token of a burst is decided in its first few hundred milliseconds, by the CPU the server spends
on the burst, and this machine's speed drifts by a third from one minute to the next. So here
each round is two short bursts, back to back, in alternating order: N streams read straight from
the simulator, and N questions sent at once over N chat sockets (opened 2 s before), answers
of --tokens tokens. Printed per burst: the time to first token (p50/p99) and, for the server,
its CPU from the first question to the last first token ("burst CPU": the time to first token
of the last stream is about this long, since the server is busy throughout). At the end: the
medians over the rounds, and the time to first token added (the median of the rounds'
differences).

--floor serves the thinnest relay Daphne can run instead of r1chat (`bench/floor_app.py`: no
Django, no Channels, nothing checked or stored) in the same harness: the floor under r1chat's
figures on this machine. --announce makes it send three frames before the first token, as
r1chat announces a new conversation and its two messages.

--redis URL puts the servers' cache and channel layer on Redis (as REDIS_URL does in a team's
deployment; keys under a per-run prefix, deleted at the end); the database stays SQLite.

--baseline DIR also serves another checkout of r1chat (made with `git worktree add`), on the
same database and simulator; each round then has a burst for each server, in rotating order:
two versions compared in the same minutes of the machine.

    git worktree add /tmp/r1chat-base HEAD~1
    .venv/bin/python bench/bursts.py --rounds 8 --baseline /tmp/r1chat-base
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relay  # (this folder's relay.py: the same simulator, server and clients)

ROOT = relay.ROOT
QUESTION = "How are mass and energy related?"


async def app_burst(
    url: str, cookies: list[str], max_tokens: int, server: Any
) -> tuple[list[dict[str, Any]], float]:
    """N questions at once over sockets opened 2 s before; the server's CPU seconds from the
    first question to the last first token."""
    from websockets.asyncio.client import connect

    results: list[dict[str, Any]] = []
    go = asyncio.Event()
    firsts = 0
    cpu = {"start": 0.0, "burst": float("nan")}

    def server_cpu() -> float:
        return sum(server.cpu_times()[:2])

    async def one(cookie: str) -> None:
        nonlocal firsts
        async with connect(url, origin="http://127.0.0.1", additional_headers={"Cookie": cookie},
                           max_size=2**24) as ws:  # fmt: skip
            await go.wait()
            start = time.perf_counter()
            question = {"type": "send", "conversation": None, "content": QUESTION,
                        "client_id": os.urandom(8).hex(),
                        "settings": {"deep_think": True, "max_tokens": max_tokens}}  # fmt: skip
            await ws.send(json.dumps(question))
            first, status = None, None
            while status is None:
                frame = json.loads(await asyncio.wait_for(ws.recv(), relay.STALL_SECONDS))
                kind = frame["type"]
                if kind == "generation.delta" and first is None:
                    first = time.perf_counter() - start
                    firsts += 1
                    if firsts == len(cookies):
                        cpu["burst"] = server_cpu() - cpu["start"]
                elif kind == "generation.done":
                    status = frame["status"]
                elif kind == "error":
                    status = "error:" + frame["code"]
            results.append({"ttft": first, "status": status})

    tasks = [asyncio.create_task(one(cookie)) for cookie in cookies]
    await asyncio.sleep(2.0)  # every socket open (and what opening one starts, done)
    cpu["start"] = server_cpu()
    go.set()
    await asyncio.gather(*tasks)
    return results, cpu["burst"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=100, help="tokens per answer")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between bursts")
    parser.add_argument("--floor", action="store_true", help="serve bench/floor_app.py instead")
    parser.add_argument("--announce", action="store_true", help="--floor: three frames first")
    parser.add_argument("--baseline", type=Path, help="another checkout, served beside this one")
    parser.add_argument("--redis", help="REDIS_URL: the servers' cache and channel layer on Redis")
    args = parser.parse_args()

    import psutil

    data_dir, env = relay.bench_env("r1chat-bursts-", send_rate=100_000)
    if args.redis:
        env["REDIS_URL"] = args.redis
        env["R1CHAT_REDIS_PREFIX"] = f"r1chat-bursts-{os.getpid()}"
    os.environ.update(env)
    subprocess.run([relay.PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    sim_port = relay.free_port()
    reasoning = args.tokens // 2
    children = [
        subprocess.Popen(
            [relay.PYTHON, "manage.py", "simulate_models", "--port", str(sim_port),
             "--rate", str(args.rate), "--reasoning-tokens", str(reasoning),
             "--answer-tokens", str(args.tokens - reasoning)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    served_env = dict(env)
    if args.floor:
        served_env["BENCH_FLOOR"] = "1"
        served_env["BENCH_FLOOR_MODEL_SERVER"] = f"127.0.0.1:{sim_port}"
        served_env["BENCH_FLOOR_ANNOUNCE"] = "1" if args.announce else ""
    checkouts = {"this": ROOT}
    if args.baseline:
        checkouts["baseline"] = args.baseline.resolve()
    ports = {side: relay.free_port() for side in checkouts}
    servers = {}
    for side, checkout in checkouts.items():
        child = subprocess.Popen(
            [relay.PYTHON, str(checkout / "bench" / "relay.py"), "--serve", str(ports[side]),
             "--writes-file", str(Path(data_dir) / f"writes-{side}.json")],
            cwd=checkout, env={**served_env, "PYTHONPATH": str(checkout)},
        )  # fmt: skip
        children.append(child)
        servers[side] = psutil.Process(child.pid)
    try:
        import django

        django.setup()
        from conversations.models import Backend
        from tests.chat_support import make_user, session_cookie

        Backend.objects.create(name="Simulator", kind="openai", default_model="deepseek-v4-flash",
                               base_url=f"http://127.0.0.1:{sim_port}")  # fmt: skip
        cookies = [session_cookie(make_user(f"burst{i}", password=None))
                   for i in range(args.streams)]  # fmt: skip
        for port in ports.values():
            relay._wait_for(f"http://127.0.0.1:{port}/healthz")
        relay._wait_for(f"http://127.0.0.1:{sim_port}/models")
        served = "r1chat"
        if args.floor:
            served = "the floor relay (bench/floor_app.py" + (
                ", announcing)" if args.announce else ")"
            )
        if args.redis:
            served += " with its cache and channel layer on Redis"
        if args.baseline:
            served += f"; baseline: {checkouts['baseline']}"
        print(f"bursts of {args.streams} questions, {args.tokens}-token answers at "
              f"{args.rate:g} tokens/s, {args.rounds} rounds; served by {served}")  # fmt: skip
        print(f"  load average before: {relay._load()}")
        order = ["direct", *checkouts]
        rows: list[dict[str, tuple[float, float, float, int]]] = []
        for number in range(args.rounds):
            row: dict[str, tuple[float, float, float, int]] = {}
            turn = order[number % len(order) :] + order[: number % len(order)]
            for side in turn:
                with relay.steady_clock():
                    if side == "direct":
                        burst = relay.phase_direct(sim_port, args.streams, "deepseek-v4-flash", 0)
                        results, cpu = asyncio.run(burst), float("nan")
                    else:
                        url = f"ws://127.0.0.1:{ports[side]}/ws/chat/"
                        burst = app_burst(url, cookies, 4 * args.tokens, servers[side])
                        results, cpu = asyncio.run(burst)
                ttfts = [r["ttft"] * 1000 for r in results if r["ttft"] is not None]
                failed = sum(1 for r in results if r.get("status", "complete") != "complete")
                row[side] = (relay.pct(ttfts, 50), relay.pct(ttfts, 99), cpu, failed)
                time.sleep(args.settle)
            rows.append(row)
            parts = [f"{side} {row[side][0]:.1f} / {row[side][1]:.1f}" for side in order]
            cpus = [f"{side} {row[side][2] * 1000:.0f} ms" for side in checkouts]
            failed = sum(row[side][3] for side in checkouts)
            print(f"  round {number + 1} ({', '.join(turn)}): time to first token p50 / p99, "
                  f"ms: {'; '.join(parts)}; burst CPU: {', '.join(cpus)}"
                  + (f"; {failed} streams did not complete" if failed else ""))  # fmt: skip
        print(f"  load average after: {relay._load()}")
        _report(args, rows, checkouts)
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            child.wait(10)
        relay.remove_data_dir(data_dir)
        if args.redis:
            relay.remove_redis_keys(args.redis, env["R1CHAT_REDIS_PREFIX"])


def _report(args: Any, rows: list[dict[str, Any]], checkouts: dict[str, Path]) -> None:
    def median(values: Any) -> float:
        return statistics.median(list(values))

    def line(label: str, text: str) -> None:
        print(f"  {label + ':':<40}{text}")

    direct = median(r["direct"][0] for r in rows), median(r["direct"][1] for r in rows)
    line("time to first token directly", f"{direct[0]:.1f} / {direct[1]:.1f} ms (p50 / p99, "
         "the median of the rounds)")  # fmt: skip
    for side in checkouts:
        name = ("the floor" if args.floor else "r1chat") if side == "this" else "baseline"
        line(f"time to first token, {name}", f"{median(r[side][0] for r in rows):.1f} / "
             f"{median(r[side][1] for r in rows):.1f} ms")  # fmt: skip
        line(f"  added by {name}", f"{median(r[side][0] - r['direct'][0] for r in rows):.1f} / "
             f"{median(r[side][1] - r['direct'][1] for r in rows):.1f} ms "
             "(the median of the rounds' differences)")  # fmt: skip
        cpu = median(r[side][2] for r in rows)
        each = ", ".join(f"{r[side][2] * 1000:.0f}" for r in rows)
        line(f"  burst CPU of {name}", f"{cpu * 1000:.0f} ms = {cpu / args.streams * 1e6:.0f} µs "
             f"per question (median; rounds: {each} ms)")  # fmt: skip
        line(f"  streams {name} did not complete", str(sum(r[side][3] for r in rows)))
    if "baseline" in checkouts:
        ratio = median(r["this"][2] / r["baseline"][2] for r in rows)
        line("burst CPU, r1chat / baseline", f"{ratio:.2f} (the median of the rounds' ratios)")


if __name__ == "__main__":
    main()
