"""Recovery itself, measured: outages under steady traffic with every default config.

    python benchmarks/bench_recovery.py                       # prints the table
    pytest benchmarks/bench_recovery.py --benchmark-disable   # a quick smoke run

A plugin is called 50 times a second through ``execute_with_recovery``; its
dependency fails every call for 0.5 s, 10 s or 120 s, then comes back. The
manager runs with ``RecoveryConfig()`` and ``CircuitBreakerConfig()``, and the
plugin has a health check that asks the dependency (as a real one would).
Reported per outage, all on the manager's clock:

- ``to_closed``: seconds from the dependency's return to the breaker's last close;
- ``rejected_healthy``: calls rejected while the dependency was healthy;
- ``sent_down``: calls that reached the dependency while it was down;
- ``restarts``: restarts the manager performed (``initialize`` calls);
- ``episodes``, ``probes``, ``crash_loop``: episodes, crash-loop probes, and whether a
  crash loop was entered.

The whole run is simulated on a :class:`SimClock`, a FakeClock whose ``sleep``
parks until the simulation advances time (so traffic keeps flowing through
the manager's back-offs instead of time jumping past them), and the traffic
loop waits after each step until every thread of the manager is parked on the
clock again: the numbers are those of one deterministic timeline, not of how
fast this machine is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from recovery.errors import CircuitOpenError
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.state import CircuitBreakerState
from recovery.testing import FakeClock

RATE = 50.0  # calls a second
START = 1.0  # the dependency fails from here (clock seconds)
OUTAGES = (0.5, 10.0, 120.0)
AFTER = 60.0  # seconds run past an outage's end: more than the slowest recovery in the table


class SimClock(FakeClock):
    """A FakeClock whose ``sleep`` waits for the simulation to advance time, and
    that knows which of its waiters are due to wake (for :func:`quiesce`) and when
    the next one is."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__(start)
        self._parked: list[tuple[float, threading.Event]] = []
        self._parked_lock = threading.Lock()

    def sleep(self, seconds: float) -> None:  # type: ignore[override]
        if seconds > 0:
            self.wait(threading.Event(), seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        entry = (self.monotonic() + timeout, event)
        with self._parked_lock:
            self._parked.append(entry)
        try:
            return super().wait(event, timeout)
        finally:
            with self._parked_lock:
                self._parked.remove(entry)

    def due(self) -> bool:
        """True while a parked thread has been woken (deadline passed, event set)."""
        now = self.monotonic()
        with self._parked_lock:
            return any(event.is_set() or deadline <= now for deadline, event in self._parked)

    def next_wake(self) -> float | None:
        """The earliest deadline a parked thread waits for (None: nothing waits for time)."""
        with self._parked_lock:
            return min((deadline for deadline, event in self._parked if not event.is_set()),
                       default=None)


def quiesce(rm: RecoveryManager, clock: SimClock, limit: float = 10.0) -> None:
    """Wait (real time, bounded) until every thread the manager runs is parked on
    the clock: no episode acting or waiting for a free worker, no strategy or check
    running, no woken waiter (:func:`threads_parked` says so)."""
    deadline = time.monotonic() + limit
    pause = threading.Event()
    quiet_once = False
    while True:
        if threads_parked(rm, clock):
            if quiet_once:
                return
            quiet_once = True  # once more after a yield: a callback may be on its way
            time.sleep(0)
            continue
        quiet_once = False
        if time.monotonic() > deadline:
            raise RuntimeError("the manager did not settle")
        pause.wait(0.0001)


def threads_parked(rm: RecoveryManager, clock: SimClock) -> bool:
    """Whether every thread of ``rm`` that has work is parked on ``clock``, none of them due.

    The one place this harness reads the manager's private state. The public
    ``rm.is_quiescent()`` asks almost this, but for a FakeClock, whose ``sleep``
    moves the clock itself: there an episode sleeping out a back-off is at work.
    Here it is parked until the simulation moves time, and is counted as waiting,
    which takes counting the threads: each open episode neither parked for a trial
    nor queued sleeps on the clock, the timer waits on it while it has a deadline
    (a parked episode's, a crash loop's next attempt, the incident tracker's), and
    so does the health monitor's scheduler. An episode queued while every worker
    sleeps out a back-off is waiting too (many plugins, two workers).
    """
    if clock.due():
        return False
    monitor = rm._monitor  # private: the quiet rule (docstring)
    if not rm._outbox.idle():  # private: the quiet rule (docstring)
        return False
    with rm._lock:  # private: the quiet rule (docstring)
        queued = len(rm._queue)  # private: the quiet rule (docstring)
        if rm._runner.running():  # private: the quiet rule (docstring)
            return False
        if queued and rm._free_workers:  # private: the quiet rule (docstring)
            return False
        parked = len(rm._parked)  # private: the quiet rule (docstring)
        expected = rm._open_episodes - parked - queued  # private: the quiet rule (docstring)
        incident_due = rm._incident_due()  # private: the quiet rule (docstring)
        plugins = rm._plugins.values()  # private: the quiet rule (docstring)
        if parked or incident_due is not None or any(
                plugin.next_attempt is not None for plugin in plugins):
            expected += 1  # the timer
    if monitor is not None:
        if monitor.busy():
            return False
        expected += 1  # the health-check scheduler
    return clock.waiting == expected


class Dependency:
    """What the plugin calls: down from ``down_at`` for ``outage`` seconds (inf: for good)."""

    def __init__(self, clock: SimClock, down_at: float, outage: float) -> None:
        self.clock = clock
        self.down_at = down_at
        self.back_at = down_at + outage

    def up(self) -> bool:
        now = self.clock.monotonic()
        return not self.down_at <= now < self.back_at


class SimPlugin:
    """A plugin over the dependency; counts its (re)starts."""

    def __init__(self, name: str, dependency: Dependency) -> None:
        self.name = name
        self.dependency = dependency
        self.starts = 0

    def initialize(self, config: Any) -> None:
        self.starts += 1

    def shutdown(self) -> None:
        pass

    def call(self) -> str:
        if not self.dependency.up():
            raise ConnectionError("dependency down")
        return "ok"


class CheckedSimPlugin(SimPlugin):
    def health_check(self) -> bool:
        return self.dependency.up()


@attrs.frozen
class Outcome:
    outage: float
    to_closed: float | None  # None: not closed at the end
    rejected_healthy: int
    sent_down: int
    restarts: int
    episodes: int
    crash_loop: bool
    failed_at_end: bool
    crash_loop_at_end: bool
    crash_delays: tuple[float, ...]  # each crash-loop wait, in order
    probes: int  # episodes started from a crash loop
    sent_down_in_crash_loop: int


def simulate(
    outage: float,
    *,
    health_check: bool = True,
    after: float | None = None,
    config: RecoveryConfig | None = None,
    rate: float = RATE,
    audit: Any = None,
) -> Outcome:
    """Run ``rate`` calls a second through an outage of ``outage`` seconds
    (``math.inf``: it never ends) and ``after`` seconds past its end (default:
    ``AFTER``; for an endless outage, ``after`` is the whole run after the failure
    starts)."""
    clock = SimClock()
    dependency = Dependency(clock, START, outage)
    plugin = (CheckedSimPlugin if health_check else SimPlugin)("dep", dependency)
    registry = PluginRegistry()
    registry.register(plugin)
    if after is None:
        after = AFTER
    end = START + (after if outage == float("inf") else outage + after)
    episodes = _EpisodeCounter()
    rm = RecoveryManager(registry, audit if audit is not None else _Silent(),
                         config or RecoveryConfig(), episodes.logger, clock=clock)
    closed_at: list[float] = []
    crash_delays: list[float] = []
    rejected_healthy = sent_down = sent_down_in_crash_loop = 0
    crash_loop_seen = False
    with rm:
        breaker = rm.register_plugin("dep")
        breaker.add_listener(
            lambda b, old, new: closed_at.append(clock.monotonic())
            if new is CircuitBreakerState.CLOSED else None
        )
        state = rm._plugins["dep"]  # private: each crash-loop wait (Outcome.crash_delays)
        last_wait: float | None = None
        step = 1.0 / rate
        ticks = 0
        while clock.monotonic() < end:
            ticks += 1
            clock.advance(ticks * step - clock.monotonic())
            quiesce(rm, clock)
            up = dependency.up()
            in_crash_loop = state.crash_loop
            try:
                rm.execute_with_recovery("dep", plugin.call)
            except CircuitOpenError:
                rejected_healthy += up
            except ConnectionError:
                sent_down += 1
                sent_down_in_crash_loop += in_crash_loop
            quiesce(rm, clock)
            crash_loop_seen |= state.crash_loop
            next_attempt = state.next_attempt
            if next_attempt is not None and next_attempt != last_wait:
                crash_delays.append(state.crash_delay)  # a new crash-loop wait began
            last_wait = next_attempt
        recovery = rm.get_recovery_status()["plugins"]["dep"]["recovery"]
        final_state = breaker.state
    back = dependency.back_at
    to_closed = None
    if final_state is CircuitBreakerState.CLOSED and closed_at and outage != float("inf"):
        to_closed = max(closed_at[-1] - back, 0.0)
    return Outcome(
        outage=outage,
        to_closed=to_closed,
        rejected_healthy=rejected_healthy,
        sent_down=sent_down,
        restarts=plugin.starts - 1,
        episodes=episodes.episodes,
        crash_loop=crash_loop_seen,
        failed_at_end=recovery["failed"],
        crash_loop_at_end=recovery["crash_loop"],
        crash_delays=tuple(crash_delays),
        probes=episodes.probes,
        sent_down_in_crash_loop=sent_down_in_crash_loop,
    )


class _EpisodeCounter(logging.Handler):
    """Counts the manager's end-of-episode log lines (its alerts are not printed)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.episodes = self.probes = 0
        self.logger = logging.Logger("recovery.bench", logging.INFO)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("recovery episode of plugin"):
            self.episodes += 1
        elif message.startswith("crash-loop probe of plugin"):
            self.probes += 1


class _Silent:
    def log_failure_recovery(self, plugin_name: str, failure_type: str, recovery_action: str,
                             success: bool) -> None:
        pass


def table(outcomes: list[Outcome]) -> str:
    rows = [f"{'outage':>8} {'to_closed':>10} {'rejected_healthy':>17} {'sent_down':>10} "
            f"{'restarts':>9} {'episodes':>9} {'probes':>7} {'crash_loop':>11}"]
    for o in outcomes:
        closed = "-" if o.to_closed is None else f"{o.to_closed:.2f}s"
        rows.append(f"{o.outage:>7g}s {closed:>10} {o.rejected_healthy:>17} {o.sent_down:>10} "
                    f"{o.restarts:>9} {o.episodes:>9} {o.probes:>7} {o.crash_loop!s:>11}")
    return "\n".join(rows)


# -- pytest-benchmark ---------------------------------------------------------------------------


@pytest.mark.parametrize("outage", OUTAGES)
def test_recovery_after_an_outage(benchmark: Any, outage: float) -> None:
    outcome = benchmark.pedantic(simulate, args=(outage,), rounds=1, iterations=1)
    benchmark.extra_info.update(attrs.asdict(outcome))
    assert outcome.to_closed is not None
    assert not outcome.failed_at_end


def main(run: Callable[[float], Outcome] = simulate) -> None:
    print("RecoveryConfig(), CircuitBreakerConfig(); 50 calls/s; plugin with a health check")
    print(table([run(outage) for outage in OUTAGES]))
    print()
    print("the same without a health check (the half-open trials verify)")
    print(table([simulate(outage, health_check=False) for outage in OUTAGES]))


if __name__ == "__main__":
    main()
