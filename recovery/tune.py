"""Replay a recorded trace through candidate breaker configs and rank them.

``python -m recovery tune TRACE`` answers "which config would have served us best
on our own traffic". Each candidate gets a fresh breaker; every trace event is a
call at its time ``t`` (the breaker's clock is not read): a rejected call does
not happen, an admitted one records its ``ok`` with its ``latency`` as the
duration, ending at ``t + latency``. Events run one after another, so settings
about concurrent calls (``half_open_max_calls``, ``max_half_open_wait``) and the
health-check settings change nothing in a replay.

Scores per config (times in seconds):

- ``events``, ``rejected``: calls in the trace, calls the breaker rejected.
- ``opens``: CLOSED -> OPEN transitions (a failed half-open trial reopening the
  circuit is not an open: it never closed).
- With a ``healthy`` column (1/0) in the trace, also:

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

Labels for a trace without a ``healthy`` column (a production recording): by
default ``tune`` derives them from the trace's own outcomes (:class:`LabelRule`),
so the scores above exist for it too, and says so in its output. A call is
labelled unhealthy when at least ``--unhealthy-rate`` (default 0.5) of the calls
that started within ``--label-window / 2`` seconds of it (either side,
inclusive; default window 10 s, so +-5 s; the call itself included) failed. The
window is centred rather than trailing because the whole trace is known: for a
hard outage under steady traffic the labels then change exactly where the
failures start and stop, where a trailing window would put both edges half a
window late. The labels follow failures only (slow calls that succeed count as
healthy), a lone failure with no other call near it is an outage of one call,
and a brownout below the rate is healthy; lower the rate to count it.
``--no-derive-labels`` keeps only the label-free scores. A trace's own
``healthy`` column is always used as it is. The ranking sorts by
``cost = sum(weight[k] * score[k])`` over the weighted scores, lowest first (ties
keep the candidates' order); a score that is None adds nothing, and the cost is
None when the trace has no labels and only label-needing scores are weighted (the
default weights), in which case no ranking is made. The default weights count
misrouted calls, ``rejected_healthy + passed_unhealthy``; ``--weight key=value``
sets one weight (0 drops a default), e.g. ``--weight false_opens=50``. Weighting a
delay alone would favour configs that miss outages entirely, so weight
``missed_outages`` / ``unrecovered`` with it.

Candidates: ``--config k=v[,k=v...] [k=v ...]`` is one candidate (repeat
``--config`` for more; fields of CircuitBreakerConfig, values parsed to the
field's type, ``none`` for an optional field); ``--grid FILE.json`` reads a list
of such dicts, or a dict of lists whose cartesian product is the grid
(combinations the config rejects, such as ``minimum_requests`` above
``sliding_window_size``, are skipped with a note). With neither, a small built-in
grid around the defaults is used.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import itertools
import json
import math
import operator
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from recovery._validate import positive_seconds, rate, seconds
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.trace import Trace, TraceError, load_trace

CLOSED, OPEN = 0, 1
_OPENS = re.compile(b"\x00\x01")  # a CLOSED state followed by an OPEN one
_UNHEALTHY_RUNS = re.compile(b"\x00+")
_HEALTHY_RUNS = re.compile(b"\x01+")
_DOUBLE = bytes.maketrans(b"\x00\x01", b"\x00\x02")
_FAILED = bytes.maketrans(b"\x00\x01", b"\x01\x00")

DEFAULT_WEIGHTS: Mapping[str, float] = {"rejected_healthy": 1.0, "passed_unhealthy": 1.0}

DEFAULT_GRID: tuple[Mapping[str, Any], ...] = (
    {},
    {"failure_threshold": 3},
    {"failure_threshold": 10},
    {"timeout": 5.0},
    {"timeout": 60.0},
    {"timeout": 5.0, "retry_backoff_factor": 1.0},
    # Rate rule alone: the count rule is pushed out of reach (threshold = window).
    {
        "failure_rate_threshold": 0.5,
        "failure_threshold": 20,
        "sliding_window_size": 20,
        "minimum_requests": 10,
    },
    {"slow_call_duration": 1.0, "slow_call_rate_threshold": 0.5},
)

# Exception types are not trace data: a trace already says which calls failed.
_UNTUNABLE = frozenset({"record_exceptions", "ignore_exceptions"})


@attrs.frozen
class Candidate:
    """One config to try: the fields set explicitly, and the config they make."""

    overrides: Mapping[str, Any]
    config: CircuitBreakerConfig

    @property
    def label(self) -> str:
        """``failure_threshold=3,timeout=5.0``, or ``defaults``."""
        return ",".join(f"{key}={value}" for key, value in self.overrides.items()) or "defaults"


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

    def label(self, trace: Trace) -> Trace:
        """The same events, with ``healthy`` derived (any existing labels are replaced).

        The trace must be in time order, as loaded traces are. Two binary
        searches and a prefix sum of failures per event: under a second per
        million events, done once per trace rather than per candidate.
        """
        t, half = trace.t.tolist(), self.label_window / 2  # bisect on a list boxes no floats
        failures_before = [0, *itertools.accumulate(trace.ok.translate(_FAILED))]
        lows = map(operator.sub, t, itertools.repeat(half))
        highs = map(operator.add, t, itertools.repeat(half))
        first = list(map(functools.partial(bisect.bisect_left, t), lows))
        stop = list(map(functools.partial(bisect.bisect_right, t), highs))
        failures = map(
            operator.sub,
            map(failures_before.__getitem__, stop),
            map(failures_before.__getitem__, first),
        )
        # A share, not failures < rate * calls: 7 / 100 rounds to the same float as 0.07,
        # where 0.07 * 100 rounds above 7. Every window holds its own call, so calls >= 1.
        shares = map(operator.truediv, failures, map(operator.sub, stop, first))
        healthy = bytearray(map(operator.lt, shares, itertools.repeat(self.unhealthy_rate)))
        return Trace(trace.t, trace.ok, trace.latency, healthy, trace.source)


# -- candidates -------------------------------------------------------------------------


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
        raise ValueError(f"unknown config field {key!r}; one of: {', '.join(tunable)}")
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
        raise ValueError(f"{key} must be {field_type}, got {text!r}") from None


def parse_config_args(items: Sequence[str]) -> Candidate:
    """One ``--config``: ``key=value`` items, each possibly a comma list of them."""
    overrides: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            key, equals, value = pair.partition("=")
            if not equals or not key.strip():
                raise ValueError(
                    f"--config expects key=value, got {pair!r} (put TRACE before --config)"
                )
            overrides[key.strip()] = value
    return make_candidate(overrides)


def load_grid(path: str) -> list[Candidate]:
    """Candidates from JSON: a list of dicts, or a dict of lists (cartesian product)."""
    with open(path, encoding="utf-8") as file:
        try:
            grid = json.load(file)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not JSON: {error}") from None
    if isinstance(grid, list) and all(isinstance(item, dict) for item in grid):
        return [make_candidate(item) for item in grid]
    if isinstance(grid, dict):
        for key in grid:
            _field_type(key)
        axes = {key: value if isinstance(value, list) else [value] for key, value in grid.items()}
        candidates: list[Candidate] = []
        for combination in itertools.product(*axes.values()):
            overrides = dict(zip(axes, combination, strict=True))
            try:
                candidates.append(make_candidate(overrides))
            except (TypeError, ValueError) as error:
                print(f"tune: skipped {overrides}: {error}", file=sys.stderr)
        if not candidates:
            raise ValueError(f"{path}: every combination of the grid is an invalid config")
        return candidates
    raise ValueError(f"{path}: a grid is a JSON list of objects or an object of lists")


# -- replay and scores ------------------------------------------------------------------


def replay(trace: Trace, config: CircuitBreakerConfig) -> tuple[bytes, bytes]:
    """Run ``trace`` through a fresh breaker; returns ``(admitted, states)`` per event."""
    breaker = CircuitBreaker("replay", config)
    return breaker.replay(trace.t, trace.ok, trace.latency)


def score(trace: Trace, admitted: bytes, states: bytes) -> Scores:
    """Score one replay: ``admitted[i]`` 1/0, ``states[i]`` the state code after event ``i``.

    Everything is done with bytes-level scans (``count``, ``find``, regexes), so a
    million events score in tens of milliseconds.
    """
    n = len(trace)
    if len(admitted) != n or len(states) != n:
        raise ValueError(
            f"admitted and states must have one entry per event ({n}), "
            f"got {len(admitted)} and {len(states)}"
        )
    t, latency = trace.t, trace.latency
    # The state before the first event is CLOSED: a leading b"\x00" lets one regex see it.
    opens = [match.start() for match in _OPENS.finditer(b"\x00" + states)]
    rejected = n - admitted.count(1)
    healthy = trace.healthy
    if healthy is None:
        return Scores(events=n, rejected=rejected, opens=len(opens))

    def ended(i: int) -> float:
        return t[i] + latency[i]

    detection: list[float] = []
    outages = missed = 0
    for run in _UNHEALTHY_RUNS.finditer(healthy):
        start, end = run.span()
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
    for run in _HEALTHY_RUNS.finditer(healthy):
        start, end = run.span()
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

    # Per event: admitted + 2 * healthy, so 2 = rejected while healthy, 1 = admitted while not.
    both = bytes(map(operator.add, admitted, healthy.translate(_DOUBLE)))
    return Scores(
        events=n,
        rejected=rejected,
        opens=len(opens),
        false_opens=sum(healthy[i] for i in opens),
        outages=outages,
        missed_outages=missed,
        detection_delay_mean=_mean(detection),
        detection_delay_max=max(detection, default=None),
        rejected_healthy=both.count(2),
        passed_unhealthy=both.count(1),
        recoveries=recoveries,
        unrecovered=unrecovered,
        recovery_delay_mean=_mean(recovery),
        recovery_delay_max=max(recovery, default=None),
    )


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
    unknown = sorted(set(weights) - set(SCORE_NAMES))
    if unknown:
        raise ValueError(
            f"unknown score(s) to weight: {', '.join(unknown)}; one of: {', '.join(SCORE_NAMES)}"
        )


def tune(
    trace: Trace,
    candidates: Iterable[Candidate],
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
) -> list[TuneResult]:
    """Replay and score every candidate; return them best first (by :func:`cost`)."""
    check_weights(weights)
    scored: list[tuple[Candidate, Scores, float | None, float]] = []
    for each in candidates:
        started = time.perf_counter()
        admitted, states = replay(trace, each.config)
        elapsed = time.perf_counter() - started
        scores = score(trace, admitted, states)
        scored.append((each, scores, cost(scores, weights), elapsed))
    if any(entry[2] is None for entry in scored):
        return [TuneResult(c, s, k, None, e) for c, s, k, e in scored]
    ranked = sorted(scored, key=lambda entry: entry[2] or 0.0)
    return [TuneResult(c, s, k, rank, e) for rank, (c, s, k, e) in enumerate(ranked, 1)]


# -- command line -----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "trace", metavar="TRACE", help="CSV: t (or time),ok,latency[,healthy]; header optional"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--grid", metavar="FILE.json", help="candidates: list of dicts, or dict of lists"
    )
    source.add_argument(
        "--config",
        metavar="KEY=VALUE",
        nargs="+",
        action="append",
        help="one candidate (repeat for more), e.g. --config failure_threshold=3,timeout=5",
    )
    parser.add_argument(
        "--weight",
        metavar="SCORE=W",
        action="append",
        default=[],
        help="weight of a score in the ranking cost (default: "
        + ", ".join(f"{k}={v:g}" for k, v in DEFAULT_WEIGHTS.items())
        + ")",
    )
    parser.add_argument(
        "--sort", action="store_true", help="sort the trace by t instead of rejecting disorder"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    labels = parser.add_argument_group(
        "labels for a trace without a healthy column (derived by default)"
    )
    labels.add_argument(
        "--label-window",
        metavar="SECONDS",
        type=float,
        default=LabelRule().label_window,
        help="width of the window centred on each call (default: %(default)g)",
    )
    labels.add_argument(
        "--unhealthy-rate",
        metavar="RATE",
        type=float,
        default=LabelRule().unhealthy_rate,
        help="a call is unhealthy when at least this fraction of its window failed "
        "(default: %(default)g)",
    )
    labels.add_argument(
        "--no-derive-labels",
        action="store_true",
        help="do not derive labels: only the scores that need none",
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
            raise ValueError(f"--weight expects score=number, got {item!r}") from None
        if not equals or not math.isfinite(weights[key]):
            raise ValueError(f"--weight expects score=number, got {item!r}")
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
        rule = LabelRule(args.label_window, args.unhealthy_rate)
        trace = load_trace(args.trace, sort=args.sort)
    except (OSError, TraceError, TypeError, ValueError) as error:
        print(f"tune: {error}", file=sys.stderr)
        return 2
    derived = None if trace.labelled or args.no_derive_labels else rule
    if derived is not None:
        trace = derived.label(trace)
    results = tune(trace, candidates, weights)
    if args.json:
        print(json.dumps(_report(trace, weights, results, derived), indent=2))
    else:
        print(_table(trace, weights, results, derived))
    return 0


def _report(
    trace: Trace,
    weights: Mapping[str, float],
    results: Sequence[TuneResult],
    derived: LabelRule | None,
) -> dict[str, Any]:
    """``labels`` is ``"column"`` (the trace's own), ``"derived"`` (by ``label_rule``) or None."""
    labels = "derived" if derived is not None else "column" if trace.labelled else None
    return {
        "trace": trace.source,
        "events": len(trace),
        "labelled": trace.labelled,
        "labels": labels,
        "label_rule": None if derived is None else attrs.asdict(derived),
        "weights": dict(weights),
        "results": [result.to_dict() for result in results],
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(
    trace: Trace,
    weights: Mapping[str, float],
    results: Sequence[TuneResult],
    derived: LabelRule | None,
) -> str:
    columns: list[tuple[str, Any]] = [
        ("rank", lambda r: "-" if r.rank is None else str(r.rank)),
        ("cost", lambda r: "-" if r.cost is None else f"{r.cost:g}"),
        ("opens", lambda r: str(r.scores.opens)),
        ("rejected", lambda r: str(r.scores.rejected)),
    ]
    if trace.labelled:
        columns += [
            ("false opens", lambda r: str(r.scores.false_opens)),
            ("detect mean/max s", lambda r: "/".join(
                map(_seconds, (r.scores.detection_delay_mean, r.scores.detection_delay_max))
            )),
            ("missed", lambda r: f"{r.scores.missed_outages}/{r.scores.outages}"),
            ("good rejected", lambda r: str(r.scores.rejected_healthy)),
            ("sent to dead", lambda r: str(r.scores.passed_unhealthy)),
            ("recover mean/max s", lambda r: "/".join(
                map(_seconds, (r.scores.recovery_delay_mean, r.scores.recovery_delay_max))
            )),
            ("unrecovered", lambda r: f"{r.scores.unrecovered}/{r.scores.recoveries}"),
        ]
    columns.append(("config", lambda r: r.candidate.label))
    rows = [[name for name, _ in columns]]
    rows += [[show(result) for _, show in columns] for result in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == len(columns) - 1 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    outages = f", {results[0].scores.outages} outages" if results and trace.labelled else ""
    head = f"{trace.source}: {len(trace)} events{outages}"
    if derived is not None:
        head += (
            f" (no healthy column; labels derived: {derived.description}; "
            "--no-derive-labels for label-free scores only)"
        )
    elif not trace.labelled:
        head += " (no healthy column: label-free scores only)"
    formula = " + ".join(f"{w:g}*{k}" for k, w in weights.items() if w)
    foot = f"cost = {formula or '0'} (lower is better; set with --weight score=w)"
    if results and results[0].rank is None:
        foot += "; not ranked: no weighted score exists for this trace"
    return "\n".join([head, *lines, foot])
