"""Audit trail of recovery actions: who was repaired, why, how, and whether it worked.

The recovery manager calls ``log_failure_recovery(plugin_name, failure_type,
recovery_action, success)`` once per strategy run, whatever the outcome
(docs/design.md, "Audit"). Three ready loggers:

- :class:`LoggingAuditLogger`: a stdlib log record per action, with the fields in
  ``extra`` so structured handlers (JSON formatters, log shippers) see them as fields.
- :class:`JsonlAuditLogger`: one JSON object per line in a file.
- :class:`SqliteAuditLogger`: a row per action in a SQLite database, queryable.

Every record carries the same fields: ``ts`` (wall-clock time of the action, seconds
since the Unix epoch as a float, from :func:`time.time`: sortable, comparable with
``since=`` and free of time-zone parsing), ``plugin``, ``failure_type`` (the string value,
e.g. ``"timeout"``), ``action`` (the strategy name, e.g. ``"restart"``) and ``success``.

Durability of the file-backed loggers: when ``log_failure_recovery`` returns, the
record has been handed to the operating system, so it survives the process being
killed (even by SIGKILL). With ``fsync=True`` it has also been forced to the disk, so
it survives a power loss, at the cost of a disk flush per record.

Bad paths fail at construction, not at the first record: a missing directory, a
path that is a directory, or one we may not write raises the matching
:class:`OSError` subclass (``FileNotFoundError``, ``IsADirectoryError``,
``NotADirectoryError``, ``PermissionError``) with a message that names the path.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

_logger = logging.getLogger("recovery.audit")

PathLike = str | os.PathLike[str]


@runtime_checkable
class AuditLogger(Protocol):
    """Receives one call per recovery strategy run.

    ``failure_type`` is a :class:`~recovery.failures.FailureType` (a str enum) or a
    plain string; implementations store its string value.
    """

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None: ...


def _record(
    plugin_name: str, failure_type: str, recovery_action: str, success: bool
) -> dict[str, Any]:
    """The fields every logger writes, with enum members reduced to their string values."""
    return {
        "ts": time.time(),
        "plugin": str(plugin_name),
        "failure_type": str(getattr(failure_type, "value", failure_type)),
        "action": str(recovery_action),
        "success": bool(success),
    }


def _path_error(exc: OSError, kind: str, path: str) -> OSError:
    """The same OSError subclass, with a message that says which log could not be opened."""
    reason = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"cannot open {kind} audit log {path!r}: {reason}")


def _fsync_directory_of(path: str) -> None:
    """Make a new file's directory entry durable: an fsync'd record survives power loss."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LoggingAuditLogger:
    """Writes each action as a log record: INFO when it worked, WARNING when it did not.

    The record's ``extra`` holds ``plugin``, ``failure_type``, ``action`` and
    ``success`` (the wall-clock time is the record's own ``created``).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else _logger

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        fields = _record(plugin_name, failure_type, recovery_action, success)
        del fields["ts"]
        self.logger.log(
            logging.INFO if fields["success"] else logging.WARNING,
            "recovery %s of plugin %r after %s failure %s",
            fields["action"],
            fields["plugin"],
            fields["failure_type"],
            "succeeded" if fields["success"] else "failed",
            extra=fields,
        )

    def __repr__(self) -> str:
        return f"LoggingAuditLogger({self.logger.name!r})"


class JsonlAuditLogger:
    """Appends one JSON object per line to ``path`` (created if missing, never truncated).

    Each record is written with a single ``write`` to a descriptor opened with
    ``O_APPEND``, outside any Python buffer, so a record is either wholly in the file
    or (if the process dies inside the write) a torn last line, which :meth:`read`
    skips. If the file already ends in a torn line when it is opened, a newline is
    written first so that the next record starts on a line of its own.

    Thread-safe: one lock serialises the writes.
    """

    def __init__(self, path: PathLike, fsync: bool = False) -> None:
        self.path = os.fspath(path)
        self.fsync = bool(fsync)
        self._lock = threading.Lock()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        try:
            try:
                fd = os.open(self.path, flags | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:
                fd = os.open(self.path, flags)
                created = False
        except OSError as exc:
            raise _path_error(exc, "JSONL", self.path) from exc
        self._fd: int | None = fd
        try:
            if created and self.fsync:
                _fsync_directory_of(self.path)
            self._terminate_torn_line()
        except OSError:
            os.close(fd)
            raise

    def _terminate_torn_line(self) -> None:
        """Make sure the file ends with a newline, so a torn record stays on its own line."""
        size = os.fstat(self._write_fd()).st_size
        if size == 0:
            return
        with open(self.path, "rb") as existing:
            existing.seek(size - 1)
            if existing.read(1) != b"\n":
                self._write(b"\n")

    def _write_fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"JsonlAuditLogger({self.path!r}) is closed")
        return self._fd

    def _write(self, data: bytes) -> None:
        fd = self._write_fd()
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(fd)

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        record = _record(plugin_name, failure_type, recovery_action, success)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")
        with self._lock:
            self._write(line)

    def close(self) -> None:
        """Close the file; later records raise ``ValueError``. Safe to call twice."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> JsonlAuditLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @staticmethod
    def read(path: PathLike) -> Iterator[dict[str, Any]]:
        """Yield the records of a JSONL audit file as dicts, in file order.

        Lines that are not a JSON object are skipped, never fatal: a torn last line
        (what a crash in the middle of a write leaves) silently, at DEBUG level; a bad
        line anywhere else with a WARNING naming the file and the line number, since
        that is damage from something other than our own crash.
        """
        path = os.fspath(path)
        with open(path, "rb") as lines:
            pending: tuple[int, bytes] | None = None
            for number, raw in enumerate(lines, start=1):
                if pending is not None:
                    yield from _parse_line(path, *pending, last=False)
                pending = (number, raw)
            if pending is not None:
                yield from _parse_line(path, *pending, last=True)

    def __repr__(self) -> str:
        return f"JsonlAuditLogger({self.path!r}, fsync={self.fsync})"


def _parse_line(path: str, number: int, raw: bytes, *, last: bool) -> Iterator[dict[str, Any]]:
    if not raw.strip():
        return
    try:
        record = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        record = None
    if isinstance(record, dict):
        yield record
    elif last and not raw.endswith(b"\n"):
        _logger.debug("skipping torn last line %d of %s", number, path)
    else:
        _logger.warning("skipping corrupt line %d of audit log %s: %r", number, path, raw[:80])


_SCHEMA = """
CREATE TABLE IF NOT EXISTS recovery_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    plugin TEXT NOT NULL,
    failure_type TEXT NOT NULL,
    action TEXT NOT NULL,
    success INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recovery_audit_plugin_ts ON recovery_audit (plugin, ts);
"""


class SqliteAuditLogger:
    """Stores each action as a row of the ``recovery_audit`` table of a SQLite database.

    The database runs in WAL mode, so readers (another process running :meth:`query`
    or the ``sqlite3`` shell) do not block the writer. Each record is committed before
    the call returns; with ``fsync=True`` (``PRAGMA synchronous=FULL``) the commit is
    also forced to disk, otherwise (``NORMAL``) it survives a crash of the process but
    not necessarily a power loss, matching :class:`JsonlAuditLogger`.

    Thread-safe with one connection behind a lock: SQLite admits one writer at a time
    anyway, so per-thread connections would only add ``SQLITE_BUSY`` retries, and
    :meth:`close` could not close the connections of other threads.

    A path that cannot be opened raises the matching :class:`OSError` subclass naming
    it; a file that exists but is not a SQLite database raises ``ValueError`` naming it.
    """

    def __init__(self, path: PathLike, *, fsync: bool = False) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        # sqlite3 reports every bad path as "unable to open database file"; opening
        # the file ourselves first gives the precise reason (missing directory, ...).
        try:
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644))
        except OSError as exc:
            raise _path_error(exc, "SQLite", self.path) from exc
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open SQLite audit log {self.path!r}: {exc}") from exc
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._conn.close()
            raise ValueError(f"cannot use {self.path!r} as a SQLite audit log: {exc}") from exc
        if mode != "wal":
            self._conn.close()
            raise ValueError(f"SQLite refused WAL mode for audit log {self.path!r} ({mode!r})")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"SqliteAuditLogger({self.path!r}) is closed")
        return self._conn

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        record = _record(plugin_name, failure_type, recovery_action, success)
        with self._lock:
            self._connection().execute(
                "INSERT INTO recovery_audit (ts, plugin, failure_type, action, success)"
                " VALUES (:ts, :plugin, :failure_type, :action, :success)",
                record,
            )

    def query(
        self, plugin: str | None = None, since: float | datetime.datetime | None = None
    ) -> list[dict[str, Any]]:
        """The records in the order they were written, optionally only one plugin's.

        ``since`` keeps records with ``ts >= since``; it is epoch seconds or a
        :class:`~datetime.datetime` (a naive one is local time, as in
        :meth:`datetime.datetime.timestamp`).
        """
        clauses: list[str] = []
        params: list[Any] = []
        if plugin is not None:
            clauses.append("plugin = ?")
            params.append(plugin)
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since.timestamp() if isinstance(since, datetime.datetime) else since)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._connection().execute(
                "SELECT ts, plugin, failure_type, action, success FROM recovery_audit"
                f"{where} ORDER BY id",
                params,
            ).fetchall()
        return [
            {"ts": ts, "plugin": name, "failure_type": kind, "action": action, "success": bool(ok)}
            for ts, name, kind, action, ok in rows
        ]

    def close(self) -> None:
        """Close the database; later calls raise ``ValueError``. Safe to call twice."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteAuditLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteAuditLogger({self.path!r})"
