"""Mail and SMS leave off the request path: queued to a small pool of background threads.

Sending takes as long as the provider does (an SMTP round trip, an SMS API call: 0.1–1 s); done
in the request, it made the answer's timing depend on what was sent, and a sign-up with an
address that already has an account (a notice) answer sooner or later than one with a new
address (a code). Every message — codes, notices, "unknown account" mails — is rendered in the
request and handed to :func:`defer`; the request answers at once, the same way for both.

The limits (accounts.limits.guard_send) still run in the request, before anything is queued.
A failed send is logged (no address in clear, no content); it cannot change the answer.

``R1CHAT_SEND_IN_BACKGROUND`` (default on) can turn the queue off: messages are then sent in
the request, as before. The test environment turns it off so that a test can read the outbox
right after a request; the tests of this module turn it on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_pending: set[Future[None]] = set()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=getattr(settings, "R1CHAT_SEND_WORKERS", 4),
                thread_name_prefix="r1chat-send",
            )
        return _executor


def _run(
    what: str, send: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    try:
        send(*args, **kwargs)
    except Exception as exc:
        logger.warning("Sending a %s failed: %s", what, type(exc).__name__)
    finally:
        close_old_connections()  # (a backend that touched the database in this thread)


def defer(what: str, send: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``send(*args, **kwargs)`` in a background thread (now, with the queue turned off)."""
    if not getattr(settings, "R1CHAT_SEND_IN_BACKGROUND", True):
        send(*args, **kwargs)
        return
    future = _pool().submit(_run, what, send, args, kwargs)
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _lock:
        _pending.discard(future)


def drain(timeout: float = 10.0) -> None:
    """Wait until every queued message was sent (tests, and a process about to exit)."""
    with _lock:
        pending = list(_pending)
    wait(pending, timeout=timeout)
