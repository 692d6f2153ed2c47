"""What the workers' calls got, per plugin: the demo's one call counter, and its FAIL%."""

from __future__ import annotations

import collections
import threading

import attrs

OUTCOMES = ("ok", "failed", "circuit_open", "fallback_served")
"""What a call got; every call has exactly one, so CALLS is their sum.

``ok``: the plugin answered in time; ``failed``: it raised, or answered after the
caller's deadline (the breaker counted a failure); ``circuit_open``: the breaker
refused the call and, with no fallback to serve it, the caller got CircuitOpenError;
``fallback_served``: the plugin's fallback answered (the breaker refused the call, or
the plugin was degraded). The breaker's own count of the calls it refused, served
or not, is its ``total_rejections``: "rejected" on every surface."""
RECENT_SPAN = 1.0
"""Seconds of calls behind the live table's FAIL%."""


@attrs.define
class PluginCalls:
    """One plugin's calls by what the caller got (``OUTCOMES``), and its strategy runs."""

    ok: int = 0
    failed: int = 0
    circuit_open: int = 0
    fallback_served: int = 0
    actions: collections.Counter[tuple[str, bool]] = attrs.field(factory=collections.Counter)

    @property
    def errors(self) -> int:
        """The calls whose caller got an exception: failed, or refused with no fallback."""
        return self.failed + self.circuit_open

    @property
    def calls(self) -> int:
        """Every call, once: the sum of the outcomes, so the columns cannot disagree."""
        return self.ok + self.errors + self.fallback_served


class CallTally:
    """Counts, per plugin, what the workers' calls got and which strategies ran.

    The only call counter of the demo: the live table and the summary both read it.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._plugins = {name: PluginCalls() for name in names}

    def call(self, name: str, outcome: str) -> None:
        with self._lock:
            tally = self._plugins[name]
            setattr(tally, outcome, getattr(tally, outcome) + 1)

    def action(self, name: str, action: str, success: bool) -> None:
        with self._lock:
            self._plugins[name].actions[action, success] += 1

    def snapshot(self) -> dict[str, PluginCalls]:
        with self._lock:
            return {
                name: attrs.evolve(tally, actions=collections.Counter(tally.actions))
                for name, tally in self._plugins.items()
            }


class RecentFailures:
    """The live table's FAIL%: failed / (ok + failed) over the last ``span`` seconds.

    OK and FAILED are the calls that reached the plugin; the share of them that
    failed is the plugin's health now. None when no call reached it (all refused by
    the breaker, or served by the fallback). Fed the cumulative counts once a frame.
    """

    def __init__(self, span: float = RECENT_SPAN) -> None:
        self._span = span
        self._frames: collections.deque[tuple[float, dict[str, tuple[int, int]]]] = (
            collections.deque()
        )

    def update(self, now: float, tally: dict[str, PluginCalls]) -> dict[str, float | None]:
        counts = {name: (counts.ok, counts.failed) for name, counts in tally.items()}
        self._frames.append((now, counts))
        # Keep the newest frame at least span old as the base (or the oldest there is).
        while len(self._frames) > 1 and now - self._frames[1][0] >= self._span:
            self._frames.popleft()
        base = self._frames[0][1]
        rates: dict[str, float | None] = {}
        for name, (ok, failed) in counts.items():
            ok_then, failed_then = base.get(name, (0, 0))
            reached = ok - ok_then + failed - failed_then
            rates[name] = (failed - failed_then) / reached if reached else None
        return rates
