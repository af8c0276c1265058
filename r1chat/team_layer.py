"""The channel layer of several processes through Redis (the default when REDIS_URL is set).

Apart from `layers` so that a single process (no REDIS_URL) never imports the Redis client
(~15 MiB).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
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
    (a group send asks Redis only who is in the group; the group sends and changes of one
    moment go together, in one round trip: `_Outbox`); messages from other
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
        self._last_score = 0.0  # of the last message sent to another process (`_send_elsewhere`)
        self._outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = (
            weakref.WeakKeyDictionary()
        )

    def _local(self, channel: str) -> bool:
        return self._mine in channel

    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        self.receive_buffer[channel].put_nowait(dict(message))
        waiter = self._waiters.get(channel)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        if self._local(channel):
            self._deliver(channel, message)
            return
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if "!" not in channel:  # (a general channel: any process may read it)
            await super().send(channel, message)
        elif await self._send_elsewhere([([channel], message)]):
            raise ChannelFull()

    async def group_add(self, group: str, channel: str) -> None:
        """With the other group changes and sends of the moment (`_Outbox`): a burst of 200
        questions joins 400 groups (the tab's and the runner's), two round trips each before."""
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self._outbox().run(_ADD, group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        await self._outbox().run(_DISCARD, group, channel)

    def _outbox(self) -> _Outbox:
        loop = asyncio.get_running_loop()
        outbox = self._outboxes.get(loop)
        if outbox is None:
            outbox = self._outboxes[loop] = _Outbox(self)
        return outbox

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Deliver to the group's channels in this process; send to the others' processes.

        Taken with the other group sends of the moment (`_Outbox`): one round trip for all of
        their members, one for all that goes to other processes. At 200 streams a group send
        per frame, ~5,000 a second, one round trip each spent ~0.75 of a core in the Redis
        client alone; and sends to other processes, four round trips each, ran out of the
        connection pool when many went at once."""
        assert self.require_valid_group_name(group), "Group name not valid"
        await self._outbox().run(_SEND, group, message)

    async def _apply(
        self, changes: list[tuple[str, str, str]], groups: list[str]
    ) -> dict[str, list[str]]:
        """Group changes ((_ADD or _DISCARD, group, channel), in order), then the channels in
        each of `groups` (expired members dropped first, as the stock layer does): one script
        per Redis server (a command each cost ~40 µs more in the client)."""
        by_server: defaultdict[int, tuple[list[tuple[str, str, str]], list[str]]] = defaultdict(
            lambda: ([], [])
        )
        for change in changes:
            by_server[self.consistent_hash(change[1])][0].append(change)
        for group in groups:
            by_server[self.consistent_hash(group)][1].append(group)
        now = time.time()
        found: dict[str, list[str]] = {}
        for index, (server_changes, names) in by_server.items():
            keys = [self._group_key(group) for _op, group, _channel in server_changes]
            keys += [self._group_key(group) for group in names]
            args: list[Any] = [now, self.group_expiry, int(now) - self.group_expiry]
            args.append(len(server_changes))
            for op, _group, channel in server_changes:
                args += (op, channel)
            replies = await self.connection(index).eval(_GROUPS_LUA, len(keys), *keys, *args)
            for group, members in zip(names, replies, strict=True):
                found[group] = [member.decode() for member in members]
        return found

    async def _send_elsewhere(self, sends: list[tuple[list[str], dict[str, Any]]]) -> int:
        """Messages for channels in other processes, one script per Redis server: each message
        once per process queue (naming its channels there, as the stock layer's group send
        does), in the order given and after those sent before; a queue at capacity drops it, as
        the stock layer does. The number dropped."""
        by_server: defaultdict[int, list[tuple[str, bytes, int]]] = defaultdict(list)
        for channels, message in sends:
            by_queue: dict[str, list[str]] = {}
            for channel in channels:
                by_queue.setdefault(self.non_local_name(channel), []).append(channel)
            for queue, names in by_queue.items():
                payload = self.serialize({**message, "__asgi_channel__": names})
                entry = (self.prefix + queue, payload, self.get_capacity(names[0]))
                by_server[self.consistent_hash(queue)].append(entry)
        dropped = 0
        for index, entries in by_server.items():
            # (scores a microsecond apart, after the last: read in the order sent)
            score = max(time.time(), self._last_score + 1e-6)
            self._last_score = score + len(entries) * 1e-6
            keys = [key for key, _payload, _capacity in entries]
            full = await self.connection(index).eval(
                _SEND_LUA,
                len(keys),
                *keys,
                *(payload for _key, payload, _capacity in entries),
                *(capacity for _key, _payload, capacity in entries),
                score,
                int(self.expiry),
            )
            dropped += full
        return dropped

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


_SEND, _ADD, _DISCARD = "s", "a", "d"

# KEYS: the groups changed (one per change), then the groups read. ARGV: the time, the groups'
# expiry, the time before which a member has expired, the number of changes, then each change
# (_ADD or _DISCARD, the channel). The stock layer's commands, in order; the members of each
# group read.
_GROUPS_LUA = """
local changes = tonumber(ARGV[4])
for i = 1, changes do
  local op, channel = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if op == 'a' then
    redis.call('ZADD', KEYS[i], ARGV[1], channel)
    redis.call('EXPIRE', KEYS[i], ARGV[2])
  else
    redis.call('ZREM', KEYS[i], channel)
  end
end
local members = {}
for i = changes + 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[3])
  members[i - changes] = redis.call('ZRANGE', KEYS[i], 0, -1)
end
return members
"""

# KEYS: the process queues, one per message (repeated for several). ARGV: the messages, the
# queues' capacities, the first message's score (the time), the expiry. Expired messages dropped
# first, as the stock send; each message scored a microsecond after the one before, so that they
# are read in order.
_SEND_LUA = """
local n = #KEYS
local now = tonumber(ARGV[2 * n + 1])
local expiry = tonumber(ARGV[2 * n + 2])
local full = 0
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, math.floor(now) - expiry)
  if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
    redis.call('ZADD', KEYS[i], now + i * 0.000001, ARGV[i])
    redis.call('EXPIRE', KEYS[i], expiry)
  else
    full = full + 1
  end
end
return full
"""


class _Outbox:
    """The group changes and sends of one event loop, taken together: everything asked for while
    the previous batch is with Redis goes in the next (one round trip for all of it, each group
    read once), so the busier the process, the more share a round trip. Changes are made in the
    order asked, before the batch's sends read the groups; messages are delivered in the order
    sent. Each caller waits for its own."""

    def __init__(self, layer: TeamChannelLayer) -> None:
        self.layer = layer
        self.pending: list[tuple[str, str, Any, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self, op: str, group: str, what: Any) -> None:
        """_ADD or _DISCARD `what` (a channel) to or from `group`, or _SEND it (a message) to
        the group's channels: those in this process first, then the others'."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.pending.append((op, group, what, future))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run(), name="group changes and sends")
        await future

    async def _run(self) -> None:
        layer = self.layer
        while self.pending:
            batch, self.pending = self.pending, []
            changes = [(op, group, channel) for op, group, channel, _f in batch if op != _SEND]
            reads = list(dict.fromkeys(group for op, group, _w, _f in batch if op == _SEND))
            try:
                members = await layer._apply(changes, reads)
            except Exception as exc:  # Redis failed: each caller gets the error
                _settle([future for _op, _group, _what, future in batch], exc)
                continue
            elsewhere: list[tuple[list[str], dict[str, Any]]] = []
            done: list[asyncio.Future[None]] = []
            waiting: list[asyncio.Future[None]] = []  # senders to other processes too
            for op, group, message, future in batch:
                if op == _SEND:
                    remote = []
                    for channel in members[group]:
                        if layer._local(channel):
                            layer._deliver(channel, message)
                        else:
                            remote.append(channel)
                    if remote:
                        elsewhere.append((remote, message))
                        waiting.append(future)
                        continue
                done.append(future)
            _settle(done, None)
            if not elsewhere:
                continue
            # Before the next batch, and before those senders go on (their next message to the
            # same process comes after): in order.
            failure: Exception | None = None
            try:
                if dropped := await layer._send_elsewhere(elsewhere):
                    logger.warning("%s frames dropped: their channels' queues are full", dropped)
            except Exception as exc:
                failure = exc
            _settle(waiting, failure)


def _settle(futures: list[asyncio.Future[None]], failure: Exception | None) -> None:
    """The callers' outcome (a cancelled caller's message went all the same)."""
    for future in futures:
        if future.done():
            continue
        if failure is None:
            future.set_result(None)
        else:
            future.set_exception(failure)
