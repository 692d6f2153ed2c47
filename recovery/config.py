"""Configuration: frozen, validated attrs classes for a circuit breaker and the recovery manager."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from recovery import _validate as v
from recovery._backoff import Backoff
from recovery.alerts import AlertThresholds
from recovery.learning import ORDER_MODES

_logger = logging.getLogger("recovery.breaker")


ExceptionMatcher = type[BaseException] | Callable[[BaseException], bool]
"""An exception class, or a predicate ``fn(exc) -> bool``."""


def _exception_matchers(value: Any) -> tuple[ExceptionMatcher, ...]:
    """Accept one class or predicate, or an iterable of them; keep them as a tuple."""
    if inspect.isclass(value) or callable(value):
        return (value,)
    if isinstance(value, (str, bytes)):
        return value  # type: ignore[return-value]  # not a tuple: the validator names it
    try:
        return tuple(value)
    except TypeError:
        return value  # type: ignore[no-any-return]  # the validator names the bad value


def _matcher_tuple(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Exception classes and predicates, mixed. A class that is not an exception type is
    refused rather than taken for a predicate (calling it would build an instance, which
    is always true)."""
    if not isinstance(value, tuple):
        raise TypeError(
            f"{attribute.name} must be exception classes or predicates, got {value!r}"
        )
    for item in value:
        if inspect.isclass(item):
            if not issubclass(item, BaseException):
                raise TypeError(
                    f"{attribute.name} must hold exception classes or predicates, "
                    f"got the class {item!r} in {value!r}"
                )
        elif not callable(item):
            raise TypeError(
                f"{attribute.name} must hold exception classes or predicates, "
                f"got {item!r} in {value!r}"
            )


def split_matchers(
    matchers: tuple[Any, ...],
) -> tuple[tuple[type[BaseException], ...], tuple[Callable[[BaseException], bool], ...]]:
    """Split a config's exception matchers into classes (one ``isinstance``) and predicates."""
    classes = tuple(m for m in matchers if isinstance(m, type))
    return classes, tuple(m for m in matchers if not isinstance(m, type))


def matches(
    name: str, tests: tuple[Callable[[BaseException], bool], ...], exc: BaseException,
    on_error: bool,
) -> bool:
    """Whether any predicate matches ``exc``; one that raises is logged and counts as
    ``on_error``."""
    for test in tests:
        try:
            if test(exc):
                return True
        except Exception:
            _logger.exception("exception predicate %r of breaker %r failed", test, name)
            return on_error
    return False


# Upper bounds for the counts that size memory or loops. Each is far beyond a useful
# setting: a rate rule resolves 0.1% with 1,000 outcomes, so 100,000 (100 KB a breaker,
# wiped in microseconds on each transition) is ample; no dependency needs more than
# 1,000 trial calls at once or in a row to be trusted again.
MAX_WINDOW = 100_000
MAX_TRIALS = 1_000

# Upper bounds (seconds, inclusive, as Prometheus' ``le``) of the latency histogram that
# ``record_latency=True`` keeps: 1-2.5-5 steps from 100 us to 10 s, then 30 s and 60 s,
# so the calls a breaker guards (a cache hit to a slow batch job) each land in a bucket
# that tells them apart; anything longer falls in the last, unbounded one (+Inf).
# Fixed, so recording a call is one increment in a preallocated array.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)


DEFAULT_MINIMUM_REQUESTS = 20
"""Outcomes in the window before the circuit may open, unless ``failure_threshold`` is
set lower (then it is ``failure_threshold``) or ``minimum_requests`` is set."""


def default_minimum_requests(failure_threshold: Any) -> int:
    """What an unset ``minimum_requests`` becomes beside ``failure_threshold``: the default,
    or the threshold if lower (a bad threshold is left for its own validator to name)."""
    if isinstance(failure_threshold, int) and not isinstance(failure_threshold, bool):
        return min(DEFAULT_MINIMUM_REQUESTS, failure_threshold)
    return DEFAULT_MINIMUM_REQUESTS


PEER_NAMES: Mapping[str, tuple[str, str]] = {
    "fail_max": ("pybreaker", "failure_threshold"),
    "reset_timeout": ("pybreaker", "timeout"),
    "recovery_timeout": ("circuitbreaker", "timeout"),
    "expected_exception": ("circuitbreaker", "record_exceptions"),
    "exclude": ("pybreaker", "ignore_exceptions"),
}
"""Other breaker libraries' keywords -> (library, the field that means the same here): a
user moving over types the name they know, and the error translates it."""


@v.known_keywords({
    word: f"{library}'s {word} is {field} here" for word, (library, field) in PEER_NAMES.items()
})
@attrs.frozen
class CircuitBreakerConfig:
    """How a :class:`~recovery.CircuitBreaker` decides to open, probe and close.

    Durations are seconds (``float``); a ``datetime.timedelta`` is converted.
    Every bad value raises ``ValueError`` or ``TypeError`` naming the field and the
    value, at construction.

    The defaults fit a web client calling an upstream tens of times a second: it opens
    on 20 failures in the last 100 calls (or half of them, once 20 are in), probes
    after 2 s, and waits 1.2 times longer after each failed probe, up to a minute. A 1 s
    blip is over 2 s after it ends; a 20 s outage is cut off in under half a second and
    served again within a second of its end; a dead upstream gets one call a minute.
    ``benchmarks/choose_defaults.py`` replays the candidates that chose them.

    - ``failure_threshold``: failures in the window that open the circuit.
    - ``success_threshold``: successful half-open trials that close it again.
    - ``timeout``: how long the circuit stays open before a trial call is let
      through; not a call timeout (nothing here times a call out).
    - ``health_check_interval``: the pace of the plugin's health check while its
      circuit is open or repairing.
    - ``health_check_timeout``: the time limit of that check.
    - ``max_health_checks``: failed checks in a row that count as a failure of the
      plugin.
    - ``retry_backoff_factor``: each failed trial makes the next open period this many
      times longer.
    - ``max_retry_interval``: the longest open period.
    - ``enable_fast_fail``: reject calls while open (off: observe only, calls still run).
    - ``sliding_window_size``: outcomes the window keeps.
    - ``minimum_requests``: outcomes the window needs before any rule may open the
      circuit (unset: 20, or ``failure_threshold`` when that is lower).
    - ``failure_rate_threshold``: failure rate in the window that opens it (None: off).
    - ``slow_call_duration``: a call at least this long is slow (None: calls are not
      timed).
    - ``slow_call_rate_threshold``: slow-call rate that opens it (None: off).
    - ``half_open_max_calls``: concurrent trials in half-open (None:
      ``success_threshold``).
    - ``record_exceptions``: exceptions (classes or predicates) that count as failures.
    - ``ignore_exceptions``: exceptions (classes or predicates) that are not counted at
      all.
    - ``max_half_open_wait``: half-open longer than this without a verdict reopens
      (None: wait).
    - ``record_latency``: time every call the breaker lets through into a latency
      histogram (two clock reads a call).
    """

    failure_threshold: int = attrs.field(default=20, validator=v.positive_int)
    success_threshold: int = attrs.field(default=3, validator=v.bounded_int(MAX_TRIALS))
    timeout: float = attrs.field(default=2.0, converter=v.seconds, validator=v.positive_seconds)
    health_check_interval: float = attrs.field(
        default=10.0, converter=v.seconds, validator=v.interval
    )
    health_check_timeout: float = attrs.field(
        default=5.0, converter=v.seconds, validator=v.interval
    )
    max_health_checks: int = attrs.field(default=3, validator=v.positive_int)
    retry_backoff_factor: float = attrs.field(default=1.2, validator=v.factor)
    max_retry_interval: float = attrs.field(
        default=60.0, converter=v.seconds, validator=v.positive_seconds
    )
    enable_fast_fail: bool = attrs.field(default=True, validator=v.boolean)
    sliding_window_size: int = attrs.field(default=100, validator=v.bounded_int(MAX_WINDOW))
    # Unset, at most failure_threshold: a threshold set below the usual minimum works as
    # written (failure_threshold=10 opens on the 10th failure in a row, as in every peer).
    minimum_requests: int = attrs.field(
        default=attrs.Factory(
            lambda config: default_minimum_requests(config.failure_threshold), takes_self=True
        ),
        validator=v.positive_int,
    )
    failure_rate_threshold: float | None = attrs.field(
        default=0.5, validator=v.optional(v.rate)
    )
    slow_call_duration: float | None = attrs.field(
        default=None, converter=v.optional_seconds, validator=v.optional(v.positive_seconds)
    )
    slow_call_rate_threshold: float | None = attrs.field(
        default=None, validator=v.optional(v.rate)
    )
    half_open_max_calls: int | None = attrs.field(
        default=None, validator=v.optional(v.bounded_int(MAX_TRIALS))
    )
    record_exceptions: tuple[ExceptionMatcher, ...] = attrs.field(
        default=(Exception,), converter=_exception_matchers, validator=_matcher_tuple
    )
    ignore_exceptions: tuple[ExceptionMatcher, ...] = attrs.field(
        default=(), converter=_exception_matchers, validator=_matcher_tuple
    )
    max_half_open_wait: float | None = attrs.field(
        default=None, converter=v.optional_seconds, validator=v.optional(v.positive_seconds)
    )
    # Time every call into a histogram of LATENCY_BUCKETS (two clock reads a call).
    record_latency: bool = attrs.field(default=False, validator=v.boolean)

    def __attrs_post_init__(self) -> None:
        size = self.sliding_window_size
        for name in ("failure_threshold", "minimum_requests"):
            value = getattr(self, name)
            if value > size:
                raise ValueError(
                    f"{name} must be <= sliding_window_size ({size}), got {value!r}"
                )

    @property
    def trial_calls(self) -> int:
        """Concurrent trial calls admitted in half-open."""
        if self.half_open_max_calls is None:
            return self.success_threshold
        return self.half_open_max_calls


# -- the recovery manager's configuration ----------------------------------------------------

_PRIORITY = v.optional(v.integer())

STRATEGY_KNOBS: Mapping[str, Mapping[str, v.Validator]] = {
    "restart": {"priority": _PRIORITY, "shutdown_timeout": v.positive_seconds},
    "reload": {"priority": _PRIORITY},
    "reset": {"priority": _PRIORITY},
    "degrade": {"priority": _PRIORITY, "hold": v.optional(v.positive_seconds)},
    "backoff": {"priority": _PRIORITY, "base": v.positive_seconds, "cap": v.positive_seconds,
                "jitter": v.number(ge=0, lt=1)},
}
"""The options (constructor keywords) of each built-in strategy, and how each is checked.

Declared here rather than found by building the strategy, so a ``RecoveryConfig`` is
validated without side effects, and the strategies check their keywords by the same
rules (``recovery.strategies`` uses this table).
"""


def check_strategy_options(strategy: str, options: Mapping[str, Any]) -> None:
    """Refuse what the built-in ``strategy``'s constructor would refuse in ``options``.

    An unknown knob raises ``ValueError`` naming the strategy, the knob and the knobs
    it has; a bad value raises as its validator says.
    """
    knobs = STRATEGY_KNOBS[strategy]
    unknown = sorted(set(options) - set(knobs))
    if unknown:
        raise ValueError(
            f"recovery_strategy_configs[{strategy!r}] has unknown option(s) "
            f"{', '.join(unknown)}; {strategy!r} takes {', '.join(sorted(knobs))}"
        )
    for knob, value in options.items():
        v.check(knobs[knob], knob, value)


def _plugin_strategies(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError(f"plugin_recovery_strategies must be a mapping, got {value!r}")
    return dict(value)


def _strategy_configs(value: Any) -> dict[str, dict[str, Any]]:
    """A copy, as a dict of dicts; the options themselves are checked by the validator."""
    if not isinstance(value, Mapping):
        raise TypeError(f"recovery_strategy_configs must be a mapping, got {value!r}")
    configs: dict[str, dict[str, Any]] = {}
    for name, options in value.items():
        if not isinstance(name, str) or not isinstance(options, Mapping):
            raise TypeError(
                "recovery_strategy_configs must map strategy names to option mappings, "
                f"got {name!r}: {options!r}"
            )
        configs[name] = dict(options)
    return configs


def _strategy_options(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """``priority`` for every strategy; the built-ins' knobs as ``STRATEGY_KNOBS`` says."""
    for name, options in value.items():
        v.check(_PRIORITY, f"{attribute.name}[{name!r}]['priority']", options.get("priority"))
        if name in STRATEGY_KNOBS:
            check_strategy_options(name, options)


def _order_mode(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    v.check(v.text, attribute.name, value)
    if value not in ORDER_MODES:
        raise ValueError(f"{attribute.name} must be one of {', '.join(map(repr, ORDER_MODES))}, "
                         f"got {value!r}")


def _breaker_field_hints() -> dict[str, str]:
    """For RecoveryConfig: a breaker's setting (or another library's name for one) is given
    to the manager through ``default_circuit_breaker``."""
    hints = {
        field.name: f"{field.name} is a CircuitBreakerConfig field: RecoveryConfig("
        f"default_circuit_breaker=CircuitBreakerConfig({field.name}=...))"
        for field in attrs.fields(CircuitBreakerConfig)
    }
    for word, (library, field) in PEER_NAMES.items():
        hints[word] = f"{library}'s {word} is CircuitBreakerConfig's {field}: RecoveryConfig(" \
            f"default_circuit_breaker=CircuitBreakerConfig({field}=...))"
    return hints


@v.known_keywords(_breaker_field_hints())
@attrs.frozen(kw_only=True)
class RecoveryConfig:
    """How the manager recovers plugins. ``RecoveryConfig()`` is a sensible default.

    Durations are seconds (``timedelta`` accepted); bad values raise ``ValueError`` or
    ``TypeError`` naming the field and the value. The durations that schedule a
    wait (intervals, timeouts, back-offs) must be at least 10 ms: a loop asked to
    wake every microsecond would spend its life under its own lock.

    - ``enable_auto_recovery``: start episodes for recoverable failures; off, failures
      are only counted, alerted and (if unrecoverable) acted on.
    - ``health_check_interval``: the default pace of a plugin's active health check
      while its circuit is closed.
    - ``max_recovery_attempts``: attempts per episode.
    - ``recovery_backoff_factor``: each further wait between attempts is this many
      times longer: the wait before attempt ``k + 2`` is
      ``min(base * factor**k, max_recovery_backoff)``.
    - ``recovery_backoff_base``: the wait after the first failed attempt.
    - ``max_recovery_backoff``: the longest wait between attempts.
    - ``default_circuit_breaker``: the breaker config of plugins registered without one.
    - ``default_recovery_strategy``: a strategy name used alone for every plugin
      without an entry in ``plugin_recovery_strategies``; None tries the chain.
    - ``plugin_recovery_strategies``: plugin name → the one strategy to use for it.
    - ``recovery_strategy_configs``: strategy name → options: ``priority`` for any
      strategy, and the built-ins' own knobs (restart: ``shutdown_timeout``; degrade:
      ``hold``; backoff: ``base``, ``cap``, ``jitter``). Custom strategies see their
      entry as ``ctx.config``.
    - ``enable_health_checking``: run the plugins' health checks.
    - ``health_check_timeout``: the default time limit of a plugin's health check.
    - ``health_check_concurrency``: threads that run the health checks (at most 1,024).
    - ``enable_alerting``: raise alerts.
    - ``alert_thresholds``: when each alert fires (see ``AlertThresholds``).
    - ``max_episodes_per_period``: restart intensity: one more episode than this within
      ``episode_period`` puts the plugin in a crash loop instead.
    - ``episode_period``: the window of that count, in seconds.
    - ``stable_period``: seconds without a failure after which a plugin's back-off state
      (episode history, crash-loop delay, failed episodes in a row) is forgotten.
    - ``strategy_timeout``: the most one strategy run (or a custom ``can_handle``) may
      take.
    - ``recovery_workers``: threads that run episodes (episodes of different plugins
      run in parallel up to this many; at most 1,024).
    - ``verify_timeout``: how long, after an action, the breaker's half-open trials
      have to prove a plugin without a health check well.
    - ``crash_loop_delay``: the first wait of a crash loop before its next attempt.
    - ``crash_loop_max_delay``: the cap of that wait, which doubles each time.
    - ``give_up_after``: episodes in a row that fail to bring the plugin back before
      the manager gives up on it until ``reset_plugin()``; None never gives up.
    - ``callback_timeout``: the most an alert handler, an audit record or a log record
      of the manager may take before it is abandoned (counted and logged; its thread
      goes on, so a late record still lands).
    - ``max_abandoned_threads``: threads of one plugin (strategies, checks, callbacks)
      left running past their timeout; while that many are stuck, no more are started
      for it.
    - ``early_warning``: watch every plugin's and dependency's breaker with a
      :class:`recovery.forecast.Forecaster` on the manager's clock, and raise an
      "early_warning" alert when one is going bad before it opens (off by default: it
      is one more thread, and a learned baseline can still cry wolf now and then).
    - ``incident_window``: trips of linked registrations this close (seconds) are one
      incident (:mod:`recovery.incidents`, always on).
    - ``incident_min_group``: this many unlinked trips within 2 s are one incident,
      cause unknown.
    - ``incident_hold_timeout``: a dependent is held (not restarted) at most this long
      while its root is repaired.
    - ``strategy_order``: how a plugin without a configured strategy orders the
      strategies that can handle its failure: "priority" the fixed priority order;
      "learned" tries first the one its own audit history says brings it back fastest
      (with no history: the priority order; :mod:`recovery.learning`). Opt-in: attempts
      made while a dependency's root is down teach it that cheap strategies are as good
      as repairs (docs/decisions.md).
    - ``random_seed`` (None): seeds the learned order's random draws, so runs repeat.
    """

    enable_auto_recovery: bool = attrs.field(default=True, validator=v.boolean)
    health_check_interval: float = attrs.field(
        default=30.0, converter=v.seconds, validator=v.interval
    )
    max_recovery_attempts: int = attrs.field(default=3, validator=v.positive_int)
    recovery_backoff_factor: float = attrs.field(default=2.0, validator=v.factor)
    recovery_backoff_base: float = attrs.field(
        default=1.0, converter=v.seconds, validator=v.interval
    )
    max_recovery_backoff: float = attrs.field(
        default=60.0, converter=v.seconds, validator=v.interval
    )
    default_circuit_breaker: CircuitBreakerConfig = attrs.field(
        factory=CircuitBreakerConfig, validator=v.instance_of(CircuitBreakerConfig)
    )
    default_recovery_strategy: str | None = attrs.field(
        default=None, validator=v.optional(v.name())
    )
    plugin_recovery_strategies: dict[str, str] = attrs.field(
        factory=dict, converter=_plugin_strategies,
        validator=attrs.validators.deep_mapping(key_validator=v.text, value_validator=v.name()),
    )
    recovery_strategy_configs: dict[str, dict[str, Any]] = attrs.field(
        factory=dict, converter=_strategy_configs, validator=_strategy_options
    )
    enable_health_checking: bool = attrs.field(default=True, validator=v.boolean)
    health_check_timeout: float = attrs.field(
        default=5.0, converter=v.seconds, validator=v.interval
    )
    health_check_concurrency: int = attrs.field(default=4, validator=v.bounded_int(1024))
    enable_alerting: bool = attrs.field(default=True, validator=v.boolean)
    alert_thresholds: AlertThresholds = attrs.field(
        factory=AlertThresholds, validator=v.instance_of(AlertThresholds)
    )
    max_episodes_per_period: int = attrs.field(default=5, validator=v.positive_int)
    episode_period: float = attrs.field(
        default=300.0, converter=v.seconds, validator=v.positive_seconds
    )
    stable_period: float = attrs.field(
        default=600.0, converter=v.seconds, validator=v.positive_seconds
    )
    strategy_timeout: float = attrs.field(
        default=30.0, converter=v.seconds, validator=v.interval
    )
    recovery_workers: int = attrs.field(default=2, validator=v.bounded_int(1024))
    verify_timeout: float = attrs.field(
        default=10.0, converter=v.seconds, validator=v.interval
    )
    crash_loop_delay: float = attrs.field(
        default=5.0, converter=v.seconds, validator=v.interval
    )
    crash_loop_max_delay: float = attrs.field(
        default=300.0, converter=v.seconds, validator=v.interval
    )
    give_up_after: int | None = attrs.field(default=None, validator=v.optional(v.positive_int))
    callback_timeout: float = attrs.field(
        default=5.0, converter=v.seconds, validator=v.interval
    )
    max_abandoned_threads: int = attrs.field(default=4, validator=v.bounded_int(1024))
    early_warning: bool = attrs.field(default=False, validator=v.boolean)
    incident_window: float = attrs.field(
        default=30.0, converter=v.seconds, validator=v.positive_seconds
    )
    incident_min_group: int = attrs.field(default=3, validator=v.integer(ge=2))
    incident_hold_timeout: float = attrs.field(
        default=120.0, converter=v.seconds, validator=v.positive_seconds
    )
    strategy_order: str = attrs.field(default="priority", validator=_order_mode)
    random_seed: int | None = attrs.field(
        default=None, validator=v.optional(v.integer()))

    def __attrs_post_init__(self) -> None:
        if self.crash_loop_max_delay < self.crash_loop_delay:
            raise ValueError(
                f"crash_loop_max_delay must be >= crash_loop_delay ({self.crash_loop_delay:g}), "
                f"got {self.crash_loop_max_delay!r}"
            )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next."""
        return Backoff(self.recovery_backoff_base, self.recovery_backoff_factor,
                       self.max_recovery_backoff).delay(attempt - 1)
