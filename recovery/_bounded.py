"""Run a step that may hang on a thread of its own, and wait for it at most a timeout.

Why threads are abandoned: Python cannot kill a thread, and the steps of a
recovery are the code most likely to hang: a plugin's ``shutdown`` stuck on a
dead socket, a user's ``can_handle`` or ``recover`` waiting on a lock, a health
check that never answers. Run on the manager's worker, such a step would take
the worker with it, and with it the recovery of every other plugin. So each step
runs on a daemon thread of its own while the caller waits on the manager's clock
(a FakeClock in tests) at most the step's timeout; past it the caller goes on
without it. The thread is *abandoned*: listed as stuck (the manager's status
shows it) until the step returns, its late result dropped; a daemon, it never
keeps the process alive.

Abandoned threads are bounded per key (the manager's key is the plugin): a step
that hangs every time, retried for a day, would otherwise leave a thread per
try. Once ``max_stuck_per_key`` threads of a key are stuck, no more are started
for it (the run is *refused*, and fails at once) until one of them returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import attrs

from recovery import _clock, _deadline

BoundedRunner = Callable[[Callable[[], object], float, str], bool]
"""``run(fn, timeout, label) -> finished``: run ``fn`` for at most ``timeout`` seconds.

Returns True when ``fn`` returned, False when it was still running at the
deadline (it is then abandoned, and reported by the manager); re-raises what
``fn`` raised.
"""


def run_inline(fn: Callable[[], object], timeout: float, label: str) -> bool:
    """A :data:`BoundedRunner` without a bound: runs ``fn`` on the caller's thread.

    The default of a :class:`~recovery.strategies.RecoveryContext` built by hand (in
    a test of a strategy); the manager gives its contexts a runner that enforces
    the timeout.
    """
    fn()
    return True


_QUICK = 0.002  # real seconds

Wait = Callable[[threading.Event, float], object]
"""``wait(event, timeout)``: how the caller waits for a run to finish."""


@attrs.define(eq=False)
class Run:
    """One step running on its own thread: how it went, once it has."""

    label: str
    key: str | None = None  # whose run it is (the manager's: the plugin), for the bound
    started: float = attrs.field(factory=time.time)  # wall clock, for status
    wake: threading.Event = attrs.field(factory=threading.Event)  # set when it finishes
    finished: bool = False
    value: object = None
    error: BaseException | None = None
    refused: bool = False  # not started: its key has as many stuck threads as allowed


class ThreadRunner:
    """Runs steps on daemon threads under a timeout of ``clock``; remembers the stuck ones.

    ``on_thread_start`` is called first on each step's thread (the manager marks
    the thread as its own there, so a ``stop()`` made from a step does not join).
    At most ``max_stuck_per_key`` abandoned threads per key; past that, runs of
    that key are refused until one returns.
    """

    def __init__(self, clock: _clock.Clock, on_thread_start: Callable[[], object],
                 max_stuck_per_key: int = 4) -> None:
        self._clock = clock
        self._on_thread_start = on_thread_start
        self._max_stuck = max_stuck_per_key
        self._lock = threading.Lock()
        self._running: set[Run] = set()
        self._stuck: set[Run] = set()
        self._interrupted = False

    def run(self, fn: Callable[[], object], timeout: float, label: str,
            wait: Wait | None = None, key: str | None = None) -> Run:
        """Run ``fn`` on its own daemon thread and wait for it with ``wait`` (default:
        on the clock) at most ``timeout`` seconds; the run tells how it went.

        A run still going at the deadline is abandoned and listed as stuck until it
        returns. :meth:`interrupt` cuts the wait short. A run of a ``key`` that has
        ``max_stuck_per_key`` stuck threads is refused: not started, ``refused`` True.
        """
        run = Run(label, key)
        if key is not None and self.stuck_count(key) >= self._max_stuck:
            run.refused = True
            return run

        def target() -> None:
            self._on_thread_start()
            try:
                run.value = fn()
            except BaseException as exc:
                run.error = exc
            finally:
                with self._lock:
                    run.finished = True
                    self._stuck.discard(run)
                run.wake.set()

        thread = threading.Thread(target=target, name=f"recovery {label}", daemon=True)
        with self._lock:
            self._running.add(run)
            if self._interrupted:
                run.wake.set()
        thread.start()
        # Most steps are done in microseconds: a short real-time wait first spares them
        # a wait on the clock (a FakeClock polls its waiters every few milliseconds).
        if run.wake.wait(_QUICK):
            pass
        elif wait is None:
            _deadline.wait_for(self._clock, run.wake, timeout)
        else:
            wait(run.wake, timeout)
        with self._lock:
            self._running.discard(run)
            if not run.finished:
                self._stuck.add(run)
                return run
        thread.join(1.0)  # it has finished; only its last bytecodes remain
        return run

    def run_or_raise(self, fn: Callable[[], object], timeout: float, label: str,
                     key: str | None = None) -> bool:
        """:meth:`run` as a :data:`BoundedRunner`: True when ``fn`` returned (its
        exception is re-raised here); False when it is still running, abandoned."""
        run = self.run(fn, timeout, label, key=key)
        if run.refused:
            raise RuntimeError(f"{label} not started: too many of its threads are stuck")
        if not run.finished:
            return False
        if run.error is not None:
            if isinstance(run.error, Exception):
                raise run.error
            raise RuntimeError(f"{label} raised {run.error!r}") from run.error
        return True

    def interrupt(self) -> None:
        """End every wait now, and every later one at once, until :meth:`resume`."""
        with self._lock:
            self._interrupted = True
            for run in self._running:
                run.wake.set()

    def after_fork(self) -> None:
        """In a forked child: the parent's runs and their threads are not here."""
        self._lock = threading.Lock()
        self._running = set()
        self._stuck = set()

    def resume(self) -> None:
        """Wait for runs again (the manager started again)."""
        with self._lock:
            self._interrupted = False

    def running(self) -> list[Run]:
        """Runs being waited for now."""
        with self._lock:
            return list(self._running)

    def stuck_count(self, key: str) -> int:
        """Abandoned runs of ``key`` still going."""
        with self._lock:
            return sum(1 for run in self._stuck if run.key == key)

    def stuck(self) -> list[Run]:
        """Abandoned runs still going, oldest first."""
        with self._lock:
            return sorted(self._stuck, key=lambda run: run.started)
