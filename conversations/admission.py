"""Who goes first when a burst of questions arrives at once.

asyncio runs every callback that is ready in one pass of its loop before it looks at the
sockets again. When 200 questions arrived together, one pass handled all of them (~0.7 ms
each): the models' first tokens, there a few milliseconds after each request, waited for the
whole burst, and every stream's first token came at the end of it.

Now the frames from the tabs are taken PER_PASS per pass while others wait (a Stop frame at
once: `consumers._is_stop`), so between two the loop reads the model servers and relays each
stream's first token as soon as it comes. While questions wait, what can wait does
(`after_burst`): the streams that already run hold their later tokens, and the new
conversations' rows wait to be written (a database thread busy with them takes the interpreter
from the loop for milliseconds at every pass). Once no question waits, the held streams go on
HELD_PER_PASS per pass (each catches up on several tokens at once: all at once, they delayed
the last questions' first tokens), then the writes go, once the burst's streams have their
first tokens too (`expect`/`arrived`: a database thread writing 200 new conversations took ~65
ms of interpreter in the 100 ms in which the last of those came). Nothing is held longer than
HOLD_AT_MOST, however many questions keep coming. A stream holds only while questions wait: the
writes still waiting for the held streams to go on must not hold them again (streams released
eight at a time re-held at their next token, behind writes that waited for no stream to be
held, fell up to half a second behind their model for a second after every burst).

While questions wait, the cyclic garbage collector waits too (`CollectorPause`): nearly
everything a burst allocates (runners, their requests and frames, the new messages) lives on,
and collections in the middle of a 200-question burst walked those survivors again and again,
~7 % of the burst, every question after them later by as much. The collector resumes
GC_RESUME_AFTER once no question waits (the last questions' first tokens come first), or after
GC_PAUSE_AT_MOST at the latest; its first collection then walks each survivor once.

A closed WebSocket leaves ~125 objects in reference cycles (its protocol, consumer, session,
Deferreds), which only a full collection frees; with full collections rare (`r1chat.gcpolicy`)
the serving process grew by ~14 MiB per 200 closed sockets and never gave it back. So after
every CLOSED_PER_COLLECTION closed sockets one full collection runs, COLLECT_CLOSED_AFTER later
and never while questions wait or the collector waits (it is put off until they are done).
"""

from __future__ import annotations

import asyncio
import collections
import gc
import weakref

PER_PASS = 1
HELD_PER_PASS = 8
HOLD_AT_MOST = 0.5  # seconds
GC_RESUME_AFTER = 0.1  # seconds without a waiting question
GC_PAUSE_AT_MOST = 1.0  # seconds
CLOSED_PER_COLLECTION = 100  # closed sockets
COLLECT_CLOSED_AFTER = 1.0  # seconds


class Admission:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.taken = 0  # frames taken in this pass
        self.waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        # (deadline, future), oldest first
        self.held: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self.writes: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self.scheduled = False
        self.expecting = 0  # streams asked for whose first token has not come
        self.wake: asyncio.TimerHandle | None = None  # the next write's deadline
        self.collector = CollectorPause(self)

    def socket_closed(self) -> None:
        """A WebSocket closed: its cycles are collected with the next ones' (see above)."""
        self.collector.closed()

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.held or self.writes)

    async def turn(self) -> None:
        """Wait for this frame's turn: at once, unless others came in the same pass."""
        if not self.waiting and self.taken < PER_PASS:
            self.taken += 1
            self._schedule()
            return
        future = self.loop.create_future()
        self.waiting.append(future)
        self.collector.pause()
        self._schedule()
        await future  # (cancelled once its turn came: the next pass comes all the same)

    async def after_burst(self, *, write: bool = False) -> None:
        """Wait while a burst is taken: a stream while questions wait, a write until the held
        streams went on too (at once if none is on)."""
        if not (self.busy if write else self.waiting):
            return
        future = self.loop.create_future()
        (self.writes if write else self.held).append((self.loop.time() + HOLD_AT_MOST, future))
        self._schedule()
        await future

    def expect(self) -> None:
        """A stream was asked for: writes held back by a burst wait for its first token."""
        self.expecting += 1

    def arrived(self) -> None:
        """That stream's first token came (or it ended without one)."""
        self.expecting -= 1
        if not self.expecting and self.writes:
            self._schedule()

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self._next_pass)

    def _next_pass(self) -> None:
        self.scheduled = False
        self.taken = 0
        while self.waiting and self.taken < PER_PASS:
            if _release(self.waiting.popleft()):
                self.taken += 1
        now = self.loop.time()
        released = 0
        while self.held and (
            self.held[0][0] <= now or (not self.waiting and released < HELD_PER_PASS)
        ):
            released += _release(self.held.popleft()[1])
        while self.writes and (
            self.writes[0][0] <= now or not (self.waiting or self.held or self.expecting)
        ):
            _release(self.writes.popleft()[1])
        if not self.waiting:
            self.collector.quiet()
        if self.waiting or self.held:
            self._schedule()
        elif self.writes:  # (waiting for first tokens: `arrived` or the deadline wakes them)
            self._wake_at(self.writes[0][0])

    def _wake_at(self, deadline: float) -> None:
        if self.wake is not None and self.wake.when() <= deadline:
            return
        if self.wake is not None:
            self.wake.cancel()
        self.wake = self.loop.call_at(deadline, self._woken)

    def _woken(self) -> None:
        self.wake = None
        self._schedule()


class CollectorPause:
    """The garbage collector off while questions wait (see the module's docstring)."""

    def __init__(self, gate: Admission) -> None:
        self.gate = gate
        self.paused = False
        self.spent = False  # paused for GC_PAUSE_AT_MOST: not again until no question waits
        self.limit: asyncio.TimerHandle | None = None
        self.resuming: asyncio.TimerHandle | None = None
        self.sockets_closed = 0  # since the last collection of closed sockets
        self.collecting: asyncio.TimerHandle | None = None

    def pause(self) -> None:
        if self.resuming is not None:
            self.resuming.cancel()
            self.resuming = None
        if self.paused or self.spent or not gc.isenabled():
            return  # (a process that turned collection off keeps it off)
        global _paused_by
        gc.disable()
        self.paused, _paused_by = True, self
        self.limit = self.gate.loop.call_later(GC_PAUSE_AT_MOST, self.resume, True)

    def quiet(self) -> None:
        """No question waits (now)."""
        self.spent = False
        if self.paused and self.resuming is None:
            self.resuming = self.gate.loop.call_later(GC_RESUME_AFTER, self.resume)

    def closed(self) -> None:
        self.sockets_closed += 1
        if self.sockets_closed >= CLOSED_PER_COLLECTION and self.collecting is None:
            self.collecting = self.gate.loop.call_later(COLLECT_CLOSED_AFTER, self._collect)

    def _collect(self) -> None:
        if self.gate.waiting or self.paused:
            self.collecting = self.gate.loop.call_later(COLLECT_CLOSED_AFTER, self._collect)
            return
        self.collecting = None
        self.sockets_closed = 0
        if gc.isenabled():  # (a process that turned collection off keeps it off)
            gc.collect()

    def resume(self, at_the_limit: bool = False) -> None:
        global _paused_by
        for timer in (self.limit, self.resuming):
            if timer is not None:
                timer.cancel()
        self.limit = self.resuming = None
        if self.paused:
            self.paused = False
            _paused_by = None
            gc.enable()
        self.spent = at_the_limit and bool(self.gate.waiting)


# The pause in force, if any: a loop closed in the middle of one (a test, a management command)
# must not leave the process without a collector.
_paused_by: CollectorPause | None = None


def _release(future: asyncio.Future[None]) -> bool:
    if future.done():
        return False
    future.set_result(None)
    return True


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Admission] = (
    weakref.WeakKeyDictionary()
)


def admission() -> Admission:
    loop = asyncio.get_running_loop()
    if _paused_by is not None and _paused_by.gate.loop.is_closed():
        _paused_by.resume()
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = Admission(loop)
    return found
