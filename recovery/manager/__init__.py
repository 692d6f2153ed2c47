"""The recovery manager: turns a failing plugin into a recovered one without a person.

:class:`RecoveryManager` (in :mod:`recovery.manager.core`) is assembled from modules
of one concern each: the episode runner (:mod:`~recovery.manager.episodes`), which is
given what an episode needs and returns how it ended; and, mixed into the manager,
the worker threads that run episodes and settle their outcomes
(:mod:`~recovery.manager.workers`), the crash loop and its timer
(:mod:`~recovery.manager.crash_loop`), the link to the health monitor
(:mod:`~recovery.manager.health_link`), dependencies
(:mod:`~recovery.manager.dependencies`, probing URLs with
:mod:`~recovery.manager.http_check`), the status view
(:mod:`~recovery.manager.status_view`), early warning
(:mod:`~recovery.manager.early_warning`), incidents
(:mod:`~recovery.manager.incident_link`), the learned strategy order
(:mod:`~recovery.manager.learning_link`), the user-callback outbox
(:mod:`~recovery.manager.outbox`), renewal after a fork
(:mod:`~recovery.manager.forked`); the bookkeeping records are in
:mod:`~recovery.manager.supervised`. The package is the privacy boundary: only the
names below are public.

The names below are the ones ``recovery.manager`` offered when it was one module, so
``from recovery.manager import RecoveryManager`` and the rest keep working.
"""

from __future__ import annotations

from recovery.alerts import AlertDispatcher as AlertDispatcher
from recovery.alerts import AlertHandler as AlertHandler
from recovery.alerts import AlertKind as AlertKind
from recovery.audit import AuditLogger as AuditLogger
from recovery.audit import MemoryAuditLogger as MemoryAuditLogger
from recovery.breaker import CircuitBreaker as CircuitBreaker
from recovery.config import CircuitBreakerConfig as CircuitBreakerConfig
from recovery.config import RecoveryConfig as RecoveryConfig
from recovery.failures import Classifier as Classifier
from recovery.failures import FailureInfo as FailureInfo
from recovery.failures import FailureType as FailureType
from recovery.failures import classify as classify
from recovery.failures import exception_message as exception_message
from recovery.forecast.forecaster import Forecaster as Forecaster
from recovery.health import HealthCheckConfig as HealthCheckConfig
from recovery.health import HealthMonitor as HealthMonitor
from recovery.learning import StrategyLearner as StrategyLearner
from recovery.manager.core import RecoveryManager as RecoveryManager
from recovery.manager.supervised import EPISODE_OUTCOMES as EPISODE_OUTCOMES
from recovery.plugins import PluginManager as PluginManager
from recovery.plugins import PluginRegistry as PluginRegistry
from recovery.state import CircuitBreakerState as CircuitBreakerState
from recovery.state import TripReason as TripReason
from recovery.strategies import BUILTIN_STRATEGIES as BUILTIN_STRATEGIES
from recovery.strategies import RecoveryStrategy as RecoveryStrategy
from recovery.strategies import builtin_strategy as builtin_strategy

__all__ = ["EPISODE_OUTCOMES", "RecoveryConfig", "RecoveryManager"]
