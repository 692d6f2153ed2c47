"""recovery: keep thread-based programs running when the things they call fail.

Public names are re-exported here; the implementation lives in one module per concern.
"""

from recovery._impl import EXTENSION_ACTIVE
from recovery.breaker import CircuitBreaker, CircuitBreakerMetrics
from recovery.config import CircuitBreakerConfig
from recovery.errors import CircuitOpenError, CircuitRepairingError
from recovery.state import CircuitBreakerState

__all__ = [
    "EXTENSION_ACTIVE",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitBreakerMetrics",
    "CircuitBreakerState",
    "CircuitOpenError",
    "CircuitRepairingError",
]
