"""The serving process's garbage-collector policy: freeze what start-up built, collect the oldest
generation less often.

Python's cyclic collector walks every tracked object of the generations it collects. A serving
process starts with ~100,000 of them (Django, Channels, Twisted, the URLconf, the models), all of
which live for the life of the process, and a full (generation 2) collection that walks them
took 90–100 ms on this project's machine: it came about once per burst of 200 questions and
every answer waited behind it. Frozen objects (`gc.freeze()`) are never walked again, and
generation 2 is collected after 100 generation-1 collections instead of 10, so the full
collections that remain are rare and walk only what was allocated since start-up. Reference
counting still frees everything that has no cycle at once; cyclic garbage is still collected by
the young generations as before.
"""

from __future__ import annotations

import gc

# Python's defaults are (700, 10, 10).
THRESHOLDS = (700, 10, 100)


def apply() -> None:
    """Collect what start-up left behind, freeze the rest and set the thresholds (idempotent)."""
    _load_lazy_modules()
    freeze()


def freeze() -> None:
    """The policy without the URLconf: for a process that serves no views (the simulator)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


def _load_lazy_modules() -> None:
    """Import what Django would otherwise import on the first request, so it is frozen too."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports every view module)
