"""Fan-out of Server-Sent Events to many clients, none of which can hold up the rest.

Each ``/events`` connection owns a :class:`Subscriber`: a bounded queue that the
publisher fills without ever blocking and the connection's own thread drains to
its socket. A client that falls more than ``limit`` messages behind (a stalled
or vanished browser) is cut off instead of slowing anyone down; its browser
reconnects and starts again from a fresh snapshot, so it never shows a timeline
with holes in it. Cut-offs are counted.
"""

from __future__ import annotations

import collections
import threading


class Subscriber:
    """The queue of one ``/events`` connection."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._messages: collections.deque[bytes] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False

    def put(self, message: bytes) -> bool:
        """Queue ``message`` without blocking; False (and closed) when the client lags."""
        with self._ready:
            if self._closed:
                return False
            if len(self._messages) >= self._limit:
                self._closed = True
                self._messages.clear()
                self._ready.notify_all()
                return False
            self._messages.append(message)
            self._ready.notify_all()
            return True

    def get(self, timeout: float) -> bytes | None:
        """The next message; b"" when none came within ``timeout``; None once closed."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._messages or self._closed, timeout):
                return b""
            if self._closed:
                return None
            return self._messages.popleft()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._messages.clear()
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        with self._ready:
            return self._closed


class Hub:
    """The set of subscribers; ``publish`` hands a message to each of them, never blocking."""

    def __init__(self, *, limit: int = 64, max_clients: int = 64) -> None:
        self._limit = limit
        self._max_clients = max_clients
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.dropped = 0  # clients cut off for lagging
        self.refused = 0  # connections turned away at max_clients

    def subscribe(self, first: bytes) -> Subscriber | None:
        """A new subscriber whose first message is ``first``; None when full or closed.

        Call it under the same lock as :meth:`publish` so that nothing published
        falls between ``first`` and the subscription.
        """
        subscriber = Subscriber(self._limit)
        subscriber.put(first)
        with self._lock:
            if self._closed or len(self._subscribers) >= self._max_clients:
                self.refused += 1
                return None
            self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.close()
        with self._lock:
            self._subscribers.discard(subscriber)

    def publish(self, message: bytes) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            if not subscriber.put(message):
                with self._lock:
                    if subscriber in self._subscribers:
                        self._subscribers.discard(subscriber)
                        self.dropped += 1

    @property
    def clients(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def close(self) -> None:
        """Close every subscriber (their connections end) and refuse new ones."""
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for subscriber in subscribers:
            subscriber.close()
