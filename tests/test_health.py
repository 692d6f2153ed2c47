"""Health monitor: config, results, schedule (on a fake clock), timeouts, pool, stop.

Scheduling tests drive the monitor with a FakeClock and synchronise on what the
checks and callbacks put into queues; every wait has a timeout. Tests that must
show "no extra check was started" use ``concurrency=1``: the job queue is FIFO,
so a wrongly dispatched check would run before the next legitimate one and show
up in the recorded order. On the FakeClock a slow check is detached from the pool
only when the test advances the clock past ``detach_after``, so the number of
monitor threads at each step is deterministic.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery.health import (
    DEFAULT_DETACH_AFTER,
    HealthCheckConfig,
    HealthCheckResult,
    HealthMonitor,
)
from recovery.testing import FakeClock
from tests.helpers import eventually

WAIT = 5.0  # real seconds any single wait may take before the test fails


def _get_for(results: queue.Queue[tuple[str, HealthCheckResult]], name: str) -> HealthCheckResult:
    """The next result of ``name`` from a callback queue, skipping other plugins'."""
    while True:
        got, result = results.get(timeout=WAIT)
        if got == name:
            return result


def _wait_for_status(monitor: HealthMonitor, name: str, key: str, value: Any) -> None:
    """Poll (bounded) until ``status(name)[key] == value``: for results that fire no callback."""
    eventually(lambda: monitor.status(name)[key] == value, WAIT,
               f"status[{key!r}] never became {value!r}")


def _stop_returns(monitor: HealthMonitor, timeout: float) -> None:
    """``monitor.stop(timeout)`` returns while a check still hangs.

    Not a timed assertion: the hung check is released only after this, so a stop()
    that waited for it would never return. The bound (WAIT, in real time) only keeps
    a regression from hanging the suite.
    """
    stopper = threading.Thread(target=monitor.stop, kwargs={"timeout": timeout})
    stopper.start()
    stopper.join(WAIT)
    assert not stopper.is_alive(), "stop() did not return"


def _monitor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("recovery-health")]


def _worker_threads() -> int:
    """Live worker threads: the pool plus detached and abandoned ones."""
    return sum(1 for t in _monitor_threads() if "worker" in t.name)


class Harness:
    """A monitor on a FakeClock with its callbacks recorded in queues."""

    def __init__(self, concurrency: int = 1, **monitor: Any) -> None:
        self.clock = FakeClock(100.0)
        self.monitor = HealthMonitor(concurrency=concurrency, clock=self.clock, **monitor)
        self.healthy: queue.Queue[tuple[str, HealthCheckResult]] = queue.Queue()
        self.limits: queue.Queue[tuple[str, HealthCheckResult]] = queue.Queue()

    def watch(self, name: str, check: Callable[[], Any], **config: Any) -> None:
        self.monitor.watch(
            name,
            check,
            HealthCheckConfig(**config),
            on_failure_limit=lambda n, r: self.limits.put((n, r)),
            on_healthy=lambda n, r: self.healthy.put((n, r)),
        )

    def advance_to(self, moment: float) -> None:
        """Move the clock to ``moment`` once the scheduler is parked (so no wake-up is lost)."""
        assert self.clock.wait_for_waiters(1, WAIT), "scheduler never parked"
        self.clock.advance(max(moment - self.clock.monotonic(), 0.0))

    def next_check(self, name: str) -> float:
        planned = self.monitor.next_check(name)
        assert planned is not None
        return planned

    def sync(self, moment: float, marker: Recorder, marker_grid: float) -> None:
        """Advance to ``moment``, then to the marker's first slot at or after it, and wait
        for the marker's check: with one pool worker and a FIFO queue, any check
        dispatched for ``moment`` has started by then."""
        self.advance_to(moment)
        after = marker_grid + math.ceil(moment - marker_grid)
        self.advance_to(after)
        while marker.next_call() < after:
            pass


class Recorder:
    """A check that records the clock time of each call and returns scripted values."""

    def __init__(self, clock: FakeClock, *results: Any, take: float = 0.0) -> None:
        self.clock = clock
        self.results = list(results) or [True]
        self.take = take
        self.calls: queue.Queue[float] = queue.Queue()
        self.count = 0

    def __call__(self) -> Any:
        self.calls.put(self.clock.monotonic())
        value = self.results[min(self.count, len(self.results) - 1)]
        self.count += 1
        if self.take:
            self.clock.advance(self.take)  # the check "takes" this long on the fake clock
        if isinstance(value, BaseException):
            raise value
        return value

    def next_call(self) -> float:
        return self.calls.get(timeout=WAIT)


class Gate:
    """A check whose first call blocks until released; later calls return at once."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls = 0
        self.thread: threading.Thread | None = None

    def __call__(self) -> bool:
        self.calls += 1
        if self.calls == 1:
            self.thread = threading.current_thread()
            self.started.set()
            assert self.release.wait(WAIT * 4), "gate never released"
        return True

    def join(self) -> None:
        """Wait for the thread that ran the blocked call to exit (it was abandoned)."""
        assert self.thread is not None
        self.thread.join(WAIT)
        assert not self.thread.is_alive()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.monitor.stop(timeout=2.0)


# -- config and result ------------------------------------------------------------------


def test_config_defaults_and_timedelta() -> None:
    config = HealthCheckConfig()
    assert (config.interval, config.timeout, config.max_failures) == (10.0, 5.0, 3)
    assert (config.check_type, config.custom_checks) == ("custom", ())
    config = HealthCheckConfig(
        interval=datetime.timedelta(minutes=1), timeout=datetime.timedelta(milliseconds=250)
    )
    assert (config.interval, config.timeout) == (60.0, 0.25)


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("interval", 0, ValueError),
        ("interval", 1e-7, ValueError),
        ("interval", 0.0099, ValueError),
        ("interval", float("inf"), ValueError),
        ("timeout", -1.0, ValueError),
        ("timeout", 0.005, ValueError),
        ("timeout", "5", TypeError),
        ("max_failures", 0, ValueError),
        ("max_failures", True, TypeError),
        ("check_type", "", ValueError),
        ("check_type", 5, TypeError),
        ("custom_checks", (print, 3), TypeError),
    ],
)
def test_config_rejects_bad_values_naming_field_and_value(
    field: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=re.escape(field)) as caught:
        HealthCheckConfig(**{field: value})
    assert repr(value if field != "custom_checks" else 3) in str(caught.value)


def test_the_interval_floor_is_10_ms_and_said_in_the_error() -> None:
    assert HealthCheckConfig(interval=0.01, timeout=0.01).interval == 0.01
    with pytest.raises(ValueError, match=r"interval must be .* >= 0\.01, got 1e-07"):
        HealthCheckConfig(interval=1e-7)


def test_custom_checks_none_means_none_and_a_bare_callable_is_refused() -> None:
    def check() -> bool:
        return True

    assert HealthCheckConfig(custom_checks=None).custom_checks == ()
    assert HealthCheckConfig(custom_checks=[check]).custom_checks == (check,)
    with pytest.raises(TypeError, match=r"custom_checks must be a sequence.*wrap a single"):
        HealthCheckConfig(custom_checks=check)  # type: ignore[arg-type]
    for value in (5, "check"):
        with pytest.raises(TypeError, match=f"custom_checks must be a sequence.*{value!r}"):
            HealthCheckConfig(custom_checks=value)  # type: ignore[arg-type]


def test_result_details_none_means_none_and_a_non_mapping_is_refused() -> None:
    assert HealthCheckResult(True, details=None).details == {}
    with pytest.raises(TypeError, match=r"details must be a mapping or None, got \[1\]"):
        HealthCheckResult(True, details=[1])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [(math.nan, ValueError), (math.inf, ValueError), (-1.0, ValueError), ("now", TypeError),
     (None, TypeError)],
)
def test_result_timestamp_must_be_finite_epoch_seconds(
    value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=f"timestamp.*{re.escape(repr(value))}"):
        HealthCheckResult(True, timestamp=value)


def test_result_defaults_and_details_copied() -> None:
    details = {"rtt": 1}
    before = time.time()
    result = HealthCheckResult(True, details=details)
    details["rtt"] = 2
    assert before <= result.timestamp <= time.time()
    assert (result.duration, result.message, result.check_type) == (0.0, "", "custom")
    assert result.details == {"rtt": 1}
    with pytest.raises(TypeError, match="healthy"):
        HealthCheckResult(1)  # type: ignore[arg-type]


@pytest.mark.parametrize("concurrency", [0, -1])
def test_monitor_concurrency_must_be_positive(concurrency: int) -> None:
    with pytest.raises(ValueError, match=f"concurrency must be > 0, got {concurrency}"):
        HealthMonitor(concurrency=concurrency)
    with pytest.raises(TypeError, match="concurrency"):
        HealthMonitor(concurrency=2.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-0.5, ValueError), (math.inf, ValueError), (math.nan, ValueError),
     ("1", TypeError), (True, TypeError), (None, TypeError)],
)
def test_monitor_detach_after_must_be_positive_seconds(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"detach_after must be .*got {re.escape(repr(value))}"):
        HealthMonitor(detach_after=value)


def test_monitor_detach_after_accepts_timedelta() -> None:
    h = Harness(detach_after=datetime.timedelta(milliseconds=300))
    gate = Gate()
    marker = Recorder(h.clock)
    h.watch("slow", gate, interval=10.0)
    try:
        h.monitor.start()
        h.advance_to(h.next_check("slow"))
        assert gate.started.wait(WAIT)
        began = h.clock.monotonic()
        h.watch("marker", marker, interval=0.2)
        h.advance_to(began + 0.3 + 1e-9)  # the only worker is free again only now
        assert marker.next_call() == pytest.approx(began + 0.3)
    finally:
        gate.release.set()
        h.monitor.stop(timeout=2.0)


# -- registration -------------------------------------------------------------------------


def test_watch_errors(harness: Harness) -> None:
    harness.watch("p", lambda: True)
    with pytest.raises(ValueError, match="'p' is already watched"):
        harness.watch("p", lambda: True)
    with pytest.raises(TypeError, match="check must be callable"):
        harness.watch("q", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a HealthCheckConfig"):
        harness.monitor.watch(
            "q", bool, {"interval": 1}, on_failure_limit=print, on_healthy=print  # type: ignore[arg-type]
        )
    for method in (harness.monitor.unwatch, harness.monitor.status, harness.monitor.next_check):
        with pytest.raises(KeyError, match="'nope'"):
            method("nope")


def test_first_check_is_spread_within_one_interval_from_start() -> None:
    h = Harness()
    names = [f"plugin-{i}" for i in range(20)]
    for name in names:
        h.watch(name, lambda: True, interval=10.0)
    assert h.monitor.next_check(names[0]) is None  # planned when the monitor starts
    h.clock.advance(50.0)
    with h.monitor:
        firsts = [h.next_check(name) for name in names]
        assert all(150.0 <= t < 160.0 for t in firsts)
        assert len(set(firsts)) == len(firsts)  # not all in the same instant
        h.watch("late", lambda: True, interval=10.0)
        assert 150.0 <= h.next_check("late") < 160.0


def test_start_twice_fails_stop_is_idempotent() -> None:
    monitor = HealthMonitor(clock=FakeClock())
    monitor.stop()  # never started: nothing to do
    monitor.start()
    names = sorted(t.name for t in _monitor_threads())
    workers = [f"recovery-health-worker-{i}" for i in range(1, 5)]
    assert names == ["recovery-health-scheduler", *workers]  # the default pool of 4
    with pytest.raises(RuntimeError, match="once"):
        monitor.start()
    monitor.stop(timeout=2.0)
    monitor.stop(timeout=2.0)
    assert not _monitor_threads()


# -- schedule -----------------------------------------------------------------------------


def test_checks_run_on_a_fixed_grid_of_planned_times(harness: Harness) -> None:
    check = Recorder(harness.clock)
    harness.watch("p", check, interval=2.0)
    harness.monitor.start()
    first = harness.next_check("p")
    for k in range(5):
        harness.advance_to(first + 2.0 * k)
        assert check.next_call() == pytest.approx(first + 2.0 * k)
        harness.healthy.get(timeout=WAIT)
    assert harness.next_check("p") == pytest.approx(first + 10.0)


def test_schedule_does_not_drift_with_slow_checks(harness: Harness) -> None:
    """Each check takes 0.3 of its interval; the next is still planned from the previous plan."""
    check = Recorder(harness.clock, take=0.3)
    harness.watch("p", check, interval=1.0, timeout=0.5)
    harness.monitor.start()
    first = harness.next_check("p")
    for k in range(5):
        harness.advance_to(first + k)
        assert check.next_call() == pytest.approx(first + k)
        _, result = harness.healthy.get(timeout=WAIT)
        assert result.duration == pytest.approx(0.3)
    assert harness.next_check("p") == pytest.approx(first + 5)


def test_missed_slots_are_skipped_not_burst(harness: Harness) -> None:
    check = Recorder(harness.clock)
    harness.watch("p", check, interval=1.0)
    harness.monitor.start()
    first = harness.next_check("p")
    harness.advance_to(first + 3.5)  # three and a half intervals late
    assert check.next_call() == pytest.approx(first + 3.5)
    harness.healthy.get(timeout=WAIT)
    assert harness.next_check("p") == pytest.approx(first + 4.0)  # back on the grid
    harness.advance_to(first + 4.0)
    # FIFO pool of one: a catch-up burst would have run before this call.
    assert check.next_call() == pytest.approx(first + 4.0)
    assert check.count == 2


@contextlib.contextmanager
def gated_check() -> Iterator[tuple[Harness, Gate, Recorder, float, float]]:
    """A one-worker monitor whose plugin "p" is inside a check held by a gate.

    Also watches "marker" on the same 1 s grid: a marker check queued after a
    slot proves the scheduler has handled that slot. Yields the harness, the
    gate, the marker, p's first planned time and the marker's.
    """
    h = Harness(concurrency=1)
    gate = Gate()
    marker = Recorder(h.clock)
    h.watch("p", gate, interval=1.0, timeout=100.0)
    h.watch("marker", marker, interval=1.0)
    try:
        h.monitor.start()
        first = h.next_check("p")
        marker_grid = h.next_check("marker")
        h.advance_to(first)
        assert gate.started.wait(WAIT)
        yield h, gate, marker, first, marker_grid
    finally:
        gate.release.set()
        h.monitor.stop(timeout=2.0)


def test_slot_while_previous_check_runs_is_skipped() -> None:
    with gated_check() as (h, gate, marker, first, marker_grid):
        # A slot of p comes due while its first check runs (within its timeout; its worker
        # is detached and replaced meanwhile). A marker slot after it, on the one pool
        # worker, proves the scheduler has handled that slot: a check of p queued for it
        # would have run first.
        h.sync(first + 1.0, marker, marker_grid)
        assert gate.calls == 1
        assert h.monitor.status("p")["last_result"] is None  # skipped silently
        gate.release.set()
        assert _get_for(h.healthy, "p").healthy
        h.advance_to(first + 2.0)
        assert _get_for(h.healthy, "p").healthy
        assert gate.calls == 2


# -- results --------------------------------------------------------------------------------


def test_bool_and_result_outcomes_are_recorded_and_stamped(harness: Harness) -> None:
    returned = HealthCheckResult(
        True, timestamp=1.0, duration=9.0, message="ok", details={"q": 3}, check_type="db"
    )
    check = Recorder(harness.clock, True, returned, take=0.05)
    harness.watch("p", check, interval=1.0, check_type="liveness")
    harness.monitor.start()
    first = harness.next_check("p")
    before = time.time()
    harness.advance_to(first)
    _, result = harness.healthy.get(timeout=WAIT)
    assert (result.healthy, result.check_type, result.message) == (True, "liveness", "")
    assert result.duration == pytest.approx(0.05)
    assert before <= result.timestamp <= time.time()
    harness.advance_to(first + 1.0)
    _, result = harness.healthy.get(timeout=WAIT)
    assert (result.message, result.details, result.check_type) == ("ok", {"q": 3}, "db")
    assert result.duration == pytest.approx(0.05)  # measured, not the check's own 9.0
    assert before <= result.timestamp <= time.time()


class UnprintableError(Exception):
    """An exception whose own ``__str__`` fails."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (RuntimeError("disk gone"), "RuntimeError: disk gone"),
        (UnprintableError(), "UnprintableError: <UnprintableError: str() raised RuntimeError>"),
        (
            Unrepresentable(),
            "check returned <Unrepresentable object; its repr() raised RuntimeError>, "
            "expected a bool or HealthCheckResult",
        ),
        (SystemExit(3), "SystemExit: 3"),
        (None, "check returned None, expected a bool or HealthCheckResult"),
        (False, ""),
        (HealthCheckResult(False, message="no quorum"), "no quorum"),
    ],
)
def test_unhealthy_outcomes(
    harness: Harness, caplog: pytest.LogCaptureFixture, outcome: Any, message: str
) -> None:
    check = Recorder(harness.clock, outcome)
    harness.watch("p", check, interval=1.0, max_failures=1)
    harness.monitor.start()
    with caplog.at_level(logging.WARNING, logger="recovery.health"):
        harness.advance_to(harness.next_check("p"))
        name, result = harness.limits.get(timeout=WAIT)
    assert (name, result.healthy, result.message) == ("p", False, message)
    status = harness.monitor.status("p")
    assert status["consecutive_fails"] == 1
    assert status["last_result"]["healthy"] is False
    if isinstance(outcome, BaseException):
        assert "health check of 'p' raised" in caplog.text


def test_a_check_that_cannot_be_described_does_not_kill_its_worker(harness: Harness) -> None:
    """One pool worker: had either failure killed it, no later check would run and the
    plugin would read as hung for ever."""
    check = Recorder(harness.clock, UnprintableError(), Unrepresentable(), True)
    harness.watch("p", check, interval=1.0, max_failures=1)
    harness.monitor.start()
    first = harness.next_check("p")
    for k in range(2):
        harness.advance_to(first + k)
        _, result = harness.limits.get(timeout=WAIT)
        assert not result.healthy
    harness.advance_to(first + 2)
    _, result = harness.healthy.get(timeout=WAIT)
    assert result.healthy
    assert harness.monitor.status("p")["stuck"] is False
    assert harness.monitor.stuck_threads == 0


def _returns(call: Callable[[], Any]) -> Any:
    """``call()`` on a thread, bounded: fails the test (instead of hanging it) if blocked."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), f"{call} never returned"
    return outcome[0]


def test_the_scheduler_lets_go_of_its_lock_when_a_grid_step_rounds_away() -> None:
    """Next to 1e15 s a float steps by 0.125 s, so adding a 10 ms interval changes
    nothing: a scheduler that stepped the grid until it passed "now" would spin for
    ever holding its lock, and status() and stop() would never return."""
    clock = FakeClock(1e15)
    monitor = HealthMonitor(concurrency=1, clock=clock)
    calls: queue.Queue[float] = queue.Queue()

    def check() -> bool:
        calls.put(clock.monotonic())
        return True

    monitor.watch("p", check, HealthCheckConfig(interval=0.01))
    monitor.start()
    try:
        assert calls.get(timeout=WAIT) == 1e15
        assert _returns(lambda: monitor.status("p"))["consecutive_fails"] == 0
        planned = _returns(lambda: monitor.next_check("p"))
        assert planned == math.nextafter(1e15, math.inf)  # the next representable moment
        assert clock.wait_for_waiters(1, WAIT)
        clock.advance(0.125)
        assert calls.get(timeout=WAIT) == planned
    finally:
        _stop_returns(monitor, timeout=1.0)


def test_failure_limit_fires_once_per_max_failures_and_healthy_resets() -> None:
    outcomes = [False] * 7 + [True, False, False, False]
    clock = FakeClock()
    monitor = HealthMonitor(concurrency=1, clock=clock)
    streaks: list[int] = []  # the streak each check saw when it began
    fired: list[int] = []  # how many checks had run when on_failure_limit was called
    healthy: list[int] = []
    done = threading.Event()

    def check() -> bool:
        streaks.append(monitor.status("p")["consecutive_fails"])
        return outcomes[len(streaks) - 1]

    def on_limit(name: str, result: HealthCheckResult) -> None:
        assert not result.healthy
        fired.append(len(streaks))
        if len(streaks) == len(outcomes):
            done.set()

    def on_healthy(name: str, result: HealthCheckResult) -> None:
        healthy.append(len(streaks))

    config = HealthCheckConfig(interval=1.0, max_failures=3)
    monitor.watch("p", check, config, on_failure_limit=on_limit, on_healthy=on_healthy)
    expected = [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]
    with monitor:
        first = monitor.next_check("p")
        assert first is not None
        for k in range(len(outcomes)):
            assert clock.wait_for_waiters(1, WAIT)
            clock.advance(first + k - clock.monotonic())
            _wait_for_status(monitor, "p", "consecutive_fails", expected[k])
        assert done.wait(WAIT)
    assert streaks == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2]
    assert fired == [3, 6, 11]  # every third consecutive failure, the streak reset by a success
    assert healthy == [8]
    assert monitor.status("p")["consecutive_fails"] == 3


def test_custom_checks_must_all_pass(harness: Harness) -> None:
    ran: list[str] = []

    def extra(label: str, healthy: bool) -> Callable[[], HealthCheckResult]:
        def check() -> HealthCheckResult:
            ran.append(label)
            return HealthCheckResult(healthy, message=f"{label} says {healthy}")

        check.__qualname__ = label
        return check

    main = Recorder(harness.clock, True, True, False)
    harness.watch(
        "p",
        main,
        interval=1.0,
        max_failures=1,
        custom_checks=(extra("disk", True), extra("queue", False), extra("never", True)),
    )
    harness.monitor.start()
    first = harness.next_check("p")
    harness.advance_to(first)
    _, result = harness.limits.get(timeout=WAIT)
    assert result.message == "custom_checks[1] (queue) failed: queue says False"
    assert ran == ["disk", "queue"]  # stops at the first failing check
    ran.clear()
    harness.advance_to(first + 1.0)
    harness.limits.get(timeout=WAIT)
    harness.advance_to(first + 2.0)  # the main check fails: custom checks are not run
    _, result = harness.limits.get(timeout=WAIT)
    assert result.message == ""
    assert ran == ["disk", "queue"]


def test_raising_callbacks_are_contained_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    calls: queue.Queue[str] = queue.Queue()

    def boom(name: str, result: HealthCheckResult) -> None:
        calls.put(name)
        raise RuntimeError("callback bug")

    monitor = HealthMonitor(concurrency=1, clock=clock)
    config = HealthCheckConfig(interval=1.0)
    monitor.watch("p", lambda: True, config, on_failure_limit=boom, on_healthy=boom)
    with caplog.at_level(logging.ERROR, logger="recovery.health"), monitor:
        first = monitor.next_check("p")
        assert first is not None
        for k in range(3):
            assert clock.wait_for_waiters(1, WAIT)
            clock.advance(first + k - clock.monotonic())
            assert calls.get(timeout=WAIT) == "p"  # still checking after the callback raised
    assert "callback bug" in caplog.text


def test_status_is_json_ready(harness: Harness) -> None:
    harness.watch("p", Recorder(harness.clock, True, take=0.05), interval=1.0)
    harness.monitor.start()
    assert harness.monitor.status("p") == {
        "last_check": None,
        "last_result": None,
        "consecutive_fails": 0,
        "stuck": False,
    }
    harness.advance_to(harness.next_check("p"))
    harness.healthy.get(timeout=WAIT)
    status = json.loads(json.dumps(harness.monitor.status("p")))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", status["last_check"])
    stamp = datetime.datetime.strptime(status["last_check"], "%Y-%m-%dT%H:%M:%SZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - stamp).total_seconds()) < 60
    assert status["last_result"] == {"healthy": True, "duration": "50ms", "message": ""}
    assert status["consecutive_fails"] == 0
    assert status["stuck"] is False


@pytest.mark.parametrize(
    ("took", "shown"), [(0.0004, "400us"), (0.25, "250ms"), (1.5, "1.5s"), (125.0, "2m5s")]
)
def test_status_duration_is_human(harness: Harness, took: float, shown: str) -> None:
    harness.watch("p", Recorder(harness.clock, take=took), interval=1000.0, timeout=500.0)
    harness.monitor.start()
    harness.advance_to(harness.next_check("p"))
    harness.healthy.get(timeout=WAIT)
    assert harness.monitor.status("p")["last_result"]["duration"] == shown


def test_unwatch_drops_the_result_in_flight_and_stops_checking(harness: Harness) -> None:
    gate = Gate()
    harness.watch("p", gate, interval=1.0)
    harness.monitor.start()
    first = harness.next_check("p")
    harness.advance_to(first)
    assert gate.started.wait(WAIT)
    harness.monitor.unwatch("p")
    gate.release.set()
    marker = Recorder(harness.clock)
    harness.watch("marker", marker, interval=1.0)
    harness.advance_to(harness.next_check("marker") + 2.0)
    marker.next_call()
    harness.healthy.get(timeout=WAIT)  # the marker's, not p's
    assert harness.healthy.empty()
    assert gate.calls == 1


# -- timeouts, abandoned threads ---------------------------------------------------------------


def test_hung_check_times_out_on_the_monitor_clock_and_is_replaced() -> None:
    h = Harness(concurrency=1)
    gate = Gate()
    other = Recorder(h.clock)
    h.watch("hung", gate, interval=10.0, timeout=2.0, max_failures=1)
    try:
        h.monitor.start()
        start = h.next_check("hung")
        h.advance_to(start)
        assert gate.started.wait(WAIT)
        h.advance_to(start + 1.999)
        assert h.limits.empty() and h.monitor.stuck_threads == 0
        h.advance_to(start + 2.0)
        name, result = h.limits.get(timeout=WAIT)
        assert (name, result.healthy, result.message) == ("hung", False, "timed out after 2.0s")
        assert h.monitor.stuck_threads == 1
        assert _worker_threads() == 2  # the pool of one, and the abandoned thread
        assert h.monitor.status("hung")["stuck"] is True
        # The only worker is stuck in the hung check; its replacement runs other checks.
        h.watch("other", other, interval=1.0)
        planned = h.next_check("other")
        h.advance_to(planned)
        assert other.calls.get(timeout=WAIT) == pytest.approx(planned)
        # Slots of the hung plugin: failures, but no second check while it hangs.
        for k in (1, 2):
            h.advance_to(start + 10.0 * k)
            _, result = h.limits.get(timeout=WAIT)
            assert result.message.startswith("previous check still hung after")
        assert h.monitor.status("hung")["consecutive_fails"] == 3
        assert gate.calls == 1
        gate.release.set()  # the hung check returns: its late result is dropped
        gate.join()
        assert h.monitor.stuck_threads == 0
        assert h.monitor.status("hung")["stuck"] is False
        assert h.monitor.status("hung")["consecutive_fails"] == 3
        h.advance_to(start + 30.0)
        assert _get_for(h.healthy, "hung").healthy  # checked again, and healthy now
        assert gate.calls == 2
        assert h.monitor.status("hung")["consecutive_fails"] == 0
    finally:
        gate.release.set()
        h.monitor.stop(timeout=2.0)


def test_at_most_one_abandoned_thread_per_plugin_across_rewatch() -> None:
    h = Harness(concurrency=2)
    gate = Gate()
    h.watch("p", gate, interval=1.0, timeout=0.5, max_failures=1)
    try:
        h.monitor.start()
        start = h.next_check("p")
        h.advance_to(start)
        assert gate.started.wait(WAIT)
        h.advance_to(start + 0.5)
        h.limits.get(timeout=WAIT)
        h.monitor.unwatch("p")
        h.watch("p", gate, interval=1.0, timeout=0.5, max_failures=1)
        assert h.monitor.status("p")["stuck"] is True
        for _ in range(3):
            h.advance_to(h.next_check("p"))
            _, result = h.limits.get(timeout=WAIT)
            assert result.message.startswith("previous check still hung")
        assert gate.calls == 1
        assert h.monitor.stuck_threads == 1
        assert len([t for t in _monitor_threads() if "worker" in t.name]) == 3  # 2 + abandoned
    finally:
        gate.release.set()
        h.monitor.stop(timeout=2.0)


# -- detached slow checks -----------------------------------------------------------------------


@pytest.mark.parametrize("detach_after", [None, 0.5])
def test_slow_check_is_detached_so_the_others_keep_their_schedule(
    detach_after: float | None,
) -> None:
    """One pool worker, a check that blocks: the others run once it is detached, and it
    still counts (healthy) when it returns within its timeout; its thread then exits."""
    expected = DEFAULT_DETACH_AFTER if detach_after is None else detach_after
    h = Harness(concurrency=1, **({} if detach_after is None else {"detach_after": detach_after}))
    gate = Gate()
    marker = Recorder(h.clock)
    h.watch("slow", gate, interval=10.0, timeout=5.0, max_failures=1)
    try:
        h.monitor.start()
        h.advance_to(h.next_check("slow"))
        assert gate.started.wait(WAIT)
        began = h.clock.monotonic()
        h.watch("marker", marker, interval=0.8 * expected)  # first slot before the detach
        h.advance_to(h.next_check("marker"))  # queued behind the blocked worker
        h.advance_to(began + expected + 1e-9)
        assert marker.next_call() == pytest.approx(began + expected)  # on the replacement
        _get_for(h.healthy, "marker")
        assert _worker_threads() == 2  # the pool of one, and the detached "slow" thread
        for _ in range(3):  # the marker keeps its schedule
            planned = h.next_check("marker")
            h.advance_to(planned)
            assert marker.next_call() == pytest.approx(planned)
            _get_for(h.healthy, "marker")
        h.advance_to(began + 4.0)  # slow, not hung: within its timeout
        assert h.monitor.stuck_threads == 0
        assert h.monitor.status("slow")["stuck"] is False
        assert h.monitor.status("slow")["last_result"] is None
        gate.release.set()
        result = _get_for(h.healthy, "slow")
        assert result.duration == pytest.approx(4.0)
        gate.join()  # the detached thread exits after its check
        assert _worker_threads() == 1  # back to concurrency
        assert h.limits.empty()
        h.advance_to(h.next_check("slow"))  # checked again, on the pool
        assert _get_for(h.healthy, "slow").healthy
        assert gate.calls == 2
    finally:
        gate.release.set()
        h.monitor.stop(timeout=2.0)


def test_at_most_one_detached_thread_per_plugin() -> None:
    with gated_check() as (h, gate, marker, first, marker_grid):
        for k in (1, 2, 3):  # each slot finds the detached check still running: skipped
            h.sync(first + k, marker, marker_grid)
        assert gate.calls == 1
        assert _worker_threads() == 2
        assert h.monitor.stuck_threads == 0
        assert h.monitor.status("p")["last_result"] is None
        # A new registration of the same name waits for the old check too.
        h.monitor.unwatch("p")
        h.watch("p", gate, interval=1.0, timeout=100.0)
        for _ in range(2):
            h.sync(h.next_check("p"), marker, marker_grid)
        assert gate.calls == 1
        assert _worker_threads() == 2
        assert h.monitor.status("p")["last_result"] is None
        gate.release.set()  # the old registration's result is dropped
        gate.join()
        assert _worker_threads() == 1
        h.sync(h.next_check("p"), marker, marker_grid)
        assert gate.calls == 2
        assert _get_for(h.healthy, "p").healthy


def test_real_clock_slow_check_does_not_delay_the_others() -> None:
    """Real threads, default detach_after: one pool worker, a check blocked for good
    (its timeout far away), and another plugin still checked every 10 ms."""
    gate = Gate()
    healthy: queue.Queue[str] = queue.Queue()
    ticks: queue.Queue[float] = queue.Queue()
    failure_limits: list[str] = []  # neither check ever fails

    def tick() -> bool:
        ticks.put(time.monotonic())
        return True

    monitor = HealthMonitor(concurrency=1)
    try:
        with monitor:
            monitor.watch(
                "slow",
                gate,
                HealthCheckConfig(interval=0.01, timeout=60.0),
                on_failure_limit=lambda n, r: failure_limits.append(n),
                on_healthy=lambda n, r: healthy.put(n),
            )
            monitor.watch(
                "other",
                tick,
                HealthCheckConfig(interval=0.01),
                on_failure_limit=lambda n, r: failure_limits.append(n),
                on_healthy=lambda n, r: None,
            )
            assert gate.started.wait(WAIT)
            while not ticks.empty():
                ticks.get_nowait()
            for _ in range(10):  # would wait for the 60 s timeout without the detach
                ticks.get(timeout=WAIT)
            assert monitor.stuck_threads == 0
            assert healthy.empty()
            gate.release.set()
            assert healthy.get(timeout=WAIT) == "slow"  # counted when it returned
            gate.join()
            deadline = time.monotonic() + WAIT
            # A loaded machine may detach even a trivial check for a moment: poll.
            while _worker_threads() != 1:
                assert time.monotonic() < deadline, "pool never returned to its size"
                threading.Event().wait(0.001)
    finally:
        gate.release.set()
    assert not _monitor_threads()
    assert failure_limits == []


# -- stop ------------------------------------------------------------------------------------


def test_stop_joins_a_detached_check_promptly_and_reports_it_abandoned() -> None:
    h = Harness(concurrency=1)
    gate = Gate()
    marker = Recorder(h.clock)
    h.watch("p", gate, interval=10.0, timeout=60.0)
    h.watch("marker", marker, interval=1.0)
    h.monitor.start()
    first = h.next_check("p")
    h.advance_to(first)
    assert gate.started.wait(WAIT)
    h.sync(first + 1.0, marker, h.next_check("marker"))  # detached by now
    assert _worker_threads() == 2
    _stop_returns(h.monitor, timeout=0.2)  # waits 0.2 s for the check, then abandons it
    assert h.monitor.stuck_threads == 1
    assert _monitor_threads() == [gate.thread]
    gate.release.set()
    gate.join()
    assert h.monitor.stuck_threads == 0
    assert h.monitor.status("p")["last_result"] is None  # dropped after stop()


def test_stop_is_prompt_with_a_check_in_flight_and_abandons_it() -> None:
    h = Harness(concurrency=2)
    gate = Gate()
    h.watch("p", gate, interval=1.0, timeout=60.0)
    h.monitor.start()
    h.advance_to(h.next_check("p"))
    assert gate.started.wait(WAIT)
    _stop_returns(h.monitor, timeout=0.2)
    assert h.monitor.stuck_threads == 1
    assert _monitor_threads() == [gate.thread]
    gate.release.set()  # the abandoned worker finishes, drops its result and exits
    gate.join()
    assert h.monitor.stuck_threads == 0
    assert h.healthy.empty()  # no callback after stop()


def test_real_clock_hung_check_does_not_stall_the_others() -> None:
    """Real threads, real time (milliseconds): timeout, replacement, prompt stop."""
    gate = Gate()
    limits: queue.Queue[str] = queue.Queue()
    ticks: queue.Queue[float] = queue.Queue()
    hung_healthy: list[str] = []  # the hung check never returns while watched
    other_limits: list[str] = []  # the other check never fails

    def tick() -> bool:
        ticks.put(time.monotonic())
        return True

    monitor = HealthMonitor(concurrency=1)
    fast = HealthCheckConfig(interval=0.01, timeout=0.02, max_failures=1)
    try:
        monitor.start()
        try:
            monitor.watch(
                "hung", gate, fast, on_failure_limit=lambda n, r: limits.put(n),
                on_healthy=lambda n, r: hung_healthy.append(n),
            )
            monitor.watch(
                "other",
                tick,
                HealthCheckConfig(interval=0.01),
                on_failure_limit=lambda n, r: other_limits.append(n),
                on_healthy=lambda n, r: None,
            )
            assert gate.started.wait(WAIT)
            assert limits.get(timeout=WAIT) == "hung"
            assert monitor.stuck_threads == 1
            while not ticks.empty():
                ticks.get_nowait()
            for _ in range(10):  # "other" keeps running on the replacement worker
                ticks.get(timeout=WAIT)
        finally:
            # An abandoned check is not waited for: a stop() that joined it would
            # take the whole minute (the check is released only afterwards).
            _stop_returns(monitor, timeout=60.0)
        assert monitor.stuck_threads == 1
        assert _monitor_threads() == [gate.thread]
    finally:
        gate.release.set()
    gate.join()
    assert monitor.stuck_threads == 0
    assert hung_healthy == []  # released only after stop(): its result is dropped
    assert other_limits == []


def test_busy_while_a_check_runs_and_not_once_only_time_can_move_it_on() -> None:
    clock = FakeClock()
    monitor = HealthMonitor(concurrency=1, clock=clock)
    started, release = threading.Event(), threading.Event()

    def check() -> bool:
        started.set()
        release.wait(WAIT)
        return True

    assert not monitor.busy()  # not started: nothing to do
    monitor.watch("p", check, HealthCheckConfig(interval=10.0))
    monitor.start()
    try:
        assert clock.wait_for_waiters(1, WAIT)  # the first check waits out its interval
        assert not monitor.busy()  # only time can move it on
        clock.advance(10.0)
        assert started.wait(WAIT)
        assert monitor.busy()  # the check runs
        release.set()
        assert clock.wait_for_waiters(1, WAIT)
        # The pool hands the result back, then only time can move the monitor on.
        eventually(lambda: not monitor.busy(), WAIT, "still busy with only time left")
    finally:
        _stop_returns(monitor, timeout=1.0)
