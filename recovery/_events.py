"""Structured events: one log record per transition, recovery action and alert.

Each record carries its fields as attributes (``extra``), so a JSON log formatter
ships them as they are; ``event`` says which kind it is. The README's
"Structured events" table lists the fields. Callers check
``logger.isEnabledFor(level)`` before building a record, so a disabled level
costs one check.

A record is never emitted while the recovery manager holds its lock (a slow or
blocking log handler must not stall every plugin): the manager wraps the few
places that move a breaker under its lock in :func:`held`, and the records made
there are emitted when the outermost ``held()`` of the thread exits, after the
lock is released, in order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

_local = threading.local()


def emit(
    logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...], fields: dict[str, Any]
) -> None:
    """Log one event record now, or when this thread's outermost :func:`held` exits."""
    pending: list[tuple[logging.Logger, int, str, tuple[Any, ...], dict[str, Any]]] | None = (
        getattr(_local, "pending", None)
    )
    if pending is not None:
        pending.append((logger, level, msg, args, fields))
        return
    logger.log(level, msg, *args, extra=fields, stacklevel=2)  # the record names the caller


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold the event records of this thread until the outermost ``held()`` exits.

    Enter it before taking a lock (``with held(), lock:``), so the records come
    out once the lock is released.
    """
    if getattr(_local, "pending", None) is not None:
        yield  # nested: the outermost block emits
        return
    pending: list[tuple[logging.Logger, int, str, tuple[Any, ...], dict[str, Any]]] = []
    _local.pending = pending
    try:
        yield
    finally:
        _local.pending = None
        for logger, level, msg, args, fields in pending:
            logger.log(level, msg, *args, extra=fields)
