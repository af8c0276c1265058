"""The channel layers (r1chat/layers.py) on a real event loop: one process, and several through
Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from channels.exceptions import ChannelFull

from r1chat.layers import LocalChannelLayer, TeamChannelLayer
from tests.chat_support import redis_url_or_skip


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


# --- several processes: TeamChannelLayer on the Redis this machine runs ----------------------


@pytest.fixture
async def two_processes() -> AsyncIterator[tuple[TeamChannelLayer, TeamChannelLayer]]:
    """Two layers on one Redis prefix, as two processes of one install have."""
    url = redis_url_or_skip()
    prefix = f"r1chat-layer-{uuid.uuid4().hex[:8]}"
    layers = (
        TeamChannelLayer(hosts=[url], prefix=prefix, capacity=1000),
        TeamChannelLayer(hosts=[url], prefix=prefix, capacity=1000),
    )
    yield layers
    await layers[0].flush()
    for layer in layers:
        await layer.close()


async def test_messages_reach_channels_in_this_process_and_in_others(two_processes) -> None:  # type: ignore[no-untyped-def]
    here, there = two_processes
    mine, theirs = await here.new_channel(), await there.new_channel()
    for channel, layer in ((mine, here), (theirs, there)):
        await layer.group_add("conv.x", channel)
    for n in range(20):
        await here.group_send("conv.x", {"type": "generation.delta", "n": n})
    await there.send(mine, {"type": "generation.snapshot", "n": 20})
    async with asyncio.timeout(10):
        assert [(await here.receive(mine))["n"] for _ in range(21)] == list(range(21))
        assert [(await there.receive(theirs))["n"] for _ in range(20)] == list(range(20))
    # Each once: a process's own group sends coming back through Redis are not handed on.
    await asyncio.sleep(0.3)
    assert here.channels[mine].empty() and there.channels[theirs].empty()


async def test_local_and_remote_sends_go_where_they_say(two_processes) -> None:  # type: ignore[no-untyped-def]
    """Frames stay in their process (`group_send_local`); other processes get what the runner
    sends them (`group_send_remote`)."""
    here, there = two_processes
    mine, theirs = await here.new_channel(), await there.new_channel()
    await here.group_add("conv.y", mine)
    await there.group_add("conv.y", theirs)
    await here.group_send_local("conv.y", {"type": "generation.delta", "n": 1})
    await here.group_send_remote("conv.y", {"type": "generation.delta", "n": 2})
    async with asyncio.timeout(10):
        assert (await here.receive(mine))["n"] == 1
        assert (await there.receive(theirs))["n"] == 2
    await asyncio.sleep(0.3)
    assert here.channels[mine].empty() and there.channels[theirs].empty()


async def test_a_cancelled_receive_loses_nothing(two_processes) -> None:  # type: ignore[no-untyped-def]
    """Sockets close all the time beside others: each cancels a receive."""
    here, there = two_processes
    reader = await here.new_channel()
    got: list[int] = []

    async def read() -> None:
        while True:
            got.append((await here.receive(reader))["n"])

    task = asyncio.create_task(read())

    async def churn() -> None:
        for _ in range(100):
            closing = asyncio.create_task(here.receive(await here.new_channel()))
            await asyncio.sleep(0.002)
            closing.cancel()

    async def send() -> None:
        for n in range(500):
            await there.send(reader, {"type": "generation.delta", "n": n})

    await asyncio.gather(churn(), send())
    async with asyncio.timeout(10):
        while len(got) < 500:
            await asyncio.sleep(0.01)
    task.cancel()
    assert got == list(range(500))


async def test_a_burst_of_group_sends_reaches_every_member_in_order(two_processes) -> None:  # type: ignore[no-untyped-def]
    """200 streams sending at once, each to a group with a tab in this process and one in
    another: every message arrives, each stream's in order."""
    here, there = two_processes
    streams, frames = 200, 4
    groups = [f"conv.{i}" for i in range(streams)]
    mine = [await here.new_channel() for _ in groups]
    theirs = [await there.new_channel() for _ in groups]
    for group, a, b in zip(groups, mine, theirs, strict=True):
        await here.group_add(group, a)
        await there.group_add(group, b)

    async def stream(i: int) -> None:
        for n in range(frames):
            await here.group_send(groups[i], {"type": "generation.delta", "i": i, "n": n})

    async def read(layer: TeamChannelLayer, channel: str) -> list[int]:
        return [(await layer.receive(channel))["n"] for _ in range(frames)]

    async with asyncio.timeout(30):
        got_here = asyncio.gather(*(read(here, c) for c in mine))
        got_there = asyncio.gather(*(read(there, c) for c in theirs))
        await asyncio.gather(*(stream(i) for i in range(streams)))
        assert await got_here == [list(range(frames))] * streams
        assert await got_there == [list(range(frames))] * streams


async def test_a_group_send_reaches_only_the_members_of_the_moment(two_processes) -> None:  # type: ignore[no-untyped-def]
    here, there = two_processes
    first, second = await there.new_channel(), await there.new_channel()
    await there.group_add("conv.z", first)
    await there.group_add("conv.z", second)
    await there.group_discard("conv.z", first)
    await here.group_send("conv.z", {"type": "generation.delta", "n": 1})
    async with asyncio.timeout(10):
        assert (await there.receive(second))["n"] == 1
    await there.group_discard("conv.z", second)
    await here.group_send("conv.z", {"type": "generation.delta", "n": 2})
    await asyncio.sleep(0.3)
    assert there.channels[first].empty() and there.channels[second].empty()


async def test_many_group_sends_leave_as_a_few_messages(two_processes) -> None:  # type: ignore[no-untyped-def]
    """What goes to other processes leaves in batches: 800 group sends at once arrive in
    order (in a handful of Redis messages, not 800)."""
    here, there = two_processes
    tab = await there.new_channel()
    await there.group_add("conv.many", tab)
    for n in range(800):
        await here.group_send_remote("conv.many", {"type": "generation.delta", "n": n})
    async with asyncio.timeout(10):
        assert [(await there.receive(tab))["n"] for _ in range(800)] == list(range(800))


async def test_the_health_probe_goes_through_redis(two_processes) -> None:  # type: ignore[no-untyped-def]
    here, _there = two_processes
    await here.ping()
