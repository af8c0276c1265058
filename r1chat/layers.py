"""The channel layers: one process (`LocalChannelLayer`, the embedded default) and a team of
processes behind Redis (`TeamChannelLayer`, when REDIS_URL is set).

Both implement Channels' documented layer interface (`new_channel`, `send`, `receive`,
`group_add`, `group_discard`, `group_send`, `flush`). Frames stay in their process (DESIGN.md,
Scale-out): a runner sends every frame to the tabs of its own process through the local layer,
and Redis carries what crosses processes — control messages, announcements and coalesced frames
for tabs in other processes (`group_send_remote`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import string
from collections.abc import Iterable
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

logger = logging.getLogger(__name__)


class LocalChannelLayer(BaseChannelLayer):
    """The channels and groups of one process, in dicts and queues.

    Channels' `InMemoryChannelLayer` is meant for tests: it sweeps every channel and group for
    expired entries on each call (its cost grows with streams²) and deep-copies every message.
    Here a channel is a bounded queue that lives from `new_channel` (or its first receive) until
    its reader goes away with nothing left in it; a group is a set of channel names. A message
    is passed on as a shallow copy: frames are never changed after they are sent.
    """

    extensions = ["groups", "flush"]

    def __init__(self, expiry: int = 60, group_expiry: int = 86400, capacity: int = 1000,
                 channel_capacity: Any = None, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        self.group_expiry = group_expiry
        self.channels: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.groups: dict[str, set[str]] = {}
        self.prefix = "specific." + "".join(random.choices(string.ascii_letters, k=12)) + "!"

    async def new_channel(self, prefix: str = "specific.") -> str:
        name = self.prefix + "".join(random.choices(string.ascii_letters + string.digits, k=12))
        self._queue(name)
        return name

    def owns(self, channel: str) -> bool:
        return channel.startswith(self.prefix) or channel in self.channels

    def _queue(self, channel: str) -> asyncio.Queue[dict[str, Any]]:
        queue = self.channels.get(channel)
        if queue is None:
            self.require_valid_channel_name(channel)
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        self.put(channel, message)

    def put(self, channel: str, message: dict[str, Any]) -> None:
        """Queue `message` for `channel`; a channel whose reader went away drops it."""
        queue = self.channels.get(channel)
        if queue is None:
            if channel.startswith(self.prefix):
                return  # its reader went away: nobody will read it
            queue = self._queue(channel)
        try:
            queue.put_nowait(dict(message))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict[str, Any]:
        queue = self._queue(channel)
        try:
            return await queue.get()
        except BaseException:
            # The reader went away (its socket closed): the queue goes with it if nothing is
            # left in it for a later reader.
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
            raise

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self.groups.setdefault(group, set()).add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is not None:
            members.discard(channel)
            if not members:
                del self.groups[group]

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.group_put(group, message)

    group_send_local = group_send

    async def group_send_remote(
        self, group: str, message: dict[str, Any], on_sent: Any = None
    ) -> None:
        """Nothing: one process has no other processes."""
        if on_sent is not None:
            on_sent()

    remote = False  # (whether other processes exist to be told: see TeamChannelLayer)

    def group_put(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        for channel in list(self.groups.get(group, ())):
            try:
                self.put(channel, message)
            except ChannelFull:
                # A member that stopped reading misses the message, as with Channels' layers;
                # not silently (a tab that resubscribes gets a complete snapshot again).
                logger.warning(
                    "channel %s is full; dropped a %s frame", channel, message.get("type")
                )

    def local_channels(self) -> Iterable[str]:
        return list(self.channels)

    async def flush(self) -> None:
        self.channels.clear()
        self.groups.clear()

    async def close(self) -> None:
        pass


# --- several processes ----------------------------------------------------------------------

TEAM_GROUP = "r1chat.team"  # every process of an install listens here
BATCH = "r1chat.batch"  # what one process sends the others in one tick
PING = "r1chat.ping"  # a process's message to itself through Redis: is Redis there?
LINK_DOWN = "layer.down"  # to every local channel: Redis is unreachable
SEND_INTERVAL = 0.05  # seconds: what goes to other processes leaves together, in order
PING_INTERVAL = 1.0  # seconds
DOWN_AFTER = 3.0  # seconds without an answer to a ping


def _hosts(hosts: Any) -> Any:
    """A bare URL gets a pool of more than redis-py's 100 connections."""
    return [
        {"address": host, "max_connections": 1000} if isinstance(host, str) else host
        for host in hosts or ["redis://localhost:6379"]
    ]


class TeamChannelLayer(LocalChannelLayer):
    """The local layer of one process, joined to the other processes through channels-redis.

    Groups and channels live in each process's local layer. What a process sends to other
    processes (the remote part of a group send, a send to another process's channel) waits in
    one outbox and leaves every SEND_INTERVAL as one message, in order, to a group every process
    of the install belongs to (`r1chat.team`) on a channels-redis layer, through its public API;
    each process hands the items to its own members (and ignores its own batches). So Redis
    carries a few messages a second per process however many streams run: a message per group
    send saturated Redis's one connection for publishing at 50 streams (their Stop frames queued
    behind the frames for tens of seconds). The channels-redis layer is `RedisPubSubChannelLayer`
    by default (bench/layers.py: a third of the CPU of `RedisChannelLayer` for the same traffic).

    Every PING_INTERVAL the process sends itself a ping through Redis. When pings stop coming
    back (or Redis refuses a command), every local channel is sent `layer.down` (the chat
    sockets close, so tabs reconnect with backoff and catch up from a snapshot), and `down` is
    true until pings come back.
    """

    remote = True

    def __init__(
        self,
        hosts: Any = None,
        prefix: str = "asgi",
        redis_layer: str = "channels_redis.pubsub.RedisPubSubChannelLayer",
        **kwargs: Any,
    ) -> None:
        from django.utils.module_loading import import_string

        redis_layer_class = import_string(redis_layer)
        layer_options = {
            key: kwargs.pop(key) for key in ("capacity", "expiry", "group_expiry") if key in kwargs
        }
        super().__init__(**layer_options, **kwargs)
        self.make_redis = lambda: redis_layer_class(
            hosts=_hosts(hosts), prefix=prefix, **layer_options
        )
        self.redis = self.make_redis()
        self.home: str | None = None  # this process's channel on Redis
        self.tasks: list[asyncio.Task[None]] = []  # the reader, the sender and the watcher
        self.outbox: list[list[Any]] = []  # [group, message, None] or [None, message, channel]
        self.outbox_ready = asyncio.Event()
        self.sent_callbacks: list[Any] = []  # called once the outbox as it is now has left
        self.down = False
        self.pong_at = 0.0
        self.pongs: list[asyncio.Future[None]] = []

    async def _home(self) -> str:
        loop = asyncio.get_running_loop()
        if self.tasks and self.tasks[0].get_loop() is not loop:
            # Used from another event loop (a test, a management command): what belonged to
            # the old one cannot be used from this one, so Redis is joined afresh.
            self.redis, self.home, self.tasks, self.outbox = self.make_redis(), None, [], []
            self.outbox_ready, self.pongs = asyncio.Event(), []
        if not self.tasks or any(task.done() for task in self.tasks):
            for task in self.tasks:
                task.cancel()
            if self.home is None:
                self.home = await self.redis.new_channel()
                await self.redis.group_add(TEAM_GROUP, self.home)
                # (local channel names are derived from the home channel: see `send`)
                self.prefix = self.home + "."
            self.pong_at = loop.time()
            self.tasks = [
                loop.create_task(self._read(), name="channel layer reader"),
                loop.create_task(self._send_batches(), name="channel layer sender"),
                loop.create_task(self._watch(), name="channel layer watcher"),
            ]
        assert self.home is not None
        return self.home

    async def new_channel(self, prefix: str = "specific.") -> str:
        await self._home()
        return await super().new_channel(prefix)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        await self._home()
        if self.owns(channel):
            self.put(channel, message)
            return
        self.require_valid_channel_name(channel)
        self._post([None, message, channel])

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.group_put(group, message)
        await self.group_send_remote(group, message)

    async def group_send_local(self, group: str, message: dict[str, Any]) -> None:
        self.group_put(group, message)

    async def group_send_remote(
        self, group: str, message: dict[str, Any], on_sent: Any = None
    ) -> None:
        """Only to the members in other processes (with the next batch); `on_sent()` is
        called once the batch has gone to Redis."""
        assert isinstance(message, dict), "message is not a dict"
        await self._home()
        self._post([group, message, None])
        if on_sent is not None:
            self.sent_callbacks.append(on_sent)

    def _post(self, item: list[Any]) -> None:
        self.outbox.append(item)
        self.outbox_ready.set()

    async def ping(self, timeout: float = 2.0) -> None:
        """Return once a message to this process went through Redis and back."""
        home = await self._home()
        pong = asyncio.get_running_loop().create_future()
        self.pongs.append(pong)
        await self.redis.send(home, {"type": PING})
        await asyncio.wait_for(pong, timeout)

    # --- the process's channel on Redis ---

    async def _send_batches(self) -> None:
        """The outbox, every SEND_INTERVAL, as one message to every process."""
        assert self.home is not None
        while True:
            await self.outbox_ready.wait()
            await asyncio.sleep(SEND_INTERVAL)
            self.outbox_ready.clear()
            items, self.outbox = self.outbox, []
            callbacks, self.sent_callbacks = self.sent_callbacks, []
            try:
                await self.redis.group_send(
                    TEAM_GROUP, {"type": BATCH, "origin": self.home, "items": items}
                )
            except Exception as exc:
                # Lost with Redis; the tabs that missed them take a snapshot once it is back.
                self._lost(exc)
                continue
            for callback in callbacks:
                callback()

    async def _read(self) -> None:
        """Hand what Redis brings to this process's channels, for the life of the process."""
        assert self.home is not None
        delay = 0.2
        while True:
            try:
                envelope = await self.redis.receive(self.home)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            if envelope.get("type") == PING:
                self.pong_at = asyncio.get_running_loop().time()
                if self.down:
                    logger.warning("channel layer: Redis is back")
                    self.down = False
                pongs, self.pongs = self.pongs, []
                for pong in pongs:
                    if not pong.done():
                        pong.set_result(None)
            elif envelope.get("type") == BATCH and envelope.get("origin") != self.home:
                self._deliver(envelope.get("items") or [])

    async def _watch(self) -> None:
        """Ping this process through Redis; say when Redis goes and comes back."""
        assert self.home is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PING_INTERVAL)
            try:
                await self.redis.send(self.home, {"type": PING})
                # (the team group again: a restarted Redis forgot it; a no-op otherwise)
                await self.redis.group_add(TEAM_GROUP, self.home)
            except Exception as exc:
                self._lost(exc)
                continue
            if loop.time() - self.pong_at > DOWN_AFTER:
                self._lost(TimeoutError("no answer through Redis"))

    def _lost(self, exc: BaseException) -> None:
        if not self.down:
            logger.warning("channel layer: Redis is unreachable (%s)", exc)
            self.down = True
            self._tell_local({"type": LINK_DOWN})

    def _deliver(self, items: list[Any]) -> None:
        for group, message, channel in items:
            if not isinstance(message, dict):
                continue
            if group is not None:
                self.group_put(str(group), message)
            elif self.owns(str(channel)):
                try:
                    self.put(str(channel), message)
                except ChannelFull:
                    logger.warning("dropped a %s message for %s", message.get("type"), channel)

    def _tell_local(self, message: dict[str, Any]) -> None:
        for channel in self.local_channels():
            with contextlib.suppress(ChannelFull):
                self.put(channel, message)

    async def flush(self) -> None:
        await super().flush()
        self.outbox = []
        await self.redis.flush()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = []
        closing = getattr(self.redis, "close_pools", None) or self.redis.flush
        await closing()
