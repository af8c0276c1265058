#!/usr/bin/env python
"""Backend benchmark: the CPU cost of reading model streams in the backend layer alone.

    .venv/bin/python bench/backend.py --streams 200 --rate 50 --reasoning 400 --answer 800

Starts the model simulator (`manage.py simulate_models`) as a subprocess, then drives N
concurrent `get_backend(...).stream_chat(...)` streams in this one process, through the
OpenAI-compatible path and then the Ollama path, and prints per path: events and tokens
received, wall time, and this process's CPU seconds (user + system, `resource.getrusage`) per
1,000 tokens. The simulator's own CPU is not counted (it is another process).
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


async def run_path(kind: str, base_url: str, model: str, streams: int) -> dict[str, float]:
    from conversations.backends import close_all, get_backend
    from conversations.backends.base import (
        Answer,
        BackendConfig,
        ChatRequest,
        Finished,
        Reasoning,
    )

    backend = get_backend(BackendConfig(kind=kind, base_url=base_url))  # type: ignore[arg-type]
    counts = {"events": 0, "text_events": 0, "finished": 0, "errors": 0}
    texts: list[int] = []

    async def one(i: int) -> None:
        request = ChatRequest(model=model, messages=[{"role": "user", "content": f"bench {i}"}])
        n_text = 0
        try:
            async for event in backend.stream_chat(request):
                counts["events"] += 1
                if type(event) is Reasoning or type(event) is Answer:
                    n_text += 1
                elif type(event) is Finished:
                    counts["finished"] += 1
        except Exception as exc:  # a benchmark counts failures, it does not stop
            counts["errors"] += 1
            print(f"  stream {i}: {type(exc).__name__}: {exc}", file=sys.stderr)
        counts["text_events"] += n_text
        texts.append(n_text)

    # Warm up (imports, the model capability cache of Ollama, a first connection) outside the
    # measurement: one stream up to its first event.
    warm = backend.stream_chat(
        ChatRequest(model=model, messages=[{"role": "user", "content": "hi"}])
    )
    await anext(warm)
    await warm.aclose()  # type: ignore[attr-defined]
    for key in counts:
        counts[key] = 0
    texts.clear()

    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    wall, cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    await close_all()
    return {**counts, "wall": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second per stream")
    parser.add_argument("--reasoning", type=int, default=400, help="reasoning tokens")
    parser.add_argument("--answer", type=int, default=800, help="answer tokens")
    parser.add_argument("--paths", default="openai,ollama", help="comma-separated: openai,ollama")
    parser.add_argument("--port", type=int, default=0, help="simulator port (0: a free one)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1chat.settings")
    port = args.port or free_port()
    sim = subprocess.Popen(
        [
            PYTHON,
            str(ROOT / "manage.py"),
            "simulate_models",
            "--port",
            str(port),
            "--rate",
            str(args.rate),
            "--reasoning-tokens",
            str(args.reasoning),
            "--answer-tokens",
            str(args.answer),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, sim)
        import django

        django.setup()
        tokens_per_stream = args.reasoning + args.answer
        print(
            f"{args.streams} streams × {tokens_per_stream} tokens at {args.rate:g} tokens/s "
            f"({args.reasoning} reasoning + {args.answer} answer)"
        )
        paths = {
            "openai": ("openai", f"http://127.0.0.1:{port}/v1", "deepseek-reasoner"),
            "ollama": ("ollama", f"http://127.0.0.1:{port}", "deepseek-r1:sim"),
        }
        for name in args.paths.split(","):
            kind, url, model = paths[name.strip()]
            result = asyncio.run(run_path(kind, url, model, args.streams))
            tokens = args.streams * tokens_per_stream
            print(
                f"{name:7s} events {result['events']:.0f} "
                f"(text {result['text_events']:.0f}, finished {result['finished']:.0f}, "
                f"errors {result['errors']:.0f})  wall {result['wall']:.1f} s  "
                f"CPU {result['cpu']:.2f} s  = {result['cpu'] / tokens * 1000:.4f} "
                f"CPU-s per 1,000 tokens"
            )
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sim.kill()


if __name__ == "__main__":
    main()
