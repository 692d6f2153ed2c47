"""Incident onsets shared across the fleet: one outage, one incident on every node.

A :class:`~recovery.manager.RecoveryManager` with a cluster tells the namespace each
onset of its own plugins and dependencies (a trip or an early warning) and each
verified recovery, with the name's declared ``depends_on`` and ``tags``, so that
the managers of other services and other hosts group them into the same incident
(:mod:`recovery.incidents_remote` feeds them to the manager's incidents).

Messages go on the namespace's ``onsets`` channel: a channel of its own (like the
summaries), so that the fleet's breaker decisions on the events channel never wait
behind them, and so that a node of an older release, which knows only the events
channel, never sees (and never counts as malformed) a message it cannot read. They
are framed and signed like every cluster message (:mod:`recovery.cluster.codec`:
version tag, HMAC-SHA256 over a body that names the namespace), are at most
:data:`MAX_ONSET_BYTES`, and every field is checked before anything acts on it: a
malformed, oversized, foreign, unsigned or badly signed message is dropped and
counted, never acted on.

:class:`OnsetChannel` runs two threads, both joined by ``stop()``: a *publisher*
draining a bounded queue (a caller's trip never waits on Redis; overflow is
counted) and a *subscriber* handing each verified message from another sender to
the receiver. Nothing is stored in Redis, and nothing is resent: an onset is a
moment, and one published while Redis is away is dropped and counted (the
receivers' holds time out as they would anyway).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from recovery.cluster.codec import (
    MAX_TEXT,
    Rejected,
    check_namespace,
    frame,
    open_frame,
)
from recovery.cluster.connection import (
    FAULTS,
    POLL,
    client,
    confirm_subscription,
    subscribe_until_stopped,
)

_logger = logging.getLogger("recovery.cluster")

MAX_ONSET_BYTES = 16384
"""The largest onset message on the wire (frame and signature included), sent or accepted."""
MAX_NEEDS = 100
"""The most ``depends_on`` names one message may carry."""
MAX_TAGS = 50
"""The most tags one message may carry."""
QUEUE_LIMIT = 1000
"""Onsets waiting for the publisher; beyond this they are dropped and counted."""
KINDS = ("trip", "early_warning", "recovered")
"""What a message says of its name: an onset of either kind, or a verified recovery."""


def channel(namespace: str) -> str:
    """The pub/sub channel of a namespace's onsets (apart from its events and summaries)."""
    return f"{namespace}:onsets"


@attrs.frozen
class Onset:
    """One message: ``name`` (of ``node``, sent by ``sender``) had an onset of ``kind``
    ("trip", "early_warning") at wall-clock time ``at`` (the time its incident is
    named after), or was verified recovered (``kind`` "recovered")."""

    kind: str
    name: str
    at: float
    node: str
    sender: str
    depends_on: tuple[str, ...] = ()
    tags: Mapping[str, str] = attrs.field(factory=dict)


def encode(onset: Onset, secret: bytes | None, namespace: str) -> bytes:
    """Frame ``onset`` for ``namespace`` (inside the signed body), signed with ``secret``."""
    body = json.dumps({
        "kind": onset.kind, "name": onset.name, "at": onset.at, "node": onset.node,
        "sender": onset.sender, "depends_on": list(onset.depends_on),
        "tags": dict(onset.tags), "ns": namespace,
    }, separators=(",", ":")).encode()
    return frame(body, secret)


def decode(message: bytes, secret: bytes | None, namespace: str) -> Onset:
    """Parse and verify one message of ``namespace``; raises :class:`Rejected`."""
    data = open_frame(message, secret, MAX_ONSET_BYTES)
    if data.get("ns") is None:
        raise Rejected("foreign_namespace", "ns=None")  # onsets always name theirs
    check_namespace(data, secret, namespace)
    kind = data.get("kind")
    if kind not in KINDS:
        raise Rejected("malformed", f"kind={kind!r:.80}")
    at: Any = data.get("at")
    if type(at) not in (int, float) or not math.isfinite(at) or at < 0:
        raise Rejected("malformed", f"at={at!r:.80}")
    needs = data.get("depends_on")
    if not isinstance(needs, list) or len(needs) > MAX_NEEDS:
        raise Rejected("malformed", f"depends_on={needs!r:.80}")
    tags = data.get("tags")
    if not isinstance(tags, dict) or len(tags) > MAX_TAGS:
        raise Rejected("malformed", f"tags={tags!r:.80}")
    return Onset(
        kind=kind, name=_text(data.get("name"), "name"), at=float(at),
        node=_text(data.get("node"), "node"), sender=_text(data.get("sender"), "sender"),
        depends_on=tuple(_text(need, "depends_on") for need in needs),
        tags={_text(key, "tags"): _text(value, "tags") for key, value in tags.items()},
    )


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise Rejected("malformed", f"{field}={value!r:.80}")
    return value


class OnsetChannel:
    """Publish this manager's onsets and receive the fleet's (see the module doc).

    ``receive(onset)`` is called on the subscriber thread for each verified message
    of another sender, and ``tick()`` between messages (at least every 0.2 s); an
    exception from either is logged and counted, and the thread goes on.
    ``sender`` marks this channel's own messages, ignored when they come back.
    """

    def __init__(self, url: str, namespace: str, secret: bytes | None, sender: str,
                 receive: Callable[[Onset], None], tick: Callable[[], None]) -> None:
        self._url, self._namespace, self._secret = url, namespace, secret
        self.sender = sender
        self._receive, self._tick = receive, tick
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_LIMIT)
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client: Any = None
        self._stats_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._connected = False
        self._pid = os.getpid()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._pid != os.getpid():  # a forked child: its parent's threads are not here
            self._threads, self._stats_lock = [], threading.Lock()
            self.sender = f"{self.sender.rsplit('/', 1)[0]}.{os.getpid()}/{uuid.uuid4().hex[:8]}"
        if self._threads:
            return
        self._pid = os.getpid()
        self._client = client(self._url)
        self._stopping = threading.Event()
        self._queue = queue.Queue(QUEUE_LIMIT)  # nothing from before a stop() is sent
        self._threads = [
            threading.Thread(target=self._publish, name="recovery-onsets-publisher",
                             daemon=True),
            threading.Thread(target=self._subscribe, name="recovery-onsets-subscriber",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join both threads (within about ``timeout`` each)."""
        threads, self._threads = self._threads, []
        if not threads:
            return
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                _logger.error("onset thread %s did not stop in %.3gs", thread.name, timeout)
        with self._stats_lock:
            self._connected = False
        self._client.close()

    # -- publishing -------------------------------------------------------------------------

    def send(self, onset: Onset) -> None:
        """Queue ``onset`` for the fleet; never waits (a full queue drops it, counted)."""
        message = encode(onset, self._secret, self._namespace)
        if len(message) > MAX_ONSET_BYTES:  # names no receiver would accept
            self.count_drop("oversized")
            return
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self.count_drop("queue_full")

    def _publish(self) -> None:
        while True:
            message = self._queue.get()
            if message is None or self._stopping.is_set():
                return
            try:
                self._client.publish(channel(self._namespace), message)
                self._count("published")
            except FAULTS:
                self.count_drop("unsent")  # a moment that has passed: not resent
            except BaseException as exc:  # the thread must outlive anything
                self._failed(exc)

    # -- receiving --------------------------------------------------------------------------

    def _subscribe(self) -> None:
        subscribe_until_stopped(self._client, self._stopping, self._listen,
                                self._subscription_ended)

    def _subscription_ended(self, exc: BaseException) -> None:
        if not isinstance(exc, FAULTS):
            self._failed(exc)
        with self._stats_lock:
            self._connected = False

    def _listen(self, pubsub: Any) -> None:
        confirm_subscription(pubsub, channel(self._namespace))
        with self._stats_lock:
            self._connected = True
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=POLL)
            try:
                if message is not None and message["type"] == "message":
                    self._take(message["data"])
                self._tick()
            except BaseException as exc:  # a bug downstream must not stop the channel
                self._failed(exc)

    def _take(self, data: bytes) -> None:
        try:
            onset = decode(data, self._secret, self._namespace)
        except Rejected as rejected:
            self.count_drop(rejected.reason)
            return
        if onset.sender == self.sender:
            return  # our own, come back
        self._count("received")
        self._receive(onset)

    # -- counters ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Connected, messages published and received, drops by reason, errors."""
        with self._stats_lock:
            return {"connected": self._connected, "published": self._counts["published"],
                    "received": self._counts["received"], "errors": self._counts["errors"],
                    "dropped": dict(self._dropped)}

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self._counts[what] += 1

    def count_drop(self, reason: str) -> None:
        with self._stats_lock:
            self._dropped[reason] += 1

    def _failed(self, exc: BaseException) -> None:
        _logger.error("onset channel of %r failed; it goes on", self._namespace,
                      exc_info=exc)
        self._count("errors")
