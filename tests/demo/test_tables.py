"""The live table's rows and the summary's lines, from a given status and counts."""

from __future__ import annotations

import time
from typing import Any

import attrs

from recovery.breaker import CircuitBreaker
from recovery.demo.calls import PluginCalls
from recovery.demo.state_times import STATES, StateTimes
from recovery.demo.tables import live_table, summary
from recovery.state import CircuitBreakerState
from recovery.status import HealthCheckStatus, PluginRecovery, PluginStatus, RecoveryStatus

CLOSED, OPEN = CircuitBreakerState.CLOSED, CircuitBreakerState.OPEN

def local(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


def status_of(plugins: dict[str, PluginRecovery]) -> RecoveryStatus:
    """A manager's status with these plugins, their breakers open (7 calls rejected)."""
    metrics = attrs.evolve(CircuitBreaker("p").metrics(), state=OPEN, total_rejections=7)
    return RecoveryStatus(
        running=True, auto_recovery=True, health_checking=True, alerting=True,
        episodes_in_progress=0, stuck_strategies=(), stuck_health_checks=0,
        plugins={name: PluginStatus(name, attrs.evolve(metrics, name=name),
                                    HealthCheckStatus(), recovery)
                 for name, recovery in plugins.items()},
    )


def live_row(**recovery: Any) -> str:
    status = status_of({"p": PluginRecovery(last_action="restart", last_action_success=False,
                                            degraded=False, failed=True, **recovery)})
    tally = {"p": PluginCalls(ok=6, failed=2, circuit_open=3, fallback_served=1)}
    times = {"p": StateTimes(dict.fromkeys(STATES, 0.0),
                                   {**dict.fromkeys(STATES, 0), OPEN: 4}, OPEN)}
    return live_table(status, tally, times, {"p": 0.25})[1]


def test_the_live_row_shows_a_crash_loop_and_its_next_attempt() -> None:
    row = live_row(crash_loop=True, next_attempt=1_700_000_012.0)
    # CALLS, OK, ERRORS (2 failed, 3 refused), FALLBACK SERVED: what the callers got;
    # REJECTED is the breaker's own count, from the status.
    assert row.split()[:9] == ["p", "open", "12", "6", "5", "1", "7", "25%", "4"]
    assert row.endswith(f" crash-loop (next {local(1_700_000_012)})  restart FAILED")
    assert live_row(crash_loop=True, next_attempt=None).endswith(
        " crash-loop  restart FAILED")
    # Failed and not in a crash loop: failed is failed.
    assert live_row().endswith(" failed    restart FAILED")  # FLAGS is as wide as "degraded"


def test_the_summary_says_why_a_plugin_is_out_of_service() -> None:
    wall_started = 1_700_000_000.0
    plugins = {
        "looping": PluginRecovery(crash_loop=True, next_attempt=wall_started + 9, failed=True,
                                  failed_reason="recovery exhausted", degraded=False),
        "given-up": PluginRecovery(failed=True, failed_reason="unrecoverable: bad config",
                                   degraded=False),
        "fine": PluginRecovery(failed=False, degraded=True),
    }
    status = status_of(plugins)
    tally = {name: PluginCalls() for name in plugins}
    times = {name: StateTimes(dict.fromkeys(STATES, 0.0),
                                    dict.fromkeys(STATES, 0), CLOSED) for name in plugins}
    lines = summary(status, tally, times, 5.0, False, wall_started)
    # The run's span on the clock, to read the next attempt against.
    assert lines[0] == (
        f"finished after 5.000s ({local(wall_started)} to {local(wall_started + 5)})"
    )
    actions = lines.index("RECOVERY ACTIONS")
    rows = {line.split()[0]: line for line in lines[actions + 1:actions + 4]}
    assert rows["looping"].endswith(
        f"; now crash-loop (next {local(wall_started + 9)}; recovery exhausted)")
    assert rows["given-up"].endswith("; now failed (unrecoverable: bad config)")
    assert rows["fine"].endswith("-; now degraded")
