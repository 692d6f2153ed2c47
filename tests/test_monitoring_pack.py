"""contrib/: the Grafana dashboard and the Prometheus alert rules.

The promtool tests run the rules' own unit tests (contrib/prometheus/alerts_test.yml)
and check every query of the dashboard parses as PromQL. Without promtool
(Debian's ``prometheus`` package) they skip, all with one reason; CI sets
RECOVERY_REQUIRE_PROMTOOL=1, which turns that skip into a failure. The other
tests need nothing but the files: every metric they name is one the collector
emits, every query is scoped by the dashboard's variables, every alert is
documented.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.prometheus import RecoveryCollector
from recovery.testing import RecordingAuditLogger

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
DASHBOARD = CONTRIB / "grafana" / "recovery.json"
RULES = CONTRIB / "prometheus" / "alerts.yml"
RULES_TEST = CONTRIB / "prometheus" / "alerts_test.yml"

# The metrics without a plugin label: scoped by job alone.
PROCESS_WIDE = {
    "recovery_stuck_health_check_threads", "recovery_stuck_strategies", "recovery_manager_running",
}

METRIC = re.compile(r"\brecovery_[a-z0-9_]+")
SELECTOR = re.compile(r"\b(recovery_[a-z0-9_]+)(\{[^}]*\})?")

PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = (
    "promtool not found: install Debian's 'prometheus' package to run the contrib/ rule "
    "tests (RECOVERY_REQUIRE_PROMTOOL=1 makes this skip a failure)"
)


@pytest.fixture
def promtool() -> str:
    if PROMTOOL is None:
        if os.environ.get("RECOVERY_REQUIRE_PROMTOOL") == "1":
            pytest.fail(NO_PROMTOOL)
        pytest.skip(NO_PROMTOOL)
    return PROMTOOL


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def dashboard_queries() -> list[str]:
    return [
        target["expr"]
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def variable_queries() -> list[str]:
    return [
        variable["definition"]
        for variable in dashboard()["templating"]["list"]
        if variable["type"] == "query"
    ]


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def rule_test_series() -> list[str]:
    tests = yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))["tests"]
    return [series["series"] for test in tests for series in test["input_series"]]


def as_promql(query: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would."""
    return (query.replace("$__rate_interval", "5m")
            .replace('"$job"', '".*"').replace('"$plugin"', '".*"'))


@pytest.fixture(scope="module")
def emitted() -> Iterator[set[str]]:
    """Every sample name the collector can emit (a manager's families and the breakers')."""
    rm = RecoveryManager(PluginRegistry(), RecordingAuditLogger(), RecoveryConfig())
    names: set[str] = set()
    for family in RecoveryCollector(rm).describe():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, [""]))
    yield names


# -- promtool ---------------------------------------------------------------------------
# One parametrised test, so that without promtool pytest reports one skip reason.


def check_the_alert_rules(promtool: str, tmp_path: Path) -> None:
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def run_the_alert_rules_unit_tests(promtool: str, tmp_path: Path) -> None:
    result = run(promtool, "test", "rules", RULES_TEST.name, cwd=RULES_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def check_every_dashboard_query_is_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query (variables filled in) as a recording rule's expression."""
    queries = dashboard_queries() + [
        re.fullmatch(r"label_values\((.*), *[a-z]+\)", q).group(1)  # type: ignore[union-attr]
        for q in variable_queries()
    ]
    recorded = [{"record": f"dashboard:query_{n}", "expr": as_promql(q)}
                for n, q in enumerate(queries)]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(recorded)} rules found" in result.stdout


@pytest.mark.parametrize("check", [
    check_the_alert_rules, run_the_alert_rules_unit_tests, check_every_dashboard_query_is_promql,
], ids=lambda check: check.__name__)
def test_promtool(check: Any, promtool: str, tmp_path: Path) -> None:
    check(promtool, tmp_path)


# -- the files alone --------------------------------------------------------------------


def test_every_metric_named_is_one_the_collector_emits(emitted: set[str]) -> None:
    texts = {
        "dashboard": dashboard_queries() + variable_queries(),
        "alerts.yml": [rule["expr"] for rule in rules()],
        "alerts_test.yml": rule_test_series(),
    }
    unknown = {
        where: sorted({name for text in found for name in METRIC.findall(text)}
                      - emitted)
        for where, found in texts.items()
    }
    assert unknown == {where: [] for where in texts}


def test_every_dashboard_query_is_scoped_by_the_variables() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert {"datasource", "job", "plugin"} <= set(variables)
    for name in ("job", "plugin"):
        assert variables[name]["multi"] and variables[name]["includeAll"]
    for query in dashboard_queries():
        for metric, labels in SELECTOR.findall(query):
            assert 'job=~"$job"' in labels, (metric, query)
            if metric not in PROCESS_WIDE:
                assert 'plugin=~"$plugin"' in labels, (metric, query)


def test_dashboard_panels_are_complete() -> None:
    panels = dashboard()["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["description"], panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]


def test_every_alert_has_a_severity_a_summary_and_a_runbook() -> None:
    found = rules()
    assert {rule["alert"] for rule in found} == {
        "RecoveryBreakerOpen", "RecoveryPluginFailed", "RecoveryPluginCrashLoop",
        "RecoveryHealthCheckStuck", "RecoveryStuckThreads", "RecoveryRecoveriesFailing",
        "RecoveryFailureRatioHigh", "RecoveryEarlyWarning",
    }
    for rule in found:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["runbook"], rule["alert"]
