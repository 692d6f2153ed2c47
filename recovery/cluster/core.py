"""One breaker state for a whole fleet of processes, shared through Redis.

Each process keeps its own outcome window; the fleet shares decisions. A local
trip opens every attached process's breaker within one pub/sub hop; when the open
period ends, one trial lease (``half_open_max_calls`` permits) is given out
fleet-wide, and its result closes or reopens everyone. A closed-state call never
touches the cluster: the cluster works only at transitions, through the breaker's
listeners and public controls.

Per started cluster, a *subscriber* thread owns the pub/sub connection
(and with it the connected/disconnected state), decodes messages and applies
other nodes' events (which needs no Redis), so that a follower adopts a trip
without a thread hand-off; the *worker* does everything else, one item at a
time, from one queue: local transitions handed over by the breakers' listeners
(a put on a queue, never a wait), reconnections, and the fleet deadlines. A lock
lets one of the two at a time touch the fleet's state. Nothing the cluster does
can raise into a caller's thread. A third thread publishes this node's status summary
once a second for the fleet dashboard (see ``recovery.cluster.summary``), on a
channel of its own.

Needs redis-py >= 5 (``pip install 'recovery[redis]'``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import socket
import threading
import time
import urllib.parse
import uuid
import weakref
from collections import Counter
from typing import Any

import attrs

from recovery import _clock, _validate
from recovery.cluster.codec import MAX_MESSAGE_BYTES, MAX_TEXT, Event, Rejected, decode, encode
from recovery.cluster.fleet import LEASE_RENEW, Fleet, Tracked
from recovery.cluster.store import Store
from recovery.cluster.summary import channel as summary_channel
from recovery.cluster.summary import summary_thread
from recovery.state import CircuitBreakerState
from recovery.status import ClusterStatus, StatusSource

try:
    import redis
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "recovery.cluster needs redis-py, which the 'redis' extra installs: "
        "pip install 'recovery[redis]'"
    ) from exc

from recovery.cluster.connection import (
    FAULTS,
    POLL,
    client,
    confirm_subscription,
    subscribe_until_stopped,
)

__all__ = ["Cluster", "ClusterSnapshot"]

_logger = logging.getLogger("recovery.cluster")

QUEUE_LIMIT = 10_000
"""Local transitions waiting for the worker; beyond this they are dropped and counted."""
_MAX_WAIT = 60.0  # the worker's longest sleep: no deadline, however far, overflows a timer
WARN_EVERY = 60.0
"""Seconds between two WARNINGs that Redis cannot be reached (the first is logged at once)."""
_get_ident = threading.get_ident

_LOCAL, _REMOTE, _ATTACH, _CONNECTED, _DISCONNECTED, _STOP, _WAKE = range(7)


def _secret(value: Any) -> bytes | None:
    if isinstance(value, str):
        return value.encode()
    return value  # type: ignore[no-any-return]


def _check_url(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"url must be a str, got {value!r}")
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"url must start with redis://, rediss:// or unix://, got {value!r}")


def _check_name(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name == "node_id":
        return
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a str, got {value!r}")
    if not value or any(c.isspace() for c in value) or len(value) > 200:
        raise ValueError(
            f"{attribute.name} must be 1-200 characters without spaces, got {value!r}"
        )
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(
            f"{attribute.name} must be valid Unicode text (no lone surrogates), got {value!r}"
        ) from None


def _check_secret(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, bytes):
        raise TypeError(f"secret must be a str or bytes, got {value!r}")
    if not value:
        raise ValueError("secret must not be empty, got b''")


@attrs.frozen
class ClusterConfig:
    """A cluster's settings, validated; see :class:`Cluster`."""

    url: str = attrs.field(validator=_check_url, repr=False)  # may hold a password
    namespace: str = attrs.field(default="recovery", validator=_check_name)
    node_id: str | None = attrs.field(default=None, validator=_check_name)
    quorum: int = attrs.field(default=1, validator=_validate.bounded_int(1000))
    quorum_window: float = attrs.field(
        default=10.0, converter=_validate.seconds, validator=_validate.positive_seconds
    )
    secret: bytes | None = attrs.field(
        default=None, converter=_secret, validator=_check_secret, repr=False
    )


def _where(url: str) -> str:
    """The server of a Redis URL, for logs: never its password (user info or query)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{parts.hostname}:{port or 6379}"


class _ConnectionLog:
    """Says when Redis is lost and found: the first failure at WARNING, then at most
    one WARNING every :data:`WARN_EVERY` seconds (with how many failed meanwhile), and
    every (re)connection at INFO. A typo in a URL is never silent."""

    def __init__(self, namespace: str, url: str) -> None:
        self._namespace, self._where = namespace, _where(url)
        self._lock = threading.Lock()
        self._warned_at: float | None = None
        self._unreported = 0
        self._down = False

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._down = True
            now = time.monotonic()
            if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
                self._unreported += 1
                return
            unreported, self._unreported, self._warned_at = self._unreported, 0, now
        _logger.warning(
            "cluster %r cannot reach Redis at %s (%s: %s)%s; its breakers go on alone "
            "meanwhile, and it keeps retrying", self._namespace, self._where,
            type(exc).__name__, exc,
            f"; {unreported} more failures since the last warning" if unreported else "",
        )

    def connected(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        _logger.info("cluster %r %s Redis at %s", self._namespace,
                     "reached" if not was_down else "reconnected to", self._where)


@attrs.frozen
class ClusterSnapshot:
    """One look at a :class:`Cluster`'s node: its id and namespace, the breakers it
    shares, the managers it reports for (see ``report_for``), and whether it counts
    as a serving node (see :meth:`Cluster.serving`)."""

    node_id: str
    namespace: str
    breakers: tuple[Any, ...]
    managers: tuple[StatusSource, ...]
    serving: bool


def _default_node_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Cluster:
    """Share the decisions of attached breakers with every process on the same Redis.

    ``url``: a redis-py URL; ``rediss://`` for TLS and ``redis://user:password@host``
    for AUTH. ``namespace`` separates fleets on one Redis (keys and channel).
    ``node_id`` names this process (default: host, pid and a random suffix; a forked
    child always gets a new one). ``quorum``/``quorum_window``: the fleet opens
    when that many distinct nodes tripped within that many seconds; until then only
    a tripped process is open. ``secret`` (str or bytes) signs every message with
    HMAC-SHA256 and makes the cluster drop any message not signed with it.
    ``clock`` times this process's side of the fleet's deadlines (give it the clock
    the breakers use); the fleet's periods themselves are Redis key TTLs, in real time.
    """

    def __init__(
        self,
        url: str,
        namespace: str = "recovery",
        node_id: str | None = None,
        quorum: int = 1,
        quorum_window: float = 10.0,
        secret: str | bytes | None = None,
        clock: _clock.Clock | None = None,
    ) -> None:
        self.config = ClusterConfig(url, namespace, node_id, quorum, quorum_window, secret)
        self._clock: _clock.Clock = clock if clock is not None else _clock.REAL_CLOCK
        self._tracked: dict[str, Tracked] = {}
        # Managers whose plugins' recovery state goes into this node's fleet summary.
        self._managers: weakref.WeakSet[StatusSource] = weakref.WeakSet()
        self._running = False
        self._threads: list[threading.Thread] = []
        self._lifecycle = threading.Lock()
        self._fresh_process(node_id if node_id is not None else _default_node_id())
        _CLUSTERS.add(self)

    def _fresh_process(self, node_id: str) -> None:
        """Everything that belongs to one process: identity, connection, queue, counters."""
        self.node_id = node_id
        self._client: Any = client(self.config.url)
        self._store = Store(self._client, self.config.namespace)
        self._fleet = Fleet(
            self._store, node_id, self.config.quorum, self.config.quorum_window,
            self._clock.monotonic, self._encode, self._count_published,
            None if self.config.secret is None else self._decode, self._count_drop,
        )
        self._inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._reconnect = threading.Event()
        # The idents of the running worker and subscriber threads: their moves, which
        # apply the fleet's decisions, are not local news (see _listener).
        self._own: set[int] = set()
        self._fleet_lock = threading.Lock()  # the fleet's state: one thread at a time
        self._stats_lock = threading.Lock()
        self._connected = False
        self._events: Counter[tuple[str, str]] = Counter()
        self._drops: Counter[str] = Counter()
        self._stale = 0  # events not newer than what we knew: no harm, but worth seeing
        self._errors = 0
        self._last_error: str | None = None
        self._connection_log = _ConnectionLog(self.config.namespace, self.config.url)
        self._forked = False  # see serving()

    # -- attachment ---------------------------------------------------------------------

    def attach(self, breaker: Any) -> None:
        """Share ``breaker``'s decisions from now on (its name is its fleet-wide identity)."""
        for method in ("add_listener", "remove_listener", "force_open", "allow_trial", "reset"):
            if not callable(getattr(breaker, method, None)):
                raise TypeError(f"breaker must be a CircuitBreaker, got {breaker!r}")
        if len(breaker.name) > MAX_TEXT:
            raise ValueError(
                f"a shared breaker's name must be at most {MAX_TEXT} characters, "
                f"got {breaker.name[:40]!r}... ({len(breaker.name)})"
            )
        with self._lifecycle:
            if breaker.name in self._tracked:
                raise ValueError(f"a breaker named {breaker.name!r} is already attached")
            tracked = Tracked(breaker)
            tracked.listener = self._listener(tracked)
            self._tracked[breaker.name] = tracked
        breaker.add_listener(tracked.listener)
        if self._running:
            self._inbox.put((_ATTACH, tracked))

    def report_for(self, manager: StatusSource) -> None:
        """Put ``manager``'s plugin recovery state (failed, crash loop, last action) in
        the fleet summary; held weakly. ``RecoveryManager(cluster=...)`` calls this."""
        if not callable(getattr(manager, "status", None)):
            raise TypeError(f"manager must be a RecoveryManager, got {manager!r}")
        with self._lifecycle:
            self._managers.add(manager)

    def detach(self, breaker: Any) -> None:
        """Stop sharing ``breaker``; its current state stays as it is."""
        with self._lifecycle:
            tracked = self._tracked.get(getattr(breaker, "name", None))  # type: ignore[arg-type]
            if tracked is None or tracked.breaker is not breaker:
                raise ValueError(f"breaker {breaker!r} is not attached")
            del self._tracked[breaker.name]
        assert tracked.listener is not None
        breaker.remove_listener(tracked.listener)
        breaker.set_opened_by(None)

    def _listener(self, tracked: Tracked) -> Any:
        """The breaker's listener: the hand-off of a local transition to the worker.

        It runs on the caller's thread at every transition, the tripping call
        included, so it does the least it can: everything it needs is bound here
        (no global, module or instance lookup at call time: at a trip, rare by
        nature, each one is a cache miss), and one put on the C queue, which wakes
        the worker only if it sleeps on it. All the work happens on the worker.
        """
        put, qsize, own, get_ident = self._inbox.put, self._inbox.qsize, self._own, _get_ident
        count_drop, limit = self._count_drop, QUEUE_LIMIT

        def on_transition(
            breaker: Any, old: CircuitBreakerState, new: CircuitBreakerState
        ) -> None:
            if get_ident() in own:  # the cluster's own moves (the fleet's decisions)
                return
            if qsize() < limit:
                put((_LOCAL, tracked, old, new))
            else:
                count_drop("queue_full")

        return on_transition

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the subscriber and worker threads. Idempotent; never raises for Redis."""
        with self._lifecycle:
            if self._running:
                return
            self._running = True
            self._stopping = threading.Event()
            self._threads = [
                threading.Thread(target=self._subscribe, name="recovery-cluster-sub",
                                 daemon=True),
                threading.Thread(target=self._work, name="recovery-cluster-worker",
                                 daemon=True),
            ]
            self._threads.append(summary_thread(  # the fleet dashboard's feed
                self, self._stopping, self._publish_summary,
                lambda exc: self._failed("summary publisher", exc, None),
            ))
        if self.config.secret is None:
            _logger.warning(
                "cluster %r has no secret: anyone who can publish on this Redis can open "
                "these breakers (give Cluster(secret=...) the same secret on every node)",
                self.config.namespace,
            )
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join both threads. Attached breakers keep their state and go on alone."""
        with self._lifecycle:
            if not self._running:
                return
            self._running = False
            self._stopping.set()
            threads, self._threads = self._threads, []
        self._inbox.put((_STOP,))
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                _logger.error("cluster thread %s did not stop in %.3gs", thread.name, timeout)
        self._set_connected(False)
        self._client.close()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _after_fork(self) -> None:
        """In a forked child: a new identity, connection and queue, and new threads."""
        node_id = self.config.node_id
        self._fresh_process(
            _default_node_id() if node_id is None else f"{node_id}.{os.getpid()}"
        )
        self._lifecycle = threading.Lock()
        for tracked in self._tracked.values():
            assert tracked.listener is not None
            tracked.breaker.remove_listener(tracked.listener)
            tracked.listener = self._listener(tracked)
            tracked.breaker.add_listener(tracked.listener)
        was_running, self._running = self._running, False
        if was_running:
            self.start()

    def serving(self) -> bool:
        """Whether this process serves calls, as far as the fleet page is concerned.

        False for a preloading parent (``gunicorn --preload``: a process that started
        the cluster, then forked the workers that do the work): a process that has
        forked since the cluster was made and whose attached breakers have seen no
        call yet. Such a process publishes no summary, so the fleet page shows the
        workers only; its first call makes it a serving node again.
        """
        return self.snapshot().serving

    def snapshot(self) -> ClusterSnapshot:
        """This process's node as the fleet sees it now (what its summaries are made of)."""
        with self._lifecycle:
            breakers = tuple(t.breaker for t in self._tracked.values())
            managers = tuple(self._managers)
        serving = not self._forked or any(
            m.total_requests or m.total_rejections for m in (b.metrics() for b in breakers)
        )
        return ClusterSnapshot(self.node_id, self.config.namespace, breakers, managers,
                               serving)

    def _publish_summary(self, message: bytes) -> None:
        self._client.publish(summary_channel(self.config.namespace), message)

    # -- status ---------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """A JSON-ready view of the connection, the counters and every attached breaker."""
        with self._lifecycle:
            tracked = list(self._tracked.values())
        with self._stats_lock:
            events = dict(self._events)
            drops = dict(self._drops)
            connected, stale, errors = self._connected, self._stale, self._errors
            last_error = self._last_error
        return ClusterStatus(
            connected=connected,
            node_id=self.node_id,
            namespace=self.config.namespace,
            quorum=self.config.quorum,
            events_published=sum(n for (d, _), n in events.items() if d == "published"),
            events_received=sum(n for (d, _), n in events.items() if d == "received"),
            events_dropped=sum(drops.values()),
            events_stale=stale,
            errors=errors,
            last_error=last_error,
            events={
                direction: {kind: events.get((direction, kind), 0) for kind in ("open", "close")}
                for direction in ("published", "received")
            },
            dropped=drops,
            breakers={t.breaker.name: t.view() for t in tracked},
        )

    def _count_drop(self, reason: str) -> None:
        with self._stats_lock:
            self._drops[reason] += 1

    def _count_event(self, direction: str, kind: str) -> None:
        with self._stats_lock:
            self._events[direction, kind] += 1

    def _fault(self, exc: BaseException) -> None:
        with self._stats_lock:
            self._errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"

    def _failed(self, thread: str, exc: BaseException, on: object) -> None:
        """An exception that is not a Redis fault reached a cluster thread: counted and
        logged, and the thread goes on (it is a bug, or a listener that raised)."""
        _logger.error("cluster %s failed on %r; it goes on", thread, on, exc_info=exc)
        self._fault(exc)  # counted once logged: who sees the count finds the log

    def _set_connected(self, connected: bool) -> None:
        with self._stats_lock:
            self._connected = connected

    # -- the subscriber thread ------------------------------------------------------------

    def _subscribe(self) -> None:
        ident = _get_ident()
        self._own.add(ident)
        try:
            self._subscribe_until_stopped()
        finally:
            self._own.discard(ident)  # a later thread may get this id: its moves are news

    def _subscribe_until_stopped(self) -> None:
        subscribe_until_stopped(self._client, self._stopping, self._listen,
                                self._subscription_ended)

    def _subscription_ended(self, exc: BaseException) -> None:
        """Redis faults are counted and logged as the connection's; anything else is
        logged as a failure. Either way the worker hears that we are disconnected."""
        if isinstance(exc, FAULTS):
            self._fault(exc)
            self._connection_log.failed(exc)
        else:
            self._failed("subscriber", exc, None)
        self._inbox.put((_DISCONNECTED,))

    def _listen(self, pubsub: Any) -> None:
        """Subscribe, tell the worker (which then reads the records), then relay messages."""
        self._reconnect.clear()
        confirm_subscription(pubsub, self._store.channel)
        self._inbox.put((_CONNECTED,))
        secret, namespace = self.config.secret, self.config.namespace
        while not self._stopping.is_set():
            if self._reconnect.is_set():
                raise redis.ConnectionError("the worker lost Redis")
            message = pubsub.get_message(timeout=POLL)
            if message is None or message["type"] != "message":
                continue
            data = message["data"]
            try:
                event = decode(data, secret, namespace)
            except Rejected as rejected:
                self._count_drop(rejected.reason)
                continue
            if event.node != self.node_id:
                self._apply(event)

    def _apply(self, event: Event) -> None:
        """Apply another node's event here, on the subscriber, not on the worker: one
        thread wake-up less on the path every follower waits for. Applying an event
        needs no Redis; the lock keeps the fleet's state one thread's at a time, and
        the worker is then woken to look at the deadline the event set."""
        try:
            with self._fleet_lock:
                self._handle((_REMOTE, event))
        except BaseException as exc:  # the subscriber must outlive anything
            self._failed("subscriber", exc, event)
        self._inbox.put((_WAKE,))

    # -- the worker thread ----------------------------------------------------------------

    def _work(self) -> None:
        ident = _get_ident()
        self._own.add(ident)
        _never_preempt_callers()
        try:
            self._work_until_stopped()
        finally:
            self._own.discard(ident)

    def _work_until_stopped(self) -> None:
        while True:
            item: tuple[Any, ...] | None = None
            try:
                item = self._next_item()
                if item is not None and item[0] == _STOP:
                    return
                with self._fleet_lock:
                    if item is not None:
                        self._handle(item)
                    if self._connected:
                        self._run_deadlines()
            except FAULTS as exc:
                self._fault(exc)
                self._connection_log.failed(exc)
                self._set_connected(False)
                self._reconnect.set()
                if item is not None and item[0] == _LOCAL:  # published once Redis is back
                    Fleet.note_offline(*item[1:])
            except BaseException as exc:  # the worker must outlive anything
                self._failed("worker", exc, item)

    def _next_item(self) -> tuple[Any, ...] | None:
        """The next queued item, or None once the nearest fleet deadline is due."""
        timeout = min(self._next_deadline() - self._clock.monotonic(), _MAX_WAIT)
        if not isinstance(self._clock, _clock.MonotonicClock):
            timeout = min(timeout, 0.01)  # a test clock moves without waking us: look soon
        try:
            return self._inbox.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None

    def _next_deadline(self) -> float:
        if not self._connected:
            return math.inf
        return min((t.until for t in list(self._tracked.values())), default=math.inf)

    def _run_deadlines(self) -> None:
        now = self._clock.monotonic()
        for tracked in list(self._tracked.values()):
            if tracked.until <= now:
                try:
                    self._fleet.tick(tracked)
                except BaseException:
                    if tracked.until <= now:  # a deadline that fails is retried, not spun on
                        tracked.until = now + LEASE_RENEW
                    raise

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        tracked: Tracked | None
        if kind == _LOCAL:
            _, tracked, old, new = item
            assert tracked is not None
            if tracked.breaker.name not in self._tracked:
                return  # detached since
            if self._connected:
                self._fleet.local(tracked, old, new)
            else:
                self._fleet.note_offline(tracked, old, new)
        elif kind == _REMOTE:
            event: Event = item[1]
            tracked = self._tracked.get(event.name)
            if tracked is None:
                return  # a breaker other processes share and this one does not
            if self._fleet.remote(tracked, event):
                self._count_event("received", event.kind)
            else:
                with self._stats_lock:
                    self._stale += 1
        elif kind == _ATTACH:
            tracked = item[1]
            if self._connected and tracked is self._tracked.get(item[1].breaker.name):
                self._fleet.sync(item[1])
        elif kind == _CONNECTED:
            self._resync()
            self._connection_log.connected()
            self._set_connected(True)
        elif kind == _DISCONNECTED:
            self._set_connected(False)

    def _resync(self) -> None:
        """On (re)connection: publish resets made offline, follow the records, then
        publish trips made offline that the fleet does not know of yet."""
        tracked = list(self._tracked.values())
        for step in (self._publish_reset, self._fleet.sync, self._publish_trip):
            for t in tracked:
                try:
                    step(t)
                except FAULTS:
                    raise  # Redis is gone again: the next connection starts over
                except BaseException as exc:  # one breaker's trouble is not the others'
                    self._failed("worker", exc, t)

    def _publish_reset(self, t: Tracked) -> None:
        if t.pending == "reset":  # forgotten only once Redis took it
            if t.breaker.state is CircuitBreakerState.CLOSED:
                self._fleet.reset(t)
            t.pending = None

    def _publish_trip(self, t: Tracked) -> None:
        if t.pending == "trip":
            if t.fleet == "closed" and t.breaker.state is not CircuitBreakerState.CLOSED:
                self._fleet.local(t, CircuitBreakerState.CLOSED, CircuitBreakerState.OPEN)
            t.pending = None

    def _decode(self, message: bytes) -> Event:
        return decode(message, self.config.secret, self.config.namespace)

    def _encode(self, event: Event) -> bytes | None:
        message = encode(event, self.config.secret, self.config.namespace)
        if len(message) > MAX_MESSAGE_BYTES:  # a breaker name no receiver would accept
            self._count_drop("oversized")
            return None
        return message

    def _count_published(self, kind: str) -> None:
        self._count_event("published", kind)


def _never_preempt_callers() -> None:
    """Make the calling thread (the worker) ``SCHED_BATCH`` where the OS has it.

    A tripping call hands its transition over with a put on the worker's queue, which
    wakes the worker. On a busy machine the kernel would often run the woken worker at
    once on the caller's core, and the caller paid two context switches (10-20 us)
    for a hand-off that costs 1-3 us. A batch thread has the same share of the CPU
    but never preempts a running one on wake-up: it runs on an idle core at once, or
    when the caller's time slice ends. Linux only; elsewhere nothing changes.
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return
    with contextlib.suppress(OSError):
        os.sched_setscheduler(threading.get_native_id(), policy, os.sched_param(0))


_CLUSTERS: weakref.WeakSet[Cluster] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cluster in list(_CLUSTERS):
        try:
            cluster._after_fork()
        except Exception:
            _logger.exception("cluster %s could not be renewed after fork", cluster.node_id)


def _after_fork_in_parent() -> None:
    for cluster in list(_CLUSTERS):
        cluster._forked = True


os.register_at_fork(after_in_child=_after_fork_in_child, after_in_parent=_after_fork_in_parent)
