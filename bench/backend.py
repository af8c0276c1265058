#!/usr/bin/env python
"""Backend benchmark: the CPU cost of reading model streams in the backend layer alone.

    .venv/bin/python bench/backend.py --streams 100,200 --rate 50 --reasoning 100 --answer 200

Starts two model simulators (`manage.py simulate_models`) as subprocesses: one streaming at
`--rate` tokens per second, one answering as fast as it can with one token of each kind. Then,
for each transport (`--transports`: httpx-aiohttp, the backends' own, and httpx's default
httpcore transport, beside it in the same run) and each number of concurrent streams, it
drives the backend's `stream_chat` in this one process and prints this process's CPU (user +
system, `resource.getrusage`):
- per request: N concurrent short answers, `--requests-rounds` times over the same
  connections (their cost is mostly the request: send it, read the head, open the body);
- per token: N concurrent streams of `--reasoning` + `--answer` tokens, as CPU-s per 1,000
  tokens (everything), and µs per token once the requests' own cost is taken off.
The simulators' CPU is not counted (other processes). Transports alternate in each round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"the simulator exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the simulator did not start")


async def run_streams(
    kind: str, base_url: str, model: str, streams: int, transport: str, rounds: int = 1
) -> dict[str, float]:
    """`rounds` times N concurrent streams through one backend; CPU and wall of them all."""
    from conversations.backends.base import Answer, BackendConfig, ChatRequest, Finished, Reasoning
    from conversations.backends.ollama import OllamaBackend
    from conversations.backends.openai import OpenAIBackend

    config = BackendConfig(kind=kind, base_url=base_url)  # type: ignore[arg-type]
    backend_class = OllamaBackend if kind == "ollama" else OpenAIBackend
    backend = backend_class(config, transport=transport)  # type: ignore[arg-type]
    counts = {"events": 0, "text_events": 0, "finished": 0, "errors": 0}

    async def one(i: int) -> None:
        request = ChatRequest(model=model, messages=[{"role": "user", "content": f"bench {i}"}])
        try:
            async for event in backend.stream_chat(request):
                counts["events"] += 1
                if type(event) is Reasoning or type(event) is Answer:
                    counts["text_events"] += 1
                elif type(event) is Finished:
                    counts["finished"] += 1
        except Exception as exc:  # a benchmark counts failures, it does not stop
            counts["errors"] += 1
            print(f"  stream {i}: {type(exc).__name__}: {exc}", file=sys.stderr)

    # Warm up (imports, Ollama's capability cache, the connections) outside the measurement.
    await asyncio.gather(*(one(i) for i in range(streams)))
    for key in counts:
        counts[key] = 0
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(one(i) for i in range(streams)))
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    await backend.aclose()
    return {**counts, "wall": wall, "cpu": cpu, "requests": streams * rounds}


def start_simulator(port: int, rate: float, reasoning: int, answer: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            PYTHON,
            str(ROOT / "manage.py"),
            "simulate_models",
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--reasoning-tokens",
            str(reasoning),
            "--answer-tokens",
            str(answer),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", default="100,200", help="concurrent streams, e.g. 100,200")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second per stream")
    parser.add_argument("--reasoning", type=int, default=100, help="reasoning tokens")
    parser.add_argument("--answer", type=int, default=200, help="answer tokens")
    parser.add_argument("--path", default="openai", choices=["openai", "ollama"])
    parser.add_argument("--transports", default="aiohttp,httpcore")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--requests-rounds", type=int, default=5)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1chat.settings")
    stream_port, short_port = free_port(), free_port()
    sims = [
        start_simulator(stream_port, args.rate, args.reasoning, args.answer),
        start_simulator(short_port, 0, 1, 1),
    ]
    try:
        wait_for_port(stream_port, sims[0])
        wait_for_port(short_port, sims[1])
        import django

        django.setup()
        tokens_per_stream = args.reasoning + args.answer
        print(
            f"{args.path} path; streams of {tokens_per_stream} tokens at {args.rate:g} tokens/s "
            f"({args.reasoning} reasoning + {args.answer} answer); {os.cpu_count()} CPUs"
        )

        def url(port: int) -> str:
            return f"http://127.0.0.1:{port}" + ("/v1" if args.path == "openai" else "")

        model = "deepseek-reasoner" if args.path == "openai" else "deepseek-r1:sim"
        kind = args.path
        transports = [t.strip() for t in args.transports.split(",")]
        results: dict[tuple[str, int], list[tuple[float, float, dict[str, float]]]] = {}
        for round_ in range(args.rounds):
            order = transports if round_ % 2 == 0 else transports[::-1]
            for streams in (int(n) for n in args.streams.split(",")):
                for transport in order:
                    short = asyncio.run(
                        run_streams(
                            kind, url(short_port), model, streams, transport, args.requests_rounds
                        )
                    )
                    per_request = short["cpu"] / short["requests"]
                    long = asyncio.run(
                        run_streams(kind, url(stream_port), model, streams, transport)
                    )
                    tokens = streams * tokens_per_stream
                    per_1k = long["cpu"] / tokens * 1000
                    per_token_us = (long["cpu"] - streams * per_request) / tokens * 1e6
                    results.setdefault((transport, streams), []).append((per_request, per_1k, long))
                    print(
                        f"round {round_ + 1}  {transport:8s} {streams:4d} streams: "
                        f"{per_request * 1e6:6.0f} µs per request; "
                        f"{per_1k:.4f} CPU-s per 1,000 tokens, {per_token_us:5.1f} µs per token "
                        f"net of requests  (text events {long['text_events']:.0f}, "
                        f"errors {long['errors'] + short['errors']:.0f}, "
                        f"wall {long['wall']:.1f} s)",
                        flush=True,
                    )
        print("\nbest of the rounds (lowest CPU):")
        for (transport, streams), rows in sorted(results.items(), key=lambda kv: kv[0][1]):
            per_request = min(r[0] for r in rows)
            per_1k = min(r[1] for r in rows)
            print(
                f"  {transport:8s} {streams:4d} streams: {per_request * 1e6:6.0f} µs per request, "
                f"{per_1k:.4f} CPU-s per 1,000 tokens"
            )
    finally:
        for sim in sims:
            sim.terminate()
        for sim in sims:
            try:
                sim.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sim.kill()


if __name__ == "__main__":
    main()
