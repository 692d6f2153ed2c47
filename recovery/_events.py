"""Structured events: one log record per transition, recovery action and alert.

Each record carries its fields as attributes (``extra``), so a JSON log formatter
ships them as they are; ``event`` says which kind it is. The README's
"Structured events" table lists the fields. Callers check
``logger.isEnabledFor(level)`` before building a record, so a disabled level
costs one check.

A record is never emitted while the recovery manager holds its lock (a slow or
blocking log handler must not stall every plugin): the manager moves breakers and
calls listeners only with its lock released, so a record goes out as it is made.
"""

from __future__ import annotations

import logging
from typing import Any


def emit(
    logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...], fields: dict[str, Any]
) -> None:
    """Log one event record, its fields as attributes."""
    logger.log(level, msg, *args, extra=fields, stacklevel=2)  # the record names the caller
