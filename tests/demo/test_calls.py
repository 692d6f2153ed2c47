"""The live table's FAIL%."""

from __future__ import annotations

from recovery.demo.calls import PluginCalls, RecentFailures


def test_fail_percent_is_the_failed_share_of_the_last_second_of_calls() -> None:
    recent = RecentFailures(span=1.0)
    counts = PluginCalls

    assert recent.update(0.0, {"p": counts()}) == {"p": None}
    assert recent.update(0.5, {"p": counts(ok=9, failed=1)}) == {"p": 0.1}
    assert recent.update(1.0, {"p": counts(ok=9, failed=5)}) == {"p": 5 / 14}
    # The second before 1.6 starts at the frame of 0.5.
    assert recent.update(1.6, {"p": counts(ok=9, failed=5, circuit_open=7)}) == {"p": 1.0}
    # Nothing reached the plugin in the last second: no rate, not 0 %.
    assert recent.update(2.7, {"p": counts(ok=9, failed=5, fallback_served=3)}) == {"p": None}
