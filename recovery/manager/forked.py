"""A manager started before ``os.fork()`` goes on working in the child.

gunicorn ``--preload`` (and any pre-forking server) imports the app, which starts
its manager, then forks the workers. ``fork()`` copies the memory but only the
thread that called it: without this, a worker's manager would say it is running
with none of its threads, and the first trip would leave the breaker REPAIRING
for good (its fallback served forever, its health check never run).

So, in the child, every manager that was running gets new locks (one held by a
parent's thread at the fork would never be released), forgets its parent's
threads and their runs, and starts its own threads again: its workers, the
deadline timer, the outbox, a health monitor given every check, and (with early
warning on) a forecaster. Episodes
queued or in flight at the fork are queued again and go on from where they
stood; alerts and records waiting for delivery stay the parent's to deliver.
The cluster does the same for its own threads (``recovery.cluster``).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recovery._bounded import ThreadRunner
    from recovery.alerts import AlertDispatcher
    from recovery.forecast.forecaster import Forecaster
    from recovery.health import HealthMonitor
    from recovery.manager.episodes import EpisodeRunner
    from recovery.manager.outbox import Outbox
    from recovery.manager.supervised import Supervised

_logger = logging.getLogger("recovery.manager")

_MANAGERS: weakref.WeakSet[ForkRenewal] = weakref.WeakSet()


class ForkRenewal:
    """The child's side of a fork, for :class:`recovery.RecoveryManager`."""

    _lock: threading.RLock
    _idle: threading.Condition
    _work_ready: threading.Condition
    _local: threading.local
    _running: bool
    _free_workers: int
    _workers: list[threading.Thread]
    _monitor: HealthMonitor | None
    _queue: collections.deque[Supervised]
    _parked: dict[str, Supervised]
    _plugins: dict[str, Supervised]
    _runner: ThreadRunner
    _episodes: EpisodeRunner
    _outbox: Outbox
    _alerts: AlertDispatcher

    if TYPE_CHECKING:
        def start(self) -> None: ...
        def _forget_forecaster(self) -> Forecaster | None: ...

    def _renew_after_fork(self) -> None:
        """Track this manager, so a forked child renews it (called once, at init)."""
        _MANAGERS.add(self)

    def _after_fork(self) -> None:
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._work_ready = threading.Condition(self._lock)
        self._local = threading.local()
        self._runner.after_fork()
        self._episodes.after_fork(self._lock)
        self._outbox.after_fork()
        self._alerts.after_fork()
        self._free_workers = 0
        self._workers = []
        self._monitor = None  # its threads stayed in the parent, as the forecaster's did
        self._forget_forecaster()
        if not self._running:
            return
        queued = set(map(id, self._queue))
        self._queue.extend(
            plugin for plugin in self._plugins.values()
            if plugin.episode is not None and id(plugin) not in queued
            and plugin.name not in self._parked)
        self._running = False
        self.start()


def _after_fork_in_child() -> None:
    for manager in list(_MANAGERS):
        try:
            manager._after_fork()
        except Exception:
            _logger.exception("a recovery manager could not be renewed after fork")


os.register_at_fork(after_in_child=_after_fork_in_child)
