"""Active health checks on a bounded thread pool (SPEC §8).

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
- **No overlap.** A check of a plugin never starts while its previous one runs. A
  slot that finds the previous check still running within its timeout is skipped
  silently (a check may take longer than its interval).
- **Timeouts.** A check that outlives ``timeout`` is reported unhealthy at its
  deadline. A Python thread cannot be killed, so the worker running it is
  *abandoned* (it is a daemon thread and exits when the check finally returns,
  whose late result is dropped) and a fresh worker replaces it, so the pool keeps
  its working size and the other plugins keep their schedule. No new check of that
  plugin starts while the hung one runs, so there is at most one abandoned thread
  per plugin; :attr:`HealthMonitor.stuck_threads` counts the live ones. Each slot
  that comes due while the plugin's check is still hung is recorded as a failed
  check ("still hung"): a plugin whose check hangs for good is unhealthy and must
  reach ``max_failures``, or it would never be handed to recovery.
- **Time.** The scheduler, the timeouts and the measured durations all use the
  monitor's clock: real time with the default clock; with
  :class:`recovery.testing.FakeClock` a check times out when the test advances
  the clock past its deadline, so no test waits on real time.
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
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import attrs

from recovery import _validate
from recovery._clock import REAL_CLOCK, Clock, wait

__all__ = ["HealthCheck", "HealthCheckConfig", "HealthCheckResult", "HealthMonitor"]

_LOGGER = logging.getLogger("recovery.health")

_BATCH_WINDOW = 0.002
"""Slots due within this many seconds of a wake-up are dispatched by it, slightly early.

One wake-up of the scheduler thread costs about as much CPU as the rest of a check's
bookkeeping; with a thousand plugins a second, batching slots 2 ms apart cuts the
monitor's CPU by about a third, and a check that starts 2 ms early is still on its grid.
"""

_MAX_PARK = 3600.0
"""Longest single park of the scheduler with nothing planned (an event wakes it sooner)."""


def _non_empty_str(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"{attribute.name} must be a non-empty str, got {value!r} ({type(value).__name__})"
        )


def _str(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str, got {value!r} ({type(value).__name__})")


def _non_negative_number(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{attribute.name} must be a number, got {value!r} ({type(value).__name__})"
        )
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _copy_details(value: Mapping[str, Any]) -> dict[str, Any]:
    """Copy, so a check that reuses its dict cannot change a recorded result."""
    return dict(value)


def _callables(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for index, item in enumerate(value):
        if not callable(item):
            raise TypeError(f"{attribute.name}[{index}] must be callable, got {item!r}")


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
    timestamp: float = attrs.field(factory=time.time, validator=_non_negative_number)
    duration: float = attrs.field(
        default=0.0, converter=_validate.seconds, validator=_non_negative_number
    )
    message: str = attrs.field(default="", validator=_str)
    details: Mapping[str, Any] = attrs.field(factory=dict, converter=_copy_details)
    check_type: str = attrs.field(default="custom", validator=_str)


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
      run).
    """

    interval: float = attrs.field(
        default=10.0, converter=_validate.seconds, validator=_validate.positive_seconds
    )
    timeout: float = attrs.field(
        default=5.0, converter=_validate.seconds, validator=_validate.positive_seconds
    )
    max_failures: int = attrs.field(default=3, validator=_validate.positive_int)
    check_type: str = attrs.field(default="custom", validator=_non_empty_str)
    custom_checks: tuple[HealthCheck, ...] = attrs.field(
        default=(), converter=tuple, validator=_callables
    )


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


def _iso_utc(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _phase(name: str) -> float:
    """A stable fraction in [0, 1) per name: where in its interval a plugin is checked."""
    return zlib.crc32(name.encode("utf-8", "surrogatepass")) / 2.0**32


def _describe(check: object) -> str:
    return str(getattr(check, "__qualname__", None) or repr(check))


class _Watch:
    """One watched plugin: its check, schedule and results (guarded by the monitor lock)."""

    __slots__ = (
        "active",
        "check",
        "config",
        "consecutive_fails",
        "job",
        "last_result",
        "name",
        "on_failure_limit",
        "on_healthy",
        "planned",
    )

    def __init__(
        self,
        name: str,
        check: HealthCheck,
        config: HealthCheckConfig,
        on_failure_limit: ResultCallback,
        on_healthy: ResultCallback,
    ) -> None:
        self.name = name
        self.check = check
        self.config = config
        self.on_failure_limit = on_failure_limit
        self.on_healthy = on_healthy
        self.active = True
        self.planned: float | None = None
        self.job: _Job | None = None
        self.consecutive_fails = 0
        self.last_result: HealthCheckResult | None = None


_QUEUED, _RUNNING, _DONE, _TIMED_OUT = range(4)


class _Job:
    """One check of one plugin, from dispatch to result (guarded by the monitor lock)."""

    __slots__ = ("started", "state", "thread", "wall_started", "watch")

    def __init__(self, watch: _Watch) -> None:
        self.watch = watch
        self.state = _QUEUED
        self.started = 0.0
        self.wall_started = 0.0
        self.thread: threading.Thread | None = None


_Delivery = tuple[ResultCallback, str, HealthCheckResult]


class HealthMonitor:
    """Runs health checks for many plugins on ``concurrency`` worker threads.

    ``clock`` drives the schedule, the timeouts and the measured durations (see the
    module docstring). ``watch`` may be called before or after :meth:`start`.

    Sizing: a check that hangs holds its worker until its timeout, and only then is
    the worker replaced. Checks that start hanging together can therefore occupy
    the whole pool for up to ``hanging / concurrency * timeout`` seconds (50 hung
    plugins, 8 threads, a 1 s timeout: about 6 s of late checks; with a 0.1 s
    timeout, under 30 ms). Keep timeouts well below intervals, or the pool larger
    than the number of plugins expected to hang at once.
    """

    def __init__(
        self,
        *,
        concurrency: int = 4,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(
                f"concurrency must be an int, got {concurrency!r} ({type(concurrency).__name__})"
            )
        if concurrency <= 0:
            raise ValueError(f"concurrency must be > 0, got {concurrency!r}")
        self._concurrency = concurrency
        self._clock: Clock = REAL_CLOCK if clock is None else clock
        self._logger = _LOGGER if logger is None else logger
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._hung: dict[str, _Job] = {}
        self._slots: list[tuple[float, int, _Watch]] = []
        self._deadlines: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._next_wake = math.inf
        self._started = False
        self._scheduler: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._abandoned: set[threading.Thread] = set()
        self._worker_names = itertools.count(1)

    # -- public API ---------------------------------------------------------------

    def watch(
        self,
        name: str,
        check: HealthCheck,
        config: HealthCheckConfig | None = None,
        *,
        on_failure_limit: ResultCallback,
        on_healthy: ResultCallback,
    ) -> None:
        """Start checking ``name`` with ``check`` (``ValueError`` if already watched)."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r} ({type(name).__name__})")
        if not callable(check):
            raise TypeError(f"check must be callable, got {check!r}")
        if config is None:
            config = HealthCheckConfig()
        elif not isinstance(config, HealthCheckConfig):
            raise TypeError(f"config must be a HealthCheckConfig, got {config!r}")
        watch = _Watch(name, check, config, on_failure_limit, on_healthy)
        with self._lock:
            if name in self._watches:
                raise ValueError(f"plugin {name!r} is already watched")
            self._watches[name] = watch
            if self._started and not self._stopping.is_set():
                self._plan_first(watch, self._clock.monotonic())

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
        """Stop checking and join the scheduler and the pool within ``timeout`` real seconds.

        Checks already abandoned are not waited for; a worker still inside a check
        when the time is up is abandoned too (counted in :attr:`stuck_threads`).
        Never blocks longer than ``timeout`` (plus a thread switch).
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
        for _ in workers:
            self._jobs.put(None)
        for worker in workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        with self._lock:
            for worker in workers:
                self._workers.discard(worker)
                if worker.is_alive():
                    self._abandoned.add(worker)

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
        """Abandoned threads (hung checks) that are still running."""
        with self._lock:
            return sum(1 for thread in self._abandoned if thread.is_alive())

    def status(self, name: str) -> dict[str, Any]:
        """JSON-ready health of ``name``: last check (ISO-8601 UTC), its result, streak, stuck."""
        with self._lock:
            watch = self._watches.get(name)
            if watch is None:
                raise KeyError(f"no health check is watched for plugin {name!r}")
            result = watch.last_result
            return {
                "last_check": None if result is None else _iso_utc(result.timestamp),
                "last_result": None
                if result is None
                else {
                    "healthy": result.healthy,
                    "duration": _human_duration(result.duration),
                    "message": result.message,
                },
                "consecutive_fails": watch.consecutive_fails,
                "stuck": name in self._hung,
            }

    def next_check(self, name: str) -> float | None:
        """Monitor-clock time of the next planned check of ``name`` (None before start())."""
        with self._lock:
            watch = self._watches.get(name)
            if watch is None:
                raise KeyError(f"no health check is watched for plugin {name!r}")
            return watch.planned

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
                while self._deadlines and self._deadlines[0][2].state != _RUNNING:
                    heapq.heappop(self._deadlines)
                self._next_wake = min(
                    self._slots[0][0] if self._slots else math.inf,
                    self._deadlines[0][0] if self._deadlines else math.inf,
                )
                delay = self._next_wake - self._clock.monotonic()
            if delay > 0:
                wait(self._clock, self._wake, min(delay, _MAX_PARK))

    def _process_due(self, now: float, dispatch: list[_Job]) -> tuple[list[_Delivery], int]:
        """Time out overdue checks, then plan due slots (their jobs into ``dispatch``).

        Called under the lock; the jobs are queued after it is released, so a woken
        worker does not at once block on the lock the scheduler still holds.
        """
        deliveries: list[_Delivery] = []
        replacements = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            job = heapq.heappop(self._deadlines)[2]
            if job.state == _RUNNING:
                replacements += 1
                deliveries.extend(self._time_out(job, now))
        horizon = now + _BATCH_WINDOW
        while self._slots and self._slots[0][0] <= horizon:
            planned, _, watch = heapq.heappop(self._slots)
            if not watch.active:
                continue
            interval = watch.config.interval
            missed = max(math.floor((now - planned) / interval), 0)
            upcoming = planned + (missed + 1) * interval
            while upcoming <= now:  # float rounding must not replan into the past
                upcoming += interval
            watch.planned = upcoming
            heapq.heappush(self._slots, (upcoming, next(self._seq), watch))
            hung = self._hung.get(watch.name)
            if hung is not None:
                result = HealthCheckResult(
                    False,
                    timestamp=time.time(),
                    duration=max(now - hung.started, 0.0),
                    message=f"previous check still hung after "
                    f"{_human_duration(now - hung.started)}",
                    check_type=watch.config.check_type,
                )
                deliveries.extend(self._record(watch, result))
            elif watch.job is None:
                watch.job = _Job(watch)
                dispatch.append(watch.job)
        return deliveries, replacements

    def _time_out(self, job: _Job, now: float) -> list[_Delivery]:
        """Abandon a check past its deadline and its thread. Called under the lock."""
        watch = job.watch
        job.state = _TIMED_OUT
        if watch.job is job:
            watch.job = None
        self._hung[watch.name] = job
        if job.thread is not None:
            self._workers.discard(job.thread)
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
        """Run one check; False when this thread was abandoned meanwhile and must exit."""
        watch = job.watch
        with self._lock:
            if self._stopping.is_set() or not watch.active:
                job.state = _DONE
                if watch.job is job:
                    watch.job = None
                return True
            job.state = _RUNNING
            job.thread = me
            job.wall_started = time.time()
            job.started = self._clock.monotonic()
            deadline = job.started + watch.config.timeout
            heapq.heappush(self._deadlines, (deadline, next(self._seq), job))
            if deadline < self._next_wake:
                self._wake.set()
        result = self._evaluate(watch)
        finished = self._clock.monotonic()
        with self._lock:
            if job.state == _TIMED_OUT:
                self._abandoned.discard(me)
                if self._hung.get(watch.name) is job:
                    del self._hung[watch.name]
                self._logger.info("hung health check of %r returned; result dropped", watch.name)
                return False
            job.state = _DONE
            if watch.job is job:
                watch.job = None
            if self._stopping.is_set() or not watch.active:
                return True
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
        return True

    def _evaluate(self, watch: _Watch) -> HealthCheckResult:
        """The main check, then each custom check, stopping at the first failure."""
        check_type = watch.config.check_type
        result = self._call(watch.name, watch.check, check_type)
        if not result.healthy:
            return result
        for index, check in enumerate(watch.config.custom_checks):
            extra = self._call(watch.name, check, check_type)
            if not extra.healthy:
                message = f"custom_checks[{index}] ({_describe(check)}) failed"
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
                message=f"{type(exc).__name__}: {exc}",
                details={"exception": type(exc).__qualname__},
                check_type=check_type,
            )
        if isinstance(value, HealthCheckResult):
            return value
        if isinstance(value, bool):
            return HealthCheckResult(value, check_type=check_type)
        self._logger.warning(
            "health check of %r returned %r, not a bool or HealthCheckResult", name, value
        )
        return HealthCheckResult(
            False,
            message=f"check returned {value!r}, expected a bool or HealthCheckResult",
            check_type=check_type,
        )
