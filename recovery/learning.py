"""Which repair works: per (plugin, failure type, strategy) statistics, and the
strategy order and verification window they suggest.

Priorities are a guess made before any failure was seen; the audit trail records
what actually happened. :class:`StrategyLearner` keeps, for every plugin, failure
type and strategy, the attempts, the verified successes, the times to a verified
recovery and the time attempts cost. It is rebuilt from the audit records when the
manager starts (so what was learned survives a restart) and updated live with each
attempt's outcome. From those it gives:

- :meth:`StrategyLearner.order`: the strategies that can handle a failure, ordered.
  ``"priority"`` is the fixed order (higher priority first). ``"learned"`` tries
  first the strategy with the least expected time to a verified recovery: the
  mean time an attempt of it costs divided by its chance of success. Trying
  strategies in increasing cost/chance is the order that minimises the expected
  time of a try-until-one-works search; the chance is drawn from a Beta posterior
  (Thompson sampling) so a strategy that was unlucky still gets tried now and then.
  The priorities are the prior: each strategy starts with ``prior_strength``
  pseudo-attempts whose success share falls with its rank in the priority order
  (0.6 for the highest down to 0.4 for the lowest), and while a plugin has no
  history for a failure type every chance is its prior mean rather than a draw, so
  with no history the order is exactly the priority order. ``random_seed`` makes
  the draws repeat.
- :meth:`StrategyLearner.verification_window`: 1.5 times the 95th percentile of a
  strategy's observed times to verified recovery, within [1 s, ``verify_timeout``],
  once it has 5 of them; ``verify_timeout`` before that. The times run from the
  start of the attempt to the verdict, action included, so the window errs long.
- :meth:`StrategyLearner.reasons`: per plugin, the order in force per failure type
  and why (successes/attempts, median time, window per strategy), JSON-serialisable.

What counts: every strategy run is an attempt; a verified success is a run whose
verification passed (``verified is True``). A run that claimed no fix (a backoff
hold, a degrade, an action nothing could verify) is an attempt without a verified
success, so a strategy that only holds sinks below ones that repair. A record
written through the four-argument audit call carries only ``success``, the
attempt's verdict, and is taken as it says.

Times from audit records: a record carries a ``duration`` (seconds from the start of
the attempt to its verdict) when the logger stored one. When it does not, the time
is inferred from the wall-clock ``ts`` of consecutive records of the same plugin
and failure type: a record that follows a failed run (``success`` False: the
manager's episode went on; a run with ``success`` True ended its episode), at
most ``verify_timeout`` + 60 s later (60 s is the longest default pause between two
attempts), belongs to the same episode, and its attempt took the gap between the
two. That includes the pause before the attempt, so inferred times err long. The
first attempt of an episode, and records without ``ts`` (the in-memory logger's),
have no inferable time: they count as attempts and successes, not in the times.

All methods are thread-safe: one lock guards the statistics and the random draws.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from recovery import _validate as v
from recovery.audit import JsonlAuditLogger, MemoryAuditLogger, SqliteAuditLogger
from recovery.failures import FailureType, enum_member

_logger = logging.getLogger("recovery.learning")

ORDER_MODES = ("priority", "learned")
"""The values of ``strategy_order``."""
MIN_WINDOW_SAMPLES = 5
"""Times to recovery a strategy needs before its verification window is learned."""
WINDOW_FACTOR = 1.5
MIN_WINDOW = 1.0
_KEPT_TIMES = 512
"""Times to recovery kept per strategy (the newest): percentiles follow a change."""
_PRIOR_HIGH = 0.6
_PRIOR_LOW = 0.4
"""The prior success share of the highest and the lowest priority rank."""
_DEFAULT_COST = 1.0
"""An attempt's assumed cost when nothing at all has been timed (only ratios matter)."""
_LONGEST_PAUSE = 60.0
"""The longest default pause between two attempts, for inferring times from ``ts``."""

_PRIOR_STRENGTH = v.number(gt=0, unit="pseudo-attempts")
_SEED = v.optional(v.instance_of(int, expected="an int or None"))
_DURATION = v.optional(v.number(ge=0, unit="seconds"))
_PRIORITY = v.integer()


@attrs.frozen
class StrategyStats:
    """What one strategy did for one plugin and failure type.

    ``recovery_times`` are the newest times to verified recovery (seconds from the
    start of the attempt to its verdict); ``mean_attempt_time`` is the mean time any
    timed attempt cost, failed ones included (None when none was timed).
    """

    attempts: int
    successes: int
    recovery_times: tuple[float, ...]
    mean_attempt_time: float | None

    @property
    def median_time(self) -> float | None:
        return statistics.median(self.recovery_times) if self.recovery_times else None


class _Tally:
    """The running statistics behind one :class:`StrategyStats`."""

    __slots__ = ("attempts", "cost_total", "costed", "successes", "times")

    def __init__(self) -> None:
        self.attempts = 0
        self.successes = 0
        self.times: deque[float] = deque(maxlen=_KEPT_TIMES)
        self.cost_total = 0.0
        self.costed = 0

    def add(self, verified: bool, duration: float | None) -> None:
        self.attempts += 1
        if verified:
            self.successes += 1
        if duration is not None:
            self.cost_total += duration
            self.costed += 1
            if verified:
                self.times.append(duration)

    def snapshot(self) -> StrategyStats:
        mean = self.cost_total / self.costed if self.costed else None
        return StrategyStats(self.attempts, self.successes, tuple(self.times), mean)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, interpolated linearly between
    the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _kind(failure_type: Any) -> str:
    member: FailureType = enum_member(FailureType, "failure_type", failure_type)
    return member.value


class StrategyLearner:
    """Learns, per plugin and failure type, which strategy brings a plugin back fastest.

    ``verify_timeout`` is the manager's: the longest verification wait and the cap
    of a learned window. ``random_seed`` seeds the Thompson draws (None: from the
    system). ``prior_strength`` is how many pseudo-attempts the priority order is
    worth: more keeps the priority order longer against evidence.
    """

    def __init__(
        self,
        *,
        verify_timeout: float = 10.0,
        random_seed: int | None = None,
        prior_strength: float = 4.0,
    ) -> None:
        self.verify_timeout: float = v.check(
            v.interval, "verify_timeout", v.seconds(verify_timeout))
        self.prior_strength = v.check(_PRIOR_STRENGTH, "prior_strength", prior_strength)
        self._random = random.Random(v.check(_SEED, "random_seed", random_seed))
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], dict[str, _Tally]] = {}
        self._orders: dict[tuple[str, str], tuple[str, list[str]]] = {}

    # -- evidence ---------------------------------------------------------------

    def observe(
        self, plugin: str, failure_type: Any, strategy: str, *, verified: bool,
        duration: float | None = None,
    ) -> None:
        """Count one attempt of ``strategy``: ``verified`` when its verification passed;
        ``duration`` the seconds from the start of the attempt to its verdict."""
        v.check(v.name(), "plugin", plugin)
        kind = _kind(failure_type)
        v.check(v.name(), "strategy", strategy)
        v.check(v.boolean, "verified", verified)
        v.check(_DURATION, "duration", duration)
        with self._lock:
            self._tally(plugin, kind, strategy).add(verified, duration)

    def _tally(self, plugin: str, kind: str, strategy: str) -> _Tally:
        per_strategy = self._tallies.setdefault((plugin, kind), {})
        tally = per_strategy.get(strategy)
        if tally is None:
            tally = per_strategy[strategy] = _Tally()
        return tally

    def rebuild(self, records: Iterable[Any]) -> int:
        """Forget everything and replay ``records``, oldest first: audit records as
        dicts (``JsonlAuditLogger.read``, ``SqliteAuditLogger.query``) or objects with
        the same attributes (``RecordingAuditLogger.attempts``). Returns how many were
        used; a record that cannot be read is skipped and logged."""
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
            raise TypeError(f"records must be an iterable of audit records, got {records!r} "
                            f"({type(records).__name__})")
        fresh: dict[tuple[str, str], dict[str, _Tally]] = {}
        last: dict[tuple[str, str], tuple[float | None, bool]] = {}
        used = skipped = 0
        gap_limit = self.verify_timeout + _LONGEST_PAUSE
        for record in records:
            try:
                plugin, kind, strategy, ended, verified, ts, duration = _read_record(record)
            except (KeyError, AttributeError, TypeError, ValueError) as exc:
                skipped += 1
                _logger.debug("audit record %r skipped: %s", record, exc)
                continue
            key = (plugin, kind)
            if duration is None and ts is not None and key in last:
                previous_ts, previous_ended = last[key]
                if (previous_ts is not None and not previous_ended
                        and 0 <= ts - previous_ts <= gap_limit):
                    duration = ts - previous_ts
            last[key] = (ts, ended)
            fresh.setdefault(key, {}).setdefault(strategy, _Tally()).add(verified, duration)
            used += 1
        if skipped:
            _logger.warning("%d audit record(s) could not be read and were not learned from",
                            skipped)
        with self._lock:
            self._tallies = fresh
            self._orders.clear()
        return used

    def rebuild_from_audit(self, audit_logger: Any) -> int:
        """:meth:`rebuild` from what a ready audit logger has recorded: a
        :class:`JsonlAuditLogger`'s file, a :class:`SqliteAuditLogger`'s table, a
        :class:`MemoryAuditLogger`'s records, or a recording logger's ``attempts``.
        A logger that keeps nothing readable (a user's own,
        :class:`~recovery.audit.LoggingAuditLogger`) gives no history; a history
        that cannot be read is logged and leaves the learner empty, so it never
        stops a manager from starting. Returns how many records were used."""
        try:
            if isinstance(audit_logger, JsonlAuditLogger):
                records: Iterable[Any] = list(JsonlAuditLogger.read(audit_logger.path))
            elif isinstance(audit_logger, (SqliteAuditLogger, MemoryAuditLogger)):
                records = audit_logger.query()
            else:
                records = list(getattr(audit_logger, "attempts", ()))
        except Exception as exc:  # a history never stops a manager from starting
            _logger.error("could not read the audit history of %r, learning from scratch: %s",
                          audit_logger, exc)
            records = ()
        return self.rebuild(records)

    # -- views ------------------------------------------------------------------

    def stats(self, plugin: str, failure_type: Any, strategy: str) -> StrategyStats:
        """The statistics of one strategy for one plugin and failure type (zeros if none)."""
        kind = _kind(failure_type)
        with self._lock:
            tally = self._tallies.get((plugin, kind), {}).get(strategy)
            return tally.snapshot() if tally is not None else _Tally().snapshot()

    def verification_window(self, plugin: str, failure_type: Any, strategy: str) -> float:
        """How long to wait for this strategy's verification: 1.5 times the 95th percentile
        of its times to recovery, within [1 s, verify_timeout], once it has 5 of them;
        else verify_timeout. (Below 1 s only when verify_timeout itself is.)"""
        return self._window(self.stats(plugin, failure_type, strategy).recovery_times)

    def _window(self, times: Sequence[float]) -> float:
        if len(times) < MIN_WINDOW_SAMPLES:
            return self.verify_timeout
        window = max(WINDOW_FACTOR * percentile(times, 95.0), MIN_WINDOW)
        return min(window, self.verify_timeout)

    def order(
        self, plugin: str, failure_type: Any, candidates: Sequence[tuple[str, int]],
        mode: str = "learned",
    ) -> list[str]:
        """``candidates`` (``(name, priority)`` of the strategies that can handle the
        failure) in the order to try them: by priority (higher first, ties in the
        order given) for ``"priority"``; by least expected time to a verified recovery
        for ``"learned"``. The order is remembered as the one in force for
        :meth:`reasons`."""
        v.check(v.name(), "plugin", plugin)
        kind = _kind(failure_type)
        if mode not in ORDER_MODES:
            raise ValueError(f"mode must be one of {ORDER_MODES!r}, got {mode!r}")
        ranked = _by_priority(candidates)
        with self._lock:
            if mode == "learned" and ranked:
                ranked = self._learned(self._tallies.get((plugin, kind), {}), ranked)
            names = [name for name, _ in ranked]
            self._orders[(plugin, kind)] = (mode, names)
        return names

    def note_order(self, plugin: str, failure_type: Any, mode: str, names: Sequence[str]) -> None:
        """Remember ``names`` as the order in force, in ``mode``, for :meth:`reasons`:
        an order decided elsewhere (a configured strategy, ``mode`` "configured"), or
        :meth:`order`'s own as the caller finally used it."""
        kind = _kind(failure_type)
        with self._lock:
            self._orders[(plugin, kind)] = (mode, list(names))

    def _learned(
        self, tallies: Mapping[str, _Tally], ranked: list[tuple[str, int]]
    ) -> list[tuple[str, int]]:
        """Sort by sampled expected time: mean attempt cost / Thompson-drawn chance.

        Without any history for the key every chance is its prior mean, so the
        order is the priority order; once there is some, every chance is drawn,
        an untried strategy's from its prior. An untried strategy's cost is the
        mean cost of the key's timed attempts (all alike when none was timed), and
        a tried one's is its own mean pulled toward that by one pseudo-attempt. No
        cost is below ``MIN_WINDOW`` (1 s): a strategy that returns at once and
        proves nothing (a reset, an instant hold) would otherwise cost 0 and stay
        first however often it fails."""
        levels = sorted({priority for _, priority in ranked}, reverse=True)
        history = any(tally.attempts for tally in tallies.values())
        costed = [t for t in tallies.values() if t.costed]
        pooled = (sum(t.cost_total for t in costed) / sum(t.costed for t in costed)
                  if costed else _DEFAULT_COST)
        scores: dict[str, float] = {}
        for name, priority in ranked:
            step = levels.index(priority) / (len(levels) - 1) if len(levels) > 1 else 0.0
            mean = _PRIOR_HIGH - (_PRIOR_HIGH - _PRIOR_LOW) * step
            alpha, beta = self.prior_strength * mean, self.prior_strength * (1 - mean)
            tally = tallies.get(name)
            if not history:
                chance, cost = mean, pooled
            elif tally is None or tally.attempts == 0:
                chance, cost = self._random.betavariate(alpha, beta), pooled
            else:
                chance = self._random.betavariate(alpha + tally.successes,
                                                  beta + tally.attempts - tally.successes)
                cost = (tally.cost_total + pooled) / (tally.costed + 1)
            cost = max(cost, MIN_WINDOW)  # no attempt is free (see the class doc)
            scores[name] = cost / chance if chance > 0 else math.inf
        position = {name: index for index, (name, _) in enumerate(ranked)}
        return sorted(ranked, key=lambda item: (scores[item[0]], position[item[0]]))

    def reasons(self, plugin: str) -> dict[str, Any]:
        """Why the plugin's strategies are tried in the order they are, per failure
        type: the order in force and its mode, and per strategy its verified
        successes/attempts, median time to recovery and verification window.
        JSON-serialisable, for status and the dashboard."""
        v.check(v.name(), "plugin", plugin)
        return self.all_reasons().get(plugin, {})

    def all_reasons(self) -> dict[str, dict[str, Any]]:
        """:meth:`reasons` of every plugin with history or an order, by plugin, in
        one pass (a status of many plugins reads them all at once)."""
        with self._lock:
            keys = sorted(set(self._tallies) | set(self._orders))
            snapshots = {key: {strategy: tally.snapshot() for strategy, tally
                               in self._tallies.get(key, {}).items()} for key in keys}
            orders = {key: self._orders.get(key) for key in keys}
        views: dict[str, dict[str, Any]] = {}
        for plugin, kind in keys:
            mode, names = orders[plugin, kind] or (None, None)
            views.setdefault(plugin, {})[kind] = {
                "mode": mode,
                "order": names,
                "strategies": {
                    strategy: {
                        "attempts": stats.attempts,
                        "successes": stats.successes,
                        "median_time": stats.median_time,
                        "verification_window": self._window(stats.recovery_times),
                    }
                    for strategy, stats in sorted(snapshots[plugin, kind].items())
                },
            }
        return views


def _by_priority(candidates: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """The candidates checked, higher priority first, ties in the order given."""
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise TypeError(f"candidates must be a sequence of (name, priority) pairs, "
                        f"got {candidates!r} ({type(candidates).__name__})")
    seen: set[str] = set()
    checked: list[tuple[str, int]] = []
    for item in candidates:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(f"candidates must hold (name, priority) pairs, got {item!r}")
        name, priority = item
        v.check(v.name(), "strategy name", name)
        v.check(_PRIORITY, f"priority of strategy {name!r}", priority)
        if name in seen:
            raise ValueError(f"candidates name strategy {name!r} twice")
        seen.add(name)
        checked.append((name, priority))
    return sorted(checked, key=lambda item: -item[1])


_REQUIRED = object()


def _field(record: Any, name: str, default: Any = _REQUIRED) -> Any:
    """A record's field, from a dict or an attribute; a missing required one raises."""
    if isinstance(record, Mapping):
        return record[name] if default is _REQUIRED else record.get(name, default)
    return getattr(record, name) if default is _REQUIRED else getattr(record, name, default)


def _read_record(
    record: Any,
) -> tuple[str, str, str, bool, bool, float | None, float | None]:
    """``(plugin, failure type, strategy, success, verified success, ts, duration)``
    of an audit record; raises when a field is missing or of the wrong kind.
    ``success`` (the verdict) True ended the episode: recovered, held or unverified."""
    plugin = v.check(v.name(), "plugin", _field(record, "plugin"))
    kind = _kind(_field(record, "failure_type"))
    strategy = v.check(v.name(), "action", _field(record, "action"))
    success = v.check(v.boolean, "success", _field(record, "success"))
    action_succeeded = _field(record, "action_succeeded", None)
    verified = success if action_succeeded is None else _field(record, "verified", None) is True
    ts = v.check(v.optional(v.number()), "ts", _field(record, "ts", None))
    duration = v.check(_DURATION, "duration", _field(record, "duration", None))
    return plugin, kind, strategy, success, verified, ts, duration
