"""Audit loggers: record fields, durability against SIGKILL, torn lines, threads, bad paths."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

import recovery
from recovery.audit import AuditLogger, JsonlAuditLogger, LoggingAuditLogger, SqliteAuditLogger
from recovery.failures import FailureType

REPO_ROOT = str(Path(recovery.__file__).resolve().parent.parent)
FIELDS = {"ts", "plugin", "failure_type", "action", "success"}


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def run_threads(count: int, target: object, timeout: float = 20.0) -> None:
    """Start ``count`` threads on ``target(index, barrier)`` together and join them (bounded)."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout)
            target(index)  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "writer threads did not finish"
    assert errors == []


# --- the protocol and the shared record -------------------------------------------------------


def test_every_logger_satisfies_the_protocol(tmp_path: Path) -> None:
    with (
        JsonlAuditLogger(tmp_path / "a.jsonl") as jsonl,
        SqliteAuditLogger(tmp_path / "a.db") as db,
    ):
        for logger in (LoggingAuditLogger(), jsonl, db):
            assert isinstance(logger, AuditLogger)


# --- LoggingAuditLogger -----------------------------------------------------------------------


def test_logging_logger_puts_the_fields_in_extra(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="recovery.audit")
    audit = LoggingAuditLogger()
    audit.log_failure_recovery("db", FailureType.TIMEOUT, "restart", True)
    audit.log_failure_recovery("db", "error", "reload", False)

    ok, failed = caplog.records
    assert ok.name == "recovery.audit"
    assert (ok.plugin, ok.failure_type, ok.action, ok.success) == (  # type: ignore[attr-defined]
        "db", "timeout", "restart", True
    )
    assert type(ok.failure_type) is str  # type: ignore[attr-defined]
    assert ok.levelno == logging.INFO
    assert "restart" in ok.getMessage() and "'db'" in ok.getMessage()
    assert (failed.failure_type, failed.action, failed.success) == (  # type: ignore[attr-defined]
        "error", "reload", False
    )
    assert failed.levelno == logging.WARNING
    assert "failed" in failed.getMessage()


def test_logging_logger_uses_the_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app.audit")
    LoggingAuditLogger(logging.getLogger("app.audit")).log_failure_recovery(
        "cache", "panic", "restart", True
    )
    assert [r.name for r in caplog.records] == ["app.audit"]


# --- JsonlAuditLogger -------------------------------------------------------------------------


def test_jsonl_writes_one_object_per_line_with_string_values(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    before = time.time()
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", FailureType.HEALTH_CHECK, "reset", True)
        # On disk before the call returned, without closing the logger.
        lines = path.read_text().splitlines()
        assert len(lines) == 1
        audit.log_failure_recovery("cache", "resource_limit", "degrade", False)
    after = time.time()

    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert set(first) >= FIELDS
    assert first["plugin"] == "db"
    assert first["failure_type"] == "health_check"
    assert first["action"] == "reset"
    assert first["success"] is True
    assert isinstance(first["ts"], float) and before <= first["ts"] <= after
    assert (second["plugin"], second["success"]) == ("cache", False)
    assert list(JsonlAuditLogger.read(path)) == [first, second]


def test_jsonl_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    for action in ("restart", "reload"):
        with JsonlAuditLogger(str(path)) as audit:
            audit.log_failure_recovery("db", "error", action, True)
    assert [r["action"] for r in JsonlAuditLogger.read(str(path))] == ["restart", "reload"]


def test_jsonl_refuses_records_after_close(tmp_path: Path) -> None:
    audit = JsonlAuditLogger(tmp_path / "audit.jsonl")
    audit.close()
    audit.close()
    with pytest.raises(ValueError, match="closed"):
        audit.log_failure_recovery("db", "error", "restart", True)


def test_jsonl_fsync_forces_each_record_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    with JsonlAuditLogger(tmp_path / "audit.jsonl", fsync=True) as audit:
        at_open = len(synced)  # the new file's directory entry
        assert at_open == 1
        for _ in range(3):
            audit.log_failure_recovery("db", "error", "restart", True)
        assert len(synced) == at_open + 3
    with JsonlAuditLogger(tmp_path / "quiet.jsonl") as audit:
        audit.log_failure_recovery("db", "error", "restart", True)
    assert len(synced) == at_open + 3


def test_jsonl_read_skips_a_torn_last_line_quietly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", "error", "restart", True)
        audit.log_failure_recovery("db", "error", "reload", False)
    with open(path, "ab") as f:
        f.write(b'{"ts":1.5,"plugin":"db","failure_ty')
    caplog.set_level(logging.DEBUG, logger="recovery.audit")

    records = list(JsonlAuditLogger.read(path))

    assert [r["action"] for r in records] == ["restart", "reload"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_jsonl_reopening_after_a_torn_line_keeps_new_records_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"ts":1.0,"plugin":"db","failure_type":"error","action":"restart","succ')
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", "error", "reload", True)
    assert [r["action"] for r in JsonlAuditLogger.read(path)] == ["reload"]


def test_jsonl_read_skips_a_corrupt_middle_line_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "audit.jsonl"
    good = json.dumps({"ts": 1.0, "plugin": "db", "failure_type": "error",
                       "action": "restart", "success": True})
    path.write_text(f"{good}\nnot json\n[1, 2]\n\n{good}\n")
    caplog.set_level(logging.WARNING, logger="recovery.audit")

    assert len(list(JsonlAuditLogger.read(path))) == 2
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "line 2" in warnings[0] and str(path) in warnings[0]
    assert "line 3" in warnings[1]


def test_jsonl_read_of_an_empty_file_yields_nothing(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    JsonlAuditLogger(path).close()
    assert list(JsonlAuditLogger.read(path)) == []


def test_jsonl_lines_do_not_interleave_under_threads(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlAuditLogger(path) as audit:

        def write(index: int) -> None:
            for n in range(200):
                audit.log_failure_recovery(f"p{index}", "error", f"a{n}", n % 2 == 0)

        run_threads(8, write)
    lines = path.read_text().splitlines()
    assert len(lines) == 1600
    records = [json.loads(line) for line in lines]
    assert {(r["plugin"], r["action"]) for r in records} == {
        (f"p{i}", f"a{n}") for i in range(8) for n in range(200)
    }


CHILD = textwrap.dedent(
    """
    import sys
    from recovery.audit import JsonlAuditLogger

    audit = JsonlAuditLogger(sys.argv[1])
    index = 0
    while True:
        audit.log_failure_recovery(str(index), "error", "restart", index % 3 != 0)
        print(index, flush=True)
        index += 1
    """
)


def test_jsonl_loses_no_returned_record_when_the_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    assert child.stdout is not None
    printed: list[int] = []
    try:
        while len(printed) < 2000:
            line = child.stdout.readline()
            if not line:
                break
            printed.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
        # Indexes already in the pipe were also printed after their call returned.
        printed.extend(int(line) for line in child.stdout.read().split())
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert len(printed) >= 2000, "the child died before it was killed"

    written = {int(record["plugin"]) for record in JsonlAuditLogger.read(path)}
    assert set(printed) <= written
    # Nothing but whole records and at most one torn line at the end.
    assert len(path.read_bytes().splitlines()) - len(written) <= 1


# --- SqliteAuditLogger ------------------------------------------------------------------------


def test_sqlite_stores_and_queries_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    with SqliteAuditLogger(path) as audit:
        audit.log_failure_recovery("db", FailureType.TIMEOUT, "restart", False)
        audit.log_failure_recovery("cache", "resource_limit", "degrade", True)
        cut = time.time()
        audit.log_failure_recovery("db", "timeout", "reload", True)

        everything = audit.query()
        assert [(r["plugin"], r["action"]) for r in everything] == [
            ("db", "restart"), ("cache", "degrade"), ("db", "reload")
        ]
        assert set(everything[0]) == FIELDS
        assert everything[0]["failure_type"] == "timeout"
        assert everything[0]["success"] is False and everything[2]["success"] is True
        assert [r["action"] for r in audit.query(plugin="db")] == ["restart", "reload"]
        assert [r["action"] for r in audit.query(since=cut)] == ["reload"]
        assert [r["action"] for r in audit.query(plugin="cache", since=cut)] == []
        from datetime import datetime, timezone

        since_dt = datetime.fromtimestamp(cut, tz=timezone.utc)
        assert [r["action"] for r in audit.query(since=since_dt)] == ["reload"]

    # Committed: another connection, and a new logger, see every row; the file is in WAL mode.
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM recovery_audit").fetchone() == (3,)
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with SqliteAuditLogger(str(path)) as again:
        assert len(again.query()) == 3


def test_sqlite_keeps_every_row_under_8_writer_threads(tmp_path: Path) -> None:
    with SqliteAuditLogger(tmp_path / "audit.db") as audit:

        def write(index: int) -> None:
            for n in range(250):
                audit.log_failure_recovery(f"p{index}", "error", f"a{n}", True)
                if n % 50 == 0:
                    audit.query(plugin=f"p{index}")

        run_threads(8, write)
        rows = audit.query()
    assert len(rows) == 2000
    assert {(r["plugin"], r["action"]) for r in rows} == {
        (f"p{i}", f"a{n}") for i in range(8) for n in range(250)
    }


def test_sqlite_refuses_records_after_close(tmp_path: Path) -> None:
    audit = SqliteAuditLogger(tmp_path / "audit.db")
    audit.close()
    audit.close()
    with pytest.raises(ValueError, match="closed"):
        audit.log_failure_recovery("db", "error", "restart", True)
    with pytest.raises(ValueError, match="closed"):
        audit.query()


def test_sqlite_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not a database, " * 100)
    with pytest.raises(ValueError, match=r"notes\.txt"):
        SqliteAuditLogger(path)


# --- bad paths --------------------------------------------------------------------------------

FileLogger = type[JsonlAuditLogger] | type[SqliteAuditLogger]
LOGGERS: list[FileLogger] = [
    JsonlAuditLogger, SqliteAuditLogger
]


@pytest.mark.parametrize("logger_class", LOGGERS)
def test_missing_directory_is_a_clear_error(tmp_path: Path, logger_class: FileLogger) -> None:
    path = tmp_path / "no-such-dir" / "audit.log"
    with pytest.raises(FileNotFoundError) as info:
        logger_class(path)
    assert str(path) in str(info.value)
    assert not path.parent.exists()


@pytest.mark.parametrize("logger_class", LOGGERS)
def test_directory_as_path_is_a_clear_error(tmp_path: Path, logger_class: FileLogger) -> None:
    with pytest.raises(IsADirectoryError) as info:
        logger_class(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("logger_class", LOGGERS)
def test_file_as_directory_is_a_clear_error(tmp_path: Path, logger_class: FileLogger) -> None:
    (tmp_path / "plain").write_text("")
    path = tmp_path / "plain" / "audit.log"
    with pytest.raises(NotADirectoryError) as info:
        logger_class(path)
    assert str(path) in str(info.value)


def open_in_unwritable_directory() -> list[str]:
    """Try each logger in a directory we may not write; say what each one raised."""
    locked = tempfile.mkdtemp()
    os.chmod(locked, 0o500)
    path = os.path.join(locked, "audit.log")
    outcomes = []
    try:
        for cls in LOGGERS:
            try:
                cls(path).close()
            except PermissionError as exc:
                outcomes.append(f"{cls.__name__} PermissionError {path in str(exc)}")
            else:
                outcomes.append(f"{cls.__name__} opened")
    finally:
        os.rmdir(locked)
    return outcomes


def test_unwritable_directory_is_a_clear_error() -> None:
    expected = ["JsonlAuditLogger PermissionError True", "SqliteAuditLogger PermissionError True"]
    if os.geteuid() != 0:
        assert open_in_unwritable_directory() == expected
        return
    # Root ignores permissions: check in a forked child that gives them up first.
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, "\n".join(open_in_unwritable_directory()).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert report.split("\n") == expected
