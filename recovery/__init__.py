"""recovery: keep thread-based programs running when the things they call fail.

Public names are re-exported here; the implementation lives in one module per
concern. ``recovery.prometheus`` (extra ``prometheus``), ``recovery.otel`` (extra
``otel``) and ``recovery.testing`` are imported on their own.

The ``recovery`` logger has a :class:`logging.NullHandler`, as a library's should:
the application decides where records go (and Python's last-resort handler does
not print warnings of a program that configured no logging).
"""

import logging
from importlib import metadata

from recovery import forecast as forecast  # recovery.forecast.Forecaster after import recovery
from recovery._clock import Clock
from recovery._impl import EXTENSION_ACTIVE
from recovery._registry import breakers
from recovery.alerts import Alert, AlertKind, AlertThresholds
from recovery.audit import (
    AuditLogger,
    JsonlAuditLogger,
    LoggingAuditLogger,
    MemoryAuditLogger,
    SqliteAuditLogger,
)
from recovery.breaker import CircuitBreaker, CircuitBreakerMetrics
from recovery.config import CircuitBreakerConfig, RecoveryConfig
from recovery.errors import CircuitOpenError, CircuitRepairingError
from recovery.failures import Classifier, FailureInfo, FailureType, Severity, classify
from recovery.health import HealthCheckConfig, HealthCheckResult, HealthMonitor
from recovery.manager import RecoveryManager
from recovery.plugins import Plugin, PluginManager, PluginRegistry
from recovery.state import CircuitBreakerState, TripReason
from recovery.status import (
    ActionCounts,
    EpisodeCounts,
    HealthCheckStatus,
    LastHealthCheck,
    PluginRecovery,
    PluginStatus,
    RecoveryStatus,
    StuckStrategy,
)
from recovery.strategies import (
    BackoffStrategy,
    CustomStrategy,
    GracefulDegradationStrategy,
    RecoveryContext,
    RecoveryStrategy,
    ReloadStrategy,
    ResetStrategy,
    RestartStrategy,
)
from recovery.trace import Trace, TraceError, TraceRecorder, load_trace

try:
    __version__: str = metadata.version("recovery")
except metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "0+unknown"

logging.getLogger("recovery").addHandler(logging.NullHandler())

__all__ = [
    "EXTENSION_ACTIVE",
    "ActionCounts",
    "Alert",
    "AlertKind",
    "AlertThresholds",
    "AuditLogger",
    "BackoffStrategy",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerMetrics",
    "CircuitBreakerState",
    "CircuitOpenError",
    "CircuitRepairingError",
    "Classifier",
    "Clock",
    "CustomStrategy",
    "EpisodeCounts",
    "FailureInfo",
    "FailureType",
    "GracefulDegradationStrategy",
    "HealthCheckConfig",
    "HealthCheckResult",
    "HealthCheckStatus",
    "HealthMonitor",
    "JsonlAuditLogger",
    "LastHealthCheck",
    "LoggingAuditLogger",
    "MemoryAuditLogger",
    "Plugin",
    "PluginManager",
    "PluginRecovery",
    "PluginRegistry",
    "PluginStatus",
    "RecoveryConfig",
    "RecoveryContext",
    "RecoveryManager",
    "RecoveryStatus",
    "RecoveryStrategy",
    "ReloadStrategy",
    "ResetStrategy",
    "RestartStrategy",
    "Severity",
    "SqliteAuditLogger",
    "StuckStrategy",
    "Trace",
    "TraceError",
    "TraceRecorder",
    "TripReason",
    "breakers",
    "classify",
    "load_trace",
]
