"""The recovery promise, with every default config, on a simulated clock.

A plugin called 50 times a second whose dependency fails for 0.5 s or 10 s is
serving again, breaker CLOSED, within ``timeout`` plus two health-check intervals
after the dependency comes back, and is neither failed nor in a crash loop; the
audit tells the story (each action, then its verification). And the converse: a
dependency that stays down ends in a crash loop whose probes wait longer each
time up to the cap, and cost at most one call each.

The simulation (``benchmarks/bench_recovery.py``) drives ``RecoveryConfig()`` and
``CircuitBreakerConfig()`` on a FakeClock whose ``sleep`` waits for the traffic
loop to advance time, so calls keep arriving during the manager's back-offs.
"""

from __future__ import annotations

import itertools
import math

import pytest

from benchmarks.bench_recovery import simulate
from recovery.config import CircuitBreakerConfig
from recovery.manager import RecoveryConfig
from tests.manager.test_verified_recovery import DetailedAudit

BREAKER = CircuitBreakerConfig()
PROMISE = BREAKER.timeout + 2 * BREAKER.health_check_interval


@pytest.mark.parametrize("health_check", [True, False], ids=["health-check", "trials"])
@pytest.mark.parametrize("outage", [0.5, 10.0])
def test_a_blip_or_an_outage_is_serving_again_within_the_promise(
    outage: float, health_check: bool
) -> None:
    audit = DetailedAudit()
    outcome = simulate(outage, health_check=health_check, audit=audit)
    assert outcome.to_closed is not None, "the breaker is not closed at the end"
    assert outcome.to_closed <= PROMISE
    assert not outcome.failed_at_end
    assert not outcome.crash_loop_at_end
    assert outcome.restarts >= 1
    # The audit tells the story: restart first (no history yet: the priority order);
    # each action was done, a failed verification failed the run, the last ended it.
    runs = [(action, success, done, verified)
            for _, _, action, success, done, verified in audit.attempts]
    assert runs[0][0] == "restart"
    assert all(done for _, _, done, _ in runs)
    assert all(success is (verified is not False) for _, success, _, verified in runs)
    assert runs[-1][1] is True


def test_a_dependency_that_stays_down_ends_in_a_crash_loop_of_cheap_growing_probes() -> None:
    config = RecoveryConfig()
    outcome = simulate(math.inf, health_check=False, rate=5.0,
                       after=2 * config.crash_loop_max_delay + 700.0)
    assert outcome.crash_loop_at_end and outcome.failed_at_end
    delays = outcome.crash_delays
    assert delays[0] == config.crash_loop_delay
    assert all(later == min(2 * earlier, config.crash_loop_max_delay)
               for earlier, later in itertools.pairwise(delays))
    assert delays[-2:] == (config.crash_loop_max_delay,) * 2
    assert outcome.probes >= len(delays) - 1
    assert outcome.sent_down_in_crash_loop <= outcome.probes  # at most one call a probe
