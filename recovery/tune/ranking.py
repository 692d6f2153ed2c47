"""Scoring candidates on a trace and ranking them by cost; the search's trade-off front and
the recommendation (:func:`explore`)."""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from recovery.trace import Trace
from recovery.tune.candidates import Candidate, make_candidate
from recovery.tune.scores import DEFAULT_WEIGHTS, Scores, check_weights, cost, replay, score
from recovery.tune.search import StagedSearch

FRONT_SCORES = ("rejected_healthy", "passed_unhealthy", "detection_delay_mean")
"""The trade-off ``--search`` keeps a front of: good calls lost, load sent to a dead
dependency, time to notice."""

DEFAULT_BUDGET = 5.0

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


def front_key(scores: Scores) -> tuple[float, float, float]:
    """The front's three scores, smaller is better; a missed outage's delay is infinite."""
    delay = scores.detection_delay_mean
    if delay is None:
        delay = math.inf if scores.outages else 0.0
    return (float(scores.rejected_healthy or 0), float(scores.passed_unhealthy or 0), delay)


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
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
    given_rows = [defaults, *(each for each in given if each.changes)]
    rows: list[tuple[Candidate, Scores, float | None, float]] = []
    front: list[tuple[tuple[float, ...], tuple[Candidate, Scores, float | None, float]]] = []
    best: tuple[Candidate, Scores, float | None, float] | None = None
    explored = 0
    complete = True

    def consider(entry: tuple[Candidate, Scores, float | None, float]) -> None:
        nonlocal best
        if search is not None:
            search.observe(entry[0], entry[2])
        key = front_key(entry[1])
        simpler = len(entry[0].changes)
        # Of candidates that score the same, the front keeps the one that changes fewest fields.
        if not any(
            dominates(other, key) and (other != key or len(kept[0].changes) <= simpler)
            for other, kept in front
        ):
            front[:] = [(other, kept) for other, kept in front if not dominates(key, other)]
            front.append((key, entry))
        if entry[2] is not None and (
            best is None
            or (entry[2], len(entry[0].changes)) < (best[2] or 0.0, len(best[0].changes))
        ):
            best = entry

    for each in given_rows:
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
