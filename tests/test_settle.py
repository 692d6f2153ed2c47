"""``settle``, the helper that runs a manager's episodes to their end on a FakeClock.

It must move the clock only while an episode waits for time to pass, never while
a strategy runs: a step taken then is read as time the strategy took, and on a
loaded machine a strategy that is merely slow was abandoned as hung.
"""

from __future__ import annotations

import threading

import pytest

from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.strategies import CustomStrategy, RecoveryContext
from recovery.testing import FakeClock, RecordingAuditLogger
from tests.helpers import StubPluginManager, settle


def test_settle_lets_a_running_strategy_finish_and_steps_through_the_verification(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock, audit = FakeClock(), RecordingAuditLogger()
    finish = threading.Event()

    def recover(name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        assert finish.wait(5)

    rm = RecoveryManager(
        StubPluginManager("p"), audit,
        RecoveryConfig(enable_health_checking=False, strategy_timeout=5.0,
                       plugin_recovery_strategies={"p": "slow"}),
        clock=clock,
    )
    rm.register_strategy("slow", CustomStrategy("slow", 1, lambda f: True, recover))
    rm.register_plugin("p")
    # The strategy takes 20 of settle's polls while the worker is parked on the clock
    # waiting for it: far more than the 5 one-second steps that would time it out.
    polls = 0
    wait_idle = rm.wait_idle

    def counting_wait_idle(timeout: float | None = None) -> bool:
        nonlocal polls
        if clock.waiting:
            polls += 1
            if polls == 20:
                finish.set()
        return wait_idle(timeout)

    monkeypatch.setattr(rm, "wait_idle", counting_wait_idle)
    rm.start()
    try:
        rm.record_failure("p", FailureInfo("error"))
        settle(rm, clock)
    finally:
        finish.set()
        rm.stop(timeout=5.0)
    # Done, then unverified: no call came during verify_timeout, which settle stepped through.
    assert audit.records == [("p", "error", "slow", True)]
    assert clock.monotonic() >= RecoveryConfig().verify_timeout
