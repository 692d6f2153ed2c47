"""Replay a recorded trace through candidate breaker configs and recommend one.

``python -m recovery tune TRACE`` answers "which config would have served us best
on our own traffic, and how much better than the defaults is it". Each
candidate gets a fresh breaker; every trace event is a call at its time ``t``
(the breaker's clock is not read): a rejected call does not happen, an admitted
one records its ``ok`` with its ``latency`` as the duration, ending at
``t + latency``. Events run one after another, so settings about concurrent
calls (``half_open_max_calls``, ``max_half_open_wait``) and the health-check
settings change nothing in a replay.

Scores per config (times in seconds; these names are the table's columns, the
keys of ``--weight`` and of the JSON report):

- ``events``, ``rejected``: calls in the trace, calls the breaker rejected.
- ``opens``: CLOSED -> OPEN transitions (a failed half-open trial reopening the
  circuit is not an open: it never closed).
- With labels (a ``healthy`` column, ``--incidents``, or derived), also:

  - ``false_opens``: opens at an event labelled healthy.
  - ``outages``: maximal runs of unhealthy events. ``detection_delay_mean`` /
    ``_max``: per outage, from its first event's ``t`` until the breaker is first
    OPEN inside it (the end ``t + latency`` of the call whose outcome opened it);
    0 when the breaker was already OPEN as the outage began. An outage in which
    the breaker never becomes OPEN is *missed* (``missed_outages``) and has no
    delay.
  - ``rejected_healthy``: calls rejected while healthy (good calls lost).
  - ``passed_unhealthy``: calls admitted while unhealthy (load sent to a dead
    dependency).
  - ``recovery_delay_mean`` / ``_max``: per run of healthy events that follows an
    outage, from its first event's ``t`` until the breaker is CLOSED again (the
    end of the trial call that closed it); 0 when it was still CLOSED as the run
    began. A run that ends with the breaker not yet CLOSED is *unrecovered*
    (``unrecovered``) and has no delay.

A mean or max is None when no run has a delay.

Labels, in order of precedence: ``--incidents FILE`` (calls that started inside
an incident's ``[start, end)`` are unhealthy), the trace's own ``healthy``
column, else derived from the trace's own outcomes (:class:`LabelRule`): a call
is unhealthy when at least ``--unhealthy-rate`` (default 0.5) of the calls that
started within ``--label-window / 2`` seconds of it (either side, inclusive;
default window 10 s; the call itself included) failed. The window is centred
because the whole trace is known: for a hard outage the labels then change
exactly where the failures start and stop. ``--no-derive-labels`` keeps only the
label-free scores.

Ranking: ``cost = sum(weight[k] * score[k])``, lowest first (a None score adds
nothing). The default weights count misrouted calls, ``rejected_healthy +
passed_unhealthy``; ``--weight key=value`` sets one (0 drops a default).
Weighting a delay alone would favour configs that miss outages entirely, so
weight ``missed_outages`` / ``unrecovered`` with it. The recommendation is the
candidate of lowest cost (ties: fewer fields changed from the defaults, then
the earlier candidate); the defaults are always a candidate, so it is never
worse than them on the trace.

Candidates: the defaults, then ``--config k=v[,k=v...]`` (repeat for more) or
``--grid FILE.json`` (a list of dicts, or a dict of lists whose cartesian product
is the grid, at most ``MAX_GRID`` combinations, counted before any is built), or
a small built-in set around the defaults. ``--search`` adds the built-in search
space (:func:`search_space`), explored in a scrambled order until ``--budget``
seconds have passed; it keeps the trade-off front (no other candidate at least
as good on all of ``rejected_healthy``, ``passed_unhealthy`` and
``detection_delay_mean`` and better on one), which ``--json`` reports.
"""

from __future__ import annotations

import argparse
import array
import bisect
import functools
import itertools
import json
import math
import operator
import re
import shutil
import sys
import textwrap
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from recovery._validate import positive_seconds, rate, seconds
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig, default_minimum_requests
from recovery.state import CLOSED_CODE as CLOSED
from recovery.state import OPEN_CODE as OPEN
from recovery.trace import (
    Trace,
    TraceError,
    load_incidents,
    load_trace,
    open_regular,
    shown,
)

_OPENS = re.compile(re.escape(bytes([CLOSED, OPEN])))  # a CLOSED state followed by an OPEN one
_UNHEALTHY_RUNS = re.compile(b"\x00+")
_HEALTHY_RUNS = re.compile(b"\x01+")
_FAILED = bytes.maketrans(b"\x00\x01", b"\x01\x00")

DEFAULT_WEIGHTS: Mapping[str, float] = {"rejected_healthy": 1.0, "passed_unhealthy": 1.0}
FRONT_SCORES = ("rejected_healthy", "passed_unhealthy", "detection_delay_mean")
"""The trade-off ``--search`` keeps a front of: good calls lost, load sent to a dead
dependency, time to notice."""

MIN_EVENTS = 1_000
"""Below this a trace is too short to tell configs apart (a window holds up to 100 calls)."""
MIN_OUTAGES = 3
"""Below this, detection and recovery delays rest on one or two samples."""
MAX_GRID = 10_000
"""The most candidates a ``--grid`` file may describe; ``--search`` has a time budget instead."""
DEFAULT_BUDGET = 5.0

DEFAULT_GRID: tuple[Mapping[str, Any], ...] = (
    {},
    {"failure_rate_threshold": None},  # the count rule alone
    {"failure_threshold": 100},  # the rate rule alone (the count needs a full window)
    {"failure_rate_threshold": 0.25},
    {"minimum_requests": 10},
    {"timeout": 1.0},
    {"timeout": 5.0},
    {"retry_backoff_factor": 1.0},  # no back-off: a probe every timeout
    {"timeout": 30.0, "retry_backoff_factor": 2.0, "max_retry_interval": 300.0},  # patient
    {"slow_call_duration": 1.0, "slow_call_rate_threshold": 0.5},
)

# Exception types are not trace data: a trace already says which calls failed; and
# recording latency changes what a breaker reports, never what it decides.
_UNTUNABLE = frozenset({"record_exceptions", "ignore_exceptions", "record_latency"})
_DEFAULTS = CircuitBreakerConfig()


@attrs.frozen
class Candidate:
    """One config to try: the fields set explicitly, and the config they make.

    ``changes`` holds the fields whose value differs from the defaults, in
    field order (what a recommendation prints, and its tie-breaker: fewer is
    simpler).
    """

    overrides: Mapping[str, Any]
    config: CircuitBreakerConfig
    changes: Mapping[str, Any] = attrs.field(init=False)

    @changes.default
    def _changed_fields(self) -> dict[str, Any]:
        return _minimal({
            field.name: getattr(self.config, field.name)
            for field in attrs.fields(CircuitBreakerConfig)
        })

    @property
    def label(self) -> str:
        """``failure_threshold=3,timeout=5.0``, or ``defaults``."""
        return ",".join(f"{key}={value}" for key, value in self.overrides.items()) or "defaults"

    @property
    def code(self) -> str:
        """Ready to paste: ``CircuitBreakerConfig(timeout=5.0)``, changed fields only."""
        fields = ", ".join(f"{key}={value!r}" for key, value in self.changes.items())
        return f"CircuitBreakerConfig({fields})"


@attrs.frozen
class Scores:
    """How one config did on one trace; see the module docstring for each score."""

    events: int
    rejected: int
    opens: int
    false_opens: int | None = None
    outages: int | None = None
    missed_outages: int | None = None
    detection_delay_mean: float | None = None
    detection_delay_max: float | None = None
    rejected_healthy: int | None = None
    passed_unhealthy: int | None = None
    recoveries: int | None = None
    unrecovered: int | None = None
    recovery_delay_mean: float | None = None
    recovery_delay_max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


SCORE_NAMES = tuple(field.name for field in attrs.fields(Scores))
LABEL_FREE = ("events", "rejected", "opens")


@attrs.frozen
class TuneResult:
    """One candidate's scores, cost and rank (1 = best; None when nothing ranks)."""

    candidate: Candidate
    scores: Scores
    cost: float | None
    rank: int | None
    replay_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "config": dict(self.candidate.overrides),
            "label": self.candidate.label,
            "code": self.candidate.code,
            "cost": self.cost,
            "scores": self.scores.to_dict(),
            "replay_seconds": self.replay_seconds,
        }


@attrs.frozen
class LabelRule:
    """Derives ``healthy`` from a trace's own outcomes (see "Labels" in the module doc).

    A call is unhealthy when at least ``unhealthy_rate`` of the calls that
    started within ``label_window / 2`` seconds of it, either side, failed.
    """

    label_window: float = attrs.field(default=10.0, converter=seconds, validator=positive_seconds)
    unhealthy_rate: float = attrs.field(default=0.5, validator=rate)

    @property
    def description(self) -> str:
        """``unhealthy where >= 50% of the calls within +-5 s failed``."""
        return (
            f"unhealthy where >= {self.unhealthy_rate * 100:g}% of the calls "
            f"within +-{self.label_window / 2:g} s failed"
        )

    def label(self, trace: Trace, chunk: int = 1 << 16) -> Trace:
        """The same events, with ``healthy`` derived (any existing labels are replaced).

        The trace must be in time order, as loaded traces are. A prefix sum of
        failures (an ``array`` of C ints) and, per ``chunk`` events, two binary
        searches per event in the stretch of ``t`` their windows can reach: about
        5 bytes an event beyond the trace itself, where per-event Python lists
        took about 150.
        """
        t, half, n = trace.t, self.label_window / 2, len(trace)
        counts = array.array("i" if n < 2**31 else "q", [0])
        counts.extend(itertools.accumulate(trace.ok.translate(_FAILED)))
        healthy = bytearray()
        for low in range(0, n, chunk):
            high = min(n, low + chunk)
            reach_low = bisect.bisect_left(t, t[low] - half)
            reach_high = bisect.bisect_right(t, t[high - 1] + half)
            reach = t[reach_low:reach_high].tolist()  # bisect on a list boxes no floats
            times = t[low:high]
            first = [
                index + reach_low
                for index in map(
                    functools.partial(bisect.bisect_left, reach),
                    map(operator.sub, times, itertools.repeat(half)),
                )
            ]
            stop = [
                index + reach_low
                for index in map(
                    functools.partial(bisect.bisect_right, reach),
                    map(operator.add, times, itertools.repeat(half)),
                )
            ]
            failures = map(
                operator.sub, map(counts.__getitem__, stop), map(counts.__getitem__, first)
            )
            # A share, not failures < rate * calls: 7 / 100 rounds to the same float as
            # 0.07, where 0.07 * 100 rounds above 7. Every window holds its own call.
            shares = map(operator.truediv, failures, map(operator.sub, stop, first))
            healthy.extend(map(operator.lt, shares, itertools.repeat(self.unhealthy_rate)))
        return attrs.evolve(trace, healthy=healthy)


def label_incidents(
    trace: Trace, incidents: Sequence[tuple[float, float]]
) -> tuple[Trace, list[tuple[float, float]]]:
    """The trace labelled from an incident log, and the incidents no call falls in.

    A call is unhealthy when its ``t`` is inside an incident's ``[start, end)``;
    every other call is healthy (any labels the trace had are replaced).
    """
    healthy = bytearray(b"\x01") * len(trace)
    unused = []
    for start, end in incidents:
        low = bisect.bisect_left(trace.t, start)
        high = bisect.bisect_left(trace.t, end)
        if low == high:
            unused.append((start, end))
        healthy[low:high] = bytes(high - low)
    return attrs.evolve(trace, healthy=healthy), unused


# -- candidates -------------------------------------------------------------------------


def _minimal(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that must be written to make the config ``fields`` describe: those
    that differ from what the constructor gives when they are left out.

    Every field's unset value is its default, except ``minimum_requests``, which
    follows ``failure_threshold`` when that is lower than the default minimum.
    """
    written = {
        key: value for key, value in fields.items()
        if key != "minimum_requests" and getattr(_DEFAULTS, key) != value
    }
    if "minimum_requests" in fields:
        threshold = fields.get("failure_threshold", _DEFAULTS.failure_threshold)
        if fields["minimum_requests"] != default_minimum_requests(threshold):
            written["minimum_requests"] = fields["minimum_requests"]
    return {key: written[key] for key in fields if key in written}


def make_candidate(overrides: Mapping[str, Any]) -> Candidate:
    """Make a candidate from field values (strings are parsed to the field's type)."""
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        field_type = _field_type(key)
        values[key] = _parse_value(key, field_type, value) if isinstance(value, str) else value
    return Candidate(values, CircuitBreakerConfig(**values))


def _field_type(key: str) -> str:
    """The annotated type of a tunable config field; ValueError naming the choices if none."""
    fields = {field.name: field for field in attrs.fields(CircuitBreakerConfig)}
    if key not in fields or key in _UNTUNABLE:
        tunable = sorted(set(fields) - _UNTUNABLE)
        raise ValueError(f"unknown config field {shown(key)}; one of: {', '.join(tunable)}")
    return str(fields[key].type)


def _parse_value(key: str, field_type: str, text: str) -> Any:
    """Parse ``text`` to the field's annotated type (``int``, ``float``, ``bool``, ``X | None``)."""
    kind, _, optional = field_type.partition(" | ")
    word = text.strip().lower()
    if optional == "None" and word in ("none", "null"):
        return None
    try:
        if kind == "bool":
            if word in ("true", "yes", "on", "1"):
                return True
            if word in ("false", "no", "off", "0"):
                return False
            raise ValueError(text)
        if kind == "int":
            return int(word)
        return float(word)
    except ValueError:
        raise ValueError(f"{key} must be {field_type}, got {shown(text)}") from None


def parse_config_args(items: Sequence[str]) -> Candidate:
    """One ``--config``: ``key=value`` items, each possibly a comma list of them."""
    overrides: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            key, equals, value = pair.partition("=")
            if not equals or not key.strip():
                raise ValueError(
                    f"--config expects key=value, got {shown(pair)} (put TRACE before --config)"
                )
            overrides[key.strip()] = value
    return make_candidate(overrides)


def load_grid(path: str) -> list[Candidate]:
    """Candidates from JSON: a list of dicts, or a dict of lists (cartesian product).

    The number of candidates is counted before any is built and refused above
    ``MAX_GRID``; a file nested too deeply for the JSON parser is refused too.
    """
    try:
        with open_regular(path, "a grid", encoding="utf-8") as file:
            grid = json.load(file)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text: a grid is a JSON file") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON: {shown(str(error))}") from None
    except RecursionError:
        raise ValueError(
            f"{path}: JSON nested too deeply; a grid is a list of flat objects "
            "or an object of lists of values"
        ) from None
    if isinstance(grid, list) and all(isinstance(item, dict) for item in grid):
        _check_grid_size(path, len(grid))
        return [_grid_candidate(path, item) for item in grid]
    if isinstance(grid, dict):
        for key in grid:
            _field_type(key)
        axes = {key: value if isinstance(value, list) else [value] for key, value in grid.items()}
        _check_grid_size(path, math.prod(map(len, axes.values())))
        candidates: list[Candidate] = []
        for combination in itertools.product(*axes.values()):
            overrides = dict(zip(axes, combination, strict=True))
            try:
                candidates.append(_grid_candidate(path, overrides))
            except (TypeError, ValueError) as error:
                print(f"tune: skipped {shown(str(overrides), 200)}: {error}", file=sys.stderr)
        if not candidates:
            raise ValueError(f"{path}: every combination of the grid is an invalid config")
        return candidates
    raise ValueError(f"{path}: a grid is a JSON list of objects or an object of lists")


def _check_grid_size(path: str, count: int) -> None:
    if count > MAX_GRID:
        raise ValueError(
            f"{path}: the grid makes {count:,} candidates; the limit is {MAX_GRID:,} "
            "(trim its lists, or use --search, which explores a built-in grid "
            "within --budget seconds)"
        )


def _grid_candidate(path: str, overrides: Mapping[str, Any]) -> Candidate:
    for key, value in overrides.items():
        if isinstance(value, (dict, list)):
            raise ValueError(
                f"{path}: {key} must be a single value, got {shown(json.dumps(value))}"
            )
    return make_candidate(overrides)


# -- the search space -------------------------------------------------------------------

_COUNT_RULE_OFF = "window"  # failure_threshold = sliding_window_size: only the rate opens it


RULE_AXES: Mapping[str, tuple[Any, ...]] = {
    "sliding_window_size": (20, 50, 100, 200),
    "minimum_requests": (5, 10, 20, 50),
    "failure_threshold": (3, 5, 10, 20, 50, _COUNT_RULE_OFF),
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
        recovery_defaults = {key: getattr(_DEFAULTS, key) for key in self.recovery}
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
    if fields["failure_threshold"] == _COUNT_RULE_OFF:
        if fields["failure_rate_threshold"] is None:
            return None  # no rule left
        fields["failure_threshold"] = fields["sliding_window_size"]
    if (
        fields["retry_backoff_factor"] == 1.0
        and fields["max_retry_interval"] != _DEFAULTS.max_retry_interval
    ):
        return None  # the open period never grows, so the cap changes nothing
    slow = fields.pop("slow_call", None)
    if slow is not None:
        fields["slow_call_duration"], fields["slow_call_rate_threshold"] = slow
    return _minimal(fields)


# -- rules that cannot fire ---------------------------------------------------------------


def _fewest_failures(rate_threshold: float, calls: int) -> int:
    """The fewest failures among ``calls`` outcomes that reach the rate (as the window checks)."""
    failures = min(calls, math.ceil(rate_threshold * calls))
    while failures > 0 and (failures - 1) / calls >= rate_threshold:
        failures -= 1
    while failures < calls and failures / calls < rate_threshold:
        failures += 1
    return failures


def redundant_rules(config: CircuitBreakerConfig) -> list[str]:
    """Why an enabled opening rule of ``config`` can never fire before another one, if so.

    The window checks its rules once it holds ``minimum_requests`` outcomes (at
    most ``sliding_window_size``). The rate rule needs at least
    ``fewest = ceil(rate * minimum_requests)`` failures, so it can never be
    first when the count rule already fires at ``failure_threshold <= fewest``.
    The count rule can never be first when even a full window makes
    ``failure_threshold / sliding_window_size`` reach the rate (a count rule set
    to the window size is how one switches it off, and is not reported). The
    slow-call rate needs ``slow_call_duration``, and the duration does nothing
    without the rate.
    """
    notes = []
    count, window = config.failure_threshold, config.sliding_window_size
    minimum, share = config.minimum_requests, config.failure_rate_threshold
    if share is not None:
        fewest = _fewest_failures(share, minimum)
        if count <= fewest:
            notes.append(
                f"failure_rate_threshold={share:g} can never open the circuit before the "
                f"count rule: at minimum_requests={minimum} it needs {fewest} failures, and "
                f"failure_threshold={count} opens it at {count}; raise failure_threshold above "
                f"{fewest} (up to sliding_window_size={window} to leave opening to the rate)"
            )
        elif count < window and count / window >= share:
            notes.append(
                f"failure_threshold={count} can never open the circuit before the rate rule: "
                f"{count} failures in a full window of {window} is already a rate of "
                f"{count / window:.2g} >= failure_rate_threshold={share:g}; lower "
                f"failure_threshold below {math.ceil(share * window)}, or set it to {window} "
                "to say the rate alone decides"
            )
    if config.slow_call_rate_threshold is not None and config.slow_call_duration is None:
        notes.append(
            f"slow_call_rate_threshold={config.slow_call_rate_threshold:g} never fires: "
            "no call is slow until slow_call_duration is set"
        )
    if config.slow_call_duration is not None and config.slow_call_rate_threshold is None:
        notes.append(
            f"slow_call_duration={config.slow_call_duration:g} opens nothing without "
            "slow_call_rate_threshold"
        )
    return notes


# -- replay and scores ------------------------------------------------------------------


def replay(trace: Trace, config: CircuitBreakerConfig) -> tuple[bytes, bytes]:
    """Run ``trace`` through a fresh breaker; returns ``(admitted, states)`` per event."""
    breaker = CircuitBreaker("replay", config)
    return breaker.replay(trace.t, trace.ok, trace.latency)


def score(trace: Trace, admitted: bytes, states: bytes) -> Scores:
    """Score one replay: ``admitted[i]`` 1/0, ``states[i]`` the state code after event ``i``.

    Everything is done with bytes-level scans (``count``, ``find``, regexes) and
    whole-trace integer bit operations, so a million events score in
    milliseconds plus a few microseconds per outage.
    """
    n = len(trace)
    if len(admitted) != n or len(states) != n:
        raise ValueError(
            f"admitted and states must have one entry per event ({n}), "
            f"got {len(admitted)} and {len(states)}"
        )
    t, latency = trace.t, trace.latency
    # The state before the first event is CLOSED: a leading CLOSED lets one regex see it.
    opens = [match.start() for match in _OPENS.finditer(bytes([CLOSED]) + states)]
    rejected = n - admitted.count(1)
    healthy = trace.healthy
    if healthy is None:
        return Scores(events=n, rejected=rejected, opens=len(opens))

    def ended(i: int) -> float:
        return t[i] + latency[i]

    runs = _label_runs(trace, healthy)
    detection: list[float] = []
    outages = missed = 0
    for start, end in runs.unhealthy:
        outages += 1
        if start > 0 and states[start - 1] == OPEN:
            detection.append(0.0)
            continue
        first_open = states.find(OPEN, start, end)
        if first_open < 0:
            missed += 1
        else:
            detection.append(ended(first_open) - t[start])

    recovery: list[float] = []
    recoveries = unrecovered = 0
    for start, end in runs.healthy:
        if start == 0:
            continue  # not after an outage
        recoveries += 1
        if states[start - 1] == CLOSED:
            recovery.append(0.0)
            continue
        closed = states.find(CLOSED, start, end)
        if closed < 0:
            unrecovered += 1
        else:
            recovery.append(ended(closed) - t[start])

    # One byte per event holding 0 or 1 is one bit per event in a big integer:
    # "rejected while healthy" is healthy AND NOT admitted, counted by bit_count().
    admitted_bits = int.from_bytes(admitted, "little")
    healthy_bits = runs.bits
    return Scores(
        events=n,
        rejected=rejected,
        opens=len(opens),
        false_opens=sum(healthy[i] for i in opens),
        outages=outages,
        missed_outages=missed,
        detection_delay_mean=_mean(detection),
        detection_delay_max=max(detection, default=None),
        rejected_healthy=(healthy_bits & ~admitted_bits).bit_count(),
        passed_unhealthy=(admitted_bits & ~healthy_bits).bit_count(),
        recoveries=recoveries,
        unrecovered=unrecovered,
        recovery_delay_mean=_mean(recovery),
        recovery_delay_max=max(recovery, default=None),
    )


@attrs.frozen
class _Runs:
    """A labelled trace's runs of unhealthy and healthy events (``(start, end)`` spans) and
    its labels as one integer, one bit an event: the same for every candidate, so found once."""

    healthy_column: bytearray
    unhealthy: list[tuple[int, int]]
    healthy: list[tuple[int, int]]
    bits: int


_RUNS: weakref.WeakKeyDictionary[Trace, _Runs] = weakref.WeakKeyDictionary()


def _label_runs(trace: Trace, healthy: bytearray) -> _Runs:
    runs = _RUNS.get(trace)
    if runs is None or runs.healthy_column is not healthy:
        runs = _Runs(
            healthy,
            [match.span() for match in _UNHEALTHY_RUNS.finditer(healthy)],
            [match.span() for match in _HEALTHY_RUNS.finditer(healthy)],
            int.from_bytes(healthy, "little"),
        )
        _RUNS[trace] = runs
    return runs


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def cost(scores: Scores, weights: Mapping[str, float]) -> float | None:
    """``sum(weight * score)``; a score that is None adds 0.

    None when the trace has no labels and only label-needing scores are weighted.
    """
    labelled = scores.outages is not None
    if not labelled and not any(weights.get(key) for key in LABEL_FREE):
        return None
    return math.fsum(
        weight * (getattr(scores, key) or 0) for key, weight in weights.items() if weight
    )


def check_weights(weights: Mapping[str, float]) -> None:
    """Refuse a weight of an unknown score, and one that is negative or not finite.

    Every score counts something bad (calls lost, delays, false alarms), so a negative
    weight would reward it: the ranking would recommend the config that does worst.
    """
    unknown = sorted(set(weights) - set(SCORE_NAMES))
    if unknown:
        raise ValueError(
            f"unknown score(s) to weight: {', '.join(map(shown, unknown))}; "
            f"one of: {', '.join(SCORE_NAMES)}"
        )
    for key, weight in weights.items():
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"the weight of {key} must be a finite number >= 0, got {weight!r} (every "
                "score counts something bad: a negative weight would reward it; 0 drops it)"
            )


def evaluate(
    trace: Trace, candidate: Candidate, weights: Mapping[str, float]
) -> tuple[Scores, float | None, float]:
    """Replay and score one candidate: ``(scores, cost, seconds the replay took)``."""
    started = time.perf_counter()
    admitted, states = replay(trace, candidate.config)
    elapsed = time.perf_counter() - started
    scores = score(trace, admitted, states)
    return scores, cost(scores, weights), elapsed


def rank(entries: Iterable[tuple[Candidate, Scores, float | None, float]]) -> list[TuneResult]:
    """Best first by cost (ties: fewer changed fields, then the given order); no cost, no rank."""
    listed = list(entries)
    if any(entry[2] is None for entry in listed):
        return [TuneResult(c, s, k, None, e) for c, s, k, e in listed]
    order = sorted(listed, key=lambda entry: (entry[2] or 0.0, len(entry[0].changes)))
    return [TuneResult(c, s, k, place, e) for place, (c, s, k, e) in enumerate(order, 1)]


def tune(
    trace: Trace,
    candidates: Iterable[Candidate],
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> list[TuneResult]:
    """Replay and score every candidate; return them best first (by :func:`cost`)."""
    check_weights(weights)
    return rank((each, *evaluate(trace, each, weights)) for each in candidates)


def _front_key(scores: Scores) -> tuple[float, float, float]:
    """The front's three scores, smaller is better; a missed outage's delay is infinite."""
    delay = scores.detection_delay_mean
    if delay is None:
        delay = math.inf if scores.outages else 0.0
    return (float(scores.rejected_healthy or 0), float(scores.passed_unhealthy or 0), delay)


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """``a`` is at least as good as ``b`` everywhere (equal counts as dominating: one of a
    set of identical candidates is enough)."""
    return all(map(operator.le, a, b))


@attrs.frozen
class Tuning:
    """What ``tune`` found: the rows to show, the front, the recommendation, the search.

    ``results`` are the given candidates (the defaults first) and, after a
    search, the front and the best found, ranked together; ``recommended`` is
    the lowest-cost one (None when nothing has a cost: an unlabelled trace).
    """

    results: list[TuneResult]
    front: list[TuneResult]
    recommended: TuneResult | None
    defaults: TuneResult
    explored: int
    search_size: int | None
    seconds: float
    complete: bool


def explore(
    trace: Trace,
    given: Sequence[Candidate],
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    *,
    search: StagedSearch | None = None,
    budget: float = DEFAULT_BUDGET,
    limit: int | None = None,
) -> Tuning:
    """Score the defaults and ``given``, then ``search`` until ``budget`` seconds or
    ``limit`` candidates in all; keep the trade-off front and the best by cost."""
    check_weights(weights)
    started = time.perf_counter()
    deadline = started + budget
    defaults = make_candidate({})
    shown_rows = [defaults, *(each for each in given if each.changes)]
    rows: list[tuple[Candidate, Scores, float | None, float]] = []
    front: list[tuple[tuple[float, ...], tuple[Candidate, Scores, float | None, float]]] = []
    best: tuple[Candidate, Scores, float | None, float] | None = None
    explored = 0
    complete = True

    def consider(entry: tuple[Candidate, Scores, float | None, float]) -> None:
        nonlocal best
        if search is not None:
            search.observe(entry[0], entry[2])
        key = _front_key(entry[1])
        simpler = len(entry[0].changes)
        # Of candidates that score the same, the front keeps the one that changes fewest fields.
        if not any(
            _dominates(other, key) and (other != key or len(kept[0].changes) <= simpler)
            for other, kept in front
        ):
            front[:] = [(other, kept) for other, kept in front if not _dominates(key, other)]
            front.append((key, entry))
        if entry[2] is not None and (
            best is None
            or (entry[2], len(entry[0].changes)) < (best[2] or 0.0, len(best[0].changes))
        ):
            best = entry

    for each in shown_rows:
        entry = (each, *evaluate(trace, each, weights))
        rows.append(entry)
        consider(entry)
        explored += 1
    for each in search or ():
        if time.perf_counter() >= deadline or (limit is not None and explored >= limit):
            complete = False
            break
        consider((each, *evaluate(trace, each, weights)))
        explored += 1
    labelled = trace.labelled
    extra = [entry for _, entry in front] if labelled else []
    if best is not None:
        extra.append(best)
    seen = {id(entry[0]) for entry in rows}
    for entry in extra:
        if id(entry[0]) not in seen:
            seen.add(id(entry[0]))
            rows.append(entry)
    results = rank(rows)
    by_candidate = {id(result.candidate): result for result in results}
    recommended = results[0] if results[0].rank is not None else None
    front_results = sorted(
        (by_candidate[id(entry[0])] for _, entry in front),
        key=lambda result: (result.rank or 0, result.cost or 0.0),
    ) if labelled else []
    return Tuning(
        results=results,
        front=front_results,
        recommended=recommended,
        defaults=by_candidate[id(defaults)],
        explored=explored,
        search_size=None if search is None else search.size,
        seconds=time.perf_counter() - started,
        complete=complete,
    )


# -- warnings ---------------------------------------------------------------------------


def trace_warnings(trace: Trace, labels: str | None) -> list[str]:
    """Why the ranking of this trace may not mean much, in numbers."""
    notes = []
    n = len(trace)
    if n < MIN_EVENTS:
        notes.append(
            f"only {n:,} events: too few to tell configs apart (a breaker's window holds up "
            f"to 100 calls by default); record at least {MIN_EVENTS:,}"
        )
    if trace.healthy is not None:
        outages = len(_label_runs(trace, trace.healthy).unhealthy)
        if outages == 0:
            notes.append(
                f"no outage in the trace (labels: {labels}): the scores only measure false "
                "alarms, not how fast an outage is cut off; add a trace with one, or label "
                "incidents with --incidents"
            )
        elif outages < MIN_OUTAGES:
            notes.append(
                f"only {outages} outage{'s' if outages > 1 else ''} in the trace: detection "
                f"and recovery delays rest on {outages} sample{'s' if outages > 1 else ''}; "
                f"{MIN_OUTAGES} or more make the ranking more than an anecdote"
            )
    return notes


def rejection_warnings(trace: Trace) -> list[str]:
    """Whether the breaker that recorded the trace rejected calls, and for how much of it."""
    if not trace.rejections:
        return []
    count = len(trace.rejections)
    return [
        f"the breaker that recorded this trace rejected calls in {count:,} span"
        f"{'s' if count > 1 else ''} covering {trace.rejected_share():.0%} of its time: no "
        "call reached the dependency then, so the trace cannot say how it was, and the "
        "replays judge every config on the gaps the recording breaker left; record "
        "behind an observe-only breaker, CircuitBreakerConfig(enable_fast_fail=False), "
        "whose calls all run"
    ]


def candidate_warnings(trace: Trace, results: Sequence[TuneResult]) -> list[str]:
    """Rules of the shown candidates that can never fire (first), or never do on this trace."""
    notes = []
    longest = max(trace.latency, default=0.0)
    for result in results:
        config = result.candidate.config
        problems = redundant_rules(config)
        if (
            config.slow_call_duration is not None
            and config.slow_call_rate_threshold is not None
            and longest < config.slow_call_duration
        ):
            problems.append(
                f"slow_call_duration={config.slow_call_duration:g} never fires on this trace: "
                f"its longest call took {longest:.3g} s"
            )
        notes += [f"{result.candidate.label}: {problem}" for problem in problems]
    return notes


def tie_warnings(results: Sequence[TuneResult]) -> list[str]:
    costs = {result.cost for result in results}
    if len(results) > 1 and len(costs) == 1 and None not in costs:
        return [f"every candidate costs {costs.pop():g}: this trace does not tell them apart"]
    return []


def incident_warnings(trace: Trace, unused: Sequence[tuple[float, float]]) -> list[str]:
    notes = []
    if unused:
        start, end = unused[0]
        first, last = (trace.t[0], trace.t[-1]) if len(trace) else (math.nan, math.nan)
        notes.append(
            f"{len(unused)} incident(s) cover no call of the trace, the first from {start:.3f} "
            f"to {end:.3f}, where the trace runs from {first:.3f} to {last:.3f}"
        )
        if len(trace) and last < 1e9 <= start:
            notes.append(
                "the trace's times look like a monotonic clock (seconds since boot), not "
                "Unix times: record it again with a current TraceRecorder, which writes "
                "Unix times"
            )
    return notes


# -- command line -----------------------------------------------------------------------

HELP = """\
Replay a recorded trace (CSV: t or time, ok, latency[, healthy]) through candidate
circuit-breaker configs, recommend one as ready-to-paste CircuitBreakerConfig(...)
and compare it with the defaults. Lower cost is better; the score names are the
table's columns. Details and a worked example: README, "Choosing thresholds".
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "trace", metavar="TRACE", help="CSV trace: Unix or ISO-8601 times, header optional"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--grid", metavar="FILE.json",
        help=f"candidates: a list of dicts, or a dict of lists (at most {MAX_GRID:,})",
    )
    source.add_argument(
        "--config", metavar="KEY=VALUE", nargs="+", action="append",
        help="one candidate (repeat for more), e.g. --config failure_threshold=10,timeout=5",
    )
    parser.add_argument(
        "--search", action="store_true",
        help="also explore a built-in grid and keep the trade-off front",
    )
    parser.add_argument(
        "--budget", metavar="SECONDS", type=float, default=DEFAULT_BUDGET,
        help="time for --search (default: %(default)g)",
    )
    parser.add_argument(
        "--weight", metavar="SCORE=W", action="append", default=[],
        help="weight of a score in the cost (default: "
        + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_WEIGHTS.items())
        + "; 0 drops one)",
    )
    parser.add_argument(
        "--sort", action="store_true", help="sort the trace by t instead of refusing disorder"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--wide", action="store_true", help="every score column, uncut")
    parser.add_argument(
        "--top", metavar="N", type=int, default=15, help="table rows (default: %(default)d)"
    )
    labels = parser.add_argument_group("labels (which calls met a broken dependency)")
    labels.add_argument(
        "--incidents", metavar="FILE",
        help="CSV start,end (Unix or ISO-8601 times): calls inside are unhealthy",
    )
    labels.add_argument(
        "--label-window", metavar="SECONDS", type=float, default=LabelRule().label_window,
        help="derived labels: window centred on each call (default: %(default)g)",
    )
    labels.add_argument(
        "--unhealthy-rate", metavar="RATE", type=float, default=LabelRule().unhealthy_rate,
        help="derived labels: unhealthy when this share of the window failed "
        "(default: %(default)g)",
    )
    labels.add_argument(
        "--no-derive-labels", action="store_true",
        help="without a healthy column or --incidents, keep only label-free scores",
    )


def parse_weights(items: Sequence[str]) -> dict[str, float]:
    """The default weights, updated by ``score=number`` items."""
    weights = dict(DEFAULT_WEIGHTS)
    for item in items:
        key, equals, value = item.partition("=")
        key = key.strip()
        try:
            weights[key] = float(value)
        except ValueError:
            raise ValueError(f"--weight expects score=number, got {shown(item)}") from None
        if not equals:
            raise ValueError(f"--weight expects score=number, got {shown(item)}")
        if not (math.isfinite(weights[key]) and weights[key] >= 0):
            raise ValueError(
                f"--weight {item.strip()}: a weight must be a finite number >= 0 (every "
                "score counts something bad: a negative weight would reward it; 0 drops it)"
            )
    check_weights(weights)
    return weights


def run(args: argparse.Namespace) -> int:
    try:
        weights = parse_weights(args.weight)
        if args.grid:
            candidates = load_grid(args.grid)
        elif args.config:
            candidates = [parse_config_args(items) for items in args.config]
        else:
            candidates = [make_candidate(overrides) for overrides in DEFAULT_GRID]
        if not (args.budget > 0 and math.isfinite(args.budget)):
            raise ValueError(f"--budget must be a number of seconds > 0, got {args.budget!r}")
        if args.top < 1:
            raise ValueError(f"--top must be >= 1, got {args.top!r}")
        rule = LabelRule(args.label_window, args.unhealthy_rate)
        incidents = None if args.incidents is None else load_incidents(args.incidents)
        trace = load_trace(args.trace, sort=args.sort)
        if not len(trace):
            raise TraceError(trace.source, None, "no events (only a header?): nothing to replay")
    except (OSError, TraceError, TypeError, ValueError) as error:
        print(f"tune: {error}", file=sys.stderr)
        return 2
    warnings: list[str] = []
    derived = None
    if incidents is not None:
        trace, unused = label_incidents(trace, incidents)
        labels: str | None = "incidents"
        warnings += incident_warnings(trace, unused)
    elif trace.labelled:
        labels = "column"
    elif not args.no_derive_labels:
        derived = rule
        trace = rule.label(trace)
        labels = "derived"
    else:
        labels = None
    if args.search and labels is None:
        print("tune: --search needs labels: drop --no-derive-labels or give --incidents",
              file=sys.stderr)
        return 2
    warnings += rejection_warnings(trace) + trace_warnings(trace, labels)
    found = explore(
        trace, candidates, weights,
        search=StagedSearch(*search_space(trace)) if args.search else None,
        budget=args.budget,
    )
    given = candidates if args.config or args.grid else []  # the built-in set is known good
    warnings += candidate_warnings(
        trace, [r for r in found.results if r.candidate in given or r is found.recommended]
    ) + tie_warnings(found.results)
    context = _Context(trace, weights, labels, derived, args.incidents, warnings)
    if args.json:
        output = json.dumps(_report(context, found), indent=2)
    else:
        width = None if args.wide else shutil.get_terminal_size((100, 24)).columns
        output = _text(context, found, width, args.top)
    try:
        print(output)
    except BrokenPipeError:  # piped into head: the reader has what it wanted
        sys.stdout = None  # nothing left to flush at exit
    return 0


@attrs.frozen
class _Context:
    trace: Trace
    weights: Mapping[str, float]
    labels: str | None
    derived: LabelRule | None
    incidents: str | None
    warnings: list[str]


def _report(context: _Context, found: Tuning) -> dict[str, Any]:
    """``labels``: ``"incidents"``, ``"column"`` (the trace's own), ``"derived"`` or None."""
    trace = context.trace
    recommended = found.recommended
    return {
        "trace": trace.source,
        "events": len(trace),
        "labelled": trace.labelled,
        "rejections": {"spans": len(trace.rejections), "share": trace.rejected_share()},
        "labels": context.labels,
        "label_rule": None if context.derived is None else attrs.asdict(context.derived),
        "incidents": context.incidents,
        "weights": dict(context.weights),
        "warnings": context.warnings,
        "recommendation": None if recommended is None else {
            **recommended.to_dict(),
            "changes": dict(recommended.candidate.changes),
            "summary": _comparison(recommended, found.defaults),
        },
        "defaults": found.defaults.to_dict(),
        "search": None if found.search_size is None else {
            "explored": found.explored,
            "space": found.search_size,
            "complete": found.complete,
            "seconds": found.seconds,
            "front_scores": list(FRONT_SCORES),
        },
        "front": [result.to_dict() for result in found.front],
        "results": [result.to_dict() for result in found.results],
    }


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _comparison(chosen: TuneResult, defaults: TuneResult) -> str:
    """Two or three plain sentences: the chosen config against the defaults on this trace."""
    new, old = chosen.scores, defaults.scores
    if new.outages is None:
        return ""
    same = chosen is defaults
    subject = "No candidate beat the defaults on this trace. They" if same else "On this trace it"

    def verb(singular: str) -> str:
        """``opens`` for "it", ``open`` for "they" (the defaults)."""
        return singular.replace("does ", "do ") if same else singular

    def versus(default: str) -> str:
        return "" if same else f" (defaults: {default})"

    if not new.outages:
        return (
            f"{subject} {verb('opens') if not same else 'open'} {new.opens:,} time(s) on a "
            f"trace without an outage{versus(_count(old.opens))}, rejecting "
            f"{_count(new.rejected_healthy)} good calls{versus(_count(old.rejected_healthy))}."
        )
    first = (
        f"{subject} {'reject' if same else 'rejects'} {_count(new.rejected_healthy)} good calls"
        f"{versus(_count(old.rejected_healthy))} and {'let' if same else 'lets'} "
        f"{_count(new.passed_unhealthy)} calls through to the broken dependency"
        f"{versus(_count(old.passed_unhealthy))}."
    )
    if new.detection_delay_mean is None:
        detect = verb("does not open in any of the ") + f"{new.outages} outage(s)"
    else:
        detect = (
            f"{'open' if same else 'opens'} {new.detection_delay_mean:.2f} s after an outage "
            "starts, on average"
            + (f" ({new.missed_outages} of {new.outages} missed)" if new.missed_outages else "")
        )
    detect += versus(_short(old.detection_delay_mean, old.missed_outages, "missed"))
    if not new.recoveries:
        return f"{first} {'They' if same else 'It'} {detect}."
    if new.recovery_delay_mean is None:
        recover = verb("does not close again before the trace ends")
    else:
        recover = (
            f"{'close' if same else 'closes'} {new.recovery_delay_mean:.2f} s after the "
            "dependency is back"
            + (f" ({new.unrecovered} of {new.recoveries} still open at the end)"
               if new.unrecovered else "")
        )
    recover += versus(_short(old.recovery_delay_mean, old.unrecovered, "still open"))
    return f"{first} {'They' if same else 'It'} {detect}, and {recover}."


def _short(mean: float | None, missed: int | None, what: str) -> str:
    """A default's delay in brief: ``0.95 s``, ``0.95 s, 1 missed``, ``never``."""
    if mean is None:
        return "never"
    return f"{mean:.2f} s" + (f", {missed} {what}" if missed else "")


# The table: which scores to show first when the terminal is narrow.
_COLUMN_ORDER = (
    "rejected_healthy", "passed_unhealthy", "detection_delay_mean", "recovery_delay_mean",
    "false_opens", "missed_outages", "opens", "rejected", "unrecovered",
    "detection_delay_max", "recovery_delay_max", "outages", "recoveries", "events",
)
_MIN_CONFIG_WIDTH = 26


def _table(results: Sequence[TuneResult], recommended: TuneResult | None,
           width: int | None) -> tuple[list[str], int]:
    """The table's lines and how many score columns it left out to fit ``width``."""
    available = [
        name for name in _COLUMN_ORDER
        if any(getattr(result.scores, name) is not None for result in results)
    ]
    cells = {
        name: [
            _secs(value) if isinstance(value, float) or name.endswith(("_mean", "_max"))
            else _count(value)
            for value in (getattr(result.scores, name) for result in results)
        ]
        for name in available
    }
    lead = [
        ("", ["*" if result is recommended else "" for result in results]),
        ("rank", ["-" if result.rank is None else str(result.rank) for result in results]),
        ("cost", ["-" if result.cost is None else f"{result.cost:,.6g}" for result in results]),
    ]
    configs = [result.candidate.label for result in results]
    config_width = max(len("config"), *map(len, configs))

    def width_of(name: str, column: list[str]) -> int:
        return max(len(name), *map(len, column))

    used = sum(width_of(name, column) + 2 for name, column in lead)
    # The config column keeps its whole width if the four main scores still fit beside it.
    main = sum(width_of(name, cells[name]) + 2 for name in available[:4])
    fits_whole = width is not None and used + main + config_width <= width
    reserve = config_width if fits_whole else min(config_width, _MIN_CONFIG_WIDTH)
    chosen = []
    for name in available:
        needed = width_of(name, cells[name]) + 2
        if width is None or used + needed + reserve <= width:
            chosen.append(name)
            used += needed
    if width is not None:
        room = max(_MIN_CONFIG_WIDTH, width - used)
        configs = [label if len(label) <= room else label[: room - 3] + "..." for label in configs]
    columns = [*lead, *((name, cells[name]) for name in chosen), ("config", configs)]
    widths = [width_of(name, column) for name, column in columns]
    lines = []
    for row in range(-1, len(results)):
        parts = []
        for index, ((name, column), size) in enumerate(zip(columns, widths, strict=True)):
            cell = name if row < 0 else column[row]
            parts.append(cell.ljust(size) if index in (0, len(columns) - 1) else cell.rjust(size))
        lines.append("  ".join(parts).rstrip())
    return lines, len(available) - len(chosen)


def _code_lines(code: str, width: int) -> list[str]:
    """``code`` indented, its arguments wrapped onto lines of their own when too wide."""
    if len(code) + 4 <= width or "(" not in code:
        return [f"    {code}"]
    name, _, arguments = code.partition("(")
    wrapped = textwrap.wrap(arguments.rstrip(")"), width=max(20, width - 8))
    return [f"    {name}(", *(f"        {line}" for line in wrapped), "    )"]


def _text(context: _Context, found: Tuning, width: int | None, top: int) -> str:
    trace, recommended = context.trace, found.recommended
    t = trace.t
    head = f"{trace.source}: {len(trace):,} events over {t[-1] - t[0]:,.0f} s"
    if trace.healthy is not None:
        head += f", {found.defaults.scores.outages} outage(s)"
    head += {
        "incidents": f" (labels: incidents from {context.incidents})",
        "column": " (labels: the trace's healthy column)",
        "derived": " (labels derived: "
        + (context.derived.description if context.derived else "")
        + "; --incidents FILE to use your incident log)",
        None: " (no labels: label-free scores only, no recommendation)",
    }[context.labels]
    out = [_fill(head, width), ""]
    formula = " + ".join(f"{w:g}*{k}" for k, w in context.weights.items() if w) or "0"
    if recommended is not None:
        searched = ""
        if found.search_size is not None:
            searched = (
                f"; --search explored {found.explored:,} candidates of {found.search_size:,} "
                f"in {found.seconds:.1f} s"
                + ("" if found.complete else ", raise --budget to explore more")
            )
        code = recommended.candidate.code
        if recommended is found.defaults:
            code += "    # the defaults"
        out += [
            _fill(f"Recommended (lowest cost = {formula}{searched}):", width),
            "",
            *_code_lines(code, width or len(code) + 4),
            "",
        ]
        summary = _comparison(recommended, found.defaults)
        if summary:
            out += [_fill(summary, width), ""]
    rows = [r for r in found.results if r.rank is None or r.rank <= top]
    for must in (found.defaults, recommended):
        if must is not None and must not in rows:
            rows.append(must)
    lines, hidden = _table(rows, recommended, width)
    out += lines
    notes = [f"cost = {formula} (lower is better; --weight score=w)"]
    if found.results[0].rank is None:
        notes[0] += "; not ranked: no weighted score exists for this trace"
    if hidden:
        notes.append(f"{hidden} more score column(s) with --wide; * = recommended")
    elif recommended is not None:
        notes.append("* = recommended")
    if len(rows) < len(found.results):
        notes.append(f"{len(found.results) - len(rows)} more row(s) with --top or --json")
    out += ["", *(_fill(note, width) for note in notes)]
    if context.warnings:
        out += ["", "Warnings:", *(_fill(f"- {note}", width, "  ") for note in context.warnings)]
    return "\n".join(out)


def _fill(text: str, width: int | None, indent: str = "") -> str:
    """``text`` wrapped to ``width`` (None: as it is), never breaking a path or a name."""
    if width is None:
        return text
    return textwrap.fill(
        text, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False
    )
