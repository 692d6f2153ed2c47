"""What a window copies from its config: one table, read by both windows.

:class:`WindowSettings` declares each number a window runs on once: its name, its
kind and how it is read from a :class:`~recovery.config.CircuitBreakerConfig`. From it

- the pure-Python twin (``recovery/_window_py.py``) inherits its typed attributes
  ``_<name>`` and sets each at construction;
- the compiled window (``recovery/_window.pyx``) converts :func:`window_settings` by
  field name into its C struct ``Settings`` (``recovery/_window_codes.pxi``), and refuses
  to import when a field of the struct is missing from the table, or the table's from
  the struct, or their kinds differ (:func:`mismatched`).

The copy is made once, at construction, never per call. "Off" is a number the hot path
compares (0.0 for a rate rule, -1.0 for a duration), so no setting is ever None.
"""

# No ``from __future__ import annotations``: the table's annotations are evaluated where
# they stand, so its functions see this module's names.
from collections.abc import Callable
from typing import Annotated, NamedTuple, get_type_hints

from recovery.config import CircuitBreakerConfig


def _unset(value: float | None, off: float) -> float:
    return off if value is None else value


class WindowSettings:
    """The table: ``_<name>: Annotated[<int, float or bool>, <read it from a config>]``.

    The kinds are the C struct's ``Py_ssize_t``, ``double`` and ``bint``. Annotations
    only, no class attributes: the twin's reads of its copies stay plain attribute reads.
    """

    _size: Annotated[int, lambda c: c.sliding_window_size]
    _trial_limit: Annotated[int, lambda c: c.trial_calls]  # half-open trial slots
    _minimum_requests: Annotated[int, lambda c: c.minimum_requests]
    _failure_threshold: Annotated[int, lambda c: c.failure_threshold]
    _failure_rate: Annotated[float, lambda c: c.failure_rate_threshold or 0.0]
    _slow_rate: Annotated[float, lambda c: c.slow_call_rate_threshold or 0.0]
    _slow_duration: Annotated[float, lambda c: _unset(c.slow_call_duration, -1.0)]  # no call slow
    _success_threshold: Annotated[int, lambda c: c.success_threshold]
    _timeout: Annotated[float, lambda c: c.timeout]
    _factor: Annotated[float, lambda c: c.retry_backoff_factor]
    _max_interval: Annotated[float, lambda c: c.max_retry_interval]
    _max_half_open_wait: Annotated[float, lambda c: _unset(c.max_half_open_wait, -1.0)]  # wait
    _fast_fail: Annotated[bool, lambda c: c.enable_fast_fail]
    _record_latency: Annotated[bool, lambda c: c.record_latency]


class Setting(NamedTuple):
    """A row of the table."""

    kind: type  # int, float or bool
    read: Callable[[CircuitBreakerConfig], float]


def table_rows(table: type) -> dict[str, Setting]:
    """The rows of a table declared as :class:`WindowSettings` is, by name."""
    rows: dict[str, Setting] = {}
    for attribute, hint in get_type_hints(table, include_extras=True).items():
        read = getattr(hint, "__metadata__", (None,))[0]
        kind = getattr(hint, "__origin__", None)
        if not attribute.startswith("_") or kind not in (int, float, bool) or not callable(read):
            raise TypeError(
                f"{table.__name__}.{attribute} must be declared as _<name>: Annotated[int, float "
                f"or bool, a function of the config], got {hint!r}"
            )
        rows[attribute[1:]] = Setting(kind, read)
    return rows


# name -> row, in the table's order. The C struct's fields are the names; the twin's
# attributes are _<name>.
SETTINGS: dict[str, Setting] = table_rows(WindowSettings)


def window_settings(config: CircuitBreakerConfig) -> dict[str, float]:
    """What a window takes from ``config``, by name."""
    return {name: row.read(config) for name, row in SETTINGS.items()}


def mismatched(struct: dict[str, object]) -> list[str]:
    """The names on which a C struct (converted to a dict) and the table disagree: a field
    one of them lacks, or a field of another kind."""
    names = struct.keys() | SETTINGS.keys()
    return sorted(
        name for name in names
        if name not in struct or name not in SETTINGS
        or type(struct[name]) is not SETTINGS[name].kind
    )
