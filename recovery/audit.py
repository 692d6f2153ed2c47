"""Audit trail of recovery actions: who was repaired, why, how, and whether it worked.

The recovery manager audits every strategy run, whatever the outcome
(docs/design.md, "Audit"). A logger of the :class:`AuditLogger` protocol receives
``log_failure_recovery(plugin_name, failure_type, recovery_action, success)``, where
``success`` is the attempt's verdict (the action returned and the plugin was verified).
A logger that also has ``log_recovery_attempt`` (:class:`DetailedAuditLogger`) receives
that call instead, with two more facts: ``action_succeeded`` (the strategy itself
returned without raising) and ``verified`` (True/False when a verification ran, None when none did).
A user's four-argument logger never sees them. A ``log_recovery_attempt`` that also
takes the keywords ``order`` and ``duration`` (the ready loggers do) is given the
order the strategy was picked in ("learned", "priority" or "configured") and the
seconds from the start of the run to its verdict on the manager's clock (what the
learned order is rebuilt from, :mod:`recovery.learning`); one without them never
sees them. Four ready loggers, all detailed:

- :class:`LoggingAuditLogger`: a stdlib log record per action, with the fields in
  ``extra`` so structured handlers (JSON formatters, log shippers) see them as fields.
- :class:`JsonlAuditLogger`: one JSON object per line in a file.
- :class:`SqliteAuditLogger`: a row per action in a SQLite database, queryable.
- :class:`MemoryAuditLogger`: the last records in memory, queryable, each also
  logged; the recovery manager's default.

Every record carries the same fields: ``ts`` (wall-clock time of the action, seconds
since the Unix epoch as a float, from :func:`time.time` or the logger's ``now``:
sortable, comparable with ``since=`` and free of time-zone parsing), ``plugin``,
``failure_type`` (the string value, e.g. ``"timeout"``), ``action`` (the strategy
name, e.g. ``"restart"``), ``success``, ``action_succeeded`` and ``verified`` (both
None when the four-argument call wrote the record, or in a file or database written
before they existed), ``order`` and ``duration`` (None likewise).

Durability of the file-backed loggers: when a call returns, the record has been
handed to the operating system, so it survives the process being killed (even by
SIGKILL). With ``fsync=True`` it has also been forced to the disk, so it survives a
power loss, at the cost of a disk flush per record. A call that raises (a full disk)
wrote no readable record, and leaves no damage that would cost a later record.

Bad paths fail at construction, not at the first record: a missing directory, a
path that is a directory, or one we may not write raises the matching
:class:`OSError` subclass (``FileNotFoundError``, ``IsADirectoryError``,
``NotADirectoryError``, ``PermissionError``) with a message that names the path; a
path that is not a regular file (a FIFO, a device, a socket) raises ``ValueError``
naming it, without blocking on it.

Names are stored as given, lone surrogates included (a plugin named after a file
whose name is not valid UTF-8 carries one, from :func:`os.fsdecode`): JSONL writes
them as ``\\udcXX`` escapes, SQLite as the bytes the ``surrogatepass`` error handler
gives, and both read them back as the same ``str``.
"""

from __future__ import annotations

import collections
import datetime
import errno
import inspect
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from recovery import _validate as v

_logger = logging.getLogger("recovery.audit")
_NOW = v.callable_("a callable returning epoch seconds")

PathLike = str | os.PathLike[str]

WallClock = Callable[[], float]
"""Where a logger's ``ts`` comes from: seconds since the Unix epoch (:func:`time.time`)."""


@runtime_checkable
class AuditLogger(Protocol):
    """Receives one call per recovery strategy run.

    ``failure_type`` is a :class:`~recovery.failures.FailureType` (a str enum) or a
    plain string; implementations store its string value. ``success`` is the
    attempt's verdict: the action returned and the plugin was verified.
    """

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None: ...


@runtime_checkable
class DetailedAuditLogger(AuditLogger, Protocol):
    """An audit logger that also takes the action's own result and the verification's.

    The manager calls only :meth:`log_recovery_attempt` on a logger that has it.
    """

    def log_recovery_attempt(
        self,
        plugin_name: str,
        failure_type: str,
        recovery_action: str,
        success: bool,
        *,
        action_succeeded: bool,
        verified: bool | None,
    ) -> None: ...


def record_attempt(
    logger: AuditLogger,
    plugin_name: str,
    failure_type: str,
    recovery_action: str,
    success: bool,
    *,
    action_succeeded: bool,
    verified: bool | None,
    incident: str | None = None,
    order: str | None = None,
    duration: float | None = None,
) -> None:
    """Audit one strategy run: through ``log_recovery_attempt`` on a logger that has
    it (the action's own result and the verification's too; the id of the incident
    the plugin is in, the order the strategy was picked in and the run's duration,
    each when its method takes that keyword), else the four-argument
    ``log_failure_recovery`` with ``success``, the attempt's verdict."""
    detailed = getattr(logger, "log_recovery_attempt", None)
    if callable(detailed):
        given = {"incident": incident, "order": order, "duration": duration}
        more = {keyword: value for keyword, value in given.items()
                if value is not None and _takes(detailed, keyword)}
        detailed(plugin_name, failure_type, recovery_action, success,
                 action_succeeded=action_succeeded, verified=verified, **more)
    else:
        logger.log_failure_recovery(plugin_name, failure_type, recovery_action, success)


def _takes(method: Callable[..., Any], keyword: str) -> bool:
    """Does ``method`` accept ``keyword`` (by name, or through ``**kwargs``)? A user's
    logger written before the keyword existed is not given it."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False
    return keyword in parameters or any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())


def _record(
    ts: float,
    plugin_name: str,
    failure_type: str,
    recovery_action: str,
    success: bool,
    action_succeeded: bool | None = None,
    verified: bool | None = None,
    incident: str | None = None,
    order: str | None = None,
    duration: float | None = None,
) -> dict[str, Any]:
    """The fields every logger writes, with enum members reduced to their string values
    (and ``incident``, the id of the incident the plugin was in, when it was in one)."""
    record = {
        "ts": float(ts),
        "plugin": str(plugin_name),
        "failure_type": str(getattr(failure_type, "value", failure_type)),
        "action": str(recovery_action),
        "success": bool(success),
        "action_succeeded": None if action_succeeded is None else bool(action_succeeded),
        "verified": None if verified is None else bool(verified),
        "order": None if order is None else str(order),
        "duration": None if duration is None else float(duration),
    }
    if incident is not None:
        record["incident"] = str(incident)
    return record


def _wall_clock(now: Any) -> WallClock:
    return v.check(_NOW, "now", now)  # type: ignore[no-any-return]


def _path_error(exc: OSError, kind: str, path: str) -> OSError:
    """The same OSError subclass, with a message that says which log could not be opened."""
    reason = exc.strerror or str(exc)
    return type(exc)(exc.errno, f"cannot open {kind} audit log {path!r}: {reason}")


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_regular_file(kind: str, path: str, mode: int | None) -> ValueError:
    what = next((name for test, name in _FILE_KINDS if mode is not None and test(mode)),
                "a FIFO or socket" if mode is None else "not a regular file")
    return ValueError(f"{kind} audit log {path!r} must be a regular file, but it is {what}")


def _open_regular(path: str, flags: int, kind: str) -> tuple[int, bool]:
    """Open (creating) ``path`` as a regular file: ``(fd, created)``, never blocking.

    ``O_NONBLOCK`` makes opening a FIFO that nobody reads fail at once (ENXIO) instead
    of waiting for a reader; anything opened that is not a regular file is refused.
    """
    flags |= os.O_CREAT | os.O_NONBLOCK
    try:
        try:
            fd, created = os.open(path, flags | os.O_EXCL, 0o644), True
        except FileExistsError:
            fd, created = os.open(path, flags), False
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise _not_a_regular_file(kind, path, None) from exc
        raise _path_error(exc, kind, path) from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_a_regular_file(kind, path, mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def _fsync_directory_of(path: str) -> None:
    """Make a new file's directory entry durable: an fsync'd record survives power loss."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _RecordWriter:
    """The two audit entry points, both building one record for :meth:`_emit`.

    ``_wall`` gives the record's wall-clock time (None: 0.0, the sink stamps its own).
    """

    _wall: WallClock | None = None

    def _now(self) -> float:
        return 0.0 if self._wall is None else self._wall()

    def _emit(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        self._emit(_record(self._now(), plugin_name, failure_type, recovery_action, success))

    def log_recovery_attempt(
        self,
        plugin_name: str,
        failure_type: str,
        recovery_action: str,
        success: bool,
        *,
        action_succeeded: bool,
        verified: bool | None,
        incident: str | None = None,
        order: str | None = None,
        duration: float | None = None,
    ) -> None:
        self._emit(_record(self._now(), plugin_name, failure_type, recovery_action, success,
                           action_succeeded, verified, incident, order, duration))


class LoggingAuditLogger(_RecordWriter):
    """Writes each action as a log record: INFO when it worked, WARNING when it did not.

    The record's ``extra`` holds ``plugin``, ``failure_type``, ``action``,
    ``success``, ``action_succeeded`` and ``verified`` (the wall-clock time is the
    record's own ``created``).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else _logger

    def _emit(self, fields: dict[str, Any]) -> None:
        del fields["ts"]
        details = ""
        if fields["action_succeeded"] is not None:
            action = "succeeded" if fields["action_succeeded"] else "failed"
            check = {None: "not run", True: "passed", False: "failed"}[fields["verified"]]
            details = f" (action {action}, verification {check})"
        self.logger.log(
            logging.INFO if fields["success"] else logging.WARNING,
            "recovery %s of %r after %s failure %s%s",
            fields["action"],
            fields["plugin"],
            fields["failure_type"],
            "succeeded" if fields["success"] else "failed",
            details,
            extra=fields,
        )

    def __repr__(self) -> str:
        return f"LoggingAuditLogger({self.logger.name!r})"


class MemoryAuditLogger(_RecordWriter):
    """Keeps the last ``maxlen`` records in memory, queryable, and logs each one.

    What the recovery manager keeps when it is given no audit logger: the trail is
    there to read (:meth:`query`, the same answer as :meth:`SqliteAuditLogger.query`)
    without a file to configure, and each record also goes to ``logger`` (default
    the ``recovery.audit`` logger) as :class:`LoggingAuditLogger` writes it. The
    oldest records are dropped past ``maxlen``: memory stays bounded however long
    the process runs.

    ``now`` (default :func:`time.time`) gives each record's ``ts``. Thread-safe.
    """

    def __init__(self, maxlen: int = 10_000, *, logger: logging.Logger | None = None,
                 now: WallClock = time.time) -> None:
        v.check(v.positive_int, "maxlen", maxlen)
        self.maxlen = maxlen
        self._wall = _wall_clock(now)
        self._log = LoggingAuditLogger(logger)
        self._lock = threading.Lock()
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=maxlen)

    def _emit(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(dict(record))
        self._log._emit(record)

    def query(
        self, plugin: str | None = None, since: float | datetime.datetime | None = None
    ) -> list[dict[str, Any]]:
        """The records kept, oldest first, optionally one plugin's, ``ts >= since``
        (epoch seconds or a :class:`~datetime.datetime`)."""
        if isinstance(since, datetime.datetime):
            since = since.timestamp()
        with self._lock:
            records = list(self._records)
        return [dict(record) for record in records
                if (plugin is None or record["plugin"] == plugin)
                and (since is None or record["ts"] >= since)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __repr__(self) -> str:
        return f"MemoryAuditLogger(maxlen={self.maxlen})"


class JsonlAuditLogger(_RecordWriter):
    """Appends one JSON object per line to ``path`` (created if missing, never truncated).

    Each record is written with a single ``write`` to a descriptor opened with
    ``O_APPEND``, outside any Python buffer, so a record is either wholly in the file
    or (if the process dies inside the write) a torn last line, which :meth:`read`
    skips.

    Nothing torn costs a later record: when the file may end inside a line (it did
    when it was opened, or a write failed part-way, say on a full disk), the next
    record starts with a newline of its own, in the same write, so the fragment
    stays alone on its line. Fragments are never truncated away: another process
    appending to the same file may already have written after one.

    Rotation: before each record the logger checks that ``path`` still names the
    file it has open (device and inode, as :class:`logging.handlers.WatchedFileHandler`
    does); after ``mv audit.jsonl audit.jsonl.1`` or ``rm audit.jsonl`` it opens a
    new ``path`` and writes there. That costs a ``stat`` per record. If the new file
    cannot be opened the record raises, and the next one tries again. A rotation
    between the check and the write sends that one record to the rotated file.

    ``now`` (default :func:`time.time`) gives each record's ``ts``.

    Thread-safe: one lock serialises the writes.
    """

    def __init__(
        self, path: PathLike, fsync: bool = False, *, now: WallClock = time.time
    ) -> None:
        self.path = os.fspath(path)
        self.fsync = bool(fsync)
        self._wall = _wall_clock(now)
        # The file is watched by name: a later chdir must not make it another name.
        self._target = os.path.abspath(self.path)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._identity = (0, 0)
        self._torn = False
        self._open()

    def _open(self) -> None:
        """Open ``path`` (a new file if it was rotated away) in place of the current one."""
        fd, created = _open_regular(self._target, os.O_WRONLY | os.O_APPEND, "JSONL")
        try:
            if created and self.fsync:
                _fsync_directory_of(self._target)
            info = os.fstat(fd)
            torn = info.st_size > 0 and not _ends_with_newline(self._target, info)
        except BaseException:
            os.close(fd)
            raise
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._identity, self._torn = fd, (info.st_dev, info.st_ino), torn

    def _follow_path(self) -> None:
        """Reopen if ``path`` no longer names our file (rotated or deleted)."""
        if self._fd is None:
            raise ValueError(f"JsonlAuditLogger({self.path!r}) is closed")
        try:
            info = os.stat(self._target)
        except FileNotFoundError:
            self._open()
            return
        if (info.st_dev, info.st_ino) != self._identity:
            self._open()

    def _append(self, line: bytes) -> None:
        """Write one record; remember a write that failed part-way (see the class doc)."""
        assert self._fd is not None
        view = memoryview(b"\n" + line if self._torn else line)
        written = 0
        try:
            while view:
                count = os.write(self._fd, view)
                view = view[count:]
                written += count
        except BaseException:
            if written:
                self._torn = True
            raise
        self._torn = False
        if self.fsync:
            os.fsync(self._fd)

    def _emit(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")
        with self._lock:
            self._follow_path()
            self._append(line)

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

        Every record has ``action_succeeded`` and ``verified`` (None in a record
        written before they existed). Lines that are not a JSON object are skipped,
        never fatal: a torn last line (what a crash in the middle of a write leaves)
        silently, at DEBUG level; a bad line anywhere else with a WARNING naming the
        file and the line number (a crash of another writer, a write that failed on a
        full disk, or damage from outside).
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


def _ends_with_newline(path: str, info: os.stat_result) -> bool:
    """Whether the file ``info`` describes (opened at ``path``) ends with a newline.

    Read through the path (the logger's own descriptor is write-only); when that is
    no longer the same file, or cannot be read, answer False: the cost of a wrong
    False is one empty line, which :meth:`JsonlAuditLogger.read` skips.
    """
    try:
        with open(path, "rb") as existing:
            same = os.fstat(existing.fileno())
            if (same.st_dev, same.st_ino) != (info.st_dev, info.st_ino):
                return False
            existing.seek(info.st_size - 1)
            return existing.read(1) == b"\n"
    except OSError:
        return False


def _parse_line(path: str, number: int, raw: bytes, *, last: bool) -> Iterator[dict[str, Any]]:
    if not raw.strip():
        return
    try:
        record = json.loads(raw)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        record = None
    if isinstance(record, dict):
        record.setdefault("action_succeeded", None)
        record.setdefault("verified", None)
        record.setdefault("order", None)
        record.setdefault("duration", None)
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
    success INTEGER NOT NULL,
    action_succeeded INTEGER,
    verified INTEGER,
    "order" TEXT,
    duration REAL,
    incident TEXT
);
CREATE INDEX IF NOT EXISTS recovery_audit_plugin_ts ON recovery_audit (plugin, ts);
"""

_ADDED_COLUMNS = (("action_succeeded", "INTEGER"), ("verified", "INTEGER"),
                  ("order", "TEXT"), ("duration", "REAL"), ("incident", "TEXT"))
"""Columns added after the first release: a database without them gains them on open."""

_TEXT_FIELDS = ("plugin", "failure_type", "action")


def _sql_text(value: str) -> bytes:
    """A str as the bytes SQLite stores for it, lone surrogates included.

    Bound as a blob and stored with ``CAST(? AS TEXT)``: the column holds text, the
    same bytes sqlite3 would store for any valid name, and ``surrogatepass`` keeps a
    lone surrogate (which strict UTF-8, sqlite3's own encoding, refuses) as its
    three bytes, so it reads back as the same str.
    """
    return value.encode("utf-8", "surrogatepass")


def _py_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _optional_bool(value: int | None) -> bool | None:
    return None if value is None else bool(value)


class SqliteAuditLogger(_RecordWriter):
    """Stores each action as a row of the ``recovery_audit`` table of a SQLite database.

    The database runs in WAL mode, so readers (another process running :meth:`query`
    or the ``sqlite3`` shell) do not block the writer. Each record is committed before
    the call returns; with ``fsync=True`` (``PRAGMA synchronous=FULL``) the commit is
    also forced to disk, otherwise (``NORMAL``) it survives a crash of the process but
    not necessarily a power loss, matching :class:`JsonlAuditLogger`.

    A record made while its plugin was in an incident carries ``incident`` (the
    id), as with the other loggers; the others have no ``incident`` key.

    A database written before ``action_succeeded``, ``verified``, ``order``,
    ``duration`` and ``incident`` existed gains the missing columns on open (``ALTER TABLE``, in a
    transaction, so two processes opening it at once do not race); its old rows read
    back with None in them.

    Thread-safe with one connection behind a lock: SQLite admits one writer at a time
    anyway, so per-thread connections would only add ``SQLITE_BUSY`` retries, and
    :meth:`close` could not close the connections of other threads.

    ``now`` (default :func:`time.time`) gives each record's ``ts``.

    A path that cannot be opened raises the matching :class:`OSError` subclass naming
    it; a path that is not a regular file, or a file that is not a SQLite database,
    raises ``ValueError`` naming it.
    """

    def __init__(
        self, path: PathLike, *, fsync: bool = False, now: WallClock = time.time
    ) -> None:
        self.path = os.fspath(path)
        self._wall = _wall_clock(now)
        self._lock = threading.Lock()
        # sqlite3 reports every bad path as "unable to open database file"; opening
        # the file ourselves first gives the precise reason (missing directory, ...),
        # and refuses a FIFO, which SQLite would block on.
        os.close(_open_regular(self.path, os.O_RDWR, "SQLite")[0])
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open SQLite audit log {self.path!r}: {exc}") from exc
        self._conn.text_factory = _py_text
        try:
            mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self._conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._conn.executescript(_SCHEMA)
            self._add_missing_columns(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise ValueError(f"cannot use {self.path!r} as a SQLite audit log: {exc}") from exc
        if mode != "wal":
            self._conn.close()
            raise ValueError(f"SQLite refused WAL mode for audit log {self.path!r} ({mode!r})")

    @staticmethod
    def _add_missing_columns(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            present = {row[1] for row in conn.execute("PRAGMA table_info(recovery_audit)")}
            for column, kind in _ADDED_COLUMNS:
                if column not in present:
                    conn.execute(f'ALTER TABLE recovery_audit ADD COLUMN "{column}" {kind}')
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError(f"SqliteAuditLogger({self.path!r}) is closed")
        return self._conn

    def _emit(self, record: dict[str, Any]) -> None:
        for field in _TEXT_FIELDS:
            record[field] = _sql_text(record[field])
        incident = record.get("incident")
        record["incident"] = None if incident is None else _sql_text(incident)
        with self._lock:
            self._connection().execute(
                "INSERT INTO recovery_audit"
                " (ts, plugin, failure_type, action, success, action_succeeded, verified,"
                ' "order", duration, incident)'
                " VALUES (:ts, CAST(:plugin AS TEXT), CAST(:failure_type AS TEXT),"
                " CAST(:action AS TEXT), :success, :action_succeeded, :verified,"
                " :order, :duration, CAST(:incident AS TEXT))",
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
            clauses.append("plugin = CAST(? AS TEXT)")
            params.append(_sql_text(plugin))
        if since is not None:
            clauses.append("ts >= ?")
            params.append(since.timestamp() if isinstance(since, datetime.datetime) else since)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = self._connection().execute(
                "SELECT ts, plugin, failure_type, action, success, action_succeeded, verified,"
                f' "order", duration, incident FROM recovery_audit{where} ORDER BY id',
                params,
            ).fetchall()
        return [
            {
                "ts": ts,
                "plugin": name,
                "failure_type": kind,
                "action": action,
                "success": bool(ok),
                "action_succeeded": _optional_bool(action_ok),
                "verified": _optional_bool(verified),
                "order": order,
                "duration": duration,
                **({} if incident is None else {"incident": incident}),
            }
            for ts, name, kind, action, ok, action_ok, verified, order, duration, incident
            in rows
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
