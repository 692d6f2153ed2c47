"""The configs ``tune`` tries: a candidate from field values, from ``--config`` or from a
``--grid`` file, and the small built-in set around the defaults."""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from recovery.config import CircuitBreakerConfig, default_minimum_requests
from recovery.trace import open_regular, quoted

MAX_GRID = 10_000
"""The most candidates a ``--grid`` file may describe; ``--search`` has a time budget instead."""

DEFAULT_GRID: tuple[Mapping[str, Any], ...] = (
    {},
    {"failure_rate_threshold": None},  # the count rule alone
    {"failure_threshold": 100},  # the rate rule alone (the count needs a full window)
    {"failure_rate_threshold": 0.25},
    {"minimum_requests": 10},
    {"timeout": 1.0},
    {"timeout": 5.0},
    {"retry_backoff_factor": 1.0},  # no back-off: a probe every timeout
    {"timeout": 30.0, "retry_backoff_factor": 2.0, "max_retry_interval": 300.0},  # patient
    {"slow_call_duration": 1.0, "slow_call_rate_threshold": 0.5},
)

# Exception types are not trace data: a trace already says which calls failed; and
# recording latency changes what a breaker reports, never what it decides.
_UNTUNABLE = frozenset({"record_exceptions", "ignore_exceptions", "record_latency"})
DEFAULTS = CircuitBreakerConfig()

@attrs.frozen
class Candidate:
    """One config to try: the fields set explicitly, and the config they make.

    ``changes`` holds the fields whose value differs from the defaults, in
    field order (what a recommendation prints, and its tie-breaker: fewer is
    simpler).
    """

    overrides: Mapping[str, Any]
    config: CircuitBreakerConfig
    changes: Mapping[str, Any] = attrs.field(init=False)

    @changes.default
    def _changed_fields(self) -> dict[str, Any]:
        return minimal({
            field.name: getattr(self.config, field.name)
            for field in attrs.fields(CircuitBreakerConfig)
        })

    @property
    def label(self) -> str:
        """``failure_threshold=3,timeout=5.0``, or ``defaults``."""
        return ",".join(f"{key}={value}" for key, value in self.overrides.items()) or "defaults"

    @property
    def code(self) -> str:
        """Ready to paste: ``CircuitBreakerConfig(timeout=5.0)``, changed fields only."""
        fields = ", ".join(f"{key}={value!r}" for key, value in self.changes.items())
        return f"CircuitBreakerConfig({fields})"

# -- candidates -------------------------------------------------------------------------


def minimal(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that must be written to make the config ``fields`` describe: those
    that differ from what the constructor gives when they are left out.

    Every field's unset value is its default, except ``minimum_requests``, which
    follows ``failure_threshold`` when that is lower than the default minimum.
    """
    written = {
        key: value for key, value in fields.items()
        if key != "minimum_requests" and getattr(DEFAULTS, key) != value
    }
    if "minimum_requests" in fields:
        threshold = fields.get("failure_threshold", DEFAULTS.failure_threshold)
        if fields["minimum_requests"] != default_minimum_requests(threshold):
            written["minimum_requests"] = fields["minimum_requests"]
    return {key: written[key] for key in fields if key in written}


def make_candidate(overrides: Mapping[str, Any]) -> Candidate:
    """Make a candidate from field values (strings are parsed to the field's type)."""
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        field_type = _field_type(key)
        values[key] = _parse_value(key, field_type, value) if isinstance(value, str) else value
    return Candidate(values, CircuitBreakerConfig(**values))


def _field_type(key: str) -> str:
    """The annotated type of a tunable config field; ValueError naming the choices if none."""
    fields = {field.name: field for field in attrs.fields(CircuitBreakerConfig)}
    if key not in fields or key in _UNTUNABLE:
        tunable = sorted(set(fields) - _UNTUNABLE)
        raise ValueError(f"unknown config field {quoted(key)}; one of: {', '.join(tunable)}")
    return str(fields[key].type)


def _parse_value(key: str, field_type: str, text: str) -> Any:
    """Parse ``text`` to the field's annotated type (``int``, ``float``, ``bool``, ``X | None``)."""
    kind, _, optional = field_type.partition(" | ")
    word = text.strip().lower()
    if optional == "None" and word in ("none", "null"):
        return None
    try:
        if kind == "bool":
            if word in ("true", "yes", "on", "1"):
                return True
            if word in ("false", "no", "off", "0"):
                return False
            raise ValueError(text)
        if kind == "int":
            return int(word)
        return float(word)
    except ValueError:
        raise ValueError(f"{key} must be {field_type}, got {quoted(text)}") from None


def parse_config_args(items: Sequence[str]) -> Candidate:
    """One ``--config``: ``key=value`` items, each possibly a comma list of them."""
    overrides: dict[str, str] = {}
    for item in items:
        for pair in item.split(","):
            key, equals, value = pair.partition("=")
            if not equals or not key.strip():
                raise ValueError(
                    f"--config expects key=value, got {quoted(pair)} (put TRACE before --config)"
                )
            overrides[key.strip()] = value
    return make_candidate(overrides)


def load_grid(path: str) -> list[Candidate]:
    """Candidates from JSON: a list of dicts, or a dict of lists (cartesian product).

    The number of candidates is counted before any is built and refused above
    ``MAX_GRID``; a file nested too deeply for the JSON parser is refused too.
    """
    try:
        with open_regular(path, "a grid", encoding="utf-8") as file:
            grid = json.load(file)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text: a grid is a JSON file") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON: {quoted(str(error))}") from None
    except RecursionError:
        raise ValueError(
            f"{path}: JSON nested too deeply; a grid is a list of flat objects "
            "or an object of lists of values"
        ) from None
    if isinstance(grid, list) and all(isinstance(item, dict) for item in grid):
        _check_grid_size(path, len(grid))
        return [_grid_candidate(path, item) for item in grid]
    if isinstance(grid, dict):
        for key in grid:
            _field_type(key)
        axes = {key: value if isinstance(value, list) else [value] for key, value in grid.items()}
        _check_grid_size(path, math.prod(map(len, axes.values())))
        candidates: list[Candidate] = []
        for combination in itertools.product(*axes.values()):
            overrides = dict(zip(axes, combination, strict=True))
            try:
                candidates.append(_grid_candidate(path, overrides))
            except (TypeError, ValueError) as error:
                print(f"tune: skipped {quoted(str(overrides), 200)}: {error}", file=sys.stderr)
        if not candidates:
            raise ValueError(f"{path}: every combination of the grid is an invalid config")
        return candidates
    raise ValueError(f"{path}: a grid is a JSON list of objects or an object of lists")


def _check_grid_size(path: str, count: int) -> None:
    if count > MAX_GRID:
        raise ValueError(
            f"{path}: the grid makes {count:,} candidates; the limit is {MAX_GRID:,} "
            "(trim its lists, or use --search, which explores a built-in grid "
            "within --budget seconds)"
        )


def _grid_candidate(path: str, overrides: Mapping[str, Any]) -> Candidate:
    for key, value in overrides.items():
        if isinstance(value, (dict, list)):
            raise ValueError(
                f"{path}: {key} must be a single value, got {quoted(json.dumps(value))}"
            )
    return make_candidate(overrides)
