"""What every Redis connection of the cluster shares: the client's settings, the
faults that mean Redis is not answering, and the loop that keeps a subscription alive
through them (the breakers' events and the managers' onsets each hold one)."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

FAULTS = (redis.RedisError, OSError)
"""What a connection to Redis raises when Redis is away, slow or gone."""
BACKOFF_FIRST, BACKOFF_CAP = 0.05, 5.0
"""Reconnection waits double from the first to the cap, each drawn from [w/2, w]."""
POLL = 0.2  # how often a subscriber looks up from the socket (stop, reconnect requests)
SOCKET_TIMEOUT = 2.0  # a Redis that stops answering is a fault, not a wait
HEALTH_CHECK = 5.0  # an idle subscriber PINGs this often: a silent partition is found too


def client(url: str) -> Any:
    """A client that fails fast (no retries of its own: the callers decide)."""
    return redis.Redis.from_url(
        url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 0), health_check_interval=HEALTH_CHECK,
    )


def subscribe_until_stopped(client: Any, stopping: threading.Event,
                            listen: Callable[[Any], None],
                            failed: Callable[[BaseException], None]) -> None:
    """Run ``listen(pubsub)`` on a fresh subscription until ``stopping`` is set.

    Whatever ends a subscription (a fault, or anything else) goes to ``failed``, then
    the loop waits a jittered back-off, doubling up to :data:`BACKOFF_CAP`, and
    subscribes again; a subscription that ended by itself resets the back-off.
    """
    backoff = BACKOFF_FIRST
    while not stopping.is_set():
        pubsub = client.pubsub()
        try:
            listen(pubsub)
            backoff = BACKOFF_FIRST
        except BaseException as exc:  # the subscriber thread must outlive anything
            failed(exc)
            if stopping.wait(random.uniform(backoff / 2, backoff)):
                break
            backoff = min(backoff * 2, BACKOFF_CAP)
        finally:
            with contextlib.suppress(*FAULTS):
                pubsub.close()


def confirm_subscription(pubsub: Any, channel: str | bytes) -> None:
    """Subscribe to ``channel`` and wait for Redis to confirm it (a ConnectionError if
    it does not within :data:`SOCKET_TIMEOUT`)."""
    pubsub.subscribe(channel)
    message = pubsub.get_message(timeout=SOCKET_TIMEOUT)
    if message is None or message["type"] != "subscribe":
        raise redis.ConnectionError(f"no subscription confirmation, got {message!r}")
