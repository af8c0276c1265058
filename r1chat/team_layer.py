"""The channel layer of several processes through Redis (the default when REDIS_URL is set).

Apart from `layers` so that a single process (no REDIS_URL) never imports the Redis client
(~15 MiB).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)


class TeamChannelLayer(RedisChannelLayer):
    """channels-redis `core` for several processes, with what stays in a process kept in it.

    With the stock layer every frame went through Redis even when the runner sending it and the
    tab reading it were in the same process (nearly always: a tab's question runs where the tab
    is): a group send took four round trips, and each socket's process popped its frames one at
    a time under one lock, four more round trips each. At 200 streams over two processes the
    queues filled, frames were dropped and 58 of 600 streams completed; a frame for the socket
    whose receive happened to hold the pop lock waited for that pop; and a socket closing while
    its receive held the lock dropped the popped frame, as likely another tab's.

    Here a message for one of this process's channels is put straight into that channel's buffer
    (a group send asks Redis only who is in the group: one round trip); messages from other
    processes are popped into the same buffers by a task of the process (`_pump`, while anything
    receives) that nothing cancels; a receive only waits on its own buffer, so cancelling it
    loses nothing. When Redis fails, the receives waiting in this process raise the error (their
    sockets close, as with the stock layer) and the pump tries again until Redis is back.

    Messages between processes are the stock layer's: msgpack, expiry, capacity. In a process
    they are shallow copies (frames are not changed after they are sent) and a full buffer drops
    its oldest message, as the stock layer's buffers do."""

    PUMP_RETRY_AT_MOST = 2.0  # seconds between tries while Redis is down

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mine = f".{self.client_prefix}!"  # in the name of every channel of this process
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._pumps: dict[str, asyncio.Task[None]] = {}  # by this process's queue in Redis
        self._receivers = 0  # receives in progress
        self._failures = 0  # times the pump met a Redis error, and the last one
        self._failure: Exception | None = None

    def _local(self, channel: str) -> bool:
        return self._mine in channel

    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        self.receive_buffer[channel].put_nowait(dict(message))
        waiter = self._waiters.get(channel)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        if self._local(channel):
            assert isinstance(message, dict), "message is not a dict"
            self._deliver(channel, message)
            return
        await super().send(channel, message)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _expired, members = await pipe.execute()
        elsewhere = []
        for member in members:
            channel = member.decode()
            if self._local(channel):
                self._deliver(channel, message)
            else:
                elsewhere.append(channel)
        for channel in elsewhere:  # (tabs in other processes: as the stock layer sends)
            try:
                await super().send(channel, message)
            except ChannelFull:
                logger.warning(
                    "channel %s is full; dropped a %s frame", channel, message.get("type")
                )

    async def receive(self, channel: str) -> dict[str, Any]:
        if not self._local(channel):
            return await super().receive(channel)  # type: ignore[no-any-return]
        self._receivers += 1
        try:
            self._start_pump(self.non_local_name(channel))
            loop = asyncio.get_running_loop()
            while (queue := self.receive_buffer[channel]).empty():
                waiter = self._waiters.get(channel)
                if waiter is None or waiter.done():
                    waiter = self._waiters[channel] = loop.create_future()
                failures = self._failures
                await asyncio.wait({waiter})  # (a cancel here leaves the waiter to the others)
                if self._waiters.get(channel) is waiter:
                    del self._waiters[channel]
                if self._failures != failures and self._failure is not None:
                    raise self._failure  # Redis failed while this receive waited
            message = queue.get_nowait()
            if queue.empty() and self.receive_buffer.get(channel) is queue:
                del self.receive_buffer[channel]
        finally:
            self._receivers -= 1
        return message  # type: ignore[no-any-return]

    def _start_pump(self, queue: str) -> None:
        """One pump per queue of this process in Redis (one per channel-name prefix in use)."""
        loop = asyncio.get_running_loop()
        task = self._pumps.get(queue)
        if task is None or task.done() or task.get_loop() is not loop:
            self._pumps[queue] = loop.create_task(self._pump(queue), name=f"pump {queue}")

    async def _pump(self, queue: str) -> None:
        """Pop this process's messages from Redis into their channels' buffers, while anything
        in the process receives (what comes meanwhile waits in Redis for the next receive)."""
        pause = 0.1
        while self._receivers:
            try:
                channel, message = await self.receive_single(queue)
            except Exception as exc:
                if not self._receivers:
                    return
                logger.warning("the channel layer cannot read from Redis: %s", exc)
                self._failure, self._failures = exc, self._failures + 1
                for waiter in list(self._waiters.values()):
                    if not waiter.done():
                        waiter.set_result(None)
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.PUMP_RETRY_AT_MOST)
                continue
            pause = 0.1
            for each in channel if isinstance(channel, list) else [channel]:
                self._deliver(each, message)
