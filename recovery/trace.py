"""Outcome traces: record a breaker's calls to CSV, and load them back for replay.

A trace is a CSV file, one row per call, in time order, with the columns ``t``
(when the call started: Unix seconds, or an ISO-8601 timestamp), ``ok`` (did
the call succeed) and ``latency`` (seconds the call took). An optional
``healthy`` column says whether the dependency was truly healthy at that
moment: known for synthetic traces, or labelled by hand from an incident log.

The first line is a header naming the columns, unless its first field is a
time: then the file has no header and every row is ``t,ok,latency`` (3 fields)
or ``t,ok,latency,healthy`` (4 fields), as the first row has. In a header, names
are matched without regard to case or surrounding spaces, ``time`` is another
name for ``t``, columns may come in any order and other columns are ignored.
``ok`` and ``healthy`` are ``1``/``0``, ``true``/``false`` or ``yes``/``no`` (any
case). Fields may be quoted (``"1.5","1","0.02"``). An ISO-8601 time without an
offset is taken as UTC. Blank lines at the end of the file are ignored.

Any number works as ``t`` as long as it only grows, so a trace on a monotonic
clock (``TraceRecorder(wall_clock=False)``) loads and replays too; only lining it
up with an incident log needs Unix times.

``python -m recovery tune TRACE`` replays a trace through candidate configs (see
:mod:`recovery.tune`). The loader keeps each column in one flat array
(``array('d')`` or ``bytearray``: 18 bytes an event with labels) because that is
what the compiled window's ``replay`` reads without a per-event Python object;
a plain file (no quotes, numeric times) goes through a fast path that splits a
megabyte of text at a time.
"""
from __future__ import annotations

import array
import csv
import datetime
import itertools
import math
import operator
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol, TextIO

import attrs

from recovery import _validate as v
from recovery.state import CLOSED_CODE, CircuitBreakerState

COLUMNS = ("t", "ok", "latency")
LABEL = "healthy"
MAX_LINE_CHARS = 1 << 20
"""A row is tens of characters; a "line" longer than this (1 MiB) is not a trace, and
reading on would hold all of it in memory."""
_CHUNK_CHARS = 1 << 20  # read ~1 MB at a time: bounded memory, few Python-level steps
_ECHO_CHARS = 60  # how much of a bad line an error message quotes
_ZERO_ONE = bytes.maketrans(b"01", b"\x00\x01")
_SYNONYMS = {"time": "t"}
_FLAGS = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0}
REJECTED = "rejected"
"""The ``ok`` of a row that is not a call: the recording breaker rejected calls from ``t``
for ``latency`` seconds (see :class:`TraceRecorder`)."""
_REJECTED_CODE = 2
_OUTCOMES = {**_FLAGS, REJECTED: _REJECTED_CODE}
_BUFFER_ROWS = v.integer(gt=0, expected="a positive int")


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message names the file and the line."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        where = source if line is None else f"{source}, line {line}"
        super().__init__(f"{where}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


def quoted(text: str, limit: int = _ECHO_CHARS) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters.

    A bad line can be megabytes long (a binary file, a log without newlines);
    the error that quotes it must stay one readable line.
    """
    text = text.strip()
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def parse_time(text: str) -> float:
    """Seconds from a number (Unix time) or an ISO-8601 timestamp; no offset means UTC.

    ``Z`` is accepted for UTC on every supported Python (3.10's ``fromisoformat``
    does not take it). Raises ``ValueError`` for anything else.
    """
    try:
        return float(text)
    except ValueError:
        pass
    word = text.strip()
    if word[-1:] in ("Z", "z"):
        word = word[:-1] + "+00:00"
    stamp = datetime.datetime.fromisoformat(word)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


@attrs.frozen(eq=False)
class Trace:
    """One trace in columns: event ``i`` is ``t[i], ok[i], latency[i]`` (and ``healthy[i]``).

    ``ok`` and ``healthy`` hold one byte per event, 1 or 0. ``healthy`` is None
    when the trace carries no labels. ``rejections`` are the ``(start, seconds)`` spans in
    which the breaker that recorded the trace rejected calls (its ``rejected`` rows): no
    call reached the dependency then, so the trace does not say how it was.
    """

    t: array.array[float]
    ok: bytearray
    latency: array.array[float]
    healthy: bytearray | None = None
    source: str = "<trace>"
    rejections: tuple[tuple[float, float], ...] = ()

    def __attrs_post_init__(self) -> None:
        lengths = {len(self.t), len(self.ok), len(self.latency)}
        if self.healthy is not None:
            lengths.add(len(self.healthy))
        if len(lengths) != 1:
            raise ValueError(
                f"trace columns must have the same length, got t={len(self.t)}, "
                f"ok={len(self.ok)}, latency={len(self.latency)}"
                + ("" if self.healthy is None else f", healthy={len(self.healthy)}")
            )

    def __len__(self) -> int:
        return len(self.t)

    @property
    def labelled(self) -> bool:
        """True when the trace says when the dependency was truly healthy."""
        return self.healthy is not None

    def rejected_share(self) -> float:
        """The share of the recording's time (from its first row to its last) that the
        rejection spans cover, overlaps counted once: 0.0 without any."""
        if not self.rejections:
            return 0.0
        spans = sorted((start, start + seconds) for start, seconds in self.rejections)
        first = min(spans[0][0], self.t[0]) if len(self) else spans[0][0]
        last = max(max(end for _, end in spans), self.t[-1] if len(self) else -math.inf)
        covered, reach = 0.0, -math.inf
        for start, end in spans:
            if end > reach:
                covered += end - max(start, reach)
                reach = end
        return covered / (last - first) if last > first else 1.0

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[float]], source: str = "<trace>") -> Trace:
        """Build a trace from ``(t, ok, latency)`` or ``(t, ok, latency, healthy)`` rows.

        The rows get the same checks as a file; an error's "line" is the row's
        1-based position.
        """
        rows = list(rows)
        widths = {len(row) for row in rows}
        if not widths <= {3} and not widths <= {4}:
            raise ValueError(f"rows must all be (t, ok, latency) or all add healthy, got {widths}")
        names = [*COLUMNS, LABEL] if widths == {4} else list(COLUMNS)
        columns = [
            [str(int(value)) if isinstance(value, bool) else str(value) for value in column]
            for column in zip(*rows, strict=True)
        ] or [[] for _ in names]
        parsed = _parse_columns(dict(zip(names, columns, strict=True)), source, first_line=1)
        rows_kept = _take_rejections(parsed)
        _check_order(parsed["t"], source, 1, -math.inf, rows_kept)
        rejections = parsed.pop(REJECTED)
        return cls(**parsed, source=source, rejections=tuple(rejections))

    def sorted_by_time(self) -> Trace:
        """The same events ordered by ``t`` (stable: equal times keep their order).

        A trace already in order is returned as it is; sorting one that is not
        builds a list of indices (about 40 bytes an event while it runs).
        """
        t = self.t
        if all(map(operator.le, t, itertools.islice(t, 1, None))):
            return self
        order = sorted(range(len(t)), key=t.__getitem__)

        def times(column: array.array[float]) -> array.array[float]:
            return array.array("d", map(column.__getitem__, order))

        def flags(column: bytearray) -> bytearray:
            return bytearray(map(column.__getitem__, order))

        healthy = None if self.healthy is None else flags(self.healthy)
        return attrs.evolve(
            self, t=times(self.t), ok=flags(self.ok), latency=times(self.latency),
            healthy=healthy,
        )


class _LineTooLong(Exception):
    """Raised by :func:`_line_chunks` when no newline comes within ``MAX_LINE_CHARS``."""


def open_regular(path: str, what: str, encoding: str, newline: str | None = None) -> TextIO:
    """Open ``path`` for reading as text, refusing anything that is not a regular file.

    A FIFO, a device or a socket is refused with a :class:`TraceError` that names ``what``
    and the path, at once: opening a FIFO nobody writes to would wait forever, and a
    device never ends. ``O_NONBLOCK`` makes the open itself return at once; the file is
    read blocking as usual once it is known to be a regular one; ``encoding`` and
    ``newline`` are :func:`open`'s.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TraceError(
                path, None,
                f"{what} must be a regular file, not a FIFO, device or socket "
                "(copy it to a file first)",
            )
        os.set_blocking(fd, True)
        return open(fd, encoding=encoding, newline=newline)  # the caller closes it
    except BaseException:
        os.close(fd)
        raise


def load_trace(path: str | os.PathLike[str], *, sort: bool = False) -> Trace:
    """Read a trace file; raise :class:`TraceError` naming the file and the first bad line.

    Rows must be in time order unless ``sort`` is true, in which case they are
    sorted by ``t`` after loading (a recording of concurrent calls is written in
    completion order, so it can be slightly out of order; see
    :class:`TraceRecorder`). A file that is not UTF-8 text, or whose line runs
    past ``MAX_LINE_CHARS``, is refused with an error that says so.
    """
    source = os.fspath(path)
    try:
        with open_regular(source, "a trace", encoding="utf-8-sig") as file:
            trace = _read(file, source, sort)
    except UnicodeDecodeError:
        raise TraceError(
            source, None,
            "not UTF-8 text: a trace is a CSV text file (is this a binary or compressed file?)",
        ) from None
    return trace.sorted_by_time() if sort else trace


def _read(file: TextIO, source: str, sort: bool) -> Trace:
    t: array.array[float] = array.array("d")
    ok = bytearray()
    latency: array.array[float] = array.array("d")
    healthy: bytearray | None = None
    first = file.readline(MAX_LINE_CHARS + 1)
    if len(first) > MAX_LINE_CHARS:
        raise _too_long(source, 1)
    names = _headerless_names(first, source)
    if names is None:
        names = _read_header(first, source)
        first, line = "", 2  # the line number of the next row
    else:
        line = 1  # the first line is a row
    if LABEL in names:
        healthy = bytearray()
    previous = -math.inf
    rejections: list[tuple[float, float]] = []
    try:
        for lines in _line_chunks(file, first):
            parsed = _parse_columns(_split(lines, names, source, line), source, line)
            rows_kept = _take_rejections(parsed)
            rejections += parsed[REJECTED]
            if not sort:
                previous = _check_order(parsed["t"], source, line, previous, rows_kept)
            t.extend(parsed["t"])
            ok.extend(parsed["ok"])
            latency.extend(parsed["latency"])
            if healthy is not None:
                healthy.extend(parsed[LABEL])
            line += len(lines)
    except _LineTooLong:
        raise _too_long(source, line) from None
    return Trace(t, ok, latency, healthy, source, tuple(rejections))


def _too_long(source: str, line: int) -> TraceError:
    return TraceError(
        source, line,
        f"no end of line within {MAX_LINE_CHARS:,} characters: not a trace "
        "(a row is t,ok,latency[,healthy])",
    )


def _line_chunks(file: TextIO, first: str = "") -> Iterator[list[str]]:
    """``first`` and the file's remaining lines, a megabyte at a time, minus blank ones at the end.

    Blank lines at the end of a chunk are held back and put in front of the next
    one, so a blank line between rows is still seen (and reported) at its place.
    Raises :class:`_LineTooLong` when a line runs past ``MAX_LINE_CHARS``.
    """
    tail = first
    held = 0
    while True:
        block = file.read(_CHUNK_CHARS)
        if block:
            head, newline, tail = (tail + block).rpartition("\n")
            if len(tail) > MAX_LINE_CHARS:
                raise _LineTooLong
            if not newline:
                continue  # no complete line yet
            lines = [""] * held + head.split("\n")
        else:
            lines = [""] * held + tail.split("\n")
        kept = len(lines)
        while kept and not lines[kept - 1].strip():
            kept -= 1
        held = len(lines) - kept
        if kept:
            yield lines[:kept]
        if not block:
            return


def _fields(line: str) -> list[str]:
    """One line's fields, unquoted (a header, or the first row of a file without one)."""
    try:
        fields = next(csv.reader([line.rstrip("\r\n")], strict=True), [])
    except csv.Error:
        fields = line.rstrip("\r\n").split(",")
    return fields or [""]


def _headerless_names(first: str, source: str) -> list[str] | None:
    """The columns of a file without a header (its first field is a time), else None."""
    fields = _fields(first)
    try:
        parse_time(fields[0])
    except ValueError:
        return None
    if len(fields) not in (3, 4):
        raise TraceError(
            source, 1,
            f"no header (the first field is a time), so expected 3 or 4 fields "
            f"({','.join(COLUMNS)}[,{LABEL}]), found {len(fields)}: {quoted(first)}",
        )
    return [*COLUMNS, LABEL][: len(fields)]


def _read_header(header: str, source: str) -> list[str]:
    """The header's column names, lower-cased and with synonyms made canonical."""
    if not header.strip():
        raise TraceError(
            source, 1, f"empty file; expected a header {','.join(COLUMNS)}[,{LABEL}] or rows"
        )
    names = [name.strip().lower() for name in _fields(header)]
    names = [_SYNONYMS.get(name, name) for name in names]
    missing = [name for name in COLUMNS if name not in names]
    if missing:
        raise TraceError(
            source, 1,
            f"header {quoted(header)} lacks column(s) {', '.join(missing)}; "
            f"expected {','.join(COLUMNS)}[,{LABEL}]",
        )
    wanted = [*COLUMNS, LABEL]
    repeated = sorted({name for name in names if name in wanted and names.count(name) > 1})
    if repeated:
        raise TraceError(
            source, 1,
            f"column(s) {', '.join(repeated)} appear more than once "
            "(names ignore case; time is the same column as t)",
        )
    return names


def _split(
    lines: list[str], names: list[str], source: str, first_line: int
) -> dict[str, list[str]]:
    """Cut lines into the wanted columns (strings), checking every line's field count.

    Lines with no quote are split on commas (the fast path); a chunk with a
    quote in it goes through the ``csv`` module.
    """
    joined = ",".join(lines)
    if '"' in joined:
        return _split_quoted(lines, names, source, first_line)
    commas = len(names) - 1
    if set(map(operator.methodcaller("count", ","), lines)) != {commas}:
        for index, text in enumerate(lines):
            found = text.count(",") + 1
            if found != len(names):
                raise _field_count(source, first_line + index, names, found, text)
    fields = joined.split(",")
    return {
        name: fields[position :: len(names)]
        for position, name in enumerate(names)
        if name in (*COLUMNS, LABEL)
    }


def _split_quoted(
    lines: list[str], names: list[str], source: str, first_line: int
) -> dict[str, list[str]]:
    wanted = [(position, name) for position, name in enumerate(names) if name in (*COLUMNS, LABEL)]
    columns: dict[str, list[str]] = {name: [] for _, name in wanted}
    for index, text in enumerate(lines):
        try:
            row = next(csv.reader([text], strict=True), None) or [""]
        except csv.Error as error:
            raise TraceError(
                source, first_line + index, f"bad CSV quoting ({error}): {quoted(text)}"
            ) from None
        if len(row) != len(names):
            raise _field_count(source, first_line + index, names, len(row), text)
        for position, name in wanted:
            columns[name].append(row[position])
    return columns


def _field_count(source: str, line: int, names: list[str], found: int, text: str) -> TraceError:
    return TraceError(
        source, line,
        f"expected {len(names)} comma-separated fields ({','.join(names)}), "
        f"found {found}: {quoted(text)}",
    )


def _parse_columns(
    columns: dict[str, list[str]], source: str, first_line: int
) -> dict[str, Any]:
    """Turn string columns into arrays; the first bad value raises naming its line."""
    parsed: dict[str, Any] = {}
    for name, column in columns.items():
        if name in ("t", "latency"):
            parsed[name] = _numbers(name, column, source, first_line)
        else:
            parsed[name] = _zero_ones(name, column, source, first_line, name == "ok")
    latency = parsed["latency"]
    if latency and min(latency) < 0:
        negative = _first(lambda value: value < 0, latency)
        assert negative is not None
        raise TraceError(
            source, first_line + negative,
            f"latency must be >= 0 seconds, got {parsed['latency'][negative]!r}",
        )
    return parsed


def _numbers(name: str, column: list[str], source: str, first_line: int) -> array.array[float]:
    """Floats; for ``t`` also ISO-8601 times (tried only when plain numbers fail)."""
    parse: Callable[[str], float] = float
    try:
        values = array.array("d", map(float, column))
    except ValueError:
        values = None
    if values is None and name == "t":
        parse = parse_time
        try:
            values = array.array("d", map(parse_time, column))
        except ValueError:
            values = None
    if values is None:
        expected = "a number or an ISO-8601 time" if name == "t" else "a number"
        for index, text in enumerate(column):
            try:
                parse(text)
            except ValueError:
                raise TraceError(
                    source, first_line + index, f"{name} is not {expected}: {quoted(text)}"
                ) from None
        raise AssertionError("unreachable: a column failed to parse but no value did")
    if not all(map(math.isfinite, values)):
        bad = _first(lambda value: not math.isfinite(value), values)
        assert bad is not None
        raise TraceError(
            source, first_line + bad, f"{name} must be a finite number, got {values[bad]!r}"
        )
    return values


def _zero_ones(
    name: str, column: list[str], source: str, first_line: int, outcome: bool = False
) -> bytearray:
    """``1``/``0``, ``true``/``false``, ``yes``/``no`` (any case, spaces around) as 1/0 bytes;
    an ``outcome`` (the ``ok`` column) may also be ``rejected``, as 2."""
    # Fast path for the canonical "0"/"1": one join, one translate, no per-value lookup.
    joined = "".join(column)
    if len(joined) == len(column) and not joined.strip("01"):
        return bytearray(joined, "ascii").translate(_ZERO_ONE)
    words = _OUTCOMES if outcome else _FLAGS
    try:
        return bytearray(map(words.__getitem__, map(str.lower, map(str.strip, column))))
    except KeyError:
        index = next(
            index for index, text in enumerate(column) if text.strip().lower() not in words
        )
        also = f"; {REJECTED} marks time the breaker rejected calls" if outcome else ""
        raise TraceError(
            source, first_line + index,
            f"{name} must be 0 or 1, got {quoted(column[index])} "
            f"(true/false and yes/no are accepted too{also})",
        ) from None


def _take_rejections(parsed: dict[str, Any]) -> list[int] | None:
    """Move the ``rejected`` rows of a parsed chunk out of its columns, into
    ``parsed[REJECTED]`` as ``(start, seconds)`` spans; return the positions of the rows
    kept (None when every row was kept, the usual case: one scan of ``ok``)."""
    ok = parsed["ok"]
    if _REJECTED_CODE not in ok:
        parsed[REJECTED] = []
        return None
    kept = [row for row, code in enumerate(ok) if code != _REJECTED_CODE]
    t, latency = parsed["t"], parsed["latency"]
    parsed[REJECTED] = [
        (t[row], latency[row]) for row, code in enumerate(ok) if code == _REJECTED_CODE
    ]
    for name, column in list(parsed.items()):
        if isinstance(column, bytearray):
            parsed[name] = bytearray(map(column.__getitem__, kept))
        elif isinstance(column, array.array):
            parsed[name] = array.array(column.typecode, map(column.__getitem__, kept))
    return kept



def _check_order(
    t: array.array[float], source: str, first_line: int, previous: float,
    rows: Sequence[int] | None = None,
) -> float:
    """Raise naming the first row whose ``t`` is before the one above it; return the last t.

    ``rows`` are the positions in the chunk of the rows ``t`` holds (None: all of them):
    a ``rejected`` row is written when the rejecting ends, so it is not in time order.
    """
    if not t:
        return previous
    if t[0] >= previous and all(map(operator.le, t, itertools.islice(t, 1, None))):
        return t[-1]
    before = previous
    for index, value in enumerate(t):
        if value < before:
            raise TraceError(
                source, first_line + (index if rows is None else rows[index]),
                f"t goes back in time ({value!r} after {before!r}); rows must be sorted by t "
                "(tune --sort sorts them)",
            )
        before = value
    raise AssertionError("unreachable: an out-of-order row was detected but not found")


def _first(test: Callable[[float], bool], values: Iterable[float]) -> int | None:
    return next((index for index, value in enumerate(values) if test(value)), None)


# -- incident logs ---------------------------------------------------------------------


def load_incidents(path: str | os.PathLike[str]) -> list[tuple[float, float]]:
    """Read an incident log: CSV rows ``start,end`` (Unix or ISO-8601 times), header optional.

    A header, when there is one, names the columns ``start`` and ``end`` (any
    case, other columns ignored). Returns ``(start, end)`` pairs in file order;
    each must have ``end > start``. Errors name the file and the line.
    """
    source = os.fspath(path)
    incidents: list[tuple[float, float]] = []
    columns: tuple[int, int] | None = None
    line = 1
    try:
        with open_regular(source, "an incident log", encoding="utf-8-sig", newline="") as file:
            rows = csv.reader(file, strict=True)
            for row in rows:
                line = rows.line_num
                if not any(field.strip() for field in row):
                    continue
                if columns is None:
                    columns = _incident_header(row, source, line)
                    if columns is not None:
                        continue
                    columns = (0, 1)
                incidents.append(_incident(row, columns, source, line))
    except UnicodeDecodeError:
        raise TraceError(
            source, None, "not UTF-8 text: an incident log is a CSV text file"
        ) from None
    except csv.Error as error:
        raise TraceError(source, line, f"not CSV: {quoted(str(error))}") from None
    return incidents


def _incident_header(row: list[str], source: str, line: int) -> tuple[int, int] | None:
    """The positions of ``start`` and ``end`` when ``row`` is a header; None for a data row."""
    try:
        parse_time(row[0])
        return None
    except ValueError:
        pass
    names = [field.strip().lower() for field in row]
    if "start" not in names or "end" not in names:
        raise TraceError(
            source, line,
            "expected a header naming start and end, or rows start,end; "
            f"got {quoted(','.join(row))}",
        )
    return names.index("start"), names.index("end")


def _incident(
    row: list[str], columns: tuple[int, int], source: str, line: int
) -> tuple[float, float]:
    if len(row) <= max(columns):
        raise TraceError(source, line, f"expected start,end, got {quoted(','.join(row))}")
    start, end = (
        _incident_time(name, row[position], source, line)
        for name, position in zip(("start", "end"), columns, strict=True)
    )
    if end <= start:
        raise TraceError(
            source, line,
            f"end ({quoted(row[columns[1]])}) is not after start ({quoted(row[columns[0]])})",
        )
    return start, end


def _incident_time(name: str, text: str, source: str, line: int) -> float:
    try:
        value = parse_time(text)
    except ValueError:
        raise TraceError(
            source, line, f"{name} is not a Unix or ISO-8601 time: {quoted(text)}"
        ) from None
    if not math.isfinite(value):
        raise TraceError(source, line, f"{name} must be a finite time, got {quoted(text)}")
    return value


class _Observed(Protocol):
    """What a recorder needs of a breaker: its calls, its transitions, its counts."""

    @property
    def clock(self) -> Any: ...

    @property
    def state_code(self) -> int: ...

    def set_observer(self, observer: Callable[[float, bool, float], object] | None) -> None: ...

    def add_listener(self, listener: Callable[[Any, Any, Any], object]) -> None: ...

    def remove_listener(self, listener: Callable[[Any, Any, Any], object]) -> None: ...

    def metrics(self) -> Any: ...


class TraceRecorder:
    """Append one CSV row ``t,ok,latency`` per call of the breakers it is attached to.

    ``recorder.attach(breaker)`` makes every executed call of ``breaker`` a row. A call
    the breaker rejected never ran, so it says nothing of the dependency; the time in
    which the breaker rejected calls is a row of its own, ``t,rejected,seconds``: from
    ``t`` (when the breaker left CLOSED) for ``seconds`` (until it closed again, or was
    detached) it rejected at least one call. It is written when that time ends, so it
    may come after rows of later calls; ``load_trace`` keeps these spans apart
    (``Trace.rejections``) and ``tune`` warns about the share of time they cover. For a
    trace without gaps, record behind an observe-only breaker
    (``CircuitBreakerConfig(enable_fast_fail=False)``): it changes state and reports as
    usual, and rejects nothing. For a recovery manager's plugin, attach
    ``rm.breaker(name)``; keep one trace per dependency, since a replay stands for one
    breaker.

    ``record`` is cheap and thread-safe: it appends a tuple to a buffer under a
    lock; every ``buffer_rows`` rows the buffer is written out, sorted by ``t``,
    by the thread whose call filled it.

    Durability trade-off: rows still in the buffer are lost if the process dies
    without :meth:`close` (or :meth:`flush`, or leaving the ``with`` block), and
    written rows are handed to the OS, not fsync'ed. That keeps a recording at a
    list append per call; call :meth:`flush` when you need the rows on disk.

    Times: the breaker reports when a call started on its own clock (the
    monotonic clock unless it was given another). With ``wall_clock=True`` (the
    default) the recorder writes Unix times instead, adding the offset between
    ``time.time()`` and ``time.monotonic()``, read again for every written batch
    so a recording that runs for days follows the system clock's adjustments.
    A trace then lines up with incident logs and dashboards (``tune --incidents``)
    and survives a reboot between appends. ``wall_clock=False`` writes the
    breaker's clock as it is (a breaker on a ``FakeClock``, in tests).

    Rows are sorted within each written batch; a call that ends a whole batch
    after a later call started can still land out of order, which
    ``load_trace(..., sort=True)`` / ``tune --sort`` accept. Appending to an
    existing trace is allowed when its header is ``t,ok,latency``. Rows recorded
    after :meth:`close` are dropped (a call still in flight when the recorder
    was closed).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, buffer_rows: int = 4096, wall_clock: bool = True
    ) -> None:
        v.check(_BUFFER_ROWS, "buffer_rows", buffer_rows)
        v.check(v.boolean, "wall_clock", wall_clock)
        self.path = os.fspath(path)
        self._buffer_rows = buffer_rows
        self._wall_clock = wall_clock
        self._rows: list[tuple[float, bool | None, float]] = []  # ok None: rejected
        self._lock = threading.Lock()
        self._attached: list[_Observed] = []
        # Per attached breaker not CLOSED: since when, and its rejections then.
        self._away: dict[int, tuple[float, int]] = {}
        self._file = open(self.path, "a+", encoding="utf-8", newline="")  # noqa: SIM115
        try:
            self._file.seek(0)
            header = self._file.readline(MAX_LINE_CHARS)
            if not header:
                self._file.write(",".join(COLUMNS) + "\n")
                self._file.flush()  # an empty recording is already a valid trace
            elif header.rstrip("\r\n") != ",".join(COLUMNS):
                raise ValueError(
                    f"{self.path} already holds something else (header {quoted(header)}); "
                    f"a trace starts with {','.join(COLUMNS)}"
                )
        except BaseException:
            self._file.close()
            raise
        self._open = True

    def record(self, t: float, ok: bool, latency: float) -> None:
        """Add one call: started at ``t`` on the breaker's clock, succeeded if ``ok``, took
        ``latency`` seconds."""
        self._add((t, ok, latency))

    def _write(self) -> None:
        """Write the buffered rows (lock held)."""
        if not self._rows:
            return
        rows = sorted(self._rows, key=operator.itemgetter(0))
        self._rows = []
        offset = time.time() - time.monotonic() if self._wall_clock else 0.0
        words = {True: "1", False: "0", None: REJECTED}
        self._file.write(
            "".join(f"{t + offset!r},{words[ok]},{latency!r}\n" for t, ok, latency in rows)
        )
        self._file.flush()

    def flush(self) -> None:
        """Hand every buffered row to the OS now."""
        with self._lock:
            if self._open:
                self._write()

    def attach(self, breaker: _Observed) -> None:
        """Record every call of ``breaker`` (replaces any observer it had), and the time
        in which it rejects calls."""
        breaker.add_listener(self._transitioned)
        if breaker.state_code != CLOSED_CODE:
            self._left_closed(breaker)
        breaker.set_observer(self.record)
        with self._lock:
            self._attached.append(breaker)

    def detach(self, breaker: _Observed | None = None) -> None:
        """Stop recording ``breaker`` (None: every attached breaker)."""
        with self._lock:
            if breaker is None:
                detached, self._attached = self._attached, []
            else:
                self._attached.remove(breaker)
                detached = [breaker]
        for each in detached:
            each.set_observer(None)
            each.remove_listener(self._transitioned)
            self._closed_again(each)

    def _transitioned(
        self, breaker: _Observed, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        """A listener: note when ``breaker`` leaves CLOSED, and record the rejecting time
        when it closes again."""
        if new is CircuitBreakerState.CLOSED:
            self._closed_again(breaker)
        else:
            self._left_closed(breaker)

    def _left_closed(self, breaker: _Observed) -> None:
        since = (_now(breaker), breaker.metrics().total_rejections)
        with self._lock:
            self._away.setdefault(id(breaker), since)

    def _closed_again(self, breaker: _Observed) -> None:
        with self._lock:
            away = self._away.pop(id(breaker), None)
        if away is None:
            return
        since, rejections = away
        if breaker.metrics().total_rejections > rejections:
            self._add((since, None, max(0.0, _now(breaker) - since)))

    def _add(self, row: tuple[float, bool | None, float]) -> None:
        with self._lock:
            if not self._open:
                return
            self._rows.append(row)
            if len(self._rows) >= self._buffer_rows:
                self._write()

    def close(self) -> None:
        """Detach every breaker, write the buffered rows and close the file."""
        self.detach()
        with self._lock:
            if not self._open:
                return
            self._write()
            self._open = False
            self._file.close()

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _now(breaker: _Observed) -> float:
    """The time on ``breaker``'s clock, the one its calls are reported on."""
    clock = breaker.clock
    return time.monotonic() if clock is None else float(clock.monotonic())
