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

The package, one concern a module: ``candidates`` (the configs tried), ``scores``
(replay and scoring, the cost), ``labels`` (derived and incident labels), ``rules``
(rules that cannot fire), ``search`` (``--search``'s space), ``ranking`` (ranking, the
front, :func:`explore`), ``caveats`` (the warnings), ``report`` (text and JSON) and
``cli`` (the command line). Every name is importable from ``recovery.tune`` itself.
"""

from recovery.state import CLOSED_CODE as CLOSED
from recovery.state import OPEN_CODE as OPEN
from recovery.tune.candidates import (
    DEFAULT_GRID,
    MAX_GRID,
    Candidate,
    load_grid,
    make_candidate,
    parse_config_args,
)
from recovery.tune.caveats import (
    MIN_EVENTS,
    MIN_OUTAGES,
    candidate_warnings,
    incident_warnings,
    rejection_warnings,
    tie_warnings,
    trace_warnings,
)
from recovery.tune.cli import HELP, add_arguments, parse_weights, run
from recovery.tune.labels import LabelRule, label_incidents
from recovery.tune.ranking import (
    DEFAULT_BUDGET,
    FRONT_SCORES,
    TuneResult,
    Tuning,
    evaluate,
    explore,
    rank,
    tune,
)
from recovery.tune.rules import redundant_rules
from recovery.tune.scores import (
    DEFAULT_WEIGHTS,
    LABEL_FREE,
    SCORE_NAMES,
    Scores,
    check_weights,
    cost,
    replay,
    score,
)
from recovery.tune.search import (
    COUNT_RULE_OFF,
    RECOVERY_AXES,
    RULE_AXES,
    StagedSearch,
    scrambled,
    search_space,
)

__all__ = [
    "CLOSED",
    "COUNT_RULE_OFF",
    "DEFAULT_BUDGET",
    "DEFAULT_GRID",
    "DEFAULT_WEIGHTS",
    "FRONT_SCORES",
    "HELP",
    "LABEL_FREE",
    "MAX_GRID",
    "MIN_EVENTS",
    "MIN_OUTAGES",
    "OPEN",
    "RECOVERY_AXES",
    "RULE_AXES",
    "SCORE_NAMES",
    "Candidate",
    "LabelRule",
    "Scores",
    "StagedSearch",
    "TuneResult",
    "Tuning",
    "add_arguments",
    "candidate_warnings",
    "check_weights",
    "cost",
    "evaluate",
    "explore",
    "incident_warnings",
    "label_incidents",
    "load_grid",
    "make_candidate",
    "parse_config_args",
    "parse_weights",
    "rank",
    "redundant_rules",
    "rejection_warnings",
    "replay",
    "run",
    "score",
    "scrambled",
    "search_space",
    "tie_warnings",
    "trace_warnings",
    "tune",
]
