"""Every ready audit logger keeps the incident id of a record made during an incident:
Memory, JSONL and SQLite (which stores it in a column of its own, added on open to
a database written before it existed)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recovery.audit import JsonlAuditLogger, MemoryAuditLogger, SqliteAuditLogger
from recovery.testing import FakeClock
from tests.incidents.test_manager_incidents import Outage, db_and_dependent, quiet, trip


def memory(tmp_path: Path) -> tuple[Any, Callable[[], list[dict[str, Any]]]]:
    audit = MemoryAuditLogger()
    return audit, audit.query


def jsonl(tmp_path: Path) -> tuple[Any, Callable[[], list[dict[str, Any]]]]:
    path = tmp_path / "audit.jsonl"
    return JsonlAuditLogger(path), lambda: list(JsonlAuditLogger.read(path))


def sqlite(tmp_path: Path) -> tuple[Any, Callable[[], list[dict[str, Any]]]]:
    path = tmp_path / "audit.db"
    audit = SqliteAuditLogger(path)

    def read() -> list[dict[str, Any]]:
        with SqliteAuditLogger(path) as again:  # from the file, as another process reads it
            return again.query()

    return audit, read


@pytest.mark.parametrize("logger", [memory, jsonl, sqlite])
def test_a_members_records_during_an_incident_carry_its_id_in_every_logger(
    logger: Callable[[Path], tuple[Any, Callable[[], list[dict[str, Any]]]]],
    tmp_path: Path, clock: FakeClock,
) -> None:
    audit, read = logger(tmp_path)
    rm = db_and_dependent(clock, audit, Outage(), incident_hold_timeout=1.0)
    with rm:
        trip(rm, "db", "a")  # a's trip joins db's incident
        quiet(rm)
        (incident,) = rm.incidents()
        clock.advance(1.0)  # a's hold times out: its crash loop's next slot is at 5 s
        quiet(rm)
        clock.advance(4.0)
        quiet(rm)
    audit.log_recovery_attempt("x", "error", "restart", True, action_succeeded=True,
                               verified=True)  # in no incident
    with contextlib.suppress(AttributeError):
        audit.close()
    records = read()
    assert [r["action"] for r in records if r["plugin"] == "a"] == ["restart"]
    assert {r["plugin"]: r.get("incident") for r in records} == {
        "db": incident.id, "a": incident.id, "x": None}
    assert "incident" not in records[-1]  # as the other loggers write it: no key


BEFORE_INCIDENTS = """
CREATE TABLE recovery_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    plugin TEXT NOT NULL,
    failure_type TEXT NOT NULL,
    action TEXT NOT NULL,
    success INTEGER NOT NULL,
    action_succeeded INTEGER,
    verified INTEGER,
    "order" TEXT,
    duration REAL
);
CREATE INDEX recovery_audit_plugin_ts ON recovery_audit (plugin, ts);
INSERT INTO recovery_audit (ts, plugin, failure_type, action, success, duration)
    VALUES (1.5, 'db', 'error', 'restart', 1, 0.25);
"""


def test_a_database_written_before_incidents_gains_the_column_on_open(tmp_path: Path) -> None:
    path = tmp_path / "before.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(BEFORE_INCIDENTS)
    with SqliteAuditLogger(path) as audit:
        audit.log_recovery_attempt("db", "error", "restart", False, action_succeeded=True,
                                   verified=False, incident="inc-1")
        records = audit.query()
    assert [(r["ts"], r["duration"], r.get("incident")) for r in records] == [
        (1.5, 0.25, None), (records[1]["ts"], None, "inc-1")]
    with SqliteAuditLogger(path) as again:  # already migrated: opens as it is
        assert [r.get("incident") for r in again.query(plugin="db")] == [None, "inc-1"]
