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

    async def group_send_remote(self, group: str, message: dict[str, Any]) -> None:
        """Nothing: one process has no other processes."""

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

GROUP = "r1chat.group"  # a group message for the local members of every other process
DIRECT = "r1chat.direct"  # a message for one local channel of one process
PING = "r1chat.ping"  # a process's message to itself through Redis: is Redis there?
LINK_DOWN = "layer.down"  # to every local channel: Redis is unreachable
PING_INTERVAL = 1.0  # seconds
DOWN_AFTER = 3.0  # seconds without an answer to a ping
REFRESH_GROUPS = 3.0  # seconds: memberships are written again (a restarted Redis lost them)


def _hosts(hosts: Any) -> Any:
    """A bare URL gets room to read past channels-redis's blocking pop (5 s, as redis-py's
    default read timeout: an idle reader would time out) and a pool of more than redis-py's
    100 connections."""
    return [
        {"address": host, "socket_timeout": 30, "max_connections": 1000}
        if isinstance(host, str)
        else host
        for host in hosts or ["redis://localhost:6379"]
    ]


class TeamChannelLayer(LocalChannelLayer):
    """The local layer of one process, joined to the other processes through channels-redis.

    Each process has one channel on a channels-redis layer (its public API only; by default
    `RedisPubSubChannelLayer`, which bench/layers.py measured at a third of the CPU of
    `RedisChannelLayer` for the same traffic and ~1 ms instead of hundreds of milliseconds of
    delivery) and one task reading it. A group with members in this process has that channel as
    its one member in Redis. A group send reaches the local members at once and, through Redis,
    every other process with members, which hands it to its own (a process ignores its own group
    messages coming back). A send to a channel of another process goes to that process's channel
    with the name it is for.

    Every PING_INTERVAL the process sends itself a ping through Redis. When pings stop coming
    back (or Redis refuses a command), every local channel is sent `layer.down`: the chat
    sockets close, so tabs reconnect with backoff and catch up from a snapshot. The group
    memberships are written again when pings come back, and every REFRESH_GROUPS.
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
        self.tasks: list[asyncio.Task[None]] = []  # the reader and the watcher
        self.remote_groups: dict[str, int] = {}  # group -> local members
        self.down = False
        self.pong_at = 0.0

    async def _home(self) -> str:
        loop = asyncio.get_running_loop()
        if self.tasks and self.tasks[0].get_loop() is not loop:
            # Used from another event loop (a test, a management command): what belonged to
            # the old one cannot be used from this one, so Redis is joined afresh.
            self.redis, self.home, self.tasks = self.make_redis(), None, []
            self.remote_groups.clear()
        if not self.tasks or any(task.done() for task in self.tasks):
            for task in self.tasks:
                task.cancel()
            if self.home is None:
                self.home = await self.redis.new_channel()
                # (local channel names are derived from the home channel: see `send`)
                self.prefix = self.home + "."
            self.pong_at = loop.time()
            self.tasks = [
                loop.create_task(self._read(), name="channel layer reader"),
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
        home, dot, _rest = channel.rpartition(".")
        if not dot:
            raise ValueError(f"{channel!r} is not a channel of this layer")
        await self.redis.send(home, {"type": DIRECT, "to": channel, "message": message})

    async def group_add(self, group: str, channel: str) -> None:
        home = await self._home()
        await super().group_add(group, channel)
        count = self.remote_groups.get(group, 0)
        self.remote_groups[group] = count + 1
        if not count:
            try:
                await self.redis.group_add(group, home)
            except BaseException:
                await self.group_discard(group, channel)
                raise

    async def group_discard(self, group: str, channel: str) -> None:
        members = self.groups.get(group)
        if members is None or channel not in members:
            return
        await super().group_discard(group, channel)
        count = self.remote_groups.get(group, 0) - 1
        if count > 0:
            self.remote_groups[group] = count
            return
        self.remote_groups.pop(group, None)
        if self.home is not None:
            with contextlib.suppress(Exception):  # (it lapses with the connection or expiry)
                await self.redis.group_discard(group, self.home)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.group_put(group, message)
        await self.group_send_remote(group, message)

    async def group_send_local(self, group: str, message: dict[str, Any]) -> None:
        self.group_put(group, message)

    async def group_send_remote(self, group: str, message: dict[str, Any]) -> None:
        """Only to the members in other processes."""
        home = await self._home()
        await self.redis.group_send(
            group, {"type": GROUP, "group": group, "origin": home, "message": message}
        )

    # --- the process's channel on Redis ---

    async def _read(self) -> None:
        """Hand what Redis brings to this process's channels, for the life of the process.

        Never cancelled while it reads (a channels-redis receive cancelled with a message on
        its way may lose that message)."""
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
                continue
            self._deliver(envelope)

    async def _watch(self) -> None:
        """Ping this process through Redis; say when Redis goes and comes back."""
        assert self.home is not None
        loop = asyncio.get_running_loop()
        refreshed = loop.time()
        while True:
            await asyncio.sleep(PING_INTERVAL)
            try:
                await self.redis.send(self.home, {"type": PING})
            except Exception as exc:
                self._lost(exc)
                continue
            now = loop.time()
            if now - self.pong_at > DOWN_AFTER:
                self._lost(TimeoutError(f"no answer through Redis for {now - self.pong_at:.0f} s"))
            elif self.down or now - refreshed >= REFRESH_GROUPS:
                if self.down:
                    logger.warning("channel layer: Redis is back")
                    self.down = False
                try:
                    await self._join_again()
                    refreshed = now
                except Exception as exc:
                    self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        if not self.down:
            logger.warning("channel layer: Redis is unreachable (%s)", exc)
            self.down = True
            self._tell_local({"type": LINK_DOWN})

    def _deliver(self, envelope: dict[str, Any]) -> None:
        kind = envelope.get("type")
        message = envelope.get("message")
        if not isinstance(message, dict):
            return
        if kind == GROUP and envelope.get("origin") != self.home:
            self.group_put(str(envelope.get("group")), message)
        elif kind == DIRECT:
            try:
                self.put(str(envelope.get("to")), message)
            except (ChannelFull, ValueError):
                logger.warning("dropped a %s message for %s", message.get("type"), envelope["to"])

    async def _join_again(self) -> None:
        assert self.home is not None
        for group in list(self.remote_groups):
            await self.redis.group_add(group, self.home)

    def _tell_local(self, message: dict[str, Any]) -> None:
        for channel in self.local_channels():
            with contextlib.suppress(ChannelFull):
                self.put(channel, message)

    async def flush(self) -> None:
        await super().flush()
        self.remote_groups.clear()
        await self.redis.flush()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks = []
        closing = getattr(self.redis, "close_pools", None) or self.redis.flush
        await closing()
