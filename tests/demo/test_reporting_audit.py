"""The audit logger that writes through, counts each strategy run and shows it."""

from __future__ import annotations

from typing import Any

import pytest

from recovery.demo.calls import CallTally
from recovery.demo.reporting_audit import ReportingAuditLogger
from tests.demo.doubles import RecordedEvents


class Recorder:
    """An audit logger; ``detailed`` gives it the verification path too."""

    def __init__(self, detailed: bool) -> None:
        self.records: list[tuple[Any, ...]] = []
        if detailed:
            self.log_recovery_attempt = self._detailed

    def log_failure_recovery(self, *args: Any) -> None:
        self.records.append(args)

    def _detailed(self, *args: Any, **verdicts: Any) -> None:
        self.records.append((*args, verdicts))


@pytest.mark.parametrize("detailed", [True, False])
def test_the_audit_trail_gets_the_verification_when_its_logger_takes_it(
    detailed: bool,
) -> None:
    inner, tally, events = Recorder(detailed), CallTally(("p",)), RecordedEvents()
    audit = ReportingAuditLogger(inner, tally, events)
    audit.log_recovery_attempt("p", "error", "restart", False,
                               action_succeeded=True, verified=False)
    audit.log_recovery_attempt("p", "error", "restart", True,
                               action_succeeded=True, verified=True)
    audit.log_failure_recovery("p", "error", "reload", False)
    verdicts = [{"action_succeeded": True, "verified": False},
                {"action_succeeded": True, "verified": True}]
    assert inner.records == [
        ("p", "error", "restart", False, *verdicts[:1] * detailed),
        ("p", "error", "restart", True, *verdicts[1:] * detailed),
        ("p", "error", "reload", False),
    ]
    assert events.lines == [
        "p: recovery: restart after error FAILED (done, but the plugin failed its "
        "verification)",
        "p: recovery: restart after error succeeded (verified)",
        "p: recovery: reload after error FAILED",
    ]
    assert tally.snapshot()["p"].actions == {("restart", False): 1, ("restart", True): 1,
                                             ("reload", False): 1}
