"""The compiled window and its pure-Python twin are one contract, enforced here.

Both expose the same names with the same signatures, the stub (_window.pyi) that
type checkers read declares them, both take the same settings from a config and
the same state and trip-reason codes from recovery.state. The reads the recovery
manager uses (``window_counts``, ``trip_reason``) run on both windows.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import os
import subprocess
import sys
from array import array
from pathlib import Path
from typing import Annotated, Any

import pytest

from recovery import CircuitBreakerConfig, CircuitOpenError, _window_py, state, tune
from recovery._window_settings import (
    SETTINGS,
    WindowSettings,
    mismatched,
    table_rows,
    window_settings,
)
from recovery.state import TripReason
from recovery.testing import FakeClock
from tests.helpers import WINDOWS

STUB = Path(_window_py.__file__).with_name("_window.pyi")
CLASSES = ("Window", "Route", "Dispatcher")


def _compiled_module() -> Any:
    try:
        return importlib.import_module("recovery._window")
    except ModuleNotFoundError as error:  # pragma: no cover - CI fails the build instead
        if error.name != "recovery._window":
            raise  # a stale build is an error here too, never a skip
        return None


compiled = _compiled_module()

needs_compiled = pytest.mark.skipif(
    compiled is None, reason="the compiled window is not built: nothing to compare the twin with"
)


def _instances(module: Any) -> dict[str, Any]:
    """One instance of each class (instance attributes count as names too)."""
    window = module.Window("w", CircuitBreakerConfig())
    return {"Window": window, "Route": module.Route(window), "Dispatcher": module.Dispatcher()}


def _public(obj: Any) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def _stub() -> dict[str, dict[str, ast.AST]]:
    """Per class of the stub, its declared members by name."""
    tree = ast.parse(STUB.read_text())
    members: dict[str, dict[str, ast.AST]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            declared: dict[str, ast.AST] = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    declared[item.name] = item
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    declared[item.target.id] = item
            members[node.name] = declared
    return members


def _is_property(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef) and any(
        isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list
    )


# private: the type of inspect.Parameter.kind
def _stub_parameters(node: ast.FunctionDef) -> list[tuple[str, inspect._ParameterKind]]:
    args = node.args
    kinds = inspect.Parameter
    params = [(a.arg, kinds.POSITIONAL_ONLY) for a in args.posonlyargs]
    params += [(a.arg, kinds.POSITIONAL_OR_KEYWORD) for a in args.args]
    if args.vararg is not None:
        params.append((args.vararg.arg, kinds.VAR_POSITIONAL))
    params += [(a.arg, kinds.KEYWORD_ONLY) for a in args.kwonlyargs]
    if args.kwarg is not None:
        params.append((args.kwarg.arg, kinds.VAR_KEYWORD))
    return params


# private: the type of inspect.Parameter.kind
def _parameters(fn: Any) -> list[tuple[str, inspect._ParameterKind, Any]]:
    """Name, kind and default of each parameter; ``self`` only by name (C methods make
    it positional-only, Python ones do not, and nobody passes it by keyword)."""
    signature = inspect.signature(fn)
    return [
        (p.name, p.POSITIONAL_ONLY if p.name == "self" else p.kind, p.default)
        for p in signature.parameters.values()
    ]


def _stub_methods() -> list[tuple[str, str]]:
    return [
        (cls, name)
        for cls, members in _stub().items()
        for name, node in sorted(members.items())
        if isinstance(node, ast.FunctionDef) and not _is_property(node)
    ]


# -- one set of names, one set of signatures ------------------------------------------------------


@needs_compiled
@pytest.mark.parametrize("cls", CLASSES)
def test_both_windows_expose_the_same_public_names(cls: str) -> None:
    assert _public(_instances(compiled)[cls]) == _public(_instances(_window_py)[cls])


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_the_stub_declares_every_public_name_and_each_declared_name_exists(
    cls: str, window: str
) -> None:
    module = {"compiled": compiled, "python": _window_py}[window]
    if module is None:  # pragma: no cover - CI fails the build instead
        pytest.skip("the compiled window is not built")
    declared = set(_stub()[cls])
    instance = _instances(module)[cls]
    assert _public(instance) <= declared, "public names the stub does not declare"
    assert {name for name in declared if not hasattr(instance, name)} == set()


@pytest.mark.parametrize(("cls", "name"), _stub_methods())
def test_the_twin_has_the_signatures_the_stub_declares(cls: str, name: str) -> None:
    node = _stub()[cls][name]
    assert isinstance(node, ast.FunctionDef)
    stub = [(n, inspect.Parameter.POSITIONAL_ONLY if n == "self" else kind)
            for n, kind in _stub_parameters(node)]
    twin = getattr(getattr(_window_py, cls), name)
    assert [(n, kind) for n, kind, _ in _parameters(twin)] == stub


@needs_compiled
@pytest.mark.parametrize(
    ("cls", "name"), [member for member in _stub_methods() if member[1] != "__init__"]
)
def test_both_windows_have_the_same_signatures(cls: str, name: str) -> None:
    compiled_method = getattr(getattr(compiled, cls), name)
    twin_method = getattr(getattr(_window_py, cls), name)
    assert _parameters(compiled_method) == _parameters(twin_method)


@needs_compiled
def test_both_windows_take_the_same_constructor_arguments_by_name() -> None:
    """A C class's __init__ has no signature to read: call both with keywords."""
    config = CircuitBreakerConfig()
    for module in (compiled, _window_py):
        window = module.Window(name="w", config=config, clock=FakeClock())
        module.Route(breaker=window, fallback=None)


# -- the config's settings: one list --------------------------------------------------------------

# Every setting different from its default and from each other, so a field copied into
# the wrong place or not at all shows.
DISTINCT = CircuitBreakerConfig(
    sliding_window_size=17, half_open_max_calls=3, minimum_requests=5, failure_threshold=7,
    failure_rate_threshold=0.4, slow_call_rate_threshold=0.6, slow_call_duration=1.5,
    success_threshold=2, timeout=9.0, retry_backoff_factor=1.25, max_retry_interval=90.0,
    max_half_open_wait=33.0, enable_fast_fail=False, record_latency=True,
)


@pytest.mark.parametrize("config", [DISTINCT, CircuitBreakerConfig()], ids=["distinct", "defaults"])
def test_both_windows_copy_every_setting(breaker_cls: Any, config: CircuitBreakerConfig) -> None:
    window = breaker_cls("w", config)
    # private: the window's copy of its config, the contract under test
    assert window._read_settings() == window_settings(config)


@pytest.mark.parametrize("config", [DISTINCT, CircuitBreakerConfig()], ids=["distinct", "defaults"])
def test_both_windows_hold_each_setting_in_the_kind_of_its_row(
    breaker_cls: Any, config: CircuitBreakerConfig
) -> None:
    """The twin holds what the table's function returns, the compiled window what its C
    struct converts that to: either differs from the row's kind (an int where a float
    was declared, a struct line of another type) and the windows may run on other numbers."""
    # private: the window's copy of its config, the contract under test
    held = breaker_cls("w", config)._read_settings()
    assert {name: type(value) for name, value in held.items()} == {
        name: row.kind for name, row in SETTINGS.items()
    }


def test_settings_say_off_with_a_number() -> None:
    settings = window_settings(
        CircuitBreakerConfig(failure_rate_threshold=None, slow_call_rate_threshold=None)
    )
    assert (settings["failure_rate"], settings["slow_rate"]) == (0.0, 0.0)
    assert (settings["slow_duration"], settings["max_half_open_wait"]) == (-1.0, -1.0)
    assert settings["trial_limit"] == CircuitBreakerConfig().trial_calls


def test_the_twin_s_settings_are_the_table_s_typed_attributes() -> None:
    assert issubclass(_window_py.Window, WindowSettings)
    assert list(WindowSettings.__annotations__) == ["_" + name for name in SETTINGS]


def test_a_c_struct_that_differs_from_the_table_is_named_field_by_field() -> None:
    struct = {name: row.kind() for name, row in SETTINGS.items()}  # a zeroed struct, as a dict
    assert mismatched(struct) == []
    assert mismatched({**struct, "jitter": 0.0}) == ["jitter"]  # a line the table lacks
    del struct["timeout"]
    assert mismatched(struct) == ["timeout"]  # a row the struct lacks
    assert mismatched({**struct, "timeout": 0.0, "size": 0.0}) == ["size"]  # double for int
    assert mismatched({**struct, "timeout": 0.0, "fast_fail": 0}) == ["fast_fail"]  # not bint


@pytest.mark.parametrize("hint", [
    Annotated[str, lambda config: ""],  # a kind the C struct has no line for
    Annotated[float, 0.5],  # a value, not a function of the config
    float,  # no function at all
])
def test_a_row_that_is_not_a_kind_and_a_function_is_refused(hint: Any) -> None:
    table = type("Table", (), {"__annotations__": {"_jitter": hint}})
    with pytest.raises(TypeError, match=r"Table\._jitter must be declared as _<name>: "):
        table_rows(table)


@needs_compiled
def test_the_compiled_settings_struct_is_the_table() -> None:
    # private: the import-time check of the C struct, under test
    assert compiled._settings_mismatched == []


# -- state and trip-reason codes: one place -------------------------------------------------------


@needs_compiled
def test_the_compiled_codes_are_those_of_recovery_state() -> None:
    assert compiled.STATE_CODES == state.STATE_CODES
    assert compiled.TRIP_CODES == state.TRIP_CODES


def test_the_twin_and_the_tuner_take_their_codes_from_recovery_state() -> None:
    assert (_window_py.CLOSED, _window_py.OPEN, _window_py.HALF_OPEN, _window_py.REPAIRING) == (
        state.STATE_CODES
    )
    assert (tune.CLOSED, tune.OPEN) == (state.CLOSED_CODE, state.OPEN_CODE)


def test_each_code_indexes_its_state_and_its_reason() -> None:
    assert [state.STATES[code].value for code in state.STATE_CODES] == [
        "closed", "open", "half_open", "repairing",
    ]
    assert [state.TRIP_REASONS[code] for code in state.TRIP_CODES] == [
        None, TripReason.FAILURES, TripReason.SLOW_CALLS, TripReason.TRIAL_FAILED,
        TripReason.FORCED,
    ]


def test_state_codes_drive_the_state_on_both_windows(make_breaker: Any) -> None:
    cb = make_breaker(timeout=5.0)
    assert cb.state_code == state.CLOSED_CODE
    cb.force_open()
    assert cb.state_code == state.OPEN_CODE
    cb.allow_trial()
    assert cb.state_code == state.HALF_OPEN_CODE
    cb.begin_repair()
    assert cb.state_code == state.REPAIRING_CODE


# -- subclasses ------------------------------------------------------------------------------------
# The compiled window gives each subclass descriptors of its own of the C methods it
# inherits (so CPython specialises calls to them): that must change nothing a subclass
# can see.


class Tagged:
    """A mixin after the window in the MRO, with an ``__init_subclass__`` of its own."""

    tag: Any = None

    def __init_subclass__(cls, tag: Any = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.tag = tag


def test_a_subclass_and_its_subclasses_keep_an_overridden_call(breaker_cls: Any) -> None:
    class Counting(breaker_cls):  # type: ignore[misc, valid-type]
        __slots__ = ("calls",)

        def call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return super().call(fn, *args, **kwargs)

    class Deeper(Counting):
        __slots__ = ()

    for cls in (Counting, Deeper):
        cb = cls("sub", CircuitBreakerConfig())
        cb.calls = 0
        assert cb.call(len, "abc") == 3
        assert cb.calls == 1
        assert cb.metrics().total_successes == 1


def test_a_subclass_calls_through_its_window_and_passes_keywords_on(breaker_cls: Any) -> None:
    class Plain(breaker_cls, Tagged, tag="plain"):  # type: ignore[misc, valid-type]
        pass

    cb = Plain("sub", CircuitBreakerConfig())
    assert Plain.tag == "plain"
    assert cb.call(len, "abcd") == 4
    assert cb.metrics().total_successes == 1
    with pytest.raises(TypeError):

        class Unknown(breaker_cls, unknown=1):  # type: ignore[misc, valid-type, call-arg]
            pass


# -- window_counts --------------------------------------------------------------------------------


class Boom(Exception):
    pass


def _fail(cb: Any, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            cb.call(_boom)


def _boom() -> None:
    raise Boom()


def test_window_counts_are_the_calls_and_failures_in_the_sliding_window(make_breaker: Any) -> None:
    cb = make_breaker(sliding_window_size=4, failure_threshold=4, minimum_requests=4,
              failure_rate_threshold=None)
    assert cb.window_counts() == (0, 0)
    cb.call(int)
    _fail(cb, 2)
    assert cb.window_counts() == (3, 2)
    cb.call(int)
    cb.call(int)  # the first call leaves the window of four
    assert cb.window_counts() == (4, 2)
    cb.call(int)
    cb.call(int)  # and then both failures
    assert cb.window_counts() == (4, 0)
    raw = cb._snapshot()  # private: the window's raw counts, against the public ones
    assert cb.window_counts() == (raw["window_count"], raw["window_failures"])


def test_window_counts_start_again_at_each_transition(make_breaker: Any) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2)
    _fail(cb, 2)
    assert cb.window_counts() == (0, 0)


# -- trip_reason ----------------------------------------------------------------------------------


def test_trip_reason_is_none_while_closed(make_breaker: Any) -> None:
    cb = make_breaker()
    assert cb.trip_reason is None
    cb.call(int)
    assert cb.trip_reason is None


def test_a_failure_trip_reports_failures(make_breaker: Any) -> None:
    cb = make_breaker(failure_threshold=2, minimum_requests=2)
    _fail(cb, 2)
    assert cb.trip_reason is TripReason.FAILURES


def test_a_failure_rate_trip_reports_failures(make_breaker: Any) -> None:
    cb = make_breaker(sliding_window_size=4, failure_threshold=4, minimum_requests=4,
              failure_rate_threshold=0.5)
    cb.call(int)
    cb.call(int)
    _fail(cb, 2)
    assert cb.trip_reason is TripReason.FAILURES


def test_a_slow_call_trip_reports_slow_calls(make_breaker: Any, clock: FakeClock) -> None:
    cb = make_breaker(sliding_window_size=4, failure_threshold=4, minimum_requests=2,
              slow_call_duration=1.0, slow_call_rate_threshold=1.0)
    for _ in range(2):
        cb.call(clock.advance, 2.0)
    assert cb.trip_reason is TripReason.SLOW_CALLS


def test_failures_win_when_both_rules_fire_on_one_call(make_breaker: Any, clock: FakeClock) -> None:
    cb = make_breaker(sliding_window_size=2, failure_threshold=2, minimum_requests=2,
              slow_call_duration=1.0, slow_call_rate_threshold=1.0)

    def slow_failure() -> None:
        clock.advance(2.0)
        raise Boom()

    for _ in range(2):
        with pytest.raises(Boom):
            cb.call(slow_failure)
    assert cb.trip_reason is TripReason.FAILURES


def test_a_failed_trial_reports_trial_failed(make_breaker: Any, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, timeout=5.0)
    _fail(cb)
    clock.advance(5.0)
    _fail(cb)  # the half-open trial
    assert cb.state_code == state.OPEN_CODE
    assert cb.trip_reason is TripReason.TRIAL_FAILED


def test_a_slow_trial_reports_trial_failed(make_breaker: Any, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, timeout=5.0,
              slow_call_duration=1.0, slow_call_rate_threshold=1.0)
    _fail(cb)
    clock.advance(5.0)
    cb.call(clock.advance, 2.0)
    assert cb.state_code == state.OPEN_CODE
    assert cb.trip_reason is TripReason.TRIAL_FAILED


def test_a_lost_trial_reports_trial_failed(make_breaker: Any, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1, timeout=5.0,
              max_half_open_wait=30.0)
    _fail(cb)
    clock.advance(5.0)
    cb.try_admit()  # a trial that never reports back
    clock.advance(30.0)
    with pytest.raises(CircuitOpenError):
        cb.call(int)
    assert cb.trip_reason is TripReason.TRIAL_FAILED


def test_a_trial_exited_on_another_thread_reports_trial_failed(
    make_breaker: Any, clock: FakeClock
) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, timeout=5.0)
    _fail(cb)
    clock.advance(5.0)
    cb.try_admit()
    cb._lost_admission()  # private: the window's hook for an admission never ended, under test
    assert cb.trip_reason is TripReason.TRIAL_FAILED


def test_half_open_keeps_the_reason_it_opened_for(make_breaker: Any, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, timeout=5.0)
    _fail(cb)
    clock.advance(5.0)
    cb.try_admit()
    assert cb.state_code == state.HALF_OPEN_CODE
    assert cb.trip_reason is TripReason.FAILURES


@pytest.mark.parametrize("duration", [None, 3.0, math.inf])
def test_force_open_reports_forced(make_breaker: Any, duration: float | None) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1)
    cb.force_open(duration)
    assert cb.trip_reason is TripReason.FORCED
    cb.reset()
    _fail(cb)
    cb.force_open(duration)  # already open: now held open by force
    assert cb.trip_reason is TripReason.FORCED


def test_reset_and_a_closing_trial_clear_the_reason(make_breaker: Any, clock: FakeClock) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1, success_threshold=1, timeout=5.0)
    _fail(cb)
    cb.reset()
    assert cb.trip_reason is None
    _fail(cb)
    clock.advance(5.0)
    cb.call(int)
    assert cb.state_code == state.CLOSED_CODE
    assert cb.trip_reason is None


def test_a_repair_keeps_the_reason_and_a_failed_one_too(make_breaker: Any) -> None:
    cb = make_breaker(failure_threshold=1, minimum_requests=1)
    _fail(cb)
    cb.begin_repair()
    assert cb.trip_reason is TripReason.FAILURES
    assert cb.end_repair(False)
    assert cb.state_code == state.OPEN_CODE
    assert cb.trip_reason is TripReason.FAILURES


def test_a_repair_begun_while_closed_reports_forced(make_breaker: Any) -> None:
    cb = make_breaker()
    cb.begin_repair()
    assert cb.trip_reason is TripReason.FORCED
    cb.end_repair(True)
    assert cb.trip_reason is TripReason.FORCED  # half-open: not closed yet


def test_trip_reason_is_a_str_enum_shown_as_its_value() -> None:
    assert TripReason("slow_calls") is TripReason.SLOW_CALLS
    assert str(TripReason.TRIAL_FAILED) == "trial_failed"
    assert [reason.value for reason in TripReason] == [
        "failures", "slow_calls", "trial_failed", "forced",
    ]


def test_replay_trips_for_the_same_reason_on_both_windows(breaker_cls: Any) -> None:
    cb = breaker_cls("w", CircuitBreakerConfig(failure_threshold=2, minimum_requests=2))
    cb.replay(array("d", [0.0, 1.0]), b"\x00\x00", array("d", [0.0, 0.0]))
    assert cb.trip_reason is TripReason.FAILURES


# -- which window a process gets -----------------------------------------------------------

# Makes the import of the compiled window raise ``error`` in a fresh interpreter.
_BLOCKED_IMPORT = """
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "recovery._window":
            raise {error}
        return None
sys.meta_path.insert(0, Blocked())
import recovery
print(recovery.EXTENSION_ACTIVE)
"""
_MISSING = "ModuleNotFoundError(\"No module named 'recovery._window'\", name='recovery._window')"
_BROKEN = [
    "ImportError('/x/_window.so: undefined symbol: PyUnicode_Foo')",  # built for another Python
    "ImportError(\"recovery._window's Settings differs from the settings table in ['jitter']: "
    "rebuild it\")",  # stale sources
    "ModuleNotFoundError(\"No module named 'numpy'\", name='numpy')",  # a need of its own
    # a build older than the Python sources fails its import-time checks in its own way
    "AttributeError(\"type object 'WindowSettings' has no attribute '_fields'\")",
]


def _import_recovery(error: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "RECOVERY_NO_EXTENSIONS"}
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT.format(error=error)],
        capture_output=True, text=True, timeout=60, env={**environ, **env},
    )


def test_a_missing_extension_selects_the_twin() -> None:
    result = _import_recovery(_MISSING)
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr


@pytest.mark.parametrize("error", _BROKEN)
def test_a_broken_extension_is_an_error_that_says_how_to_rebuild(error: str) -> None:
    result = _import_recovery(error)
    assert result.returncode != 0 and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: recovery's compiled window"), result.stderr
    assert "Rebuild it" in last and "RECOVERY_NO_EXTENSIONS=1" in last
    assert eval(error).args[0] in last  # what went wrong, as Python said it


@pytest.mark.parametrize("error", _BROKEN)
def test_asking_for_the_twin_skips_even_a_broken_extension(error: str) -> None:
    result = _import_recovery(error, RECOVERY_NO_EXTENSIONS="1")
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr
