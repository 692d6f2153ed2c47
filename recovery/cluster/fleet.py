"""How one process follows the fleet's decisions about its breakers.

:class:`Fleet` runs on the cluster's worker thread only, so it needs no lock of
its own: it reads the local transitions the breakers' listeners queued, the
events the subscriber decoded, and the clock, and it answers with Redis scripts,
published events, and the breakers' own public controls (``force_open``,
``allow_trial``, ``reset``).

Holding a breaker open: while the fleet is open, or another node runs the trial,
each process holds its breaker with ``force_open(left + HOLD_MARGIN)``. The local
period thus ends ``HOLD_MARGIN`` after the fleet's, which gives the worker that
long to take the trial lease (``allow_trial()`` on the winner) or to extend the
hold (everyone else) before the window would admit a trial on its own. Callers
see ``retry_after`` counted to the end of the hold. If Redis is gone, the hold
simply runs out and the breaker goes on alone, as it would without a cluster.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import attrs

from recovery.cluster.codec import Event, Rejected
from recovery.cluster.store import Record, Store
from recovery.state import CircuitBreakerState
from recovery.status import ClusterBreaker

CLOSED = CircuitBreakerState.CLOSED
OPEN = CircuitBreakerState.OPEN
HALF_OPEN = CircuitBreakerState.HALF_OPEN
REPAIRING = CircuitBreakerState.REPAIRING

HOLD_MARGIN = 1.0
"""Seconds a held breaker stays open past the fleet's deadline (see the module doc)."""
LEASE_TTL = 5.0
"""Seconds a trial lease lives unless renewed: how long a dead holder blocks the fleet."""
LEASE_RENEW = 1.0
"""How often the holder renews its lease while its breaker is half-open."""
MAX_PERIOD = 1e9
"""The longest finite open period the cluster publishes or stores (about 31 years): any
longer one is cut to this, so no period reaches an overflowing timer or Redis TTL."""
LEASE_UNUSED = LEASE_TTL
"""Seconds a holder keeps the lease while no call comes to its breaker. A process that
serves no calls (gunicorn's preloading parent, an idle worker) would otherwise renew
it for ever, and the fleet would wait for a trial that never runs. It then lets the
lease run out and takes it again only once a call comes (a rejected one counts)."""

_logger = logging.getLogger("recovery.cluster")


@attrs.define(eq=False)
class Tracked:
    """What this process knows of the fleet's view of one attached breaker.

    ``fleet`` is ``closed``, ``open`` (the fleet's open period runs until
    ``until``) or ``trial`` (a lease is out; ``until`` is when to look again).
    ``lease_epoch`` is set while this process holds the trial lease. ``held``
    says the local OPEN is the fleet's hold rather than the breaker's own trip.
    ``pending`` remembers a trip or reset that happened while Redis was away.
    """

    breaker: Any
    listener: Callable[..., object] | None = None
    fleet: str = "closed"
    epoch: int = 0
    level: int = 0
    until: float = math.inf
    lease_epoch: int | None = None
    opened_by: str | None = None
    held: bool = False
    pending: str | None = None
    calls: int = 0  # the breaker's calls (finished or rejected) at the last look
    calls_seen: float = 0.0  # when that count last moved, or the lease was taken
    idle: bool = False  # gave the lease up for want of calls; none came since

    def view(self) -> ClusterBreaker:
        return ClusterBreaker(
            state=self.breaker.state.value, fleet=self.fleet, epoch=self.epoch,
            opened_by=self.opened_by, trial_lease=self.lease_epoch is not None,
        )


class Fleet:
    """The per-breaker state machine of the worker thread (see the module doc)."""

    def __init__(
        self, store: Store, node: str, quorum: int, quorum_window: float,
        now: Callable[[], float], encode: Callable[[Event], bytes | None],
        published: Callable[[str], None],
        verify: Callable[[bytes], Event] | None = None,
        dropped: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.store = store
        self.node = node
        self._quorum = quorum
        self._quorum_window = quorum_window
        self._now = now
        self._encode = encode  # None: a message no receiver would accept (counted)
        self._published = published
        self._verify = verify  # with a secret: decodes a record's event, or raises Rejected
        self._dropped = dropped

    # -- what the breakers did ----------------------------------------------------------

    def local(self, t: Tracked, old: CircuitBreakerState, new: CircuitBreakerState) -> None:
        """A transition the breaker made by itself (calls, reset(), force_open(), repair)."""
        if new is OPEN and old in (CLOSED, HALF_OPEN):
            if old is HALF_OPEN and t.lease_epoch is not None:
                self._trial_ended(t, success=False)
            elif t.fleet != "closed":
                self._enforce(t)
            else:
                self._trip(t, f"{old.value}->open")
        elif new is CLOSED:
            if old is OPEN:
                self.reset(t)  # only reset() closes an open breaker
            elif old is HALF_OPEN and t.lease_epoch is not None:
                self._trial_ended(t, success=True)
            elif t.fleet != "closed":
                self._enforce(t)  # a local trial, or a repair's reset: the fleet decides
        elif new is HALF_OPEN and t.fleet != "closed" and t.lease_epoch is None:
            self._offer_trial(t)  # the hold ran out, a health check or a repair passed
        elif new is OPEN and t.fleet != "closed":
            self._enforce(t)  # a failed repair: back under the fleet's hold

    @staticmethod
    def note_offline(t: Tracked, old: CircuitBreakerState, new: CircuitBreakerState) -> None:
        """Remember what must be published once Redis is back."""
        if new is OPEN and old in (CLOSED, HALF_OPEN) and t.lease_epoch is None:
            t.pending, t.held = "trip", False
        elif new is CLOSED and old is OPEN:
            t.pending = "reset"

    def reset(self, t: Tracked) -> None:
        epoch = self.store.close(t.breaker.name, self.node, None, t.epoch)[1]
        self._closed(t, epoch, everyone=False)
        self._publish(Event("close", t.breaker.name, epoch, self.node, reason="reset"))

    def _trip(self, t: Tracked, reason: str) -> None:
        breaker = t.breaker
        state = breaker.state
        if state is CLOSED:
            return  # reset since: its close is queued behind this trip
        if state is OPEN:
            left = breaker.retry_after
            period = math.inf if left is None else left  # None: held open until reset()
        else:
            # A manager begins a repair as soon as the breaker trips, and it may even
            # have ended (half-open) before we got here: the trip still stands for
            # the fleet (the repair is local), for a first open period.
            period = breaker.config.timeout
        if not math.isinf(period):  # inf: held until reset, everywhere
            period = min(period, MAX_PERIOD)
        # The event as it will be if the fleet is where we last saw it (the usual
        # case): the trip script then publishes it too, in the same round trip.
        event = Event("open", breaker.name, t.epoch + 1, self.node,
                      None if math.isinf(period) else period, t.level, reason)
        message = self._encode(event)
        result = self.store.trip(
            breaker.name, self.node, self._quorum, self._quorum_window, period, reason,
            (event.epoch, event.level), message or b"", t.epoch,
        )
        if result[0] == 1:
            self._opened(t, result[1], result[2], period, self.node)
            if result[3]:
                self._published(event.kind)
            elif message is not None:  # None: too big for anyone, dropped and counted
                self._announce(attrs.evolve(event, epoch=t.epoch, level=t.level))
        elif result[0] != 2:  # already open, or a trial runs: follow the records
            self.sync(t)

    def _trial_ended(self, t: Tracked, success: bool) -> None:
        name, lease = t.breaker.name, t.lease_epoch
        assert lease is not None
        t.lease_epoch = None
        if success:
            result = self.store.close(name, self.node, lease, t.epoch)
            if result[0] == 1:
                self._closed(t, result[1], everyone=False)
                self._publish(Event("close", name, t.epoch, self.node, reason="trial passed"))
                return
        else:
            config = t.breaker.config
            result = self.store.reopen(
                name, self.node, lease, config.timeout, config.retry_backoff_factor,
                config.max_retry_interval, "trial failed",
            )
            if result[0] == 1:
                period = result[3] / 1000
                self._opened(t, result[1], result[2], period, self.node)
                self._announce(Event("open", name, t.epoch, self.node, period, t.level,
                                     "trial failed"))
                return
        self.sync(t)  # the lease had expired: someone else decides

    # -- what the fleet did -------------------------------------------------------------

    def remote(self, t: Tracked, event: Event) -> bool:
        """Apply another node's event; False if it is not newer than what we know."""
        if event.epoch <= t.epoch:
            return False
        if event.kind == "open":
            period = math.inf if event.period is None else event.period
            self._opened(t, event.epoch, event.level, period, event.node)
        else:
            self._closed(t, event.epoch, everyone=True)
        return True

    def sync(self, t: Tracked) -> None:
        """Read the breaker's records and make the local breaker follow them."""
        self.adopt(t, self.store.read(t.breaker.name))

    def adopt(self, t: Tracked, record: Record) -> None:
        problem = self._distrust(t, record)
        if problem is not None:  # follow what the records would say without it: closed
            if problem:
                self._dropped(problem)
            record = attrs.evolve(record, epoch=t.epoch, open_for=None, opened_by=None,
                                  lease_holder=None, lease_for=None, event=None)
        elif record.open_for is not None and self._verify is not None:
            assert record.event is not None
            record = attrs.evolve(record, opened_by=self._verify(record.event).node)
        t.level = record.level
        if record.open_for is not None:
            t.lease_epoch = None
            self._opened(t, record.epoch, record.level, record.open_for, record.opened_by)
        elif record.lease_holder is not None:
            t.epoch = record.epoch
            if record.lease_holder == f"{self.node} {record.epoch}":
                self._hold_lease(t, record.epoch)
            else:
                t.lease_epoch = None
                self._follow_trial(t, record.lease_for or LEASE_TTL)
        else:
            self._closed(t, record.epoch, everyone=False)

    def _distrust(self, t: Tracked, record: Record) -> str | None:
        """Why ``record`` must not be followed (a reason to count, or "" for records
        that were merely lost), or None if it may be.

        A record older than what this process knows was rolled back or lost (FLUSHALL)
        and, if it says open or trial, replayed. With a secret, an open record must
        hold the open event it was written with, signed, of its own breaker, epoch and
        namespace, and may not last longer than that event's period.
        """
        if record.epoch < t.epoch:
            return "stale_record" if record.open_for or record.lease_holder else ""
        if record.open_for is None or self._verify is None:
            return None
        if record.event is None:
            return "record_unsigned"
        try:
            event = self._verify(record.event)
        except Rejected as rejected:
            return f"record_{rejected.reason}"
        limit = math.inf if event.period is None else event.period + 0.001
        if (event.kind != "open" or event.name != t.breaker.name
                or event.epoch != record.epoch or record.open_for > limit):
            return "record_mismatch"
        return None

    def tick(self, t: Tracked) -> None:
        """The fleet deadline of ``t`` passed: take, renew or look for the trial lease."""
        called = self._called(t)
        if t.lease_epoch is not None:
            if t.breaker.state is not HALF_OPEN:
                t.until = self._now() + LEASE_RENEW
            elif not called and self._now() - t.calls_seen >= LEASE_UNUSED:
                t.lease_epoch, t.idle = None, True  # it runs out in Redis: LEASE_TTL
                self._follow_trial(t, LEASE_TTL)
            else:
                self._take_lease(t)
        else:
            self._offer_trial(t)  # (a call just seen has cleared ``idle``)

    def _offer_trial(self, t: Tracked) -> None:
        """Take the trial lease, unless this process gave it up for want of calls and
        none came since: the trial is then left to a process that has calls."""
        if t.idle and not self._called(t):
            self._follow_trial(t, LEASE_TTL)
        else:
            self._take_lease(t)

    def _called(self, t: Tracked) -> bool:
        """Did a call come to ``t``'s breaker since the last look (finished or rejected)?"""
        metrics = t.breaker.metrics()
        calls = metrics.total_requests + metrics.total_rejections
        if calls == t.calls:
            return False
        t.calls, t.calls_seen, t.idle = calls, self._now(), False
        return True

    def _publish(self, event: Event) -> None:
        message = self._encode(event)
        if message is not None:
            self.store.publish(message)
            self._published(event.kind)

    def _announce(self, event: Event) -> None:
        """Publish an open event and store it in its open record (which a reader with
        the secret trusts only with it), unless the fleet moved on since."""
        message = self._encode(event)
        if message is not None and self.store.announce(event.name, event.epoch, message):
            self._published(event.kind)

    # -- the moves ------------------------------------------------------------------------

    def _take_lease(self, t: Tracked) -> None:
        if t.breaker.state is REPAIRING:
            t.until = self._now() + LEASE_RENEW  # each process repairs alone; ask later
            return
        epoch = t.lease_epoch if t.lease_epoch is not None else t.epoch
        result = self.store.lease(t.breaker.name, self.node, epoch, LEASE_TTL)
        if result[0] == 1:
            self._hold_lease(t, epoch)
        elif result[0] == -1:
            self.sync(t)
        elif result[0] == -2:
            left = math.inf if result[1] == -1 else result[1] / 1000
            if t.opened_by != self.node:
                left = _capped(t, left)
            t.fleet, t.until = "open", self._now() + _capped(t, left)
            self._hold(t, left)
        else:
            t.lease_epoch = None
            self._follow_trial(t, result[1] / 1000)

    def _hold_lease(self, t: Tracked, epoch: int) -> None:
        if t.lease_epoch is None:  # taken now, not renewed: its calls are counted from here
            t.calls_seen = self._now()
        t.lease_epoch, t.fleet, t.held = epoch, "trial", False
        t.until = self._now() + LEASE_RENEW
        state = t.breaker.state
        if state is OPEN:
            t.breaker.allow_trial()
        elif state is CLOSED:  # the trial passed while Redis was away
            self._trial_ended(t, success=True)

    def _follow_trial(self, t: Tracked, left: float) -> None:
        left = min(left, LEASE_TTL)  # a lease never lives longer, unless forged
        t.fleet, t.until = "trial", self._now() + left
        self._hold(t, left)

    def _opened(
        self, t: Tracked, epoch: int, level: int, period: float, by: str | None
    ) -> None:
        t.epoch, t.level, t.fleet, t.opened_by = epoch, level, "open", by
        t.lease_epoch = None
        if by != self.node:
            period = _capped(t, period)  # a remote period at the local cap
        t.until = self._now() + _capped(t, period)
        self._hold(t, period)

    def _closed(self, t: Tracked, epoch: int, everyone: bool) -> None:
        """The fleet is closed. ``everyone``: a close event, which also closes a breaker
        open on its own (a quorum vote); a record read closes only what the fleet held."""
        was_held = t.fleet != "closed" or t.held
        t.epoch, t.fleet, t.until, t.opened_by = max(epoch, t.epoch), "closed", math.inf, None
        t.level = 0  # a close resets the backoff (the close script sets it so)
        t.lease_epoch, t.held = None, False
        breaker = t.breaker
        breaker.set_opened_by(None)
        state = breaker.state
        if (state is OPEN and (everyone or was_held)) or (state is HALF_OPEN and was_held):
            breaker.reset()

    def _enforce(self, t: Tracked) -> None:
        """Put a breaker that left the fleet's hold by itself back under it."""
        self._hold(t, max(t.until - self._now(), 0.0))

    def _hold(self, t: Tracked, left: float) -> None:
        breaker = t.breaker
        if breaker.state is REPAIRING:
            return  # repair stays local; the repair's end brings it back here
        t.held = True
        breaker.set_opened_by(None if t.opened_by == self.node else t.opened_by)
        breaker.force_open(left + HOLD_MARGIN)


def _capped(t: Tracked, seconds: float) -> float:
    """``seconds`` at most the breaker's ``max_retry_interval`` (inf, until reset, stays):
    the longest this process waits on a fleet deadline before it reads the records
    again, and the longest hold a period from another node gets here."""
    return seconds if math.isinf(seconds) else min(seconds, t.breaker.config.max_retry_interval)
