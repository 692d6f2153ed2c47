"""The manager's early warning: a forecaster over every breaker, started and stopped with the
manager, an "early_warning" alert once per warning, and the warning in each plugin's status.

On the fake clock: the test steps the clock one forecaster interval at a time and waits
until the forecaster's thread has sampled (``ParkingClock.step``), so nothing waits on
real time and every sample sees exactly the calls of its interval. The manager's breakers
are on the window the environment selects: the suite runs this file on both.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator

import pytest

from recovery import Alert, RecoveryConfig, RecoveryManager
from recovery.alerts import AlertKind
from recovery.state import CircuitBreakerState
from recovery.status import EarlyWarning, PluginWarning
from recovery.testing import FakeClock
from tests.helpers import recovery_threads

TICK = 0.25  # the forecaster's default interval


class ParkingClock(FakeClock):
    """A FakeClock that counts the waits the forecaster's thread begins on it, so a test
    can step that thread one sample at a time."""

    def __init__(self) -> None:
        super().__init__(1000.0)
        self._parked = threading.Condition()
        self.parks = 0

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if threading.current_thread().name == "recovery-forecaster":
            with self._parked:
                self.parks += 1
                self._parked.notify_all()
        return super().wait(event, timeout)

    def step(self) -> None:
        """Advance one interval; return once the forecaster has sampled and waits again."""
        with self._parked:
            parks = self.parks
        self.advance(TICK)
        with self._parked:
            assert self._parked.wait_for(lambda: self.parks > parks, 5.0), "no sample"
        assert self.wait_for_waiters(1), "the forecaster did not wait again"


class Upstream:
    """Calls through the manager at 48 a second, each failing with ``error_rate``."""

    def __init__(self, rm: RecoveryManager, clock: ParkingClock, name: str) -> None:
        self.rm, self.clock, self.name = rm, clock, name
        self.rng = random.Random(3)

    def _call(self, error_rate: float) -> None:
        def work() -> None:
            if self.rng.random() < error_rate:
                raise ConnectionError("upstream said no")

        with contextlib.suppress(ConnectionError):
            self.rm.call(self.name, work)

    def run(self, seconds: float, error_rate: float,
            until: Callable[[], bool] | None = None) -> float:
        """Call for up to ``seconds``, or until ``until()`` is true; the seconds it took."""
        steps = 0
        while steps * TICK < seconds:
            if until is not None and until():
                break
            for _ in range(12):
                self._call(error_rate)
            self.clock.step()
            steps += 1
        return steps * TICK


@pytest.fixture
def clock() -> ParkingClock:
    return ParkingClock()


@pytest.fixture
def rm(clock: ParkingClock) -> Iterator[RecoveryManager]:
    manager = RecoveryManager(
        config=RecoveryConfig(early_warning=True, enable_health_checking=False), clock=clock)
    manager.start()
    yield manager
    manager.stop(timeout=5.0)


def warning_of(rm: RecoveryManager, name: str) -> PluginWarning:
    warning = rm.status().plugins[name].warning
    assert warning is not None
    return warning


def test_a_dependency_going_bad_is_warned_of_once_before_its_breaker_opens(
    rm: RecoveryManager, clock: ParkingClock
) -> None:
    alerts: list[tuple[Alert, str]] = []
    rm.add_alert_handler(lambda alert: alerts.append((alert, threading.current_thread().name)))
    rm.register_dependency("payments")  # after start(): watched from now on
    assert clock.wait_for_waiters(1)
    upstream = Upstream(rm, clock, "payments")
    upstream.run(240, 0.01)  # four quiet minutes at 1 %: learned, nothing said
    assert rm.wait_idle(5)
    assert warning_of(rm, "payments") == PluginWarning()
    assert alerts == []

    took = upstream.run(60, 0.06, until=lambda: warning_of(rm, "payments").active)
    assert took < 60, "no early warning after a minute at 6 %"
    assert rm.breaker("payments").state is CircuitBreakerState.CLOSED
    warning = warning_of(rm, "payments").failure_rate
    assert warning.active and warning.raised == 1
    assert warning.baseline is not None and warning.current is not None
    assert warning.baseline < 0.02 < warning.current
    assert warning.since is not None
    assert warning_of(rm, "payments").latency == EarlyWarning()  # no latency recorded
    entry = rm.get_recovery_status()["plugins"]["payments"]["warning"]
    assert entry["active"] is True and entry["failure_rate"]["raised"] == 1
    assert entry["failure_rate"]["since"].endswith("Z")

    upstream.run(30, 0.06)  # still up: no second alert for the same warning
    assert rm.wait_idle(5)
    early = [(alert, thread) for alert, thread in alerts if alert.kind is AlertKind.EARLY_WARNING]
    assert len(early) == 1
    alert, thread = early[0]
    assert alert.plugin_name == "payments"
    assert "failure rate" in alert.message and "usually" in alert.message
    assert thread.startswith("recovery alert handler")  # the manager's, not the forecaster's

    took = upstream.run(120, 0.01, until=lambda: not warning_of(rm, "payments").active)
    assert took < 120, "the warning did not end once the failures were back at baseline"
    ended = warning_of(rm, "payments").failure_rate
    assert (ended.active, ended.raised, ended.since) == (False, 1, None)

    # Re-armed: the next warning alerts again.
    upstream.run(120, 0.01)
    took = upstream.run(60, 0.06, until=lambda: warning_of(rm, "payments").active)
    assert took < 60
    assert warning_of(rm, "payments").failure_rate.raised == 2
    assert rm.wait_idle(5)
    assert [alert.kind for alert, _ in alerts].count(AlertKind.EARLY_WARNING) == 2


def test_a_warning_ends_when_the_breaker_opens_and_no_alert_comes_after(
    rm: RecoveryManager, clock: ParkingClock
) -> None:
    rm.register_dependency("db")
    assert clock.wait_for_waiters(1)
    upstream = Upstream(rm, clock, "db")
    upstream.run(240, 0.005)
    took = upstream.run(60, 0.08, until=lambda: warning_of(rm, "db").active)
    assert took < 60
    rm.breaker("db").force_open()
    clock.step()  # the next sample sees it open: nothing left to foresee
    assert warning_of(rm, "db").failure_rate == EarlyWarning(raised=1)


def test_off_by_default_no_forecaster_runs_and_status_says_not_watched(
    clock: ParkingClock,
) -> None:
    with RecoveryManager(config=RecoveryConfig(enable_health_checking=False),
                         clock=clock) as rm:
        rm.register_dependency("payments")
        assert rm.status().plugins["payments"].warning is None
        assert rm.get_recovery_status()["plugins"]["payments"]["warning"] is None
        assert not any(t.name == "recovery-forecaster" for t in recovery_threads())


def test_stop_joins_the_forecaster_and_a_restart_watches_afresh(clock: ParkingClock) -> None:
    rm = RecoveryManager(
        config=RecoveryConfig(early_warning=True, enable_health_checking=False), clock=clock)
    rm.register_dependency("payments")
    assert rm.status().plugins["payments"].warning is None  # not started: not watched
    for _ in range(2):
        rm.start()
        assert clock.wait_for_waiters(1)
        forecasters = [t for t in recovery_threads() if t.name == "recovery-forecaster"]
        assert forecasters
        assert rm.status().plugins["payments"].warning == PluginWarning()
        rm.stop(timeout=5.0)
        assert not any(thread.is_alive() for thread in forecasters)
        assert rm.status().plugins["payments"].warning is None


def test_the_early_warning_switch_is_checked() -> None:
    with pytest.raises(TypeError, match="early_warning"):
        RecoveryConfig(early_warning="yes")  # type: ignore[arg-type]


def test_with_alerting_off_the_warning_is_in_status_and_no_alert_goes_out(
    clock: ParkingClock,
) -> None:
    config = RecoveryConfig(early_warning=True, enable_health_checking=False,
                            enable_alerting=False)
    alerts: list[Alert] = []
    with RecoveryManager(config=config, clock=clock) as rm:
        rm.add_alert_handler(alerts.append)
        rm.register_dependency("payments")
        assert clock.wait_for_waiters(1)
        upstream = Upstream(rm, clock, "payments")
        upstream.run(240, 0.01)
        took = upstream.run(60, 0.06, until=lambda: warning_of(rm, "payments").active)
        assert took < 60
        assert rm.wait_idle(5)
    assert alerts == []


def test_the_warning_is_exported_to_prometheus_and_opentelemetry(
    rm: RecoveryManager, clock: ParkingClock
) -> None:
    pytest.importorskip("prometheus_client")
    sdk = pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from recovery.otel import instrument
    from recovery.prometheus import RecoveryCollector
    from tests.test_otel import read, scrape

    rm.register_dependency("payments")
    rm.register_dependency("search")
    assert clock.wait_for_waiters(1)
    upstream = Upstream(rm, clock, "payments")
    upstream.run(240, 0.01)
    took = upstream.run(60, 0.06, until=lambda: warning_of(rm, "payments").active)
    assert took < 60

    def series(name: str, plugin: str, kind: str) -> tuple[str, frozenset[tuple[str, str]]]:
        return name, frozenset({("plugin", plugin), ("kind", kind)})

    samples = scrape(RecoveryCollector(rm, breakers=False))
    expected = {
        series("recovery_early_warning", "payments", "failure_rate"): 1.0,
        series("recovery_early_warning", "payments", "latency"): 0.0,
        series("recovery_early_warning", "search", "failure_rate"): 0.0,
        series("recovery_early_warning", "search", "latency"): 0.0,
        series("recovery_early_warnings_total", "payments", "failure_rate"): 1.0,
        series("recovery_early_warnings_total", "payments", "latency"): 0.0,
        series("recovery_early_warnings_total", "search", "failure_rate"): 0.0,
        series("recovery_early_warnings_total", "search", "latency"): 0.0,
    }
    assert {key: value for key, value in samples.items() if "early_warning" in key[0]} == expected

    reader = InMemoryMetricReader()
    provider = sdk.MeterProvider(metric_readers=[reader])
    try:
        instrumentation = instrument(rm, provider)
        _, points = read(reader)
        instrumentation.close()
    finally:
        provider.shutdown()
    names = {"recovery.plugin.early_warning": "recovery_early_warning",
             "recovery.plugin.early_warnings": "recovery_early_warnings_total"}
    observed = {
        series(names[name], dict(attributes)["recovery.plugin.name"],
               dict(attributes)["recovery.early_warning.kind"]): value
        for (name, attributes), value in points.items() if name in names
    }
    assert observed == expected


@pytest.mark.parametrize(("kind", "baseline", "current", "trip", "text"), [
    ("failure_rate", 0.009, 0.061, 12.4,
     "failure rate 6.1%, usually 0.9%; at this trend its breaker opens in about 12s"),
    ("failure_rate", 0.01, 0.2, 0.0,
     "failure rate 20.0%, usually 1.0%; at this trend its breaker opens any moment now"),
    ("latency", 0.02, 0.085, None, "typical call 85ms, usually 20ms; its breaker is still closed"),
])
def test_the_alert_says_what_moved_from_what_and_when_the_breaker_would_open(
    kind: str, baseline: float, current: float, trip: float | None, text: str
) -> None:
    from recovery.manager.early_warning import warning_message

    assert warning_message(kind, current, baseline, trip) == text


def test_an_early_warning_is_the_onset_of_an_incident_and_its_end_closes_it(
    rm: RecoveryManager, clock: ParkingClock
) -> None:
    rm.register_dependency("payments")
    assert clock.wait_for_waiters(1)
    upstream = Upstream(rm, clock, "payments")
    upstream.run(240, 0.01)
    assert rm.incidents() == []

    upstream.run(60, 0.06, until=lambda: warning_of(rm, "payments").active)
    assert rm.breaker("payments").state is CircuitBreakerState.CLOSED
    (incident,) = rm.incidents(active_only=True)
    assert incident.root == "payments" and incident.members == ("payments",)
    assert incident.why("payments").kind == "early_warning"

    took = upstream.run(120, 0.01, until=lambda: not warning_of(rm, "payments").active)
    assert took < 120
    assert rm.incidents(active_only=True) == []
    (ended,) = rm.incidents()
    assert ended.id == incident.id and ended.ended is not None
