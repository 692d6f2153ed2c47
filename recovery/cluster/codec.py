"""The cluster's wire format: one event per pub/sub message, optionally signed.

A message is ``b"R1 " + signature + b" " + body``: the version tag first, so a
message from an incompatible release is recognised and dropped before anything
else is read; the signature is the hex HMAC-SHA256 of the body under the shared
secret, or ``-`` when the sender has none; the body is compact JSON. Everything a
decoder refuses raises :class:`Rejected` with a short reason, which the cluster
counts: nothing arriving from the network is ever acted on unless it decoded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any

import attrs

VERSION = b"R1"
MAX_MESSAGE_BYTES = 4096
KINDS = ("open", "close")
MAX_TEXT = 1024
"""The longest name, node id or reason a message may carry."""
MAX_INT = 2**53
"""The largest epoch or level a message may carry (Redis counts them; Lua, exactly)."""


class Rejected(ValueError):
    """A message the cluster will not act on; ``reason`` names why (for the counters)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@attrs.frozen
class Event:
    """One fleet decision about one breaker.

    ``open``: the fleet opens for ``period`` seconds (None: until reset), at backoff
    ``level``. ``close``: the fleet closes. ``epoch`` orders the decisions of one
    breaker: a receiver ignores any event not newer than the last it applied.
    """

    kind: str
    name: str
    epoch: int
    node: str
    period: float | None = None
    level: int = 0
    reason: str = ""


def _signature(secret: bytes | None, body: bytes) -> bytes:
    if secret is None:
        return b"-"
    return hmac.new(secret, body, hashlib.sha256).hexdigest().encode()


def frame(body: bytes, secret: bytes | None) -> bytes:
    """``body`` as a message: version, signature (``-`` without a ``secret``), body; the
    counterpart of :func:`open_frame`, shared by events, summaries and onsets."""
    return b" ".join((VERSION, _signature(secret, body), body))


def encode(event: Event, secret: bytes | None, namespace: str | None = None) -> bytes:
    """Frame ``event`` (signed with ``secret``); ``namespace`` goes into the signed body,
    so that a message signed for one namespace is never acted on in another."""
    fields = {
        "kind": event.kind, "name": event.name, "epoch": event.epoch, "node": event.node,
        "period": event.period, "level": event.level, "reason": event.reason,
    }
    if namespace is not None:
        fields["ns"] = namespace
    body = json.dumps(fields, separators=(",", ":")).encode()
    return frame(body, secret)


def _text(data: dict[str, Any], key: str, allow_empty: bool = False) -> str:
    value = data.get(key)
    if not isinstance(value, str) or len(value) > MAX_TEXT or not (value or allow_empty):
        raise Rejected("malformed", f"{key}={value!r}")
    return value


def _int(data: dict[str, Any], key: str, minimum: int) -> int:
    value = data.get(key)
    if type(value) is not int or not minimum <= value <= MAX_INT:
        raise Rejected("malformed", f"{key}={value!r:.80}")
    return value


def check_namespace(data: dict[str, Any], secret: bytes | None, namespace: str | None) -> None:
    """Refuse a body that names another namespace than ``namespace`` (None: not checked),
    and, with a ``secret``, one that names none: the signature covers the namespace."""
    if namespace is None:
        return
    named = data.get("ns")
    if named is None and secret is None:
        return  # an unsigned sender of an older release: nothing to trust anyway
    if named != namespace:
        raise Rejected("foreign_namespace", f"ns={named!r:.80}")


def open_frame(message: bytes, secret: bytes | None, limit: int) -> dict[str, Any]:
    """The JSON object a framed message carries, once its size, version and (with a
    ``secret``) signature are checked; raises :class:`Rejected`."""
    if len(message) > limit:
        raise Rejected("oversized", f"{len(message)} bytes")
    parts = message.split(b" ", 2)
    if len(parts) != 3:
        raise Rejected("malformed", "not 'version signature body'")
    version, signature, body = parts
    if version != VERSION:
        raise Rejected("foreign_version", repr(version[:16]))
    if secret is not None:
        if signature == b"-":
            raise Rejected("unsigned", "no signature")
        if not hmac.compare_digest(signature, _signature(secret, body)):
            raise Rejected("bad_signature", "signature does not match")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # "[[[[..." nests past the parser's limit
        raise Rejected("malformed", f"body is not JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise Rejected("malformed", "body is not an object")
    return data


def decode(message: bytes, secret: bytes | None, namespace: str | None = None) -> Event:
    """Parse and verify one message (of ``namespace``, if given); raises :class:`Rejected`."""
    data = open_frame(message, secret, MAX_MESSAGE_BYTES)
    check_namespace(data, secret, namespace)
    kind = data.get("kind")
    if kind not in KINDS:
        raise Rejected("malformed", f"kind={kind!r}")
    period = data.get("period")
    if period is not None and (
        type(period) not in (int, float) or not math.isfinite(period) or period < 0
    ):
        raise Rejected("malformed", f"period={period!r}")
    return Event(
        kind=kind,
        name=_text(data, "name"),
        epoch=_int(data, "epoch", 1),
        node=_text(data, "node"),
        period=None if period is None else float(period),
        level=_int(data, "level", 0),
        reason=_text(data, "reason", allow_empty=True),
    )
