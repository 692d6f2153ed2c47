"""Helpers the cluster's tests share."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the cluster needs redis-py
    from recovery.cluster import Cluster


def cluster_threads(cluster: Cluster) -> list[threading.Thread]:
    """The threads ``cluster`` started (worker, subscriber, summary publisher).

    The tests check that a fault leaves each of them alive and that ``stop()`` joins
    them. No public API lists a library's own threads, and ``threading.enumerate()``
    would mix in the threads of other clusters and of the test itself.
    """
    return list(cluster._threads)  # private: see the docstring
