"""The validation vocabulary every config class and public function uses.

One rule everywhere: a value of the wrong *type* raises ``TypeError``, a value of
the right type that is out of range raises ``ValueError``, and both name the field
and the value, so bad input fails where it is given with a message a user can act
on. The field factories below are attrs validators (they compose with
``attrs.validators.optional``, ``and_`` and ``deep_iterable``); :func:`check` runs
one on a plain function argument, so a function's parameters and a config class's
fields are checked by the same rules with the same words.

attrs' own leaf validators (``instance_of``, ``is_callable``) are not used as they
are: their messages (``'x' must be <class 'int'> (got ...)``) read differently from
every other error of the library, and users match on these.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]
"""An attrs validator: ``validator(instance, attribute, value)`` raises or returns."""
T = TypeVar("T")


def seconds(value: Any) -> Any:
    """Accept a ``datetime.timedelta`` wherever a duration in seconds is expected."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return value


def optional_seconds(value: Any) -> Any:
    """:func:`seconds`, or None. A named function rather than
    ``attrs.converters.optional(seconds)``: mypy's attrs plugin understands only those."""
    return None if value is None else seconds(value)


@attrs.frozen
class _Parameter:
    """The template of :func:`_parameter`: one attrs field, renamed per argument."""

    value: Any


def _parameter(name: str) -> attrs.Attribute[Any]:
    return attrs.fields(_Parameter).value.evolve(name=name)


def check(validator: Validator, name: str, value: T) -> T:
    """Run a field validator on a function's argument ``name``; return the value.

    So a function's parameters are checked by the same rules, with the same
    messages, as a config class's fields.
    """
    validator(None, _parameter(name), value)
    return value


def optional(validator: Validator) -> Validator:
    """``validator``, or None: ``attrs.validators.optional``, typed as a plain
    :data:`Validator` (mypy's attrs plugin would otherwise pin it to the type of the
    field's default and refuse ``float | None`` fields)."""
    return attrs.validators.optional(validator)


def _type_error(name: str, value: Any, expected: str) -> TypeError:
    return TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")


def instance_of(*types: type, expected: str | None = None) -> Validator:
    """Of one of ``types`` (else TypeError); ``expected`` says it in the message
    (default: ``a <first type's name>``)."""
    what = expected or f"a {types[0].__name__}"

    def of_type(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, types):
            raise _type_error(attribute.name, value, what)

    return of_type


boolean = instance_of(bool)
text = instance_of(str)


def name() -> Validator:
    """A non-empty str: what identifies a plugin, a strategy or a label."""

    def non_empty(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not value:
            raise ValueError(f"{attribute.name} must be a non-empty str, got {value!r}")

    return attrs.validators.and_(text, non_empty)


def callable_(expected: str = "callable") -> Validator:
    """Something to call (else TypeError): a callback, a check, a clock."""

    def is_callable(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not callable(value):
            raise _type_error(attribute.name, value, expected)

    return is_callable


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}


def _bounds(
    gt: float | None, ge: float | None, lt: float | None, le: float | None
) -> list[tuple[str, float]]:
    """The bounds given, lower first, as (operator, bound) pairs the value must satisfy."""
    pairs = ((">", gt), (">=", ge), ("<", lt), ("<=", le))
    return [(op, bound) for op, bound in pairs if bound is not None]


def integer(
    *, gt: int | None = None, ge: int | None = None, le: int | None = None,
    expected: str | None = None,
) -> Validator:
    """An int, not a bool (a flag passed as a count is a mistake), within the bounds.

    The ValueError names the bound broken (``must be > 0``, ``must be <= 1000``)
    unless ``expected`` says what is accepted instead.
    """
    bounds = _bounds(gt, ge, None, le)
    tests = [(op, bound, _COMPARE[op]) for op, bound in bounds]

    def int_in_bounds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(attribute.name, value, expected or "an int")
        for op, bound, passes in tests:
            if not passes(value, bound):
                raise ValueError(
                    f"{attribute.name} must be {expected or f'{op} {bound}'}, got {value!r}"
                )

    return int_in_bounds


def _as_float(value: int | float) -> float:
    """``float(value)``, infinite for an int too large for a float (which is no finite
    number of seconds, and would overflow the first time it met a float)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def number(
    *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
    le: float | None = None, finite: bool = True, unit: str = "",
) -> Validator:
    """A real number, not a bool, within the bounds; finite unless ``finite=False``.

    NaN is always refused (it passes no bound, and compares false to everything
    a caller would test it against). ``unit`` ("seconds") goes into the messages.
    """
    bounds = _bounds(gt, ge, lt, le)
    of_unit = f" of {unit}" if unit else ""
    if len(bounds) == 2:
        (_, low), (high_op, high) = bounds
        expected = (f"in {'(' if gt is not None else '['}{low}, {high}"
                    f"{')' if high_op == '<' else ']'}")
    else:
        shown = " ".join(f"{op} {bound}" for op, bound in bounds)
        expected = f"{'a finite number' if finite else 'a number'}{of_unit} {shown}".rstrip()

    tests = [(_COMPARE[op], bound) for op, bound in bounds]

    def number_in_bounds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(attribute.name, value, f"a number{of_unit}")
        as_float = value if type(value) is float else _as_float(value)
        good = not math.isnan(as_float) and not (finite and math.isinf(as_float))
        for passes, bound in tests:
            good = good and passes(value, bound)
        if not good:
            raise ValueError(f"{attribute.name} must be {expected}, got {value!r}")

    return number_in_bounds


MIN_INTERVAL = 0.01
"""The shortest period or timeout anything that schedules work accepts (10 ms).

A scheduler asked to wake every microsecond spends its life under its own lock;
nothing a health check or a recovery loop does needs a finer period than this.
"""

positive_int = integer(gt=0)
positive_seconds = number(gt=0, unit="seconds")
"""A duration or period: a finite number of seconds greater than zero."""
interval = number(ge=MIN_INTERVAL, unit="seconds")
"""A period or timeout that schedules work: finite seconds, at least ``MIN_INTERVAL``."""
factor = number(ge=1)
"""A growth factor: a finite number >= 1."""
rate = number(gt=0, le=1)
"""A fraction in (0, 1]."""
epoch_seconds = number(ge=0, unit="seconds since the epoch")
"""A wall-clock time as ``time.time()`` gives it."""


def bounded_int(upper: int) -> Validator:
    """An int in ``[1, upper]``: counts that size memory or loops."""
    return integer(gt=0, le=upper)


C = TypeVar("C", bound=type)


def known_keywords(hints: Mapping[str, str]) -> Callable[[C], C]:
    """Class decorator for an attrs class: an unknown keyword argument raises a
    ``TypeError`` that teaches, in one line.

    Python's own "unexpected keyword argument" names only the word given. This names
    what was meant: ``hints[word]`` when the word is known to be someone else's (another
    library's name for a field, a field of another class), else the closest field
    (``failure_treshold`` -> ``failure_threshold``), else every field. Only a call with
    an unknown keyword pays for the check beyond one set comparison.
    """

    def decorate(cls: C) -> C:
        init = cls.__dict__["__init__"]
        fields = tuple(field.alias for field in attrs.fields(cls) if field.init)
        known = frozenset(fields)

        @functools.wraps(init)
        def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
            if not known.issuperset(kwargs):
                word = next(key for key in kwargs if key not in known)
                raise TypeError(_unknown_keyword(cls.__name__, word, fields, hints))
            init(self, *args, **kwargs)

        cls.__init__ = checked_init  # type: ignore[misc]  # the same signature, checked
        return cls

    return decorate


def _unknown_keyword(
    owner: str, word: str, fields: tuple[str, ...], hints: Mapping[str, str]
) -> str:
    said = f"{owner}() got an unexpected keyword argument {word!r}"
    if word in hints:
        return f"{said}: {hints[word]}"
    closest = difflib.get_close_matches(word, fields, n=1, cutoff=0.6)
    if closest:
        return f"{said}; did you mean {closest[0]}?"
    return f"{said}; its fields are {', '.join(fields)}"
