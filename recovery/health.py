"""Active health checks on a bounded thread pool (docs/design.md, "The health monitor").

A :class:`HealthMonitor` runs each watched plugin's check every
``HealthCheckConfig.interval`` seconds on a fixed pool of ``concurrency`` worker
threads, and tells its owner (the recovery manager) about the results through two
callbacks. It is built to watch thousands of plugins: one scheduler thread keeps a
heap of planned checks, so there is no thread or timer per plugin.

Rules, and why:

- **No drift.** A plugin's checks are planned on a fixed grid: each next check is
  the previous *planned* time plus the interval, not the time the check ended, so
  a slow check or a late wake-up does not push every later check back.
- **No bursts.** When the scheduler finds a plugin more than one interval behind
  (a stalled process, a big jump of a fake clock) it skips the missed slots and
  plans the first slot of the grid that is still ahead, instead of running the
  missed ones back to back.
- **Batching.** One wake-up of the scheduler dispatches every slot due within
  the next 2 ms, so a check may start up to 2 ms before its planned time (never
  later by design); intervals are meant to be seconds, not milliseconds.
- **Spread.** A plugin's first check is planned at a fixed fraction of its
  interval after :meth:`HealthMonitor.watch` (or :meth:`HealthMonitor.start`),
  taken from a hash of its name, so plugins registered together do not all check
  in the same instant every interval. The first check therefore runs within one
  interval; advancing a fake clock by ``interval`` always runs it.
  :meth:`HealthMonitor.next_check` says when exactly.
- **No overlap.** A check of a plugin never starts while its previous one runs
  (even across :meth:`HealthMonitor.unwatch` and a new
  :meth:`HealthMonitor.watch` of the same name). A slot that finds the previous
  check still running within its timeout is skipped silently (a check may take
  longer than its interval).
- **Detaching.** A check still running ``detach_after`` seconds after it started
  (25 ms by default, or its ``timeout`` if that is shorter) has its worker
  *detached*: a fresh worker takes its place in the pool at once, and the detached
  thread goes on running that one check, then exits. So a slow or hung check
  holds a pool thread for at most ``detach_after``, not for its whole timeout, and
  the other plugins keep their schedule even when many checks hang at once. A
  detached check that returns within its timeout counts normally (healthy or
  not); it is not "stuck". The cost is a thread start (tens of microseconds) per
  check slower than ``detach_after``, and a thread per such check while it runs.
- **Timeouts.** A check that outlives ``timeout`` is reported unhealthy at its
  deadline. A Python thread cannot be killed, so its (already detached) thread is
  *abandoned*: it is a daemon thread, counted in
  :attr:`HealthMonitor.stuck_threads` until the check finally returns, whose late
  result is dropped, and then it exits. No new check of that plugin starts while
  the old one runs, so there is at most one detached or abandoned thread per
  plugin name: the monitor's threads are its scheduler, ``concurrency`` pool
  workers, and one per plugin whose check has run past ``detach_after``. Each
  slot that comes due while the plugin's check is still hung is recorded as a
  failed check ("still hung"): a plugin whose check hangs for good is unhealthy
  and must reach ``max_failures``, or it would never be handed to recovery.
- **Time.** The scheduler, the detach threshold, the timeouts and the measured
  durations all use the monitor's clock: real time with the default clock; with
  :class:`recovery.testing.FakeClock` a check is detached, or times out, when the
  test advances the clock past that moment (never on its own in real time), so
  tests are deterministic and none waits on real time.
- **Failures.** A check that raises (anything, even ``SystemExit``: nobody above a
  worker thread could act on it), returns something other than a bool or a
  :class:`HealthCheckResult`, or times out, is unhealthy.

Callbacks, called on a monitor thread (the worker that ran the check, or the
scheduler for a timeout or a hung slot), outside the monitor's lock, and expected
to return quickly; one that raises is logged and otherwise ignored:

- ``on_healthy(name, result)`` after every healthy result (the manager moves an
  OPEN breaker to HALF_OPEN);
- ``on_failure_limit(name, result)`` each time the run of consecutive failures
  reaches a multiple of ``max_failures`` (3, 6, 9, … by default): once per
  ``max_failures`` failures, so a plugin that stays dead is reported again every
  ``max_failures`` intervals rather than on every check or only once.

Results that arrive after :meth:`HealthMonitor.unwatch` or :meth:`HealthMonitor.stop`
are dropped.
"""

from __future__ import annotations

import datetime
import heapq
import itertools
import logging
import math
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import attrs

from recovery import _validate
from recovery._clock import REAL_CLOCK, Clock, iso_utc, wait
from recovery.failures import exception_message, safe_repr

__all__ = [
    "DEFAULT_DETACH_AFTER",
    "HealthCheck",
    "HealthCheckConfig",
    "HealthCheckResult",
    "HealthMonitor",
]

_LOGGER = logging.getLogger("recovery.health")

_BATCH_WINDOW = 0.002
"""Slots due within this many seconds of a wake-up are dispatched by it, slightly early.

One wake-up of the scheduler thread costs about as much CPU as the rest of a check's
bookkeeping; with a thousand plugins a second, batching slots 2 ms apart cuts the
monitor's CPU by about a third, and a check that starts 2 ms early is still on its grid.
"""

DEFAULT_DETACH_AFTER = 0.025
"""Seconds a check may hold its pool worker before the worker is detached and replaced.

Short enough that checks hanging together delay the others by well under the 50 ms
schedule-lag goal of ``benchmarks/bench_health.py``; long enough that a quick check (a ping, a local
query) never costs the thread start that a detach does.
"""

_MAX_PARK = 3600.0
"""Longest single park of the scheduler with nothing planned (an event wakes it sooner)."""


_DURATION = _validate.number(ge=0, finite=False, unit="seconds")
_CALLABLE = _validate.callable_()


def _copy_details(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy, so a check that reuses its dict cannot change a recorded result.

    None means no details (a check may pass ``details=extra or None``).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"details must be a mapping or None, got {safe_repr(value)} "
            f"({type(value).__name__})"
        )
    return dict(value)


def _check_tuple(value: Iterable[HealthCheck] | None) -> tuple[HealthCheck, ...]:
    """``custom_checks`` as a tuple: None means none; a single callable is a mistake."""
    if value is None:
        return ()
    if callable(value) or isinstance(value, (str, bytes)):
        raise TypeError(
            f"custom_checks must be a sequence of callables or None, got {safe_repr(value)} "
            f"({type(value).__name__}); wrap a single check as (check,)"
        )
    try:
        return tuple(value)
    except TypeError:
        raise TypeError(
            f"custom_checks must be a sequence of callables or None, got {safe_repr(value)} "
            f"({type(value).__name__})"
        ) from None


@attrs.frozen
class HealthCheckResult:
    """The outcome of one health check.

    A check may return one of these or a plain bool. On every result it records,
    the monitor stamps ``timestamp`` (wall clock when the check started) and
    ``duration`` (seconds, measured on the monitor's clock), so results are
    comparable across plugins; ``healthy``, ``message``, ``details`` and
    ``check_type`` are the check's own.
    """

    healthy: bool = attrs.field(validator=_validate.boolean)
    timestamp: float = attrs.field(factory=time.time, validator=_validate.epoch_seconds)
    duration: float = attrs.field(
        default=0.0, converter=_validate.seconds, validator=_DURATION
    )
    message: str = attrs.field(default="", validator=_validate.text)
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=_copy_details)
    """The check's own data; None is taken as no details (``{}``)."""
    check_type: str = attrs.field(default="custom", validator=_validate.text)


HealthCheck = Callable[[], "HealthCheckResult | bool"]
"""A health check: no arguments, returns a :class:`HealthCheckResult` or a bool."""

ResultCallback = Callable[[str, HealthCheckResult], None]


@attrs.frozen
class HealthCheckConfig:
    """How one plugin is checked.

    - ``interval``: seconds between planned checks (the grid the schedule follows).
    - ``timeout``: seconds a check may run before it is unhealthy and its thread
      abandoned. It may exceed ``interval``; slots that come due while a check is
      still within its timeout are skipped.
    - ``max_failures``: consecutive failed checks that make the monitor call
      ``on_failure_limit`` (again after each further ``max_failures``).
    - ``check_type``: a label copied into the results of checks that return a bool
      (e.g. "liveness", "readiness").
    - ``custom_checks``: extra zero-argument checks run after the main one, in
      order, within the same timeout; the plugin is healthy only when all of them
      pass. The first failing one gives the result (and the later ones are not
      run). None means none.

    ``interval`` and ``timeout`` are at least 10 ms (``recovery._validate.MIN_INTERVAL``):
    a shorter period would have the scheduler spend its life under its own lock.
    """

    interval: float = attrs.field(
        default=10.0, converter=_validate.seconds, validator=_validate.interval
    )
    timeout: float = attrs.field(
        default=5.0, converter=_validate.seconds, validator=_validate.interval
    )
    max_failures: int = attrs.field(default=3, validator=_validate.positive_int)
    check_type: str = attrs.field(default="custom", validator=_validate.name())
    custom_checks: tuple[HealthCheck, ...] = attrs.field(
        default=(), converter=_check_tuple,
        validator=attrs.validators.deep_iterable(member_validator=_CALLABLE),
    )


_CONFIG = _validate.instance_of(HealthCheckConfig)


def _human_duration(seconds: float) -> str:
    """``0.05`` -> ``"50ms"``: the duration shown in status."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.0f}ms"
    if seconds < 60.0:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(seconds, 60.0)
    return f"{minutes:.0f}m{rest:.0f}s"


def _ignore(name: str, result: HealthCheckResult) -> None:
    """The callback of a watch that gave none."""


def _phase(name: str) -> float:
    """A stable fraction in [0, 1) per name: where in its interval a plugin is checked."""
    return zlib.crc32(name.encode("utf-8", "surrogatepass")) / 2.0**32


def _name_of(check: object) -> str:
    """A custom check as its failure message names it: its qualified name, else its repr."""
    return str(getattr(check, "__qualname__", None) or safe_repr(check))


@attrs.define(eq=False)
class _Watch:
    """One watched plugin: its check, schedule and results (guarded by the monitor lock)."""

    name: str
    check: HealthCheck
    config: HealthCheckConfig
    on_failure_limit: ResultCallback
    on_healthy: ResultCallback
    active: bool = True
    planned: float | None = None
    consecutive_fails: int = 0
    last_result: HealthCheckResult | None = None


_QUEUED, _RUNNING, _DETACHED, _DONE, _TIMED_OUT = range(5)
"""A job's states: queued; running on a pool worker; running on a detached thread
(past ``detach_after``, within its timeout); finished; past its timeout (abandoned)."""


@attrs.define(eq=False)
class _Job:
    """One check of one plugin, from dispatch to result (guarded by the monitor lock).

    While it runs it has exactly one entry in the monitor's deadline heap: first its
    detach moment, then (once detached) its timeout.
    """

    watch: _Watch
    state: int = _QUEUED
    started: float = 0.0
    deadline: float = 0.0
    wall_started: float = 0.0
    thread: threading.Thread | None = None


_LIVE = (_RUNNING, _DETACHED)
"""States of a job whose deadline heap entry still matters."""

_Delivery = tuple[ResultCallback, str, HealthCheckResult]


class HealthMonitor:
    """Runs health checks for many plugins on ``concurrency`` worker threads.

    ``clock`` drives the schedule, the detach threshold, the timeouts and the
    measured durations (see the module docstring). ``watch`` may be called before
    or after :meth:`start`.

    Sizing: ``concurrency`` is the number of checks that can *start* at the same
    moment; it need not cover slow or hung checks, because a check running longer
    than ``detach_after`` seconds (a number or ``timedelta``; default
    :data:`DEFAULT_DETACH_AFTER`, 25 ms) is moved off the pool onto its own thread
    and its worker replaced. A check therefore delays the others by at most
    ``detach_after``, however long its timeout. Size the pool for the rate of
    quick checks: ``concurrency`` workers run about ``concurrency / duration``
    checks a second. Lower ``detach_after`` for a tighter schedule, raise it if
    many checks routinely take a little longer and their thread starts matter.
    """

    def __init__(
        self,
        concurrency: int = 4,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
        *,
        detach_after: float | datetime.timedelta = DEFAULT_DETACH_AFTER,
    ) -> None:
        self._concurrency = _validate.check(_validate.positive_int, "concurrency", concurrency)
        self._detach_after = float(_validate.check(
            _validate.positive_seconds, "detach_after", _validate.seconds(detach_after)
        ))
        self._clock: Clock = REAL_CLOCK if clock is None else clock
        self._logger = _LOGGER if logger is None else logger
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._in_flight: dict[str, _Job] = {}  # by plugin name: the one check queued or running
        self._slots: list[tuple[float, int, _Watch]] = []
        self._deadlines: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._next_wake = math.inf
        self._started = False
        self._scheduler: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()  # the pool
        self._detached: set[threading.Thread] = set()  # off the pool, check within its timeout
        self._abandoned: set[threading.Thread] = set()  # check past its timeout (or stop())
        self._worker_names = itertools.count(1)

    # -- public API ---------------------------------------------------------------

    def watch(
        self,
        name: str,
        check: HealthCheck,
        config: HealthCheckConfig | None = None,
        *,
        on_failure_limit: ResultCallback | None = None,
        on_healthy: ResultCallback | None = None,
    ) -> None:
        """Start checking ``name`` with ``check`` (``ValueError`` if already watched).

        Without callbacks the results are only kept for :meth:`status`.
        """
        _validate.check(_validate.text, "name", name)
        _validate.check(_CALLABLE, "check", check)
        if config is None:
            config = HealthCheckConfig()
        _validate.check(_CONFIG, "config", config)
        watch = _Watch(name, check, config, on_failure_limit or _ignore,
                       on_healthy or _ignore)
        with self._lock:
            if name in self._watches:
                raise ValueError(f"plugin {name!r} is already watched")
            self._watches[name] = watch
            if self._started and not self._stopping.is_set():
                self._plan_first(watch, self._clock.monotonic())

    def reconfigure(self, name: str, config: HealthCheckConfig) -> None:
        """Check ``name`` with ``config`` from now on (``KeyError`` if not watched).

        The next check comes at most one new interval from now (earlier if it was
        already planned earlier), and the grid continues from there. A check in
        flight keeps the timeout it started with. The manager uses this to check
        an open breaker's plugin at the breaker's own ``health_check_interval``.
        """
        _validate.check(_CONFIG, "config", config)
        with self._lock:
            watch = self._watches.get(name)
            if watch is None:
                raise KeyError(f"no health check is watched for plugin {name!r}")
            watch.config = config
            if watch.planned is None:
                return
            soonest = self._clock.monotonic() + config.interval
            if soonest < watch.planned:
                # The old heap entry goes stale: _process_due skips entries whose
                # time is no longer the watch's plan.
                watch.planned = soonest
                heapq.heappush(self._slots, (soonest, next(self._seq), watch))
                if soonest < self._next_wake:
                    self._wake.set()

    def unwatch(self, name: str) -> None:
        """Stop checking ``name``; a check of it in flight finishes and is dropped."""
        with self._lock:
            watch = self._watches.pop(name, None)
            if watch is None:
                raise KeyError(f"no health check is watched for plugin {name!r}")
            watch.active = False

    def start(self) -> None:
        """Start the scheduler and the worker pool (once)."""
        with self._lock:
            if self._started:
                raise RuntimeError("HealthMonitor.start() may be called only once")
            self._started = True
            now = self._clock.monotonic()
            for watch in self._watches.values():
                self._plan_first(watch, now)
            for _ in range(self._concurrency):
                self._spawn_worker()
            self._scheduler = threading.Thread(
                target=self._run_scheduler, name="recovery-health-scheduler", daemon=True
            )
            self._scheduler.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop checking; join the scheduler, the pool and detached threads within ``timeout``.

        ``timeout`` is in real seconds. Checks already past their timeout are not
        waited for; a thread still inside a check when the time is up is abandoned
        too (counted in :attr:`stuck_threads` until it returns). Never blocks longer
        than ``timeout`` (plus a thread switch).
        """
        with self._lock:
            if not self._started or self._stopping.is_set():
                return
            self._stopping.set()
            self._wake.set()
        deadline = time.monotonic() + max(timeout, 0.0)
        if self._scheduler is not None:
            self._scheduler.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            workers = list(self._workers)
            threads = [*workers, *self._detached]
        for _ in workers:
            self._jobs.put(None)
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            for thread in threads:
                self._workers.discard(thread)
                self._detached.discard(thread)
                if thread.is_alive():
                    self._abandoned.add(thread)

    def __enter__(self) -> HealthMonitor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def stuck_threads(self) -> int:
        """Abandoned threads (checks past their timeout) that are still running.

        A detached check still within its timeout is not counted: it is slow, not hung.
        """
        with self._lock:
            return sum(1 for thread in self._abandoned if thread.is_alive())

    def status(self, name: str) -> dict[str, Any]:
        """JSON-ready health of ``name``: last check (ISO-8601 UTC), its result, streak, stuck."""
        with self._lock:
            watch = self._watches.get(name)
            if watch is None:
                raise KeyError(f"no health check is watched for plugin {name!r}")
            result = watch.last_result
            in_flight = self._in_flight.get(name)
            return {
                "last_check": None if result is None else iso_utc(result.timestamp),
                "last_result": None
                if result is None
                else {
                    "healthy": result.healthy,
                    "duration": _human_duration(result.duration),
                    "message": result.message,
                },
                "consecutive_fails": watch.consecutive_fails,
                "stuck": in_flight is not None and in_flight.state == _TIMED_OUT,
            }

    def next_check(self, name: str) -> float | None:
        """Monitor-clock time of the next planned check of ``name`` (None before start())."""
        with self._lock:
            watch = self._watches.get(name)
            if watch is None:
                raise KeyError(f"no health check is watched for plugin {name!r}")
            return watch.planned

    def busy(self) -> bool:
        """Whether the monitor has work that needs no more time: a check queued or running
        (within its timeout), or a check, a detach or a timeout due now. The recovery
        manager's ``is_quiescent()`` asks."""
        now = self._clock.monotonic()
        with self._lock:
            if not self._started or self._stopping.is_set():
                return False
            if any(job.state != _TIMED_OUT for job in self._in_flight.values()):
                return True
            slot_due = bool(self._slots) and self._slots[0][0] <= now
            deadline_due = bool(self._deadlines) and self._deadlines[0][0] <= now
            return slot_due or deadline_due

    # -- scheduler ----------------------------------------------------------------

    def _plan_first(self, watch: _Watch, now: float) -> None:
        watch.planned = now + _phase(watch.name) * watch.config.interval
        heapq.heappush(self._slots, (watch.planned, next(self._seq), watch))
        if watch.planned < self._next_wake:
            self._wake.set()

    def _run_scheduler(self) -> None:
        while not self._stopping.is_set():
            dispatch: list[_Job] = []
            with self._lock:
                deliveries, replacements = self._process_due(self._clock.monotonic(), dispatch)
                for _ in range(replacements):
                    self._spawn_worker()
            for job in dispatch:
                self._jobs.put(job)
            self._deliver(deliveries)
            with self._lock:
                if self._stopping.is_set():  # stop() set both under this lock: not lost
                    return
                self._wake.clear()
                while self._deadlines and self._deadlines[0][2].state not in _LIVE:
                    heapq.heappop(self._deadlines)
                self._next_wake = min(
                    self._slots[0][0] if self._slots else math.inf,
                    self._deadlines[0][0] if self._deadlines else math.inf,
                )
                delay = self._next_wake - self._clock.monotonic()
            if delay > 0:
                wait(self._clock, self._wake, min(delay, _MAX_PARK))

    def _process_due(self, now: float, dispatch: list[_Job]) -> tuple[list[_Delivery], int]:
        """Detach and time out overdue checks, then plan due slots (jobs into ``dispatch``).

        Returns the callbacks to deliver and how many workers to start in place of
        detached ones. Called under the lock; the jobs are queued after it is
        released, so a woken worker does not at once block on the lock the
        scheduler still holds.
        """
        deliveries: list[_Delivery] = []
        replacements = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            job = heapq.heappop(self._deadlines)[2]
            if job.state == _RUNNING:
                replacements += 1
                self._detach(job)
            if job.state == _DETACHED:
                if job.deadline <= now:
                    deliveries.extend(self._time_out(job, now))
                else:
                    heapq.heappush(self._deadlines, (job.deadline, next(self._seq), job))
        horizon = now + _BATCH_WINDOW
        while self._slots and self._slots[0][0] <= horizon:
            planned, _, watch = heapq.heappop(self._slots)
            if not watch.active or planned != watch.planned:
                continue  # unwatched, or replanned by reconfigure()
            interval = watch.config.interval
            missed = max(math.floor((now - planned) / interval), 0)
            upcoming = planned + (missed + 1) * interval
            if upcoming <= now:
                # Float rounding: a step of the grid can vanish next to a large clock
                # value. Replan just ahead instead of stepping (which could loop for
                # ever under the lock): the scheduler must always let go of it.
                upcoming = max(now + interval, math.nextafter(now, math.inf))
            watch.planned = upcoming
            heapq.heappush(self._slots, (upcoming, next(self._seq), watch))
            in_flight = self._in_flight.get(watch.name)
            if in_flight is None:
                job = _Job(watch)
                self._in_flight[watch.name] = job
                dispatch.append(job)
            elif in_flight.state == _TIMED_OUT:
                result = HealthCheckResult(
                    False,
                    timestamp=time.time(),
                    duration=max(now - in_flight.started, 0.0),
                    message=f"previous check still hung after "
                    f"{_human_duration(now - in_flight.started)}",
                    check_type=watch.config.check_type,
                )
                deliveries.extend(self._record(watch, result))
        return deliveries, replacements

    def _detach(self, job: _Job) -> None:
        """Take a slow check's thread off the pool (the caller starts a replacement).

        Called under the lock.
        """
        job.state = _DETACHED
        if job.thread is not None:
            self._workers.discard(job.thread)
            self._detached.add(job.thread)
        self._logger.debug(
            "health check of %r still running after %s; its worker is detached and replaced",
            job.watch.name,
            _human_duration(min(self._detach_after, job.watch.config.timeout)),
        )

    def _time_out(self, job: _Job, now: float) -> list[_Delivery]:
        """Abandon a detached check past its timeout, and its thread. Called under the lock."""
        watch = job.watch
        job.state = _TIMED_OUT
        if job.thread is not None:
            self._detached.discard(job.thread)
            self._abandoned.add(job.thread)
        self._logger.warning(
            "health check of %r timed out after %s; its thread is abandoned",
            watch.name,
            _human_duration(watch.config.timeout),
        )
        if not watch.active:
            return []
        result = HealthCheckResult(
            False,
            timestamp=job.wall_started,
            duration=max(now - job.started, 0.0),
            message=f"timed out after {_human_duration(watch.config.timeout)}",
            check_type=watch.config.check_type,
        )
        return self._record(watch, result)

    def _record(self, watch: _Watch, result: HealthCheckResult) -> list[_Delivery]:
        """Store a result and say which callbacks it triggers. Called under the lock."""
        watch.last_result = result
        if result.healthy:
            watch.consecutive_fails = 0
            return [(watch.on_healthy, watch.name, result)]
        watch.consecutive_fails += 1
        if watch.consecutive_fails % watch.config.max_failures == 0:
            return [(watch.on_failure_limit, watch.name, result)]
        return []

    def _deliver(self, deliveries: list[_Delivery]) -> None:
        for callback, name, result in deliveries:
            if self._stopping.is_set():
                return
            try:
                callback(name, result)
            except Exception:
                self._logger.exception("health callback %s for %r raised", callback, name)

    # -- workers ------------------------------------------------------------------

    def _spawn_worker(self) -> None:
        """Add a pool thread. Called under the lock."""
        if self._stopping.is_set():
            return
        worker = threading.Thread(
            target=self._run_worker,
            name=f"recovery-health-worker-{next(self._worker_names)}",
            daemon=True,
        )
        self._workers.add(worker)
        worker.start()

    def _run_worker(self) -> None:
        me = threading.current_thread()
        while True:
            job = self._jobs.get()
            if job is None or not self._run_job(job, me):
                return

    def _run_job(self, job: _Job, me: threading.Thread) -> bool:
        """Run one check; False when this thread was detached meanwhile and must exit."""
        watch = job.watch
        with self._lock:
            if self._stopping.is_set() or not watch.active:
                job.state = _DONE
                del self._in_flight[watch.name]
                return True
            job.state = _RUNNING
            job.thread = me
            job.wall_started = time.time()
            job.started = self._clock.monotonic()
            job.deadline = job.started + watch.config.timeout
            detach = job.started + min(self._detach_after, watch.config.timeout)
            heapq.heappush(self._deadlines, (detach, next(self._seq), job))
            if detach < self._next_wake:
                self._wake.set()
        result = self._evaluate(watch)
        finished = self._clock.monotonic()
        with self._lock:
            pooled = job.state == _RUNNING
            timed_out = job.state == _TIMED_OUT
            job.state = _DONE
            del self._in_flight[watch.name]
            if not pooled:  # replaced in the pool: this thread exits after this check
                self._detached.discard(me)
                self._abandoned.discard(me)
            if timed_out:
                self._logger.info("hung health check of %r returned; result dropped", watch.name)
                return False
            if self._stopping.is_set() or not watch.active:
                return pooled
            result = HealthCheckResult(  # stamped (see HealthCheckResult)
                result.healthy,
                job.wall_started,
                max(finished - job.started, 0.0),
                result.message,
                result.details,
                result.check_type,
            )
            deliveries = self._record(watch, result)
        self._deliver(deliveries)
        return pooled

    def _evaluate(self, watch: _Watch) -> HealthCheckResult:
        """The main check, then each custom check, stopping at the first failure."""
        check_type = watch.config.check_type
        result = self._call(watch.name, watch.check, check_type)
        if not result.healthy:
            return result
        for index, check in enumerate(watch.config.custom_checks):
            extra = self._call(watch.name, check, check_type)
            if not extra.healthy:
                message = f"custom_checks[{index}] ({_name_of(check)}) failed"
                if extra.message:
                    message = f"{message}: {extra.message}"
                return attrs.evolve(extra, message=message)
        return result

    def _call(self, name: str, check: HealthCheck, check_type: str) -> HealthCheckResult:
        try:
            value = check()
        except BaseException as exc:  # a worker has nobody above it to hand this to
            self._logger.warning("health check of %r raised", name, exc_info=True)
            return HealthCheckResult(
                False,
                message=f"{type(exc).__name__}: {exception_message(exc)}",
                details={"exception": type(exc).__qualname__},
                check_type=check_type,
            )
        if isinstance(value, HealthCheckResult):
            return value
        if isinstance(value, bool):
            return HealthCheckResult(value, check_type=check_type)
        shown = safe_repr(value)
        self._logger.warning(
            "health check of %r returned %s, not a bool or HealthCheckResult", name, shown
        )
        return HealthCheckResult(
            False,
            message=f"check returned {shown}, expected a bool or HealthCheckResult",
            check_type=check_type,
        )
