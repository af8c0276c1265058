"""The single-process channel layer (r1chat/layers.py) on a real event loop."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import ChannelFull

from r1chat.layers import LocalChannelLayer


async def test_a_readers_messages_arrive_in_order_and_its_queue_stays_while_it_reads() -> None:
    layer = LocalChannelLayer(capacity=100)
    channel = await layer.new_channel()
    await layer.group_add("conv.x", channel)
    got: list[int] = []
    queues: set[int] = set()

    async def reader() -> None:
        while True:
            got.append((await layer.receive(channel))["n"])
            queues.add(id(layer.channels[channel]))

    task = asyncio.create_task(reader())
    for n in range(50):
        await layer.group_send("conv.x", {"type": "generation.delta", "n": n})
        if n % 7 == 0:
            await asyncio.sleep(0)  # read some at once, some after others queued up
    while len(got) < 50:
        await asyncio.sleep(0)
    assert got == list(range(50))
    assert len(queues) == 1, "one queue for the channel while it is read, not one per message"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert channel not in layer.channels, "a reader that went leaves no empty queue behind"


async def test_a_message_sent_before_the_first_receive_waits_for_it() -> None:
    layer = LocalChannelLayer(capacity=100)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "hello"})
    assert (await layer.receive(channel))["type"] == "hello"


async def test_messages_queued_while_nobody_reads_wait_for_the_next_receive() -> None:
    layer = LocalChannelLayer(capacity=100)
    channel = await layer.new_channel()
    waiting = asyncio.create_task(layer.receive(channel))
    await asyncio.sleep(0)
    for kind in "abc":
        await layer.send(channel, {"type": kind})
    assert (await waiting)["type"] == "a"
    assert [(await layer.receive(channel))["type"] for _ in range(2)] == ["b", "c"]


async def test_a_full_channel_refuses_and_a_bad_name_is_refused() -> None:
    layer = LocalChannelLayer(capacity=2)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "1"})
    await layer.send(channel, {"type": "2"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "3"})
    with pytest.raises(TypeError):
        await layer.receive("not a valid name!")
