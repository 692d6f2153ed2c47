"""``--search``: the built-in space of configs, explored in stages and in a scrambled order
so that a search cut short by its budget has sampled all of its stage."""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from recovery.trace import Trace
from recovery.tune.candidates import DEFAULTS, Candidate, make_candidate, minimal
from recovery.tune.rules import redundant_rules

# -- the search space -------------------------------------------------------------------

COUNT_RULE_OFF = "window"  # failure_threshold = sliding_window_size: only the rate opens it


RULE_AXES: Mapping[str, tuple[Any, ...]] = {
    "sliding_window_size": (20, 50, 100, 200),
    "minimum_requests": (5, 10, 20, 50),
    "failure_threshold": (3, 5, 10, 20, 50, COUNT_RULE_OFF),
    "failure_rate_threshold": (None, 0.2, 0.35, 0.5, 0.75),
}
"""When the circuit opens."""
RECOVERY_AXES: Mapping[str, tuple[Any, ...]] = {
    "timeout": (1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
    "success_threshold": (1, 3),
    "retry_backoff_factor": (1.0, 1.2, 2.0),
    "max_retry_interval": (60.0, 300.0),
}
"""How it probes and closes again."""


def search_space(trace: Trace) -> tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]]:
    """The axes ``--search`` explores, as (opening rule, recovery): the fields that change
    what a replay does.

    The slow-call rule joins the opening axes only when the trace's latencies
    vary: its durations are 4 and 10 times the median latency and the 99th
    percentile (from a sample of up to 100,000 calls), each with a rate of 0.5
    or 0.8.
    """
    rules = dict(RULE_AXES)
    durations = _slow_durations(trace)
    if durations:
        rules["slow_call"] = (
            None, *((duration, share) for duration in durations for share in (0.5, 0.8))
        )
    return rules, dict(RECOVERY_AXES)


def _slow_durations(trace: Trace) -> list[float]:
    if not len(trace):
        return []
    step = max(1, len(trace) // 100_000)
    sample = sorted(trace.latency[::step])
    median, p99 = sample[len(sample) // 2], sample[min(len(sample) - 1, len(sample) * 99 // 100)]
    if p99 <= 0:
        return []
    picks = {_round(value) for value in (4 * median, 10 * median, p99) if value > 0}
    return sorted(picks)


def _round(value: float) -> float:
    """Two significant digits: ``0.083 s`` reads better than ``0.08312 s`` in a config."""
    return float(f"{value:.2g}")


class StagedSearch:
    """The candidates of ``--search``, best bets first, none built before it is needed.

    Opening rules and recovery settings are nearly independent (one decides
    when the circuit opens, the other how soon it closes), so the search goes
    in three stages: every opening rule with the default recovery; then each
    of the ``keep`` best rules found so far (told by :meth:`observe`) with
    every recovery setting; then the whole product. Each stage runs in a
    scrambled order (:func:`scrambled`), so a search cut short by its budget
    has sampled the whole stage rather than a corner of it; a candidate met
    twice, or one that behaves exactly like another (a rule that cannot fire
    before another, a back-off cap on a period that does not grow), is
    skipped.
    """

    def __init__(
        self,
        rules: Mapping[str, Sequence[Any]],
        recovery: Mapping[str, Sequence[Any]],
        keep: int = 5,
    ) -> None:
        self.rules = rules
        self.recovery = recovery
        self.keep = keep
        self.size = math.prod(map(len, rules.values())) * math.prod(map(len, recovery.values()))
        self._leaders: list[tuple[float, int, dict[str, Any]]] = []
        self._seen: set[frozenset[tuple[str, Any]]] = set()

    def observe(self, candidate: Candidate, cost: float | None) -> None:
        """Note a scored candidate; the best ``keep`` opening rules seed stage two."""
        if cost is None:
            return
        config = candidate.config
        point: dict[str, Any] = {key: getattr(config, key) for key in RULE_AXES}
        if "slow_call" in self.rules:
            slow = (config.slow_call_duration, config.slow_call_rate_threshold)
            point["slow_call"] = None if None in slow else slow
        if any(leader[2] == point for leader in self._leaders):
            return
        self._leaders.append((cost, len(candidate.changes), point))
        self._leaders.sort(key=operator.itemgetter(0, 1))
        del self._leaders[self.keep :]

    def __iter__(self) -> Iterator[Candidate]:
        recovery_defaults = {key: getattr(DEFAULTS, key) for key in self.recovery}
        for point in scrambled(self.rules):
            yield from self._valid({**point, **recovery_defaults})
        for _, _, rule in list(self._leaders):
            for point in scrambled(self.recovery):
                yield from self._valid({**rule, **point})
        for point in scrambled({**self.rules, **self.recovery}):
            yield from self._valid(point)

    def _valid(self, point: dict[str, Any]) -> Iterator[Candidate]:
        """The candidate at ``point``, unless it was met before or duplicates another."""
        overrides = _overrides(point)
        if overrides is None:
            return
        key = frozenset(overrides.items())
        if key in self._seen:
            return
        self._seen.add(key)
        try:
            candidate = make_candidate(overrides)
        except ValueError:
            return
        if not redundant_rules(candidate.config):
            yield candidate


def scrambled(axes: Mapping[str, Sequence[Any]], seed: int = 1) -> Iterator[dict[str, Any]]:
    """Every combination of ``axes`` once, in a fixed scrambled order, built one at a time.

    The order is a stride through the mixed-radix index space (a stride coprime
    with the count visits every index once).
    """
    names = list(axes)
    sizes = [len(axes[name]) for name in names]
    total = math.prod(sizes)
    stride = _coprime_stride(total, seed)
    for step in range(total):
        index = (step * stride + seed) % total
        point = {}
        for name, size in zip(names, sizes, strict=True):
            index, position = divmod(index, size)
            point[name] = axes[name][position]
        yield point


def _coprime_stride(total: int, seed: int) -> int:
    stride = max(1, int(total * 0.6180339887) + seed)
    while math.gcd(stride, total) != 1:
        stride += 1
    return stride


def _overrides(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """The config fields for one point of the space (only those that differ from the
    defaults), or None when it is a duplicate of another point."""
    fields = dict(values)
    if fields["failure_threshold"] == COUNT_RULE_OFF:
        if fields["failure_rate_threshold"] is None:
            return None  # no rule left
        fields["failure_threshold"] = fields["sliding_window_size"]
    if (
        fields["retry_backoff_factor"] == 1.0
        and fields["max_retry_interval"] != DEFAULTS.max_retry_interval
    ):
        return None  # the open period never grows, so the cap changes nothing
    slow = fields.pop("slow_call", None)
    if slow is not None:
        fields["slow_call_duration"], fields["slow_call_rate_threshold"] = slow
    return minimal(fields)
