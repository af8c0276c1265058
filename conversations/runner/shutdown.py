"""Graceful shutdown: running generations may finish; the rest are saved as `interrupted`.

On SIGTERM (a deploy, `docker compose stop`, a scale-down) every generation running in this
process gets `R1CHAT_SHUTDOWN_GRACE` seconds (default 20) to finish. Those still running then are
cancelled *without* a stop request, which `GenerationRunner._run` records as `interrupted`,
keeping the partial text; the tabs (in other processes too) get the `generation.done` frame.

How it hooks in. Daphne runs Twisted's asyncio reactor, and Twisted, not asyncio, owns SIGTERM
and SIGINT: its handler calls `reactor.stop()`. Daphne sends no ASGI lifespan shutdown, and once
the reactor has stopped the asyncio loop stops with it, so tasks that are not WebSocket or HTTP
connections (our runners) would simply be dropped mid-stream and left `streaming` until another
process's sweeper noticed. Before it stops, though, the reactor fires its "before shutdown"
triggers and waits for the Deferreds they return (Daphne itself uses one to cancel connection
applications). `install()` adds one such trigger that returns `drain()` as a Deferred. This
covers every way Daphne stops (SIGTERM, SIGINT, `manage.py runserver`'s Ctrl-C) and needs no
signal-handler juggling.

`track(task)` is how a generation is drained: `GenerationRunner.start()` hands its task here,
which installs the hook (idempotent and cheap), so it is in place whenever there is something to
drain. Outside Daphne it does nothing (tests, scripts). Another ASGI server can call
`install_signal_handler()` from inside its running loop instead: that chains a SIGTERM handler
which drains, then calls the handler that was there before (or, if that was the default,
re-raises SIGTERM so the process still exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

DEFAULT_GRACE = 20.0
# After the grace period, how long cancelled runners get to save their partial text.
FINISH_TIMEOUT = 10.0
POLL = 0.25  # how often the grace wait looks for runners started meanwhile

_installed: str | None = None  # "twisted" | "signal" once installed
_tracked: set[asyncio.Task[Any]] = set()  # the running generations of this process
_shutting_down = False
_draining: asyncio.Task[dict[str, int]] | None = None


def track(task: asyncio.Task[Any]) -> None:
    """A generation's task: drained at shutdown, until it ends."""
    install()
    _tracked.add(task)
    task.add_done_callback(_tracked.discard)


def grace_seconds() -> float:
    return float(getattr(settings, "R1CHAT_SHUTDOWN_GRACE", DEFAULT_GRACE))


def is_shutting_down() -> bool:
    """True once a shutdown has begun: `/readyz` turns 503 and no new work should start."""
    return _shutting_down


def installed() -> str | None:
    return _installed


async def drain(
    grace: float | None = None, *, finish_timeout: float = FINISH_TIMEOUT
) -> dict[str, int]:
    """Wait up to `grace` seconds for this process's generations, then interrupt the rest.

    Returns counts: `finished` (ended by themselves during the grace period), `interrupted`
    (cancelled at its end and saved) and `unsaved` (did not even save within `finish_timeout`;
    another process's sweeper marks those `interrupted` once their heartbeat is stale).
    """
    global _shutting_down
    _shutting_down = True
    grace = grace_seconds() if grace is None else grace
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, grace)
    seen: set[asyncio.Task[Any]] = set()

    def live() -> set[asyncio.Task[Any]]:
        tasks = {t for t in _tracked if t.get_loop() is loop}
        seen.update(tasks)
        return {t for t in tasks if not t.done()}

    pending = live()
    if pending:
        logger.info(
            "shutting down: %d generation(s) running, waiting up to %.0f s", len(pending), grace
        )
    while pending and (remaining := deadline - loop.time()) > 0:
        await asyncio.wait(pending, timeout=min(remaining, POLL))
        pending = live()  # also picks up generations started meanwhile

    interrupted: set[asyncio.Task[Any]] = set()
    for task in live():
        # No stop was asked for: the runner saves this as INTERRUPTED, not STOPPED.
        task.cancel()
        interrupted.add(task)
    unsaved = 0
    if interrupted:
        _done, still = await asyncio.wait(interrupted, timeout=finish_timeout)
        unsaved = len(still)
    result = {
        "finished": len(seen) - len(interrupted),
        "interrupted": len(interrupted) - unsaved,
        "unsaved": unsaved,
    }
    if seen:
        logger.info(
            "shutdown: %(finished)d finished, %(interrupted)d saved as interrupted, "
            "%(unsaved)d not saved",
            result,
        )
    return result


def _drain_once() -> asyncio.Task[dict[str, int]]:
    """The one drain of this process (a second signal must not start another)."""
    global _draining
    if _draining is None:
        _draining = asyncio.ensure_future(_safe_drain())
    return _draining


async def _safe_drain() -> dict[str, int]:
    from ..backends import close_all

    try:
        return await drain()
    except Exception:
        logger.exception("graceful shutdown failed")
        return {"finished": 0, "interrupted": 0, "unsaved": 0}
    finally:
        with contextlib.suppress(Exception):
            await close_all()  # the model servers' connections, closed rather than dropped


# --- hooks ---------------------------------------------------------------------------------


def install() -> str | None:
    """Arrange for `drain()` to run when Daphne shuts down. Idempotent; "twisted" or None."""
    global _installed
    if _installed is None and _install_twisted():
        _installed = "twisted"
    return _installed


def _install_twisted() -> bool:
    # Only a reactor Daphne (or someone) already installed: importing twisted.internet.reactor
    # here would install the default, non-asyncio one.
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return False
    from twisted.internet import asyncioreactor, defer

    if not isinstance(reactor, asyncioreactor.AsyncioSelectorReactor):
        return False
    try:
        loop = asyncio.get_running_loop()  # the reactor's (`track` runs in a generation's task)
    except RuntimeError:
        return False

    def before_shutdown() -> defer.Deferred[Any]:
        future = asyncio.ensure_future(_safe_drain(), loop=loop)
        return defer.Deferred.fromFuture(future)

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    return True


_Handler = Callable[[int, FrameType | None], Any] | int | None


def install_signal_handler() -> bool:
    """For servers other than Daphne: chain a SIGTERM handler that drains first.

    Call it from the main thread inside the server's running loop. Returns False otherwise.
    """
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    previous: _Handler = signal.getsignal(signal.SIGTERM)

    def after_drain(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        def start() -> None:
            task = _drain_once()
            task.add_done_callback(lambda _t: after_drain(signum, frame))

        if loop.is_closed():
            after_drain(signum, frame)
        else:
            loop.call_soon_threadsafe(start)

    signal.signal(signal.SIGTERM, on_sigterm)
    _installed = _installed or "signal"
    return True


def _reset_for_tests() -> None:
    """Forget the hook and the shutdown state (tests only; the signal handler is theirs)."""
    global _installed, _shutting_down, _draining
    _installed = None
    _shutting_down = False
    _draining = None
