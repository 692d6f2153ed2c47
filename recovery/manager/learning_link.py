"""The link between the recovery manager and its :class:`~recovery.learning.StrategyLearner`.

The learner knows, from the audit trail, which strategy brings each plugin back and
how fast; the manager asks it three things and tells it one (docs/design.md,
"Strategies"):

- at the first ``start()``, the statistics are rebuilt from the audit logger's
  records, so what was learned survives a restart of the process;
- per attempt, the order of the strategies that can handle the failure:
  ``strategy_order="learned"`` orders them by the learner (a strategy that failed
  earlier in the same episode goes after those that have not, while any remain),
  ``"priority"`` keeps the fixed order; a configured strategy is used as configured;
- per verification by half-open trials, how long to wait: the strategy's learned
  window (``verify_timeout`` until it has enough history);
- after every audited run, its outcome and its time, live.

A mixin of :class:`recovery.RecoveryManager`, apart because learning is one concern.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from recovery.audit import AuditLogger
from recovery.failures import FailureInfo
from recovery.learning import StrategyLearner
from recovery.manager.dependencies import DEPENDENCY
from recovery.manager.incident_link import TRIAL
from recovery.manager.outbox import Outbox
from recovery.manager.supervised import Episode, Supervised
from recovery.strategies import RecoveryStrategy

if TYPE_CHECKING:
    from recovery.config import RecoveryConfig

CONFIGURED = "configured"
"""The order an audit record names when the plugin's strategy was configured."""


class LearningLink:
    """Strategy order, verification window and live statistics of the manager."""

    config: RecoveryConfig
    audit_logger: AuditLogger
    _outbox: Outbox
    _learner: StrategyLearner
    _history_read: bool

    def _read_history(self) -> None:
        """Rebuild the statistics from the audit logger's records, once per manager:
        a later ``start()`` keeps what was learned live since (a logger that keeps
        nothing readable would otherwise wipe it)."""
        if not self._history_read:
            self._history_read = True
            self._learner.rebuild_from_audit(self.audit_logger)

    def _order_mode(self, plugin: Supervised) -> str:
        """How the plugin's strategies are ordered: "configured" when it has a
        strategy of its own (or is a dependency, always probed), else the config's."""
        config = self.config
        if plugin.kind == DEPENDENCY or config.plugin_recovery_strategies.get(
                plugin.name, config.default_recovery_strategy) is not None:
            return CONFIGURED
        return config.strategy_order

    def _note_configured(self, plugin: Supervised, episode: Episode, name: str) -> None:
        self._learner.note_order(plugin.name, episode.failure.type, CONFIGURED, [name])

    def _ordered(
        self, plugin: Supervised, episode: Episode,
        candidates: list[tuple[str, RecoveryStrategy]],
    ) -> list[tuple[str, RecoveryStrategy]]:
        """``candidates`` (those that can handle the failure, in priority order) in
        the order to try them this attempt."""
        mode = self.config.strategy_order
        priorities = self.config.recovery_strategy_configs
        pairs = [(name, priorities.get(name, {}).get("priority", strategy.priority))
                 for name, strategy in candidates]
        try:
            names = self._learner.order(plugin.name, episode.failure.type, pairs, mode)
        except (TypeError, ValueError) as exc:  # a user's strategy with an odd priority
            self._outbox.log(logging.ERROR, "cannot order the strategies of plugin %r (%s); "
                             "trying them in priority order", plugin.name, exc)
            return candidates
        if mode == "learned":
            fresh = [name for name in names if name not in episode.failed_actions]
            if fresh and len(fresh) < len(names):
                names = fresh + [name for name in names if name in episode.failed_actions]
                self._learner.note_order(plugin.name, episode.failure.type, mode, names)
        by_name = dict(candidates)
        return [(name, by_name[name]) for name in names]

    def _verify_window(self, plugin: Supervised, episode: Episode, action: str) -> float:
        """How long the breaker's trials have to verify ``action``: its learned window."""
        return self._learner.verification_window(plugin.name, episode.failure.type, action)

    def _learn(
        self, plugin: Supervised, failure: FailureInfo, action: str, success: bool,
        verified: bool | None, duration: float,
    ) -> str | None:
        """Count one audited run (a failed one is not tried again first this episode);
        the order it was picked in, for its audit record. An incident's trial is no
        strategy: nothing picked it, nothing is learned from it (None)."""
        if action == TRIAL:
            return None
        self._learner.observe(plugin.name, failure.type, action, verified=verified is True,
                              duration=max(duration, 0.0))
        episode = plugin.episode
        if not success and episode is not None:
            episode.failed_actions.add(action)
        return self._order_mode(plugin)
