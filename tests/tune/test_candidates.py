"""Candidates from --config and --grid, and the rules that can never fire."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recovery import tune
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.trace import Trace
from recovery.tune import make_candidate, parse_config_args
from tests.tune.helpers import (
    outage_then_recovery,
    run_cli,
    write_trace,
)

# -- candidates -------------------------------------------------------------------------


def test_config_values_are_parsed_to_the_field_type() -> None:
    parsed = parse_config_args(
        ["failure_threshold=3,timeout=2.5", "enable_fast_fail=no", "failure_rate_threshold=none"]
    )
    assert parsed.overrides == {
        "failure_threshold": 3, "timeout": 2.5, "enable_fast_fail": False,
        "failure_rate_threshold": None,
    }
    assert parsed.config == CircuitBreakerConfig(
        failure_threshold=3, timeout=2.5, enable_fast_fail=False, failure_rate_threshold=None
    )
    assert parsed.label == (
        "failure_threshold=3,timeout=2.5,enable_fast_fail=False,failure_rate_threshold=None"
    )
    assert make_candidate({}).label == "defaults"


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["speed=3"], "unknown config field 'speed'; one of: enable_fast_fail"),
        (["record_exceptions=ValueError"], "unknown config field 'record_exceptions'"),
        (["trace.csv"], "expects key=value, got 'trace.csv'"),
        (["failure_threshold=3.5"], "failure_threshold must be int, got '3.5'"),
        (["enable_fast_fail=maybe"], "enable_fast_fail must be bool"),
        (["timeout=none"], "timeout must be float, got 'none'"),
        (["failure_threshold=0"], "failure_threshold"),
    ],
)
def test_bad_config_values_are_named(items: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_config_args(items)


def test_grid_file_as_list_or_as_cartesian_product(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"timeout": 5}, {"failure_threshold": 2, "timeout": "7"}]))
    assert [c.overrides for c in tune.load_grid(str(listed))] == [
        {"timeout": 5}, {"failure_threshold": 2, "timeout": 7.0}
    ]
    product = tmp_path / "product.json"
    product.write_text(json.dumps(
        {"failure_threshold": [5, 20], "sliding_window_size": [10, 50], "minimum_requests": 5}
    ))
    grid = tune.load_grid(str(product))
    assert [c.overrides for c in grid] == [
        {"failure_threshold": 5, "sliding_window_size": 10, "minimum_requests": 5},
        {"failure_threshold": 5, "sliding_window_size": 50, "minimum_requests": 5},
        {"failure_threshold": 20, "sliding_window_size": 50, "minimum_requests": 5},
    ]
    skipped = "skipped \"{'failure_threshold': 20, 'sliding_window_size': 10"
    assert skipped in capsys.readouterr().err
    for text, message in [
        ('{"speed": [1]}', "unknown config field 'speed'"),
        ("[1, 2]", "a grid is a JSON list of objects"),
        ("{", "not JSON"),
        ('{"failure_threshold": [0, -1]}', "every combination of the grid is an invalid config"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            tune.load_grid(str(bad))


# -- rules that cannot fire ---------------------------------------------------------------


def test_a_rate_rule_behind_the_count_rule_is_named_with_the_field_to_change() -> None:
    # The README's old example: the rate with the old count defaults can never fire first.
    old = CircuitBreakerConfig(failure_threshold=5, minimum_requests=10, failure_rate_threshold=0.5)
    (note,) = tune.redundant_rules(old)
    assert note.startswith("failure_rate_threshold=0.5 can never open the circuit before the "
                           "count rule: at minimum_requests=10 it needs 5 failures")
    assert "raise failure_threshold above 5" in note
    assert tune.redundant_rules(CircuitBreakerConfig()) == []  # both rules can fire first
    assert tune.redundant_rules(CircuitBreakerConfig(failure_threshold=100)) == []  # count off
    (count,) = tune.redundant_rules(CircuitBreakerConfig(failure_threshold=60))
    assert count.startswith("failure_threshold=60 can never open the circuit before the rate")
    assert "lower failure_threshold below 50" in count
    (slow,) = tune.redundant_rules(CircuitBreakerConfig(slow_call_rate_threshold=0.5))
    assert "no call is slow until slow_call_duration is set" in slow
    (duration,) = tune.redundant_rules(CircuitBreakerConfig(slow_call_duration=1.0))
    assert "opens nothing without slow_call_rate_threshold" in duration


def test_redundant_rules_agree_with_replay(breaker_cls: type[CircuitBreaker]) -> None:
    """A rule reported as never first really changes nothing: with and without it, the same."""
    failures = [0 if i % 3 == 0 or 40 <= i < 70 else 1 for i in range(300)]
    trace = Trace.from_rows([(i * 0.1, ok, 0.01) for i, ok in enumerate(failures)])
    for with_rule, without in [
        (dict(failure_threshold=5, minimum_requests=10, failure_rate_threshold=0.5),
         dict(failure_threshold=5, minimum_requests=10, failure_rate_threshold=None)),
        (dict(failure_threshold=60, failure_rate_threshold=0.5),
         dict(failure_threshold=100, failure_rate_threshold=0.5)),
    ]:
        assert tune.redundant_rules(CircuitBreakerConfig(**with_rule))
        replays = [
            breaker_cls("r", CircuitBreakerConfig(**fields)).replay(
                trace.t, trace.ok, trace.latency
            )
            for fields in (with_rule, without)
        ]
        assert replays[0] == replays[1]


def test_cli_warns_about_a_candidate_whose_rule_cannot_fire(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_trace(tmp_path, outage_then_recovery())
    argv = [path, "--config", "failure_threshold=5,minimum_requests=10", "--json"]
    assert run_cli(*argv) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any(
        note.startswith("failure_threshold=5,minimum_requests=10: failure_rate_threshold=0.5 "
                        "can never open the circuit before the count rule")
        for note in warnings
    )
