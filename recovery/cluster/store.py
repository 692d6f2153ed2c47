"""The cluster records in Redis, each change one atomic Lua script.

Keys of breaker ``name`` in namespace ``ns`` (prefix ``ns:breaker:name:``, where
``name`` is escaped by :func:`key_part` so that it holds no ``:``; the key then reads
back one way only, and no namespace/breaker pair shares a key with another):

- ``fleet`` (hash, no expiry): ``epoch``, bumped by every fleet decision so a stale
  event never overrides a newer one, and ``level``, the backoff level of the next
  open period (0 after a close).
- ``open`` (hash, TTL = the remaining open period): present while the fleet is
  open; ``epoch``, ``level``, ``node`` (who opened it), ``reason``, and ``event``,
  the open event as it was published (signed when the cluster has a secret, so a
  reader can tell a record the fleet wrote from one written by anyone else). The
  TTL carries the period, so hosts never compare their clocks.
- ``lease`` (string ``"node epoch"``, TTL): the fleet's one trial lease of the
  half-open period after that open; whoever holds it runs the trial calls.
- ``votes`` (sorted set node -> Redis server time in ms): quorum votes.

Times in scripts come from Redis ``TIME``, never from a host. A node that makes a
decision passes the highest epoch it knows, and the script never numbers the
decision below it: after the records were lost (FLUSHALL, a restart without
persistence), the fleet's next decisions are still newer than everything the nodes
saw, so they are obeyed while replays of old ones are not.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

_TRIP = """
local fleet, open, votes = KEYS[1], KEYS[2], KEYS[3]
local node, quorum, window_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local period_ms, reason = tonumber(ARGV[4]), ARGV[5]
local expected_epoch, expected_level, message = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
local epoch = tonumber(redis.call('HGET', fleet, 'epoch') or '0')
if epoch < tonumber(ARGV[9]) then
  redis.call('HSET', fleet, 'epoch', ARGV[9])
  epoch = tonumber(ARGV[9])
end
local pttl = redis.call('PTTL', open)
if pttl ~= -2 then return {3, epoch, pttl} end
local lease_ttl = redis.call('PTTL', KEYS[4])
if lease_ttl > 0 then return {4, epoch, lease_ttl} end
if quorum > 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', votes, now, node)
  redis.call('ZREMRANGEBYSCORE', votes, '-inf', now - window_ms)
  redis.call('PEXPIRE', votes, window_ms)
  local count = redis.call('ZCARD', votes)
  if count < quorum then return {2, epoch, count} end
end
redis.call('DEL', votes)
epoch = redis.call('HINCRBY', fleet, 'epoch', 1)
local level = tonumber(redis.call('HGET', fleet, 'level') or '0')
redis.call('HSET', open, 'epoch', epoch, 'level', level, 'node', node, 'reason', reason)
if period_ms >= 0 then redis.call('PEXPIRE', open, math.max(period_ms, 1)) end
if message ~= '' and epoch == expected_epoch and level == expected_level then
  redis.call('HSET', open, 'event', message)
  redis.call('PUBLISH', KEYS[5], message)
  return {1, epoch, level, 1}
end
return {1, epoch, level, 0}
"""

_REOPEN = """
local fleet, open, lease = KEYS[1], KEYS[2], KEYS[3]
local node, epoch = ARGV[1], ARGV[2]
if redis.call('GET', lease) ~= node .. ' ' .. epoch then return {0} end
local level = redis.call('HINCRBY', fleet, 'level', 1)
local period = tonumber(ARGV[3]) * tonumber(ARGV[4]) ^ level
period = math.floor(math.min(period, tonumber(ARGV[5])))
local new_epoch = redis.call('HINCRBY', fleet, 'epoch', 1)
redis.call('DEL', lease)
redis.call('HSET', open, 'epoch', new_epoch, 'level', level, 'node', node, 'reason', ARGV[6])
redis.call('PEXPIRE', open, math.max(period, 1))
return {1, new_epoch, level, period}
"""

_CLOSE = """
local fleet, open, lease, votes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local node, epoch = ARGV[1], ARGV[2]
if epoch ~= '' and redis.call('GET', lease) ~= node .. ' ' .. epoch then return {0} end
if tonumber(redis.call('HGET', fleet, 'epoch') or '0') < tonumber(ARGV[3]) then
  redis.call('HSET', fleet, 'epoch', ARGV[3])
end
local new_epoch = redis.call('HINCRBY', fleet, 'epoch', 1)
redis.call('HSET', fleet, 'level', 0)
redis.call('DEL', open, lease, votes)
return {1, new_epoch}
"""

_LEASE = """
local fleet, open, lease = KEYS[1], KEYS[2], KEYS[3]
local node, epoch, ttl = ARGV[1], ARGV[2], ARGV[3]
local current = redis.call('HGET', fleet, 'epoch') or '0'
if current ~= epoch then return {-1, tonumber(current)} end
local pttl = redis.call('PTTL', open)
if pttl ~= -2 then return {-2, pttl} end
local holder = redis.call('GET', lease)
local mine = node .. ' ' .. epoch
if holder and holder ~= mine then return {-3, redis.call('PTTL', lease)} end
redis.call('SET', lease, mine, 'PX', ttl)
return {1, 0}
"""

_ANNOUNCE = """
local open, channel, epoch, message = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
if redis.call('HGET', open, 'epoch') ~= epoch then return 0 end
redis.call('HSET', open, 'event', message)
redis.call('PUBLISH', channel, message)
return 1
"""


@attrs.frozen
class Record:
    """What the records say about one breaker; times are seconds from the read.

    ``open_for`` is the remaining open period (inf: open until reset; None: not
    open); ``event`` the open event stored with it (None: none stored);
    ``lease_for`` the remaining lease (None: no trial running).
    """

    epoch: int
    level: int
    open_for: float | None
    opened_by: str | None
    lease_holder: str | None
    lease_for: float | None
    event: bytes | None = None


_ESCAPES = {ord("%"): "%25", ord(":"): "%3A"}


def key_part(name: str) -> str:
    """``name`` as it goes into a Redis key: ``%`` and ``:`` percent-escaped, and each
    lone surrogate (``os.fsdecode`` makes them from undecodable bytes) as the escaped
    bytes of its ``surrogatepass`` encoding, so that any ``str`` makes a valid key.
    Distinct names give distinct parts, and none of them holds a ``:``."""
    escaped = name.translate(_ESCAPES)
    if not any("\ud800" <= c <= "\udfff" for c in escaped):
        return escaped
    return "".join(
        "".join(f"%{byte:02X}" for byte in c.encode("utf-8", "surrogatepass"))
        if "\ud800" <= c <= "\udfff" else c
        for c in escaped
    )


def _ms(seconds: float) -> int:
    return -1 if math.isinf(seconds) else max(int(seconds * 1000), 1)


class Store:
    """The Lua scripts and reads of one namespace, over one redis-py client."""

    def __init__(self, client: Any, namespace: str) -> None:
        self._client = client
        self._namespace = namespace
        self.channel = f"{namespace}:events"
        self._trip = client.register_script(_TRIP)
        self._reopen = client.register_script(_REOPEN)
        self._close = client.register_script(_CLOSE)
        self._lease = client.register_script(_LEASE)
        self._announce = client.register_script(_ANNOUNCE)

    def _keys(self, name: str, *parts: str) -> list[str]:
        prefix = f"{self._namespace}:breaker:{key_part(name)}:"
        return [prefix + part for part in parts]

    def trip(
        self, name: str, node: str, quorum: int, window: float, period: float, reason: str,
        expected: tuple[int, int] = (0, 0), message: bytes = b"", known: int = 0,
    ) -> list[int]:
        """A local trip: vote, and open the fleet once the quorum is met.

        Returns ``[1, epoch, level, published]`` opened; ``[2, epoch, votes]`` voted
        only; ``[3, epoch, open_ms]`` the fleet is already open; ``[4, epoch,
        lease_ms]`` a trial is running. ``message``, the open event encoded for the
        ``expected`` (epoch, level), is published by the same script when the open
        gets exactly those (``published`` 1), which saves the caller a round trip on
        the path every follower waits for, and stored in the open record; otherwise
        (``published`` 0) the caller announces the event with the real ones. ``known``:
        the highest epoch the caller knows (the open gets a higher one).
        """
        keys = [*self._keys(name, "fleet", "open", "votes", "lease"), self.channel]
        args = [node, quorum, _ms(window), _ms(period), reason, *expected, message, known]
        return [int(x) for x in self._trip(keys=keys, args=args)]

    def reopen(
        self, name: str, node: str, epoch: int, timeout: float, factor: float,
        max_interval: float, reason: str,
    ) -> list[int]:
        """The trial of the lease ``node`` holds failed: ``[1, epoch, level, period_ms]``,
        or ``[0]`` if the lease is not (or no longer) its."""
        keys = self._keys(name, "fleet", "open", "lease")
        args = [node, epoch, timeout * 1000, factor, max_interval * 1000, reason]
        return [int(x) for x in self._reopen(keys=keys, args=args)]

    def close(self, name: str, node: str, lease_epoch: int | None, known: int = 0) -> list[int]:
        """Close the fleet: ``[1, epoch]``, an epoch above ``known``. With ``lease_epoch``
        (a trial succeeded) only if ``node`` holds that lease, else ``[0]``."""
        keys = self._keys(name, "fleet", "open", "lease", "votes")
        args = [node, "" if lease_epoch is None else lease_epoch, known]
        return [int(x) for x in self._close(keys=keys, args=args)]

    def lease(self, name: str, node: str, epoch: int, ttl: float) -> list[int]:
        """Take (or renew) the trial lease of the open period ``epoch``.

        ``[1, 0]`` taken; ``[-1, epoch]`` the fleet moved on; ``[-2, open_ms]`` still
        open; ``[-3, lease_ms]`` another node holds it.
        """
        keys = self._keys(name, "fleet", "open", "lease")
        return [int(x) for x in self._lease(keys=keys, args=[node, epoch, _ms(ttl)])]

    def read(self, name: str) -> Record:
        """One atomic read of a breaker's records (MULTI)."""
        fleet, open_, lease = self._keys(name, "fleet", "open", "lease")
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(fleet).hgetall(open_).pttl(open_).get(lease).pttl(lease)
        fleet_hash, open_hash, open_ms, holder, lease_ms = pipe.execute()
        opened = bool(open_hash) and open_ms != -2
        return Record(
            epoch=int(fleet_hash.get(b"epoch", 0)),
            level=int(fleet_hash.get(b"level", 0)),
            open_for=(math.inf if open_ms == -1 else open_ms / 1000) if opened else None,
            opened_by=(open_hash[b"node"].decode(errors="replace")
                       if opened and b"node" in open_hash else None),
            lease_holder=holder.decode() if holder else None,
            lease_for=lease_ms / 1000 if holder and lease_ms > 0 else None,
            event=open_hash.get(b"event") if opened else None,
        )

    def publish(self, message: bytes) -> None:
        self._client.publish(self.channel, message)

    def announce(self, name: str, epoch: int, message: bytes) -> bool:
        """Store the open event ``message`` in the open record of ``epoch`` and publish
        it; False (neither done) if the fleet moved past that open since."""
        keys = [*self._keys(name, "open"), self.channel]
        return bool(self._announce(keys=keys, args=[epoch, message]))
