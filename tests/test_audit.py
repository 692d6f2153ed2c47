"""Audit loggers: record fields, durability against SIGKILL, torn lines, threads, bad paths."""

from __future__ import annotations

import contextlib
import datetime
import errno
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
import recovery.testing
from recovery.audit import (
    AuditLogger,
    DetailedAuditLogger,
    JsonlAuditLogger,
    LoggingAuditLogger,
    SqliteAuditLogger,
)
from recovery.failures import FailureType
from tests.helpers import run_threads

REPO_ROOT = str(Path(recovery.__file__).resolve().parent.parent)
FIELDS = {"ts", "plugin", "failure_type", "action", "success", "action_succeeded", "verified",
          "order", "duration"}


class Timestamps:
    """A wall clock for a logger's ``now=``: the given epoch seconds, one per record."""

    def __init__(self, *values: float) -> None:
        self._values = iter(values)

    def __call__(self) -> float:
        return next(self._values)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


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
    # Explicit timestamps: the cut falls between records whatever the clock's resolution.
    path = tmp_path / "audit.db"
    with SqliteAuditLogger(path, now=Timestamps(100.0, 200.0, 300.0)) as audit:
        audit.log_failure_recovery("db", FailureType.TIMEOUT, "restart", False)
        audit.log_failure_recovery("cache", "resource_limit", "degrade", True)
        audit.log_failure_recovery("db", "timeout", "reload", True)
        cut = 250.0

        everything = audit.query()
        assert [(r["plugin"], r["action"], r["ts"]) for r in everything] == [
            ("db", "restart", 100.0), ("cache", "degrade", 200.0), ("db", "reload", 300.0)
        ]
        assert set(everything[0]) == FIELDS
        assert everything[0]["failure_type"] == "timeout"
        assert everything[0]["success"] is False and everything[2]["success"] is True
        assert [r["action"] for r in audit.query(plugin="db")] == ["restart", "reload"]
        assert [r["action"] for r in audit.query(since=cut)] == ["reload"]
        assert [r["action"] for r in audit.query(since=300.0)] == ["reload"]  # inclusive
        assert [r["action"] for r in audit.query(plugin="cache", since=cut)] == []
        since_dt = datetime.datetime.fromtimestamp(cut, tz=datetime.timezone.utc)
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
            os._exit(0)  # private: os's documented exit for a forked child
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert report.split("\n") == expected


# --- JSONL: a failed write, rotation, non-regular files ---------------------------------------


def descriptor_of(audit: JsonlAuditLogger) -> int:
    """The file descriptor ``audit`` writes through, for :class:`DiskFullAfter` to fail
    the writes to it: the logger has no reason to show it."""
    return audit._fd  # type: ignore[return-value]  # private: the writes made to fail


class DiskFullAfter:
    """``os.write`` for one descriptor that writes ``budget`` bytes, then fails with ENOSPC.

    A deterministic full disk: the write that crosses the budget writes the part that
    fits and reports it (a short write, as the kernel does), the next one raises.
    Other descriptors (pytest's own output) are passed through untouched.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fd: int, budget: int) -> None:
        self.fd, self.budget = fd, budget
        self._real = os.write
        monkeypatch.setattr(os, "write", self)

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        if fd != self.fd:
            return self._real(fd, data)
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._real(fd, bytes(data[: self.budget]))
        self.budget -= written
        return written

    def free(self) -> None:
        self.budget = 1 << 30


def test_jsonl_a_record_after_a_write_that_failed_midway_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", "error", "restart", True)
        disk = DiskFullAfter(monkeypatch, descriptor_of(audit), budget=20)
        with pytest.raises(OSError) as info:
            audit.log_failure_recovery("db", "error", "reload", False)
        assert info.value.errno == errno.ENOSPC
        assert not path.read_bytes().endswith(b"\n")  # a fragment of the failed record
        with pytest.raises(OSError):  # still full: nothing written, still torn
            audit.log_failure_recovery("db", "error", "lost", False)
        disk.free()
        audit.log_failure_recovery("db", "error", "degrade", True)
        audit.log_failure_recovery("db", "error", "reset", True)

    assert [r["action"] for r in JsonlAuditLogger.read(path)] == ["restart", "degrade", "reset"]


def test_jsonl_a_write_that_failed_before_any_byte_leaves_no_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", "error", "restart", True)
        size = path.stat().st_size
        disk = DiskFullAfter(monkeypatch, descriptor_of(audit), budget=0)
        with pytest.raises(OSError):
            audit.log_failure_recovery("db", "error", "reload", False)
        assert path.stat().st_size == size
        disk.free()
        audit.log_failure_recovery("db", "error", "degrade", True)
    assert len(path.read_bytes().splitlines()) == 2  # no empty line either
    assert [r["action"] for r in JsonlAuditLogger.read(path)] == ["restart", "degrade"]


def test_jsonl_follows_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    rotated = tmp_path / "audit.jsonl.1"
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", "error", "before", True)
        path.rename(rotated)
        audit.log_failure_recovery("db", "error", "after", True)
        audit.log_failure_recovery("db", "error", "again", True)
    assert [r["action"] for r in JsonlAuditLogger.read(rotated)] == ["before"]
    assert [r["action"] for r in JsonlAuditLogger.read(path)] == ["after", "again"]


def test_jsonl_follows_a_deleted_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", "error", "before", True)
        path.unlink()
        audit.log_failure_recovery("db", "error", "after", True)
    assert [r["action"] for r in JsonlAuditLogger.read(path)] == ["after"]


def test_jsonl_follows_a_file_replaced_by_one_with_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", "error", "before", True)
        replacement = tmp_path / "new.jsonl"
        replacement.write_bytes(b'{"ts":1.0,"plugin":"db","fail')
        replacement.replace(path)
        audit.log_failure_recovery("db", "error", "after", True)
    assert [r["action"] for r in JsonlAuditLogger.read(path)] == ["after"]


def test_jsonl_a_relative_path_keeps_naming_the_same_file_after_a_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    with JsonlAuditLogger("audit.jsonl") as audit:
        audit.log_failure_recovery("db", "error", "before", True)
        monkeypatch.chdir(tmp_path / "elsewhere")
        audit.log_failure_recovery("db", "error", "after", True)
    assert not (tmp_path / "elsewhere" / "audit.jsonl").exists()
    assert [r["action"] for r in JsonlAuditLogger.read(tmp_path / "audit.jsonl")] == [
        "before", "after"
    ]


def test_jsonl_a_rotation_it_cannot_follow_raises_and_the_next_record_retries(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "audit.jsonl"
    with JsonlAuditLogger(path) as audit:
        audit.log_failure_recovery("db", "error", "before", True)
        folder.rename(tmp_path / "archived")  # the directory went away with the file
        with pytest.raises(FileNotFoundError, match=r"audit\.jsonl"):
            audit.log_failure_recovery("db", "error", "lost", True)
        folder.mkdir()
        audit.log_failure_recovery("db", "error", "after", True)
    assert [r["action"] for r in JsonlAuditLogger.read(path)] == ["after"]
    archived = tmp_path / "archived" / "audit.jsonl"
    assert [r["action"] for r in JsonlAuditLogger.read(archived)] == ["before"]


def construct_bounded(make: object) -> BaseException | None:
    """Run ``make()`` on a thread; fail the test if it blocks. Returns what it raised."""
    raised: list[BaseException] = []

    def body() -> None:
        try:
            make().close()  # type: ignore[operator]
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive(), "the constructor blocked"
    return raised[0] if raised else None


@pytest.mark.parametrize("logger_class", [JsonlAuditLogger, SqliteAuditLogger])
def test_a_fifo_is_refused_at_construction_without_blocking(
    tmp_path: Path, logger_class: type[JsonlAuditLogger] | type[SqliteAuditLogger]
) -> None:
    path = tmp_path / "audit.fifo"
    os.mkfifo(path)
    try:
        error = construct_bounded(lambda: logger_class(path))
    finally:
        # Had it blocked, opening the other end releases the stuck thread.
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    assert isinstance(error, ValueError)
    assert "FIFO" in str(error) and str(path) in str(error)


@pytest.mark.parametrize("logger_class", [JsonlAuditLogger, SqliteAuditLogger])
def test_a_fifo_with_a_reader_is_refused_too(
    tmp_path: Path, logger_class: type[JsonlAuditLogger] | type[SqliteAuditLogger]
) -> None:
    path = tmp_path / "audit.fifo"
    os.mkfifo(path)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        error = construct_bounded(lambda: logger_class(path))
    finally:
        os.close(reader)
    assert isinstance(error, ValueError) and "a FIFO" in str(error)


def test_a_device_is_refused_as_an_audit_log() -> None:
    with pytest.raises(ValueError, match=r"'/dev/null' must be a regular file.*character device"):
        JsonlAuditLogger("/dev/null")


def test_the_wall_clock_must_be_callable(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="now must be a callable"):
        JsonlAuditLogger(tmp_path / "a.jsonl", now=12.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="now must be a callable"):
        SqliteAuditLogger(tmp_path / "a.db", now="time")  # type: ignore[arg-type]


# --- names that are not valid UTF-8 -----------------------------------------------------------

SURROGATE_NAME = os.fsdecode(b"plugin-\xff")  # "plugin-\udcff": a file name's lone surrogate


def test_a_lone_surrogate_is_stored_and_read_back_the_same_by_both_file_loggers(
    tmp_path: Path,
) -> None:
    with (
        JsonlAuditLogger(tmp_path / "a.jsonl") as jsonl,
        SqliteAuditLogger(tmp_path / "a.db") as db,
    ):
        for logger in (jsonl, db):
            logger.log_failure_recovery(SURROGATE_NAME, "error", "restart\udc80", True)
            logger.log_failure_recovery("plain", "error", "restart", True)
        from_db = db.query()
        assert [r["plugin"] for r in db.query(plugin=SURROGATE_NAME)] == [SURROGATE_NAME]
    from_jsonl = list(JsonlAuditLogger.read(tmp_path / "a.jsonl"))
    assert [(r["plugin"], r["action"]) for r in from_db] == [
        (r["plugin"], r["action"]) for r in from_jsonl
    ] == [(SURROGATE_NAME, "restart\udc80"), ("plain", "restart")]
    # Stored as text: the sqlite3 shell and other tools see a TEXT column.
    with contextlib.closing(sqlite3.connect(tmp_path / "a.db")) as other:
        kinds = other.execute("SELECT typeof(plugin) FROM recovery_audit").fetchall()
        assert kinds == [("text",), ("text",)]
        assert other.execute(
            "SELECT count(*) FROM recovery_audit WHERE plugin = 'plain'"
        ).fetchone() == (1,)


# --- the detailed path: action_succeeded and verified ----------------------------------------


class FourArgumentLogger:
    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        pass


def test_every_ready_logger_has_the_detailed_path(tmp_path: Path) -> None:
    with (
        JsonlAuditLogger(tmp_path / "a.jsonl") as jsonl,
        SqliteAuditLogger(tmp_path / "a.db") as db,
    ):
        for logger in (LoggingAuditLogger(), jsonl, db, recovery.testing.RecordingAuditLogger()):
            assert isinstance(logger, DetailedAuditLogger)
    assert not isinstance(FourArgumentLogger(), DetailedAuditLogger)
    assert isinstance(FourArgumentLogger(), AuditLogger)


DETAILED = [
    # (success, action_succeeded, verified)
    (True, True, True),
    (False, True, False),
    (False, False, None),
]
EXPECTED_DETAILS = [(True, None, None), *DETAILED]  # the four-argument record first


def log_detailed(logger: DetailedAuditLogger) -> None:
    logger.log_failure_recovery("db", "error", "four", True)
    for success, action_ok, verified in DETAILED:
        logger.log_recovery_attempt(
            "db", FailureType.TIMEOUT, "restart", success,
            action_succeeded=action_ok, verified=verified,
        )


def test_jsonl_records_the_action_and_the_verification(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlAuditLogger(path, now=Timestamps(1.0, 2.0, 3.0, 4.0)) as audit:
        log_detailed(audit)
    records = list(JsonlAuditLogger.read(path))
    assert [(r["success"], r["action_succeeded"], r["verified"]) for r in records] == (
        EXPECTED_DETAILS
    )
    assert [json.loads(line) for line in path.read_text().splitlines()] == records
    assert records[1] == {
        "ts": 2.0, "plugin": "db", "failure_type": "timeout", "action": "restart",
        "success": True, "action_succeeded": True, "verified": True,
        "order": None, "duration": None,
    }


def test_sqlite_records_the_action_and_the_verification(tmp_path: Path) -> None:
    with SqliteAuditLogger(tmp_path / "a.db") as audit:
        log_detailed(audit)
        records = audit.query()
    assert [(r["success"], r["action_succeeded"], r["verified"]) for r in records] == (
        EXPECTED_DETAILS
    )
    assert all(set(r) == FIELDS for r in records)


def test_logging_logger_records_the_action_and_the_verification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="recovery.audit")
    log_detailed(LoggingAuditLogger())
    details = [
        (r.success, r.action_succeeded, r.verified)  # type: ignore[attr-defined]
        for r in caplog.records
    ]
    assert details == EXPECTED_DETAILS
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].endswith("after error failure succeeded")  # nothing more to say
    assert messages[1].endswith("succeeded (action succeeded, verification passed)")
    assert messages[2].endswith("failed (action succeeded, verification failed)")
    assert messages[3].endswith("failed (action failed, verification not run)")
    assert [r.levelno for r in caplog.records] == [
        logging.INFO, logging.INFO, logging.WARNING, logging.WARNING
    ]


def test_an_old_jsonl_file_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(
        '{"ts":1.5,"plugin":"db","failure_type":"error","action":"restart","success":true}\n'
    )
    with JsonlAuditLogger(path, now=Timestamps(2.5)) as audit:
        audit.log_recovery_attempt("db", "error", "restart", False,
                                   action_succeeded=True, verified=False)
    records = list(JsonlAuditLogger.read(path))
    assert [(r["ts"], r["success"], r["action_succeeded"], r["verified"]) for r in records] == [
        (1.5, True, None, None), (2.5, False, True, False)
    ]


OLD_SCHEMA = """
CREATE TABLE recovery_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    plugin TEXT NOT NULL,
    failure_type TEXT NOT NULL,
    action TEXT NOT NULL,
    success INTEGER NOT NULL
);
CREATE INDEX recovery_audit_plugin_ts ON recovery_audit (plugin, ts);
INSERT INTO recovery_audit (ts, plugin, failure_type, action, success)
    VALUES (1.5, 'db', 'error', 'restart', 1);
"""


def test_an_old_sqlite_database_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(OLD_SCHEMA)
    with SqliteAuditLogger(path, now=Timestamps(2.5)) as audit:
        audit.log_recovery_attempt("db", "error", "restart", False,
                                   action_succeeded=True, verified=False)
        records = audit.query()
    assert [(r["ts"], r["success"], r["action_succeeded"], r["verified"]) for r in records] == [
        (1.5, True, None, None), (2.5, False, True, False)
    ]
    with SqliteAuditLogger(path) as again:  # already migrated: opens as it is
        assert len(again.query(plugin="db", since=2.0)) == 1
