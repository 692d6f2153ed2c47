"""One breaker state for a whole fleet of processes, shared through Redis.

``Cluster`` (in :mod:`recovery.cluster.core`) attaches breakers and shares their
transitions; :mod:`~recovery.cluster.codec` signs and checks the messages,
:mod:`~recovery.cluster.store` keeps the shared records in Redis,
:mod:`~recovery.cluster.fleet` applies the fleet's decisions to the local breakers and
:mod:`~recovery.cluster.summary` publishes each node's status for the fleet dashboard.
The names below are the ones ``recovery.cluster`` offered when it was one module, so
``from recovery.cluster import Cluster`` and the rest keep working.

Needs redis-py >= 5 (``pip install 'recovery[redis]'``).
"""

from __future__ import annotations

from recovery.cluster.codec import MAX_MESSAGE_BYTES as MAX_MESSAGE_BYTES
from recovery.cluster.codec import MAX_TEXT as MAX_TEXT
from recovery.cluster.codec import Event as Event
from recovery.cluster.codec import Rejected as Rejected
from recovery.cluster.codec import decode as decode
from recovery.cluster.codec import encode as encode
from recovery.cluster.connection import BACKOFF_CAP as BACKOFF_CAP
from recovery.cluster.connection import BACKOFF_FIRST as BACKOFF_FIRST
from recovery.cluster.core import QUEUE_LIMIT as QUEUE_LIMIT
from recovery.cluster.core import WARN_EVERY as WARN_EVERY
from recovery.cluster.core import Cluster, ClusterSnapshot
from recovery.cluster.core import ClusterConfig as ClusterConfig
from recovery.cluster.fleet import LEASE_RENEW as LEASE_RENEW
from recovery.cluster.fleet import Fleet as Fleet
from recovery.cluster.fleet import Tracked as Tracked
from recovery.cluster.store import Store as Store
from recovery.cluster.summary import channel as summary_channel  # noqa: F401  (its old name)
from recovery.cluster.summary import summary_thread as summary_thread
from recovery.state import CircuitBreakerState as CircuitBreakerState

__all__ = ["Cluster", "ClusterSnapshot"]
