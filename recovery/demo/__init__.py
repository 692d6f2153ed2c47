"""``python -m recovery demo``: a simulated service kept up by a recovery manager.

The command line is ``recovery.demo.cli``; the scenario (plugins, faults, workers) is
``recovery.demo.scenario``; one process's run is ``recovery.demo.local``, a fleet's
``recovery.demo.fleet``. The names below are the ones the single ``recovery/demo.py``
module had, kept for code that imported them from ``recovery.demo``.
"""

from recovery.demo.calls import OUTCOMES, RECENT_SPAN
from recovery.demo.cli import MAX_WORKERS, add_arguments, run
from recovery.demo.interrupt import EXIT_INTERRUPTED
from recovery.demo.output import EXIT_USAGE, THREAD_GRACE
from recovery.demo.scenario import (
    BOOT_CRASHES,
    CALL_DEADLINE,
    PLUGINS,
    SLOW_LATENCY,
    WORKER_PAUSE,
)
from recovery.demo.screen import TICK
from recovery.demo.state_times import STATES

__all__ = [
    "BOOT_CRASHES",
    "CALL_DEADLINE",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "MAX_WORKERS",
    "OUTCOMES",
    "PLUGINS",
    "RECENT_SPAN",
    "SLOW_LATENCY",
    "STATES",
    "THREAD_GRACE",
    "TICK",
    "WORKER_PAUSE",
    "add_arguments",
    "run",
]
