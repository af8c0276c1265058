"""The single-process channel layer (the embedded default, when REDIS_URL is unset); several
processes use `team_layer.TeamChannelLayer`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

logger = logging.getLogger(__name__)

CLEAN_INTERVAL = 1.0


class LocalChannelLayer(InMemoryChannelLayer):
    """Channels' in-memory layer, made cheap enough to carry every streamed frame.

    The stock layer sweeps every channel and group for expired entries on each send and
    receive, starts a task per group member on each group send, and deep-copies every message:
    at 200 streams × 25 frames/s that is most of the server's CPU. Here the sweep runs at most
    once a second, group sends put straight onto the members' queues, and each member gets a
    shallow copy (frames are never mutated after sending; nested values are shared).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_clean = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._last_clean < CLEAN_INTERVAL:
            return
        self._last_clean = now
        super()._clean_expired()

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message on `channel`. The stock layer validated the name on every call and
        dropped the channel's queue whenever a receive emptied it, so each frame to a tab made
        a new queue (its capacity looked up by pattern) and checked the name twice; here the
        queue stays while its receiver does, and goes when a receive is cancelled (the socket
        closed) with nothing left in it."""
        queue = self.channels.get(channel)
        if queue is None:
            self.require_valid_channel_name(channel)
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        self._clean_expired()
        try:
            _expires, message = await queue.get()
        except BaseException:
            if queue.empty() and self.channels.get(channel) is queue:
                del self.channels[channel]
            raise
        return message

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self._put(channel, message)

    def _put(self, channel: str, message: dict[str, Any]) -> None:
        queue = self.channels.get(channel)
        if queue is None:
            self.require_valid_channel_name(channel)
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        try:
            queue.put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            try:
                self._put(channel, message)
            except ChannelFull:
                # As the stock layer, a member that stopped reading misses the message; but
                # not silently. (A tab that resubscribes gets a complete snapshot again.)
                logger.warning(
                    "channel %s is full; dropped a %s frame", channel, message.get("type")
                )
