"""``python -m recovery tune TRACE``: the command line, from arguments to the printed report.

:func:`run` loads the inputs (candidates, weights, the trace and its labels) once, then
hands them to :func:`recommend`, which also scores the early-warning forecaster on the
same trace when ``--forecast`` asks (:func:`forecast_scores`).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Sequence

import attrs

from recovery.forecast import ForecastScore, score_forecast
from recovery.trace import Trace, TraceError, load_incidents, load_trace, quoted
from recovery.tune.candidates import (
    DEFAULT_GRID,
    MAX_GRID,
    Candidate,
    load_grid,
    make_candidate,
    parse_config_args,
)
from recovery.tune.caveats import (
    candidate_warnings,
    incident_warnings,
    rejection_warnings,
    tie_warnings,
    trace_warnings,
)
from recovery.tune.labels import LabelRule, label_incidents
from recovery.tune.ranking import DEFAULT_BUDGET, Tuning, explore
from recovery.tune.report import ReportContext, json_report, text_report
from recovery.tune.scores import DEFAULT_WEIGHTS, check_weights
from recovery.tune.search import StagedSearch, search_space

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
    parser.add_argument(
        "--forecast", action="store_true",
        help="also score the early-warning forecaster: lead time before the recommended "
        "(and the default) breaker opens, per outage, and false warnings per hour",
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
            raise ValueError(f"--weight expects score=number, got {quoted(item)}") from None
        if not equals:
            raise ValueError(f"--weight expects score=number, got {quoted(item)}")
    check_weights(weights)  # names the score of a negative or infinite weight
    return weights


@attrs.frozen
class Inputs:
    """What a mode of ``tune`` works on, loaded and checked once by :func:`load_inputs`.

    ``trace`` carries the labels the arguments chose; ``labels`` says where they came
    from: ``"incidents"``, ``"column"`` (the trace's own), ``"derived"`` (by ``derived``)
    or None. ``warnings`` are those of the inputs themselves.
    """

    trace: Trace
    candidates: list[Candidate]
    weights: dict[str, float]
    labels: str | None
    derived: LabelRule | None
    warnings: list[str]


def run(args: argparse.Namespace) -> int:
    try:
        inputs = load_inputs(args)
    except (OSError, TraceError, TypeError, ValueError) as error:
        print(f"tune: {error}", file=sys.stderr)
        return 2
    return recommend(args, inputs)


def load_inputs(args: argparse.Namespace) -> Inputs:
    """The candidates, weights, trace and labels the arguments ask for; raises the
    ``OSError``/``TraceError``/``TypeError``/``ValueError`` that :func:`run` prints."""
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
    warnings: list[str] = []
    derived = None
    labels: str | None = None
    if incidents is not None:
        trace, unused = label_incidents(trace, incidents)
        labels = "incidents"
        warnings += incident_warnings(trace, unused)
    elif trace.labelled:
        labels = "column"
    elif not args.no_derive_labels:
        derived = rule
        trace = rule.label(trace)
        labels = "derived"
    for flag, wanted in (("--search", args.search), ("--forecast", args.forecast)):
        if wanted and labels is None:
            raise ValueError(f"{flag} needs labels: drop --no-derive-labels or give --incidents")
    warnings += rejection_warnings(trace) + trace_warnings(trace, labels)
    return Inputs(trace, candidates, weights, labels, derived, warnings)


def recommend(args: argparse.Namespace, inputs: Inputs) -> int:
    """Replay the candidates (and ``--search``), print the recommendation and the table."""
    trace = inputs.trace
    found = explore(
        trace, inputs.candidates, inputs.weights,
        search=StagedSearch(*search_space(trace)) if args.search else None,
        budget=args.budget,
    )
    # The built-in set is known good: only the user's candidates are checked for rules
    # that cannot fire.
    given = inputs.candidates if args.config or args.grid else []
    warnings = inputs.warnings + candidate_warnings(
        trace, [r for r in found.results if r.candidate in given or r is found.recommended]
    ) + tie_warnings(found.results)
    context = ReportContext(
        trace, inputs.weights, inputs.labels, inputs.derived, args.incidents, warnings
    )
    forecasts = forecast_scores(trace, found) if args.forecast else {}
    if args.json:
        report = json_report(context, found)
        if forecasts:
            report["forecast"] = {name: score.to_dict() for name, score in forecasts.items()}
        output = json.dumps(report, indent=2)
    else:
        width = None if args.wide else shutil.get_terminal_size((100, 24)).columns
        output = text_report(context, found, width, args.top)
        for name, score in forecasts.items():
            output += f"\n\nEarly warning before the {name} breaker opens:\n{score.text()}"
    try:
        print(output)
    except BrokenPipeError:  # piped into head: the reader has what it wanted
        sys.stdout = None  # nothing left to flush at exit
    return 0


def forecast_scores(trace: Trace, found: Tuning) -> dict[str, ForecastScore]:
    """The forecaster replayed on ``trace`` in front of the recommended config and the
    defaults (once when they are the same config), keyed ``"recommended"``/``"default"``."""
    scores = {"default": score_forecast(trace, found.defaults.candidate.config)}
    recommended = found.recommended
    if recommended is not None and recommended is not found.defaults:
        scores = {"recommended": score_forecast(trace, recommended.candidate.config), **scores}
    return scores
