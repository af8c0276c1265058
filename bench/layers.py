#!/usr/bin/env python
"""What carrying team mode's cross-process traffic costs on each channels-redis layer.

    .venv/bin/python bench/layers.py --redis redis://127.0.0.1:6379/8 --streams 100

Two `TeamChannelLayer`s (two processes of one install), each on the channels-redis layer under
test. Process A sends every stream's coalesced delta (one every 0.2 s per stream, as the runner
does) to a group whose member is a tab in process B. Printed per layer: messages delivered,
delivery latency p50/p99, and CPU-seconds per 1,000 messages of this process (both sides).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1chat.settings")

LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


async def run(kind: str, url: str, streams: int, seconds: float) -> None:
    from r1chat.layers import TeamChannelLayer

    prefix = f"bench-layers-{uuid.uuid4().hex[:8]}"
    a = TeamChannelLayer(hosts=[url], prefix=prefix, redis_layer=LAYERS[kind], capacity=1000)
    b = TeamChannelLayer(hosts=[url], prefix=prefix, redis_layer=LAYERS[kind], capacity=1000)
    tabs = [await b.new_channel() for _ in range(streams)]
    for i, tab in enumerate(tabs):
        await b.group_add(f"conv.{i}", tab)
    await a.new_channel()
    latencies: list[float] = []
    expected = int(seconds / 0.2) * streams

    async def tab(channel: str) -> None:
        while True:
            message = await b.receive(channel)
            latencies.append(time.perf_counter() - message["at"])

    async def stream(i: int) -> None:
        await asyncio.sleep(0.2 * i / streams)
        for n in range(int(seconds / 0.2)):
            frame = {"type": "generation.delta", "seq": n, "answer": "x" * 40}
            await a.group_send_remote(f"conv.{i}", {**frame, "at": time.perf_counter()})
            await asyncio.sleep(0.2)

    readers = [asyncio.create_task(tab(channel)) for channel in tabs]
    cpu = time.process_time()
    await asyncio.gather(*(stream(i) for i in range(streams)))
    await asyncio.sleep(1.0)
    cpu = time.process_time() - cpu
    for reader in readers:
        reader.cancel()
    latencies.sort()
    p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(
        f"{kind:7} delivered {len(latencies)}/{expected}  "
        f"latency p50 {p(0.5):.1f} ms p99 {p(0.99):.1f} ms  "
        f"CPU {cpu / max(1, len(latencies)) * 1000:.3f} CPU-s per 1,000 messages "
        f"(median {statistics.median(latencies) * 1000 if latencies else 0:.1f} ms)"
    )
    await a.flush()
    await a.close()
    await b.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--layers", default="core,pubsub")
    args = parser.parse_args()
    import django

    django.setup()
    for kind in args.layers.split(","):
        asyncio.run(run(kind, args.redis, args.streams, args.seconds))


if __name__ == "__main__":
    main()
