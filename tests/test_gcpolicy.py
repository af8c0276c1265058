"""The serving process freezes its start-up heap and collects generation 2 less often
(r1chat/gcpolicy.py), and cyclic garbage made while serving is still collected."""

from __future__ import annotations

import json
import subprocess
import sys

from r1chat import gcpolicy
from tests.processes import BASE_DIR, app_env

PROBE = """
import gc, json, weakref
import r1chat.asgi  # what Daphne imports to serve

class Node:
    pass

freed = []
for _ in range(1000):  # cycles, as a dropped stream's objects can be
    a, b = Node(), Node()
    a.other, b.other = b, a
    weakref.finalize(a, freed.append, 1)
del a, b
for _ in range(20):  # the allocations of serving, without any gc.collect()
    junk = [[i] for i in range(700)]
print(json.dumps({
    "frozen": gc.get_freeze_count(),
    "threshold": gc.get_threshold(),
    "enabled": gc.isenabled(),
    "cycles_freed": len(freed),
    "urlconf_loaded": "conversations.views" in __import__("sys").modules,
}))
"""


def test_the_serving_process_freezes_start_up_and_still_collects_cycles() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=BASE_DIR,
        env=app_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    assert probe["enabled"] is True
    assert probe["frozen"] > 50_000  # Django, Channels, Twisted, the URLconf: never walked again
    assert probe["urlconf_loaded"] is True  # views imported before the freeze, not lazily after
    assert tuple(probe["threshold"]) == gcpolicy.THRESHOLDS
    assert probe["cycles_freed"] >= 990  # the young generations still free cyclic garbage
