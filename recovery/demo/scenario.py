"""The demo's simulated service: five plugins, their faults in time, and the workers' loop.

What happens to each plugin is told in the command's help (``recovery.demo.cli``). One
process runs the scenario behind one manager (``recovery.demo.local``); a fleet runs it
in every node, its manager sharing the breakers through a cluster (``recovery.demo.fleet``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from recovery._flaky import FlakyPlugin
from recovery.audit import AuditLogger
from recovery.config import CircuitBreakerConfig
from recovery.demo.calls import CallTally
from recovery.demo.screen import Reporter
from recovery.errors import CircuitOpenError
from recovery.failures import FailureInfo, classify
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry

PLUGINS = ("steady", "flaky", "slow", "hung-check", "crashy")
SLOW_LATENCY = 0.2
"""Seconds a call to "slow" takes once it has turned slow..."""
CALL_DEADLINE = 0.1
"""...which is more than its callers wait: they give up with TimeoutError."""
BOOT_CRASHES = 3
"""initialize calls of "crashy" that crash: at boot, then in the first two restarts."""
WORKER_PAUSE = 0.01
"""Seconds each worker rests between calls, so the demo does not burn a CPU."""


class FallbackAnswer(str):
    """What the fallback of "slow" answers: a str, told apart from the plugin's own."""


@attrs.frozen
class Fault:
    """A scripted change of one plugin at ``at`` seconds into the run."""

    at: float
    plugin: str
    description: str
    apply: Callable[[], object]


def timeline(plugins: dict[str, FlakyPlugin], duration: float) -> list[Fault]:
    """When each plugin goes bad, as fractions of the run, so a short run shows it all."""

    def slow_down() -> None:
        plugins["slow"].latency = SLOW_LATENCY

    def speed_up() -> None:
        plugins["slow"].latency = 0.0

    faults = [
        Fault(0.10, "flaky", "fault: every call fails until it is restarted",
              lambda: plugins["flaky"].fail_until_restarted(1)),
        Fault(0.15, "hung-check", "fault: health checks hang",
              plugins["hung-check"].hang_health_checks),
        Fault(0.20, "slow", f"fault: calls take {SLOW_LATENCY * 1e3:.0f} ms "
              f"(callers wait {CALL_DEADLINE * 1e3:.0f} ms)", slow_down),
        Fault(0.55, "flaky", "fault: every call fails until it is restarted twice",
              lambda: plugins["flaky"].fail_until_restarted(2)),
        Fault(0.70, "slow", "fault over: calls are fast again", speed_up),
    ]
    return [attrs.evolve(fault, at=fault.at * duration) for fault in faults]


def recovery_config(duration: float) -> RecoveryConfig:
    """Short periods, so that trips, checks and recoveries all happen within seconds."""
    breaker = CircuitBreakerConfig(
        failure_threshold=5,
        success_threshold=3,
        timeout=1.0,
        max_retry_interval=4.0,
        sliding_window_size=20,
        minimum_requests=5,
        max_health_checks=2,
        max_half_open_wait=2.0,
    )
    return RecoveryConfig(
        default_circuit_breaker=breaker,
        health_check_interval=0.5,
        health_check_timeout=0.4,
        max_recovery_attempts=BOOT_CRASHES + 1,
        recovery_backoff_base=0.25,
        recovery_workers=3,
        max_episodes_per_period=10,
        episode_period=30.0,
        strategy_timeout=5.0,
        # A slow dependency is not cured by a restart: serve the fallback instead.
        # A plugin that cannot start needs a restart, whatever the failure's type.
        plugin_recovery_strategies={"slow": "degrade", "crashy": "restart"},
        recovery_strategy_configs={"degrade": {"hold": max(0.5, duration / 5)}},
        # The show is scripted for the fixed order (flaky's faults need restarts);
        # a learned order needs more episodes than a demo lasts to tell anything.
        strategy_order="priority",
    )


def with_deadline(call: Callable[[], str], deadline: float) -> Callable[[], str]:
    """The caller's side of a timeout: an answer later than ``deadline`` is a TimeoutError."""

    def timed() -> str:
        started = time.monotonic()
        answer = call()
        elapsed = time.monotonic() - started
        if elapsed > deadline:
            raise TimeoutError(
                f"answered after {elapsed * 1e3:.0f} ms, deadline {deadline * 1e3:.0f} ms"
            )
        return answer

    return timed


@attrs.frozen
class Scenario:
    """The demo's plugins behind a started-to-be manager, and what its workers call."""

    rm: RecoveryManager
    plugins: dict[str, FlakyPlugin]
    calls: dict[str, Callable[[], str]]
    faults: list[Fault]
    boot_failure: tuple[str, FailureInfo] | None

    def start(self, report: Reporter) -> None:
        """Start the manager, and hand it crashy's crash at boot."""
        self.rm.start()
        if self.boot_failure is not None:
            name, failure = self.boot_failure
            report.event(name, f"fault: crashed in initialize at boot ({failure.message})")
            self.rm.record_failure(name, failure)


def build_scenario(
    seed: int,
    duration: float,
    audit: AuditLogger,
    listeners: tuple[Callable[..., object], ...],
    report: Reporter,
    cluster: Any = None,
) -> Scenario:
    """The plugins, registered (crashy crashes at boot), behind a manager (not started)."""
    registry = PluginRegistry()
    plugins = {name: FlakyPlugin(name, seed=seed + index) for index, name in enumerate(PLUGINS)}
    plugins["crashy"].crash_next_initializations(BOOT_CRASHES)
    boot_failure = None
    for plugin in plugins.values():
        try:
            registry.register(plugin)
        except Exception as exc:  # crashy, at boot: a failure to hand to the manager
            boot_failure = (plugin.name, classify(exc))
    quiet = logging.Logger("recovery.demo")  # what the manager logs is shown as events
    quiet.addHandler(logging.NullHandler())
    rm = RecoveryManager(registry, audit, recovery_config(duration), quiet, cluster=cluster)
    for name in PLUGINS:
        fallback = (lambda: FallbackAnswer("slow (cached answer)")) if name == "slow" else None
        breaker = rm.register_plugin(name, fallback=fallback)
        for listener in listeners:
            breaker.add_listener(listener)
    rm.add_alert_handler(report.alert)
    calls: dict[str, Callable[[], str]] = {name: plugin.do_work for name, plugin in
                                           plugins.items()}
    calls["slow"] = with_deadline(plugins["slow"].do_work, CALL_DEADLINE)
    return Scenario(rm, plugins, calls, timeline(plugins, duration), boot_failure)


def work(
    rm: RecoveryManager,
    calls: dict[str, Callable[[], str]],
    tally: CallTally,
    stop: threading.Event,
    rng: random.Random,
) -> None:
    """One worker: call a random plugin through the manager until told to stop."""
    names = list(calls)
    while not stop.is_set():
        name = rng.choice(names)
        try:
            answer = rm.execute_with_recovery(name, calls[name])
        except CircuitOpenError:
            outcome = "circuit_open"
        except Exception:
            outcome = "failed"
        else:
            outcome = "fallback_served" if isinstance(answer, FallbackAnswer) else "ok"
        tally.call(name, outcome)
        stop.wait(WORKER_PAUSE)
