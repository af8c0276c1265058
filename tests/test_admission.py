"""The order of work in a burst of questions (conversations.admission), on a real event loop.

A "pass" is one run of the loop over its ready callbacks; each test counts passes with a
callback that re-schedules itself, so "in pass n" is what the loop itself did."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest

from conversations import admission as admission_module
from conversations.admission import Admission


class Passes:
    """The number of the loop pass now running (a callback re-scheduled every pass)."""

    def __init__(self) -> None:
        self.now = 0
        self.loop = asyncio.get_running_loop()
        self.handle = self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.now += 1
        self.handle = self.loop.call_soon(self._tick)

    def stop(self) -> None:
        self.handle.cancel()


async def test_a_lone_frame_goes_at_once_without_waiting_for_a_pass() -> None:
    gate = Admission(asyncio.get_running_loop())
    passes = Passes()
    await gate.turn()
    assert passes.now == 0
    await gate.after_burst()  # nothing waits: nothing is held either
    await gate.after_burst(write=True)
    assert passes.now == 0
    passes.stop()


async def test_a_burst_is_taken_one_frame_per_pass_in_arrival_order() -> None:
    gate = Admission(asyncio.get_running_loop())
    passes = Passes()
    taken: list[tuple[int, int]] = []

    async def frame(i: int) -> None:
        await gate.turn()
        taken.append((i, passes.now))

    await asyncio.gather(*(frame(i) for i in range(20)))
    passes.stop()
    assert [i for i, _ in taken] == list(range(20))
    seen = [n for _, n in taken]
    assert len(set(seen)) == 20, f"two frames in one pass: {seen}"
    assert seen == sorted(seen)


async def test_io_between_two_frames_of_a_burst_is_served_before_the_next_frame() -> None:
    """What a frame's handler starts (a reply read from the model's socket, here a callback
    one pass later) runs before the burst's last frames are taken."""
    gate = Admission(asyncio.get_running_loop())
    order: list[str] = []
    loop = asyncio.get_running_loop()

    async def frame(i: int) -> None:
        await gate.turn()
        order.append(f"frame {i}")
        if i == 0:
            loop.call_soon(lambda: loop.call_soon(order.append, "first token"))

    await asyncio.gather(*(frame(i) for i in range(10)))
    assert order.index("first token") < order.index("frame 5"), order


async def test_running_streams_hold_while_questions_wait_then_go_a_few_per_pass() -> None:
    gate = Admission(asyncio.get_running_loop())
    passes = Passes()
    frames_done: list[int] = []
    resumed: list[int] = []
    written: list[int] = []

    async def frame() -> None:
        await gate.turn()
        frames_done.append(passes.now)

    async def stream() -> None:
        await gate.after_burst()
        resumed.append(passes.now)

    async def write() -> None:
        await gate.after_burst(write=True)
        written.append(passes.now)

    frames = [asyncio.create_task(frame()) for _ in range(10)]
    await asyncio.sleep(0)  # the first is taken, nine wait
    streams = [asyncio.create_task(stream()) for _ in range(20)]
    writes = [asyncio.create_task(write()) for _ in range(5)]
    await asyncio.gather(*frames, *streams, *writes)
    passes.stop()
    last_frame = max(frames_done)
    assert min(resumed) >= last_frame  # (the first held go with the last question, after it)
    per_pass = {n: resumed.count(n) for n in resumed}
    assert max(per_pass.values()) <= admission_module.HELD_PER_PASS
    assert len(per_pass) >= 20 // admission_module.HELD_PER_PASS
    assert min(written) >= max(resumed)


async def test_once_no_question_waits_a_stream_is_not_held_again_by_waiting_writes() -> None:
    """A released stream reads its next token while the burst's writes still wait for the other
    held streams: it goes on at once (re-held, streams fell behind their model for a second)."""
    gate = Admission(asyncio.get_running_loop())
    passes = Passes()
    seen: list[tuple[bool, int]] = []  # (writes waiting, passes the next token waited)

    async def stream() -> None:
        await gate.after_burst()
        writes_waiting, before = bool(gate.writes), passes.now
        await gate.after_burst()  # its next token
        seen.append((writes_waiting, passes.now - before))

    frames = [asyncio.create_task(gate.turn()) for _ in range(3)]
    await asyncio.sleep(0)  # one taken, two wait
    streams = [asyncio.create_task(stream()) for _ in range(3 * admission_module.HELD_PER_PASS)]
    writes = [asyncio.create_task(gate.after_burst(write=True)) for _ in range(5)]
    await asyncio.gather(*frames, *streams, *writes)
    passes.stop()
    assert any(waiting for waiting, _ in seen), "no stream went on while writes waited"
    assert [waited for _, waited in seen] == [0] * len(seen)


async def test_writes_held_by_a_burst_wait_for_its_first_tokens_and_not_in_a_busy_loop() -> None:
    """The burst's questions are taken, but two of its streams have no first token yet: the
    writes wait for them (a database thread writing takes the interpreter from the loop that
    relays them), and the loop sleeps meanwhile instead of running a pass after another."""
    gate = Admission(asyncio.get_running_loop())
    written: list[str] = []
    frames = [asyncio.create_task(gate.turn()) for _ in range(3)]
    await asyncio.sleep(0)  # one taken, two wait: a burst
    gate.expect()
    gate.expect()

    async def write() -> None:
        await gate.after_burst(write=True)
        written.append("written")

    writes = [asyncio.create_task(write()) for _ in range(3)]
    await asyncio.gather(*frames)
    passes = 0
    next_pass = gate._next_pass

    def counted() -> None:
        nonlocal passes
        passes += 1
        next_pass()

    gate._next_pass = counted  # type: ignore[method-assign]
    await asyncio.sleep(0.05)
    assert written == [] and passes < 5, passes  # (a pass per turn of the loop: thousands)
    gate.arrived()
    await asyncio.sleep(0.01)
    assert written == []
    gate.arrived()  # the last first token
    await asyncio.wait_for(asyncio.gather(*writes), 0.1)
    assert written == ["written"] * 3


async def test_a_lone_write_does_not_wait_for_first_tokens() -> None:
    gate = Admission(asyncio.get_running_loop())
    gate.expect()  # a stream of its own, waiting for its first token
    await asyncio.wait_for(gate.after_burst(write=True), 0.01)


async def test_a_write_waits_for_a_first_token_no_longer_than_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission_module, "HOLD_AT_MOST", 0.05)
    gate = Admission(asyncio.get_running_loop())
    frames = [asyncio.create_task(gate.turn()) for _ in range(5)]
    await asyncio.sleep(0)  # one taken, four wait
    gate.expect()  # a model that never answers
    loop = asyncio.get_running_loop()
    start = loop.time()
    write = asyncio.create_task(gate.after_burst(write=True))
    await asyncio.gather(*frames)
    await asyncio.wait_for(write, 1.0)
    assert 0.04 <= loop.time() - start < 0.3


async def test_nothing_is_held_longer_than_the_limit_while_questions_keep_coming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission_module, "HOLD_AT_MOST", 0.05)
    gate = Admission(asyncio.get_running_loop())
    flood = True

    async def tab() -> None:
        while flood:
            await gate.turn()

    feeders = [asyncio.create_task(tab()) for _ in range(3)]  # always another frame waiting
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(gate.after_burst(), 1.0)
    held = loop.time() - start
    await asyncio.wait_for(gate.after_burst(write=True), 1.0)
    flood = False
    await asyncio.gather(*feeders)
    assert 0.04 <= held < 0.5


async def test_a_cancelled_waiter_does_not_stall_the_ones_behind_it() -> None:
    gate = Admission(asyncio.get_running_loop())
    taken, first, second = (asyncio.create_task(gate.turn()) for _ in range(3))
    await asyncio.sleep(0)  # one pass: one frame taken, two wait
    assert taken.done() and not first.done() and not second.done()
    first.cancel()
    await asyncio.wait_for(second, 1.0)
    assert first.cancelled()


async def test_each_event_loop_has_its_own_gate() -> None:
    gate = admission_module.admission()
    assert admission_module.admission() is gate
    assert gate.loop is asyncio.get_running_loop()


# --- the collector waits while questions wait --------------------------------------------------


@pytest.fixture
def collector() -> Any:
    """The collector on, as in the server, and on again after the test whatever happened."""
    was = gc.isenabled()
    gc.enable()
    yield
    admission_module._paused_by = None
    if was:
        gc.enable()
    else:
        gc.disable()


async def test_the_collector_waits_while_questions_wait_and_resumes_after_them(
    collector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admission_module, "GC_RESUME_AFTER", 0.05)
    gate = Admission(asyncio.get_running_loop())
    seen: list[bool] = []

    async def question() -> None:
        await gate.turn()
        seen.append(gc.isenabled())

    await question()  # a lone question: no burst, nothing paused
    assert seen == [True] and gc.isenabled()
    seen.clear()
    await asyncio.gather(*(question() for _ in range(10)))
    assert seen[0] is True  # the first of the burst went at once
    assert not any(seen[1:]), "collected while questions waited"
    assert not gc.isenabled()  # still off: the last questions' first tokens come first
    loop = asyncio.get_running_loop()
    quiet = loop.time()
    while not gc.isenabled():
        assert loop.time() - quiet < 1.0, "the collector did not resume"
        await asyncio.sleep(0.01)
    assert loop.time() - quiet >= 0.04


async def test_the_collector_waits_no_longer_than_the_limit_while_questions_keep_coming(
    collector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admission_module, "GC_PAUSE_AT_MOST", 0.1)
    gate = Admission(asyncio.get_running_loop())
    flood = True
    off_while_flooding: list[bool] = []

    async def tab() -> None:
        while flood:
            await gate.turn()
            off_while_flooding.append(not gc.isenabled())

    feeders = [asyncio.create_task(tab()) for _ in range(3)]  # always another frame waiting
    await asyncio.sleep(0.05)
    assert not gc.isenabled()
    await asyncio.sleep(0.2)
    assert gc.isenabled()  # back at the limit, and not paused again while the flood lasts
    off_while_flooding.clear()
    await asyncio.sleep(0.05)
    assert off_while_flooding and not any(off_while_flooding)
    flood = False
    await asyncio.gather(*feeders)


async def test_a_process_that_turned_the_collector_off_keeps_it_off(collector: Any) -> None:
    gc.disable()
    gate = Admission(asyncio.get_running_loop())
    await asyncio.gather(*(gate.turn() for _ in range(5)))
    await asyncio.sleep(admission_module.GC_RESUME_AFTER + 0.05)
    assert not gc.isenabled()


def test_a_loop_closed_in_the_middle_of_a_pause_does_not_leave_the_collector_off(
    collector: Any,
) -> None:
    async def burst_then_close() -> None:
        gate = admission_module.admission()
        tasks = [asyncio.create_task(gate.turn()) for _ in range(5)]
        await asyncio.sleep(0)
        assert not gc.isenabled()
        for task in tasks:
            task.cancel()

    asyncio.run(burst_then_close())  # the loop is gone before the resume was due
    assert not gc.isenabled()

    async def next_use() -> None:
        admission_module.admission()

    asyncio.run(next_use())
    assert gc.isenabled()


# --- closed sockets' cycles are collected ------------------------------------------------------


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _old_cycle() -> weakref.ref[_Cycle]:
    """A cycle in the oldest generation, as a closed socket's: only a full collection frees it."""
    cycle = _Cycle()
    gc.collect()  # (survives, referenced: moved to generation 2)
    return weakref.ref(cycle)


async def test_every_nth_closed_socket_brings_one_full_collection_a_moment_later(
    collector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admission_module, "CLOSED_PER_COLLECTION", 3)
    monkeypatch.setattr(admission_module, "COLLECT_CLOSED_AFTER", 0.05)
    thresholds = gc.get_threshold()
    gc.set_threshold(10**6, 10**6, 10**6)  # no automatic collection in the test
    try:
        gate = Admission(asyncio.get_running_loop())
        cycle = _old_cycle()
        gate.socket_closed()
        gate.socket_closed()
        await asyncio.sleep(0.1)
        assert cycle() is not None  # two closed: nothing collected
        gate.socket_closed()
        assert cycle() is not None  # not at once
        await asyncio.sleep(0.1)
        assert cycle() is None, "the third closed socket brought no collection"
        again = _old_cycle()
        gate.socket_closed()
        await asyncio.sleep(0.1)
        assert again() is not None  # counted afresh
    finally:
        gc.set_threshold(*thresholds)


async def test_the_collection_of_closed_sockets_waits_while_questions_wait(
    collector: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admission_module, "CLOSED_PER_COLLECTION", 1)
    monkeypatch.setattr(admission_module, "COLLECT_CLOSED_AFTER", 0.05)
    monkeypatch.setattr(admission_module, "GC_PAUSE_AT_MOST", 10.0)
    thresholds = gc.get_threshold()
    gc.set_threshold(10**6, 10**6, 10**6)
    try:
        gate = Admission(asyncio.get_running_loop())
        cycle = _old_cycle()
        flood = True

        async def tab() -> None:
            while flood:
                await gate.turn()

        feeders = [asyncio.create_task(tab()) for _ in range(3)]  # always another frame waiting
        await asyncio.sleep(0.02)
        gate.socket_closed()
        await asyncio.sleep(0.2)
        assert cycle() is not None, "collected while questions waited"
        flood = False
        await asyncio.gather(*feeders)
        loop = asyncio.get_running_loop()
        quiet = loop.time()
        while cycle() is not None:
            assert loop.time() - quiet < 1.0, "the closed socket was never collected"
            await asyncio.sleep(0.01)
    finally:
        gc.set_threshold(*thresholds)
