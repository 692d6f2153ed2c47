"""Both windows and a small reference model, driven by one random sequence, must agree.

Without the compiled window (not built) the twin alone is checked against the model.

The model is written independently of the windows, from the rules in docs/design.md
("States and rules"):
a plain list for the window, no ring buffer, no tokens with generations. Ops:
admit/finish (so trials overlap and outcomes arrive after transitions), whole
calls (some slow), clock moves and the manual controls.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from recovery import CircuitBreakerConfig, CircuitOpenError
from recovery.testing import FakeClock
from tests.helpers import WINDOWS, breaker_class

# The breakers on each window there is: the compiled one (if built) and the twin.
BREAKERS = [breaker_class(window) for _, window in sorted(WINDOWS.items()) if window is not None]


class Model:
    """The breaker's rules, written as plainly as possible."""

    def __init__(self, config: CircuitBreakerConfig) -> None:
        self.c = config
        self.now = 0.0
        self.state = "closed"
        self.window: list[tuple[bool, bool]] = []
        self.level = 0
        self.open_until = 0.0
        self.half_open_since = 0.0
        self.trials: set[int] = set()  # ids of calls holding a trial slot
        self.trial_successes = 0
        self.epoch = 0  # calls admitted in an earlier epoch only count in totals
        self.totals = {"requests": 0, "failures": 0, "successes": 0, "rejections": 0, "slow": 0}
        self.next_id = 0

    def period(self) -> float:
        """timeout * factor**level, capped; ``level`` here grows without bound (a long
        outage), so the power is taken only up to the first level that reaches the cap."""
        timeout, factor, cap = (self.c.timeout, self.c.retry_backoff_factor,
                                self.c.max_retry_interval)
        n = 0
        while n < self.level and timeout * factor**n < cap:
            n += 1
        return min(timeout * factor**n, cap)

    def enter(self, state: str, open_for: float | None = None) -> None:
        if state == "open":
            self.open_until = self.now + (self.period() if open_for is None else open_for)
        self.state = state
        self.window = []
        self.trials = set()
        self.trial_successes = 0
        self.half_open_since = self.now
        self.epoch += 1

    def admit(self) -> tuple[int, int, str] | float | None:
        """A call's ticket (id, epoch, kind), or the rejection's retry_after."""
        self.next_id += 1
        ticket = self.next_id
        retry: float | None = None
        if self.state == "closed":
            return (ticket, self.epoch, "normal")
        if self.state == "open":
            if self.now >= self.open_until:
                self.enter("half_open")
                self.trials.add(ticket)
                return (ticket, self.epoch, "trial")
            retry = self.open_until - self.now
        elif self.state == "half_open":
            if len(self.trials) < self.c.trial_calls:
                self.trials.add(ticket)
                return (ticket, self.epoch, "trial")
            wait = self.c.max_half_open_wait
            if wait is not None and self.now - self.half_open_since >= wait:
                self.level += 1
                self.enter("open")
                retry = self.open_until - self.now
        if not self.c.enable_fast_fail:
            return (ticket, self.epoch, "observed")
        self.totals["rejections"] += 1
        return retry

    def finish(self, ticket: tuple[int, int, str], outcome: str, duration: float) -> None:
        ident, epoch, kind = ticket
        if kind == "trial" and epoch == self.epoch and ident not in self.trials:
            return  # this trial already ended: a ticket is used once
        if outcome == "ignored":
            if epoch == self.epoch:
                self.trials.discard(ident)
            return
        failed = outcome == "fail"
        slow = self.c.slow_call_duration is not None and duration >= self.c.slow_call_duration
        self.totals["requests"] += 1
        self.totals["failures" if failed else "successes"] += 1
        self.totals["slow"] += slow
        if epoch != self.epoch:
            return
        if kind == "normal":
            self.window = [*self.window, (failed, slow)][-self.c.sliding_window_size :]
            n = len(self.window)
            fails = sum(f for f, _ in self.window)
            slows = sum(s for _, s in self.window)
            rate = self.c.failure_rate_threshold
            slow_rate = self.c.slow_call_rate_threshold
            if n >= self.c.minimum_requests and (
                fails >= self.c.failure_threshold
                or (rate is not None and fails / n >= rate)
                or (slow_rate is not None and slows / n >= slow_rate)
            ):
                self.enter("open")
        elif kind == "trial":
            self.trials.discard(ident)
            if failed or (slow and self.c.slow_call_rate_threshold is not None):
                self.level += 1
                self.enter("open")
            else:
                self.trial_successes += 1
                if self.trial_successes >= self.c.success_threshold:
                    self.level = 0
                    self.enter("closed")

    def retry_after(self) -> float | None:
        if self.state == "open":
            return max(self.open_until - self.now, 0.0)
        return 0.0 if self.state == "closed" else None


configs = st.builds(
    lambda size, **kw: CircuitBreakerConfig(
        sliding_window_size=size,
        failure_threshold=min(kw.pop("failure_threshold"), size),
        minimum_requests=min(kw.pop("minimum_requests"), size),
        **kw,
    ),
    size=st.integers(1, 12),
    failure_threshold=st.integers(1, 12),
    minimum_requests=st.integers(1, 12),
    success_threshold=st.integers(1, 4),
    half_open_max_calls=st.none() | st.integers(1, 4),
    timeout=st.sampled_from([1.0, 2.5, 10.0]),
    retry_backoff_factor=st.sampled_from([1.0, 1.5, 2.0]),
    max_retry_interval=st.sampled_from([5.0, 40.0]),
    failure_rate_threshold=st.none() | st.sampled_from([0.25, 0.5, 1.0]),
    slow_call_duration=st.none() | st.just(1.0),
    max_half_open_wait=st.none() | st.sampled_from([3.0, 20.0]),
    enable_fast_fail=st.booleans(),
)
slow_rates = st.none() | st.sampled_from([0.5, 1.0])
outcomes = st.sampled_from(["ok", "fail", "ignored"])


class Boom(Exception):
    pass


class Agreement(RuleBasedStateMachine):
    tickets = Bundle("tickets")
    used = Bundle("used")

    @initialize(config=configs, slow_rate=slow_rates)
    def setup(self, config: CircuitBreakerConfig, slow_rate: float | None) -> None:
        if config.slow_call_duration is not None and slow_rate is not None:
            import attrs

            config = attrs.evolve(config, slow_call_rate_threshold=slow_rate)
        self.clocks = [FakeClock(0.0) for _ in BREAKERS]
        self.breakers = [
            breaker("a", config, clock=clock)
            for breaker, clock in zip(BREAKERS, self.clocks, strict=True)
        ]
        self.model = Model(config)
        self.outages = 0

    def admit_all(self) -> list[Any]:
        results: list[Any] = []
        for breaker in self.breakers:
            try:
                results.append(("token", breaker.try_admit()))
            except CircuitOpenError as error:
                results.append(("rejected", error.retry_after))
        return results

    @rule(target=tickets)
    def admit(self) -> Any:
        results = self.admit_all()
        expected = self.model.admit()
        assert all(result == results[0] for result in results)
        if isinstance(expected, tuple):
            assert results[0][0] == "token"
            return ([token for _, token in results], expected)
        assert results[0] == ("rejected", expected)
        return None

    @rule(target=used, ticket=consumes(tickets), outcome=outcomes, slow=st.booleans())
    def finish(self, ticket: Any, outcome: str, slow: bool) -> Any:
        self.finish_again(ticket, outcome, slow)
        return ticket

    @rule(ticket=used, outcome=outcomes, slow=st.booleans())
    def finish_again(self, ticket: Any, outcome: str, slow: bool) -> None:
        """Also a misuse: a token recorded or released a second time."""
        if ticket is None:
            return
        duration = 1.0 if slow else 0.0
        tokens, expected = ticket
        for breaker, token in zip(self.breakers, tokens, strict=True):
            if outcome == "ignored":
                breaker.release(token)
            else:
                breaker.record(token, failed=outcome == "fail", duration=duration)
        self.model.finish(expected, outcome, duration)

    @rule(outcome=outcomes, slow=st.booleans())
    def call(self, outcome: str, slow: bool) -> None:
        duration = 1.0 if slow else 0.0
        expected = self.model.admit()
        seen = []
        for breaker, clock in zip(self.breakers, self.clocks, strict=True):

            def work(clock: FakeClock = clock) -> str:
                clock.advance(duration)
                if outcome == "fail":
                    raise Boom()
                if outcome == "ignored":
                    raise KeyboardInterrupt()
                return "done"

            try:
                seen.append(breaker.call(work))
            except CircuitOpenError as error:
                seen.append(("rejected", error.retry_after))
            except (Boom, KeyboardInterrupt):
                seen.append("raised")
        assert all(result == seen[0] for result in seen)
        if isinstance(expected, tuple):
            self.model.now += duration
            self.model.finish(expected, outcome, duration)
            assert seen[0] == ("done" if outcome == "ok" else "raised")
        else:
            assert seen[0] == ("rejected", expected)

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 5.0, 30.0]))
    def advance(self, seconds: float) -> None:
        for clock in self.clocks:
            clock.advance(seconds)
        self.model.now += seconds

    @precondition(lambda self: self.outages == 0)  # once per example: it is 1,100 calls
    @rule()
    def long_outage(self) -> None:
        """About 85 hours down at the defaults: 1,100 failed trials in a row. The open
        period stays at its cap (no overflow) and each trial fails with its own error."""
        self.outages += 1
        for _ in range(1_100):
            wait = self.model.retry_after()
            if wait:
                self.advance(wait)
            self.call("fail", False)

    @rule()
    def reset(self) -> None:
        for breaker in self.breakers:
            breaker.reset()
        self.model.level = 0
        self.model.enter("closed")

    @rule(duration=st.none() | st.sampled_from([0.0, 3.0]))
    def force_open(self, duration: float | None) -> None:
        for breaker in self.breakers:
            breaker.force_open(duration)
        self.model.enter("open", duration)

    @rule()
    def begin_repair(self) -> None:
        for breaker in self.breakers:
            breaker.begin_repair()
        if self.model.state != "repairing":
            self.model.enter("repairing")

    @rule(success=st.booleans())
    def end_repair(self, success: bool) -> None:
        ended = {breaker.end_repair(success) for breaker in self.breakers}
        assert ended == {self.model.state == "repairing"}
        if self.model.state == "repairing":
            self.model.enter("half_open" if success else "open")

    @rule()
    def allow_trial(self) -> None:
        moved = {breaker.allow_trial() for breaker in self.breakers}
        assert moved == {self.model.state == "open"}
        if self.model.state == "open":
            self.model.enter("half_open")

    @invariant()
    def agree(self) -> None:
        if not hasattr(self, "model"):
            return
        m = self.model
        for breaker in self.breakers:
            assert breaker.state.value == m.state
            metrics = breaker.metrics()
            assert (
                metrics.total_requests, metrics.total_failures, metrics.total_successes,
                metrics.total_rejections, metrics.total_slow_calls,
            ) == tuple(m.totals[k] for k in ("requests", "failures", "successes",
                                             "rejections", "slow"))
            assert breaker.retry_after == m.retry_after()


Agreement.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestAgreement = Agreement.TestCase
