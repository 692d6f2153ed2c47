"""The validation vocabulary, its one rule, the str enums, and RecoveryConfig's home.

The rule: a wrong type raises TypeError, a bad value of the right type ValueError, and
both messages name the field and the value.
"""

from __future__ import annotations

import datetime
import inspect
import math
import re
from typing import Any

import attrs
import pytest

import recovery
from recovery import _validate as v
from recovery import strategies
from recovery._enum import StrEnum
from recovery.alerts import AlertKind, AlertThresholds
from recovery.config import STRATEGY_KNOBS, CircuitBreakerConfig, RecoveryConfig
from recovery.failures import FailureInfo, FailureType, Severity
from recovery.health import HealthCheckConfig, HealthCheckResult, HealthMonitor
from recovery.state import CircuitBreakerState
from recovery.testing.plugins import FlakyPlugin


def refused(error: type[Exception], field: str, value: Any) -> Any:
    """``pytest.raises`` for an error whose message names ``field`` and ``value``."""
    return pytest.raises(error, match=rf"{re.escape(field)} must be .*got {re.escape(repr(value))}")


# -- the factories ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("validator", "value", "error"),
    [
        (v.number(), "1", TypeError),
        (v.number(), True, TypeError),  # a flag is not a number
        (v.number(), None, TypeError),
        (v.number(), math.nan, ValueError),
        (v.number(), math.inf, ValueError),
        (v.number(), 10**400, ValueError),  # no finite float: not an OverflowError later
        (v.number(finite=False, le=0), 10**400, ValueError),
        (v.number(gt=0), 0, ValueError),
        (v.number(ge=0, lt=1), 1.0, ValueError),
        (v.integer(), 1.0, TypeError),
        (v.integer(), False, TypeError),
        (v.integer(ge=0), -1, ValueError),
        (v.integer(le=10), 10**400, ValueError),  # compared as an int, no float overflow
        (v.positive_int, 0, ValueError),
        (v.bounded_int(5), 6, ValueError),
        (v.rate, 0.0, ValueError),
        (v.factor, 0.5, ValueError),
        (v.interval, 0.001, ValueError),
        (v.epoch_seconds, -1.0, ValueError),
        (v.name(), 5, TypeError),
        (v.name(), b"x", TypeError),
        (v.name(), "", ValueError),
        (v.text, None, TypeError),
        (v.boolean, 1, TypeError),
        (v.callable_(), 3, TypeError),
        (v.instance_of(HealthCheckConfig), {}, TypeError),
        (v.optional(v.rate), 2.0, ValueError),
        (v.optional(v.rate), "x", TypeError),
    ],
)
def test_factories_follow_the_rule_and_name_field_and_value(
    validator: v.Validator, value: Any, error: type[Exception]
) -> None:
    with refused(error, "knob", value):
        v.check(validator, "knob", value)


@pytest.mark.parametrize(
    ("validator", "value"),
    [
        (v.number(), -1e300),
        (v.number(finite=False, ge=0), math.inf),
        (v.number(finite=False, ge=0), 10**400),
        (v.number(gt=0, le=1), 1),
        (v.integer(), -(10**400)),
        (v.bounded_int(5), 5),
        (v.interval, v.MIN_INTERVAL),
        (v.optional(v.rate), None),
        (v.name(), " "),
        (v.callable_(), print),
    ],
)
def test_factories_accept_what_is_in_bounds(validator: v.Validator, value: Any) -> None:
    assert v.check(validator, "knob", value) is value


def test_bounds_are_said_in_the_message() -> None:
    with pytest.raises(ValueError, match=r"^x must be in \(0, 1\], got 2$"):
        v.check(v.rate, "x", 2)
    with pytest.raises(ValueError, match=r"^x must be a finite number of seconds >= 0.01, got 0$"):
        v.check(v.interval, "x", 0)
    with pytest.raises(ValueError, match=r"^x must be <= 5, got 6$"):
        v.check(v.bounded_int(5), "x", 6)
    with pytest.raises(TypeError, match=r"^x must be a number of seconds, got '1' \(str\)$"):
        v.check(v.positive_seconds, "x", "1")
    with pytest.raises(TypeError, match=r"^x must be a positive int, got 'a' \(str\)$"):
        v.check(v.integer(gt=0, expected="a positive int"), "x", "a")


def test_factories_compose_with_attrs_validators() -> None:
    @attrs.frozen
    class Knobs:
        rates: tuple[float, ...] = attrs.field(
            validator=attrs.validators.deep_iterable(member_validator=v.rate)
        )
        hold: float | None = attrs.field(default=None, validator=v.optional(v.positive_seconds))

    assert Knobs((0.5, 1.0)).rates == (0.5, 1.0)
    with refused(ValueError, "rates", 0.0):
        Knobs((0.5, 0.0))
    with refused(TypeError, "hold", "soon"):
        Knobs((), hold="soon")


# -- one rule everywhere ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field", "value", "error"),
    [
        (CircuitBreakerConfig, "timeout", "30", TypeError),
        (CircuitBreakerConfig, "timeout", -1, ValueError),
        (CircuitBreakerConfig, "failure_rate_threshold", "half", TypeError),
        (CircuitBreakerConfig, "slow_call_duration", 0, ValueError),
        (RecoveryConfig, "default_recovery_strategy", 3, TypeError),
        (RecoveryConfig, "default_recovery_strategy", "", ValueError),
        (RecoveryConfig, "give_up_after", 1.5, TypeError),
        (RecoveryConfig, "give_up_after", 0, ValueError),
        (RecoveryConfig, "alert_thresholds", None, TypeError),
        (AlertThresholds, "recovery_time", "long", TypeError),
        (AlertThresholds, "consecutive_failures", 0, ValueError),
        (HealthCheckConfig, "check_type", "", ValueError),
        (HealthCheckConfig, "check_type", 5, TypeError),
        (HealthCheckResult, "duration", -1.0, ValueError),
        (FailureInfo, "timestamp", "now", TypeError),
        (FailureInfo, "recoverable", "yes", TypeError),
        (FlakyPlugin, "fail_rate", True, TypeError),
        (FlakyPlugin, "crash_on_initialize", 1.5, TypeError),
        (FlakyPlugin, "latency", -1, ValueError),
        (HealthMonitor, "concurrency", True, TypeError),
        (HealthMonitor, "detach_after", "1", TypeError),
    ],
)
def test_wrong_type_is_a_type_error_and_bad_value_a_value_error(
    build: Any, field: str, value: Any, error: type[Exception]
) -> None:
    positional = {HealthCheckResult: (True,), FailureInfo: ("error",), FlakyPlugin: ("p",)}
    with refused(error, field, value):
        build(*positional.get(build, ()), **{field: value})


def test_a_knob_of_the_wrong_type_is_a_type_error_in_the_config_and_the_constructor() -> None:
    # It was a ValueError ("hold must be a finite number of seconds > 0") before.
    with refused(TypeError, "hold", "long"):
        RecoveryConfig(recovery_strategy_configs={"degrade": {"hold": "long"}})
    with refused(TypeError, "hold", "long"):
        strategies.GracefulDegradationStrategy(hold="long")  # type: ignore[arg-type]


# -- the str enums --------------------------------------------------------------------------


@pytest.mark.parametrize("enum", [CircuitBreakerState, AlertKind, FailureType, Severity])
def test_str_enums_print_as_their_values(enum: type[StrEnum]) -> None:
    assert issubclass(enum, StrEnum)
    for member in enum:
        assert isinstance(member, str)
        assert member == member.value
        # %-formatting is what logging does with a member.
        assert str(member) == format(member) == f"{member}" == "%s" % member == member.value  # noqa: UP031
        assert f"{member:>20}" == f"{member.value:>20}"
        assert repr(member) == f"<{enum.__name__}.{member.name}: {member.value!r}>"


# -- RecoveryConfig in config.py --------------------------------------------------------------


def test_recovery_config_has_one_class_under_every_old_name() -> None:
    from recovery.manager import RecoveryConfig as from_manager

    assert from_manager is RecoveryConfig is recovery.RecoveryConfig
    assert RecoveryConfig(recovery_backoff_base=datetime.timedelta(seconds=2)).backoff(2) == 4.0


def test_strategy_knobs_declare_exactly_each_builtins_keywords() -> None:
    assert set(STRATEGY_KNOBS) == set(strategies.BUILTIN_STRATEGIES)
    for name, cls in strategies.BUILTIN_STRATEGIES.items():
        assert set(STRATEGY_KNOBS[name]) == set(inspect.signature(cls).parameters), name


def test_a_renamed_builtin_subclass_checks_its_knobs_as_its_parent() -> None:
    class Patient(strategies.BackoffStrategy):
        name = "patient"

    assert Patient(base=2.0).base == 2.0
    with refused(ValueError, "cap", 0):
        Patient(cap=0)


def test_recovery_config_checks_strategy_options_without_building_strategies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    for cls in strategies.BUILTIN_STRATEGIES.values():
        def spy(self: Any, *args: Any, __cls: Any = cls, **kwargs: Any) -> None:
            built.append(__cls.name)
        monkeypatch.setattr(cls, "__init__", spy)
    options = {"restart": {"shutdown_timeout": 1.0}, "reload": {"priority": 3},
               "reset": {}, "degrade": {"hold": None}, "backoff": {"cap": 5, "jitter": 0}}
    assert RecoveryConfig(recovery_strategy_configs=options).recovery_strategy_configs == options
    with pytest.raises(ValueError, match="cap"):
        RecoveryConfig(recovery_strategy_configs={"backoff": {"cap": 0}})
    assert built == []


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("restart", {"shutdown_timeout": 0}),
        ("restart", {"shutdown_timeout": "5"}),
        ("degrade", {"hold": math.inf}),
        ("backoff", {"base": -1}),
        ("backoff", {"jitter": 1}),
        ("backoff", {"jitter": None}),
        ("reset", {"priority": 1.5}),
        ("reload", {"bogus": 1, "priority": 1}),
    ],
)
def test_recovery_config_refuses_what_the_strategy_refuses_with_the_same_error(
    name: str, options: dict[str, Any]
) -> None:
    with pytest.raises((TypeError, ValueError)) as by_strategy:
        strategies.builtin_strategy(name, options)
    with pytest.raises(type(by_strategy.value)) as by_config:
        RecoveryConfig(recovery_strategy_configs={name: options})
    # The config says which entry a priority is from; otherwise the words are the same.
    long_name = f"recovery_strategy_configs[{name!r}]['priority']"
    assert str(by_config.value).replace(long_name, "priority") == str(by_strategy.value)


# -- unknown keywords: the error names what was meant ----------------------------------------


@pytest.mark.parametrize(
    ("word", "meant"),
    [
        ("failure_treshold", "; did you mean failure_threshold?"),
        ("timout", "; did you mean timeout?"),
        ("fail_max", ": pybreaker's fail_max is failure_threshold here"),
        ("reset_timeout", ": pybreaker's reset_timeout is timeout here"),
        ("recovery_timeout", ": circuitbreaker's recovery_timeout is timeout here"),
        ("expected_exception", ": circuitbreaker's expected_exception is record_exceptions here"),
        ("exclude", ": pybreaker's exclude is ignore_exceptions here"),
    ],
)
def test_an_unknown_breaker_keyword_names_the_field_meant(
    breaker_cls: type[recovery.CircuitBreaker], word: str, meant: str
) -> None:
    expected = f"CircuitBreakerConfig() got an unexpected keyword argument {word!r}{meant}"
    with pytest.raises(TypeError) as raised:
        CircuitBreakerConfig(**{word: 1})
    assert str(raised.value) == expected
    # The breaker's keyword form builds the config from its keywords: the same error.
    with pytest.raises(TypeError) as raised:
        breaker_cls("db", **{word: 1})
    assert str(raised.value) == expected


def test_a_keyword_like_no_field_lists_the_fields_on_one_line() -> None:
    with pytest.raises(TypeError) as raised:
        CircuitBreakerConfig(colour="red")
    message = str(raised.value)
    assert message.startswith(
        "CircuitBreakerConfig() got an unexpected keyword argument 'colour'; its fields are "
        "failure_threshold, success_threshold, timeout,"
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    ("word", "meant"),
    [
        ("max_recovery_atempts", "; did you mean max_recovery_attempts?"),
        ("failure_threshold", ": failure_threshold is a CircuitBreakerConfig field: "
         "RecoveryConfig(default_circuit_breaker=CircuitBreakerConfig(failure_threshold=...))"),
        ("fail_max", ": pybreaker's fail_max is CircuitBreakerConfig's failure_threshold: "
         "RecoveryConfig(default_circuit_breaker=CircuitBreakerConfig(failure_threshold=...))"),
    ],
)
def test_an_unknown_manager_keyword_names_the_field_meant(word: str, meant: str) -> None:
    with pytest.raises(TypeError) as raised:
        RecoveryConfig(**{word: 1})
    assert str(raised.value) == (
        f"RecoveryConfig() got an unexpected keyword argument {word!r}{meant}"
    )


def test_the_checked_configs_stay_frozen_attrs_classes_with_their_signatures() -> None:
    for cls in (CircuitBreakerConfig, RecoveryConfig):
        assert attrs.has(cls)
        config = cls()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            config.health_check_interval = 1.0  # type: ignore[misc]
        assert attrs.evolve(config, health_check_interval=1.0).health_check_interval == 1.0
        assert "health_check_interval" in inspect.signature(cls).parameters
