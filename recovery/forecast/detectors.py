"""The change tests behind early warnings: one per signal, fed one sample at a time.

A detector is fed what one breaker did between two polls (calls, failures, the
latency histogram's new counts) and answers three questions: is the signal off
its baseline (raise a warning), is it back (end it), and when would the breaker
open at the present trend. Nothing here reads a clock or a breaker: the
:class:`~recovery.forecast.Forecaster` samples, the detectors decide, so a test
or a replay can feed them any sequence.

Both detectors learn the baseline while the signal looks normal, from decayed
sums (recent samples weigh more): a long memory (``LONG_SECONDS``) that rises
slowly, and a short one (``MEDIUM_SECONDS``) that lets the baseline fall as
soon as the signal is confidently lower. Learning stops while a test leans
toward a change, so a slow degradation does not teach the detector that it is
normal.

- :class:`FailureRateDetector`: Bernoulli CUSUMs on the failure count. Every
  call adds the log-likelihood ratio of "the rate is ``shift`` times the
  baseline" against "it is the baseline", one sum per shift of ``SHIFTS``;
  a sum, floored at 0, crossing ``FAILURE_THRESHOLD`` raises the warning.
  Being a sum of evidence per call, it sees a small rise on heavy traffic and a
  large one on light traffic, and a service at a steady 4 % is as quiet as one
  at a steady 0.1 %.
- :class:`LatencyDetector`: a Page-Hinkley test on the log of call latency,
  read from the histogram's buckets (each bucket stands for its geometric
  middle), standardised by the learned spread and clipped, so a few timeouts
  among fast calls count as a few, not as an avalanche.

A warning ends when a mirror test, "back at baseline" against "still at the
level of the last second", gathers ``END_THRESHOLD`` of evidence: after a
one-second blip of failures a handful of good calls end it; during a real slide
the recent level is where the signal is, and it stays up.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from recovery.config import LATENCY_BUCKETS

LONG_SECONDS = 300.0
"""Memory of the rising baseline (a decayed sum's time constant)."""
MEDIUM_SECONDS = 30.0
"""Memory of the falling baseline: how soon a lower normal is believed."""
SHORT_SECONDS = 5.0
"""Memory of ``current`` and of the trend's recent end."""
RECENT_SECONDS = 1.0
"""Memory of the level a warning's end test compares with "back at baseline"."""
TREND_SECONDS = 20.0
"""Memory of the trend's far end: the trend is the short average against this one."""
WARMUP_SECONDS = 30.0
"""No warning before the detector has learned this long..."""
WARMUP_CALLS = 200
"""...and seen this many calls."""

BASELINE_MARGIN = 1.0
"""The failure-rate baseline is the long average plus this many Poisson standard errors."""
SHIFTS = (2.0, 4.0)
"""The failure-rate CUSUMs, one per shift: each looks for the rate at this multiple of the
baseline. A small shift is seen sooner when the rise is modest and steady, a large one
when the rise is steep (evidence per failure is the log of the shift)."""
FAILURE_THRESHOLD = 10.0
"""Evidence (nats) the failure-rate CUSUM needs to raise a warning."""
LATENCY_DRIFT = 0.1
"""Page-Hinkley allowance: a call's standardised log latency must exceed the baseline by
this before it counts as evidence of a rise."""
LATENCY_THRESHOLD = 60.0
"""Page-Hinkley threshold (standardised units summed over calls)."""
LATENCY_CLIP = 3.0
"""A call's standardised log latency is clipped to +-this: one timeout is one outlier."""
MIN_SPREAD = 0.25
"""Floor on the learned spread of log latency (a bucket is about 0.8 wide in logs)."""
END_THRESHOLD = 8.0
"""Evidence the "back at baseline" test needs to end a warning."""


def decay(seconds: float, memory: float) -> float:
    """The weight a decayed sum keeps after ``seconds`` with time constant ``memory``."""
    return math.exp(-seconds / memory)


class _Decayed:
    """Decayed sums of one signal's weight (calls) and value (failures, or log latency
    and its square), so an average over a time constant is a ratio of two floats."""

    __slots__ = ("memory", "squares", "total", "weight")

    def __init__(self, memory: float) -> None:
        self.memory = memory
        self.weight = 0.0
        self.total = 0.0
        self.squares = 0.0

    def add(self, seconds: float, weight: float, total: float, squares: float = 0.0) -> None:
        keep = decay(seconds, self.memory)
        self.weight = self.weight * keep + weight
        self.total = self.total * keep + total
        self.squares = self.squares * keep + squares

    def mean(self) -> float | None:
        return self.total / self.weight if self.weight > 0 else None


class _Memory:
    """What a detector remembers of its signal: the baseline's long and medium averages,
    learned only while the signal looks normal, and the present's short, recent and far
    ones, which a reset forgets."""

    __slots__ = ("calls", "far", "long", "medium", "recent", "seconds", "short")

    def __init__(self) -> None:
        self.long = _Decayed(LONG_SECONDS)
        self.medium = _Decayed(MEDIUM_SECONDS)
        self.seconds = 0.0  # learned this long
        self.calls = 0  # from this many calls
        self.forget_present()

    def forget_present(self) -> None:
        self.short = _Decayed(SHORT_SECONDS)
        self.recent = _Decayed(RECENT_SECONDS)
        self.far = _Decayed(TREND_SECONDS)

    def warm(self) -> bool:
        """Learned long enough, from enough calls, to give a baseline."""
        return self.seconds >= WARMUP_SECONDS and self.calls >= WARMUP_CALLS

    def see(self, seconds: float, calls: int, total: float) -> None:
        """Add a sample to the present's averages."""
        for decayed in (self.short, self.recent, self.far):
            decayed.add(seconds, calls, total)

    def learn(self, seconds: float, calls: int, total: float, squares: float = 0.0) -> None:
        """Add a sample that looks normal to the baseline's averages."""
        self.long.add(seconds, calls, total, squares)
        self.medium.add(seconds, calls, total, squares)
        self.seconds += seconds
        self.calls += calls


def growth(short: float, far: float) -> float | None:
    """Growth per second of a signal rising geometrically, from its averages over
    ``SHORT_SECONDS`` and ``TREND_SECONDS`` (an average over memory ``m`` of ``e^(gt)``
    is ``e^(gt) / (1 + g m)``); None when it is not rising."""
    if far <= 0 or short <= far:
        return None
    ratio = short / far
    below = TREND_SECONDS - ratio * SHORT_SECONDS
    return math.inf if below <= 0 else (ratio - 1) / below


class FailureRateDetector:
    """Bernoulli CUSUM on the failure count against a learned baseline rate."""

    def __init__(self, trip_rate: float) -> None:
        self.trip_rate = trip_rate  # the rate at which the breaker's own rules open it
        self._memory = _Memory()
        self._evidence = [0.0] * len(SHIFTS)  # one CUSUM per shift
        self.alarmed = False
        self._back = 0.0  # the end test, while alarmed

    def baseline(self) -> float | None:
        """The normal failure rate: the long average, unless the recent one is confidently
        lower. None until warmed up."""
        if not self._memory.warm():
            return None
        # An upper bound rather than the average: a baseline learned too low turns noise
        # into warnings, one learned a little high only delays them.
        failures = self._memory.long.total
        margin = BASELINE_MARGIN * math.sqrt(failures + 1.0)
        long = (failures + 1.0 + margin) / (self._memory.long.weight + 1.0)
        medium = self._memory.medium
        if medium.weight > 0:
            upper = (medium.total + 1.0 + 2.0 * math.sqrt(medium.total + 1.0)) / medium.weight
            long = min(long, upper)
        return long

    def current(self) -> float:
        """The failure rate of the last few seconds."""
        return self._memory.short.mean() or 0.0

    def expected_trip_in(self) -> float | None:
        """Seconds until the rate reaches the breaker's trip rate at its present growth."""
        short, far = self._memory.short.mean(), self._memory.far.mean()
        if short is None or far is None:
            return None
        rate = growth(short, far)
        if rate is None:
            return None
        now = short * (1.0 + rate * SHORT_SECONDS) if math.isfinite(rate) else short
        if now >= self.trip_rate or math.isinf(rate):
            return 0.0
        return math.log(self.trip_rate / max(now, 1e-9)) / rate

    def reset(self) -> None:
        """Forget the test (not the baseline): after the breaker opened, or a warning ended."""
        self._evidence = [0.0] * len(SHIFTS)
        self.alarmed = False
        self._back = 0.0
        self._memory.forget_present()

    @property
    def evidence(self) -> float:
        """The largest of the CUSUMs (nats)."""
        return max(self._evidence)

    def update(self, seconds: float, calls: int, failures: int) -> str | None:
        """Feed one sample; returns ``"raise"``, ``"end"`` or None."""
        level = self._memory.recent.mean() or 0.0  # the last second, before this sample
        self._memory.see(seconds, calls, failures)
        base = self.baseline()
        if base is None:
            self._memory.learn(seconds, calls, failures)
            return None
        base = min(max(base, 1e-6), 0.5)
        if calls:
            self._evidence = [
                max(0.0, evidence + _bernoulli_llr(calls, failures, min(base * shift, 0.99), base))
                for evidence, shift in zip(self._evidence, SHIFTS, strict=True)
            ]
        if self.alarmed:
            # The end test: "back at baseline" against "still at the level of the last
            # second" (at least the shift looked for). After a blip that level is high and
            # a few good calls tell them apart; on a slide it is where the rate is.
            if calls:
                recent = min(max(base * SHIFTS[0], level), 0.99)
                self._back = max(
                    0.0, self._back + _bernoulli_llr(calls, failures, base, recent)
                )
            if self._back >= END_THRESHOLD:
                self.reset()
                return "end"
            return None
        if self.evidence < FAILURE_THRESHOLD / 2:
            self._memory.learn(seconds, calls, failures)
        if self.evidence >= FAILURE_THRESHOLD:
            self.alarmed = True
            self._back = 0.0
            return "raise"
        return None


def _bernoulli_llr(calls: int, failures: int, rate: float, against: float) -> float:
    """Log-likelihood ratio of ``failures`` in ``calls`` under ``rate`` against ``against``."""
    return failures * math.log(rate / against) + (calls - failures) * math.log(
        (1.0 - rate) / (1.0 - against)
    )


def _bucket_logs() -> tuple[float, ...]:
    """The log of each latency bucket's geometric middle (the first from half its bound,
    the unbounded last one from twice the last bound)."""
    lows = (LATENCY_BUCKETS[0] / 2, *LATENCY_BUCKETS)
    highs = (*LATENCY_BUCKETS, LATENCY_BUCKETS[-1] * 4)
    pairs = zip(lows, highs, strict=True)
    return tuple(0.5 * (math.log(low) + math.log(high)) for low, high in pairs)


BUCKET_LOGS = _bucket_logs()


class LatencyDetector:
    """Page-Hinkley test on log latency, from the breaker's histogram counts."""

    def __init__(self, slow_duration: float | None, slow_rate: float | None) -> None:
        # Where the slow-call rule opens the breaker (None: no such rule).
        self._trip_log = (
            None if slow_duration is None or slow_rate is None
            else (math.log(slow_duration), slow_rate)
        )
        self._memory = _Memory()
        self.evidence = 0.0
        self.alarmed = False
        self._back = 0.0

    def _reference(self) -> tuple[float, float] | None:
        """Baseline mean and spread of log latency; None until warmed up."""
        if not self._memory.warm():
            return None
        long = self._memory.long
        mean = long.total / long.weight
        spread = max(math.sqrt(max(long.squares / long.weight - mean * mean, 0.0)), MIN_SPREAD)
        medium = self._memory.medium
        if medium.weight > 0:
            mean = min(mean, medium.total / medium.weight + 2.0 * spread / math.sqrt(medium.weight))
        return mean, spread

    def baseline(self) -> float | None:
        """The normal typical latency in seconds (geometric mean); None until warmed up."""
        reference = self._reference()
        return None if reference is None else math.exp(reference[0])

    def current(self) -> float:
        """Typical latency (geometric mean) of the last few seconds; 0.0 before any call."""
        mean = self._memory.short.mean()
        return 0.0 if mean is None else math.exp(mean)

    def expected_trip_in(self) -> float | None:
        """Seconds until enough calls are slow for the slow-call rule, at the present trend."""
        reference = self._reference()
        short, far = self._memory.short.mean(), self._memory.far.mean()
        if self._trip_log is None or reference is None or short is None or far is None:
            return None
        rise = (short - far) / (TREND_SECONDS - SHORT_SECONDS)  # log latency per second
        if rise <= 0:
            return None
        slow_log, slow_rate = self._trip_log
        # The typical latency at which slow_rate of the calls take slow_duration or more.
        needed = slow_log - reference[1] * statistics.NormalDist().inv_cdf(1.0 - slow_rate) \
            if slow_rate < 1.0 else slow_log + 2.0 * reference[1]
        now = short + rise * SHORT_SECONDS
        return max(needed - now, 0.0) / rise

    def reset(self) -> None:
        self.evidence = 0.0
        self.alarmed = False
        self._back = 0.0
        self._memory.forget_present()

    def update(self, seconds: float, counts: Sequence[int]) -> str | None:
        """Feed one sample: the histogram counts added since the last one."""
        calls = sum(counts)
        total = squares = 0.0
        for count, value in zip(counts, BUCKET_LOGS, strict=True):
            if count:
                total += count * value
                squares += count * value * value
        before = self._memory.recent.mean()  # the last second, before this sample
        self._memory.see(seconds, calls, total)
        reference = self._reference()
        if reference is None:
            self._memory.learn(seconds, calls, total, squares)
            return None
        mean, spread = reference
        scores = 0.0  # the sample's standardised, clipped log latencies, summed
        if calls:
            for count, value in zip(counts, BUCKET_LOGS, strict=True):
                if count:
                    score = (value - mean) / spread
                    scores += count * min(max(score, -LATENCY_CLIP), LATENCY_CLIP)
            self.evidence = max(0.0, self.evidence + scores - LATENCY_DRIFT * calls)
        if self.alarmed:
            if calls:  # "back at baseline" against "at the recent level", as for failures
                level = 0.0 if before is None else (before - mean) / spread
                shift = max(2 * LATENCY_DRIFT, level)
                self._back = max(0.0, self._back + shift * (shift / 2 * calls - scores))
            if self._back >= END_THRESHOLD:
                self.reset()
                return "end"
            return None
        if self.evidence < LATENCY_THRESHOLD / 2:
            self._memory.learn(seconds, calls, total, squares)
        if self.evidence >= LATENCY_THRESHOLD:
            self.alarmed = True
            self._back = 0.0
            return "raise"
        return None
