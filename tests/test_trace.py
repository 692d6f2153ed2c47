"""Trace files: loading with line-numbered errors; the recorder round-tripping through replay."""

from __future__ import annotations

import array
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from recovery import trace as trace_module
from recovery.breaker import CircuitBreaker
from recovery.config import CircuitBreakerConfig
from recovery.testing import FakeClock
from recovery.trace import Trace, TraceError, TraceRecorder, load_incidents, load_trace


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- loading ---------------------------------------------------------------------------


def test_load_reads_columns_into_flat_arrays(tmp_path: Path) -> None:
    path = write(tmp_path, "t,ok,latency\n0.5,1,0.01\n1.25,0,2\n1.25,1,0\n")
    loaded = load_trace(path)
    assert loaded.t == array.array("d", [0.5, 1.25, 1.25])
    assert loaded.ok == bytearray([1, 0, 1])
    assert loaded.latency == array.array("d", [0.01, 2.0, 0.0])
    assert loaded.healthy is None
    assert not loaded.labelled
    assert len(loaded) == 3
    assert loaded.source == str(path)


def test_load_takes_columns_in_any_order_ignores_others_and_reads_labels(tmp_path: Path) -> None:
    path = write(tmp_path, "healthy, note ,latency,ok,t\n1,x,0.1,1,3\n0,y,0.2,0,4\n\n\n")
    loaded = load_trace(path)
    assert loaded.t == array.array("d", [3.0, 4.0])
    assert loaded.ok == bytearray([1, 0])
    assert loaded.latency == array.array("d", [0.1, 0.2])
    assert loaded.healthy == bytearray([1, 0])
    assert loaded.labelled


def test_load_accepts_windows_line_ends_a_bom_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(b"\xef\xbb\xbft,ok,latency\r\n1,1,0.5\r\n2, 0 ,0.25")
    loaded = load_trace(path)
    assert loaded.t == array.array("d", [1.0, 2.0])
    assert loaded.ok == bytearray([1, 0])
    assert loaded.latency == array.array("d", [0.5, 0.25])


def test_header_names_ignore_case_and_spaces_and_time_means_t(tmp_path: Path) -> None:
    path = write(tmp_path, " Time , OK,Latency ,HEALTHY,Note\n0.5,1,0.01,1,a\n2,0,0.5,0,b\n")
    loaded = load_trace(path)
    assert loaded.t == array.array("d", [0.5, 2.0])
    assert loaded.ok == bytearray([1, 0])
    assert loaded.latency == array.array("d", [0.01, 0.5])
    assert loaded.healthy == bytearray([1, 0])


def test_ok_and_healthy_take_words_in_any_case(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "time,ok,latency,healthy\n1,true,0,Yes\n2,FALSE,0,no\n3, yes ,0,True\n4,No,0,0\n"
        "5,1,0,false\n",
    )
    loaded = load_trace(path)
    assert loaded.ok == bytearray([1, 0, 1, 0, 1])
    assert loaded.healthy == bytearray([1, 0, 1, 0, 0])


def test_a_file_without_a_header_is_t_ok_latency_then_healthy(tmp_path: Path) -> None:
    plain = load_trace(write(tmp_path, "0.5,1,0.01\n1.5,0,2\n\n", "plain.csv"))
    assert plain.t == array.array("d", [0.5, 1.5])
    assert plain.ok == bytearray([1, 0])
    assert plain.latency == array.array("d", [0.01, 2.0])
    assert plain.healthy is None
    labelled = load_trace(write(tmp_path, "1,true,0.25,1\n2,false,0.5,no", "labelled.csv"))
    assert labelled.t == array.array("d", [1.0, 2.0])
    assert labelled.ok == bytearray([1, 0])
    assert labelled.latency == array.array("d", [0.25, 0.5])
    assert labelled.healthy == bytearray([1, 0])
    one_row = tmp_path / "one.csv"
    one_row.write_bytes(b"\xef\xbb\xbf7,0,0.125\r\n")  # a BOM, Windows line ends
    loaded = load_trace(one_row)
    assert (loaded.t, loaded.ok, loaded.latency) == (
        array.array("d", [7.0]), bytearray([0]), array.array("d", [0.125])
    )
    with pytest.raises(TraceError, match="line 3: t goes back in time"):
        load_trace(write(tmp_path, "1,1,0\n3,1,0\n2,1,0\n", "unsorted.csv"))
    assert load_trace(tmp_path / "unsorted.csv", sort=True).t == array.array("d", [1, 2, 3])


def test_a_header_only_trace_is_empty(tmp_path: Path) -> None:
    loaded = load_trace(write(tmp_path, "t,ok,latency,healthy\n"))
    assert len(loaded) == 0
    assert loaded.labelled


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("", 1, "empty file"),
        ("t,ok\n1,1\n", 1, "lacks column(s) latency"),
        ("when,ok,latency\n", 1, "lacks column(s) t"),
        ("t,ok,latency,t\n", 1, "t appear more than once"),
        ("t,ok,latency,Time\n", 1, "t appear more than once"),
        ("OK,ok,t,latency\n", 1, "ok appear more than once"),
        ("1,1,0,1,9\n", 1, "no header (the first field is a time), so expected 3 or 4"),
        ("1,1\n", 1, "found 2: '1,1'"),
        ("1,1,0\n2,1,0,1\n", 2, "expected 3 comma-separated fields (t,ok,latency), found 4"),
        ("1,1,0,2\n", 1, "healthy must be 0 or 1, got '2'"),
        ("1,1,0\nx,1,0\n", 2, "t is not a number or an ISO-8601 time: 'x'"),
        ("t,ok,latency\n1,1,0\n2,1\n", 3, "expected 3 comma-separated fields"),
        ("t,ok,latency\n1,1,0\n2,1,0,9\n", 3, "found 4"),
        ("t,ok,latency\n1,1,0\n\n2,1,0\n", 3, "found 1"),
        ("t,ok,latency\n1,1,0\nabc,1,0\n", 3, "t is not a number or an ISO-8601 time: 'abc'"),
        ("t,ok,latency\n1,1,0\n2,1,\n", 3, "latency is not a number: ''"),
        ("t,ok,latency\n1,1,0\nnan,1,0\n", 3, "t must be a finite number"),
        ("t,ok,latency\n1,1,inf\n", 2, "latency must be a finite number"),
        ("t,ok,latency\n1,1,0\n2,1,-0.5\n", 3, "latency must be >= 0 seconds, got -0.5"),
        ("t,ok,latency\n1,1,0\n2,2,0\n", 3, "ok must be 0 or 1, got '2'"),
        ("t,ok,latency\n1,maybe,0\n", 2, "ok must be 0 or 1, got 'maybe' (true/false and"),
        ("t,ok,latency\n1,y,0\n", 2, "ok must be 0 or 1, got 'y'"),
        ("t,ok,latency\n1,1.0,0\n", 2, "ok must be 0 or 1, got '1.0'"),
        ("t,ok,latency,healthy\n1,1,0,1\n2,1,0,0.5\n", 3, "healthy must be 0 or 1, got '0.5'"),
        ("t,ok,latency\n1,1,0\n3,1,0\n2,1,0\n", 4, "t goes back in time (2.0 after 3.0)"),
    ],
)
def test_a_bad_trace_is_rejected_naming_the_line(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TraceError) as raised:
        load_trace(path)
    assert raised.value.line == line
    assert problem in str(raised.value)
    assert str(raised.value).startswith(f"{path}, line {line}: ")


def test_errors_and_values_are_the_same_across_read_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = "".join(f"{i}.5,{i % 2},0.{i}\n" for i in range(40))
    good = write(tmp_path, "t,ok,latency\n" + rows + "\n\n", "good.csv")
    whole = load_trace(good)
    monkeypatch.setattr(trace_module, "_CHUNK_CHARS", 7)  # chunks end inside lines
    chunked = load_trace(good)
    assert (chunked.t, chunked.ok, chunked.latency) == (whole.t, whole.ok, whole.latency)
    assert len(chunked) == 40

    unsorted = write(tmp_path, "t,ok,latency\n" + rows + "1,1,0\n", "unsorted.csv")
    with pytest.raises(TraceError, match=r"line 42: t goes back in time \(1.0 after 39.5\)"):
        load_trace(unsorted)
    blank = write(tmp_path, "t,ok,latency\n" + rows + "\n\n" + rows, "blank.csv")
    with pytest.raises(TraceError, match="line 42: expected 3"):
        load_trace(blank)
    headerless = write(tmp_path, rows + "\n", "headerless.csv")  # first row is read first
    loaded = load_trace(headerless)
    assert (loaded.t, loaded.ok, loaded.latency) == (whole.t, whole.ok, whole.latency)
    words = write(tmp_path, "t,ok,latency\n" + rows.replace(",1,", ",yes,"), "words.csv")
    assert load_trace(words).ok == whole.ok


def test_binary_garbage_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 40)
    with pytest.raises(TraceError) as raised:
        load_trace(path)
    assert str(raised.value).startswith(f"{path}: not UTF-8 text")
    assert raised.value.line is None


@pytest.mark.parametrize("header", ["", "t,ok,latency\n"])
def test_a_huge_line_gives_a_short_error(tmp_path: Path, header: str) -> None:
    """A 50 MB line without a newline is refused after a megabyte, quoting none of it."""
    path = tmp_path / "huge.csv"
    with path.open("w", encoding="utf-8") as file:
        file.write(header)
        for _ in range(50):
            file.write("9" * 1_000_000)
    with pytest.raises(TraceError) as raised:
        load_trace(path)
    assert raised.value.line == (2 if header else 1)
    assert "no end of line within 1,048,576 characters" in str(raised.value)
    assert len(str(raised.value)) < 200


def test_a_long_bad_line_is_quoted_cut_short(tmp_path: Path) -> None:
    path = write(tmp_path, "t,ok,latency\n1,1,0\n" + "x" * 100_000 + ",1,0\n")
    with pytest.raises(TraceError, match=r"line 3: t is not .*\.\.\. \(100,000 characters\)"):
        load_trace(path)
    with pytest.raises(TraceError) as raised:
        load_trace(write(tmp_path, "q" * 500_000 + "\n", "header.csv"))
    assert len(str(raised.value)) < 300


def test_iso_times_and_quoted_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '"time","ok","latency"\n'
        '"2024-01-01T00:00:00Z","1","0.5"\n'
        "2024-01-01T00:00:01.250+00:00,0,0.25\n"
        "2024-01-01 00:00:02,true,0\n",  # no offset: UTC
    )
    loaded = load_trace(path)
    base = 1704067200.0  # 2024-01-01T00:00:00Z
    assert loaded.t == array.array("d", [base, base + 1.25, base + 2.0])
    assert loaded.ok == bytearray([1, 0, 1])
    assert loaded.latency == array.array("d", [0.5, 0.25, 0.0])
    headerless = load_trace(write(tmp_path, "2024-01-01T00:00:00Z,1,0\n", "plain.csv"))
    assert headerless.t == array.array("d", [base])
    quoted = write(tmp_path, 't,ok,latency\n1,1,0\n"2,5",1,0\n', "comma.csv")
    with pytest.raises(TraceError, match=r"line 3: t is not a number or an ISO-8601 time: '2,5'"):
        load_trace(quoted)
    broken = write(tmp_path, 't,ok,latency\n"1"x,1,0\n', "broken.csv")
    with pytest.raises(TraceError, match="line 2: bad CSV quoting"):
        load_trace(broken)


def test_a_sorted_trace_is_not_copied_by_sort(tmp_path: Path) -> None:
    loaded = load_trace(write(tmp_path, "t,ok,latency\n1,1,0\n2,1,0\n"))
    assert loaded.sorted_by_time() is loaded


# -- incident logs ---------------------------------------------------------------------


def test_incidents_with_or_without_a_header_in_unix_or_iso_times(tmp_path: Path) -> None:
    with_header = write(
        tmp_path, 'note,End,START\n"db, primary",1704067260,2024-01-01T00:00:00Z\n\n', "a.csv"
    )
    assert load_incidents(with_header) == [(1704067200.0, 1704067260.0)]
    plain = write(tmp_path, "10,20.5\n30,40\n", "b.csv")
    assert load_incidents(plain) == [(10.0, 20.5), (30.0, 40.0)]
    assert load_incidents(write(tmp_path, "start,end\n", "c.csv")) == []


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("from,to\n1,2\n", 1, "expected a header naming start and end"),
        ("1,2\n3\n", 2, "expected start,end, got '3'"),
        ("1,2\n3,soon\n", 2, "end is not a Unix or ISO-8601 time: 'soon'"),
        ("5,5\n", 1, "end ('5') is not after start ('5')"),
        ("start,end\n1,nan\n", 2, "end must be a finite time"),
        ('1,"2\n', 1, "not CSV"),
    ],
)
def test_a_bad_incident_log_is_rejected_naming_the_line(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    with pytest.raises(TraceError) as raised:
        load_incidents(write(tmp_path, text))
    assert raised.value.line == line
    assert problem in str(raised.value)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TraceError, match=r"bin\.csv: not UTF-8 text"):
        load_incidents(tmp_path / "bin.csv")


def test_sort_orders_events_by_time_keeping_ties_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path, "t,ok,latency,healthy\n3,1,0.3,1\n1,0,0.1,0\n3,0,0.4,1\n2,1,0.2,0\n"
    )
    loaded = load_trace(path, sort=True)
    assert loaded.t == array.array("d", [1.0, 2.0, 3.0, 3.0])
    assert loaded.ok == bytearray([0, 1, 1, 0])
    assert loaded.latency == array.array("d", [0.1, 0.2, 0.3, 0.4])
    assert loaded.healthy == bytearray([0, 0, 1, 1])


def test_from_rows_checks_like_a_file() -> None:
    built = Trace.from_rows([(0, True, 0.5, 1), (1.5, 0, 0.25, 0)])
    assert built.t == array.array("d", [0.0, 1.5])
    assert built.ok == bytearray([1, 0])
    assert built.healthy == bytearray([1, 0])
    with pytest.raises(TraceError, match="line 2: t goes back"):
        Trace.from_rows([(2, 1, 0), (1, 1, 0)])
    with pytest.raises(ValueError, match="rows must all be"):
        Trace.from_rows([(1, 1, 0), (2, 1, 0, 1)])
    with pytest.raises(ValueError, match="same length"):
        Trace(array.array("d", [1.0]), bytearray(), array.array("d", [0.0]))


# -- recorder --------------------------------------------------------------------------


def test_recorder_writes_a_header_once_and_rows_that_load_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    with TraceRecorder(path, wall_clock=False) as recorder:
        recorder.record(1.0000000001, True, 0.1)
        recorder.record(2.5, False, 1e-7)
    with TraceRecorder(path, wall_clock=False) as recorder:  # appending to an existing trace
        recorder.record(3.0, True, 0.0)
    assert path.read_text().count("t,ok,latency") == 1
    loaded = load_trace(path)
    assert loaded.t == array.array("d", [1.0000000001, 2.5, 3.0])
    assert loaded.ok == bytearray([1, 0, 1])
    assert loaded.latency == array.array("d", [0.1, 1e-7, 0.0])


def test_recorder_writes_unix_times_by_default(tmp_path: Path) -> None:
    """A live breaker's monotonic start times come out as wall-clock Unix times."""
    path = tmp_path / "wall.csv"
    breaker = CircuitBreaker("wall")
    before = time.time()
    with TraceRecorder(path) as recorder:
        recorder.attach(breaker)
        breaker.call(int, "1")
        recorder.record(time.monotonic(), False, 0.5)
    after = time.time()
    loaded = load_trace(path, sort=True)
    assert len(loaded) == 2
    assert all(before - 1.0 <= t <= after + 1.0 for t in loaded.t)
    with pytest.raises(TypeError, match="wall_clock must be a bool, got 'yes'"):
        TraceRecorder(tmp_path / "other.csv", wall_clock="yes")  # type: ignore[arg-type]


def test_recorder_refuses_a_file_that_is_not_a_trace(tmp_path: Path) -> None:
    path = write(tmp_path, "name,age\n")
    with pytest.raises(ValueError, match="already holds something else"):
        TraceRecorder(path)
    with pytest.raises(ValueError, match="buffer_rows must be a positive int, got 0"):
        TraceRecorder(tmp_path / "other.csv", buffer_rows=0)


def test_recorder_buffers_until_full_or_flushed_and_sorts_each_batch(tmp_path: Path) -> None:
    path = tmp_path / "rec.csv"
    recorder = TraceRecorder(path, buffer_rows=3, wall_clock=False)
    recorder.record(2.0, True, 0.0)
    recorder.record(1.0, True, 0.0)
    assert path.read_text() == "t,ok,latency\n"  # still buffered: lost if the process died now
    recorder.record(1.5, False, 0.0)  # fills the buffer: written, in time order
    assert path.read_text() == "t,ok,latency\n1.0,1,0.0\n1.5,0,0.0\n2.0,1,0.0\n"
    recorder.record(0.5, True, 0.25)
    recorder.flush()
    assert path.read_text().endswith("2.0,1,0.0\n0.5,1,0.25\n")
    recorder.close()
    recorder.record(9.0, True, 0.0)  # after close: dropped
    recorder.close()  # closing twice is harmless
    assert "9.0" not in path.read_text()
    with pytest.raises(TraceError, match="line 5: t goes back in time"):
        load_trace(path)
    assert load_trace(path, sort=True).t == array.array("d", [0.5, 1.0, 1.5, 2.0])


def test_recorder_round_trips_a_breaker_through_replay(
    tmp_path: Path, breaker_cls: type[CircuitBreaker]
) -> None:
    """What a live breaker did on recorded calls, replay does again from the file."""
    config = CircuitBreakerConfig(
        failure_threshold=3,
        minimum_requests=3,
        sliding_window_size=5,
        timeout=2.0,
        success_threshold=2,
        slow_call_duration=0.4,
        slow_call_rate_threshold=0.6,
    )
    clock = FakeClock(100.0)
    live = breaker_cls("live", config, clock=clock)
    live_states = []
    live.add_listener(lambda _cb, _old, new: live_states.append(new))
    # (outcome, latency, pause after): failures open it, trials and slow calls move it on.
    script = [(True, 0.1, 0.2)] * 3 + [(False, 0.05, 0.1)] * 3 + [(True, 0.1, 0.5)] * 6
    script += [(False, 0.2, 0.3)] * 2 + [(True, 0.5, 0.1)] * 8 + [(True, 0.01, 1.0)] * 5

    def work(ok: bool, latency: float) -> None:
        clock.advance(latency)
        if not ok:
            raise ConnectionError("down")

    path = tmp_path / "live.csv"
    executed = 0
    with TraceRecorder(path, buffer_rows=4, wall_clock=False) as recorder:
        recorder.attach(live)
        for ok, latency, pause in script:
            try:
                live.call(work, ok, latency)
                executed += 1
            except ConnectionError:
                executed += 1
            except Exception:  # rejected: the call did not run
                pass
            clock.advance(pause)
        recorder.detach(live)
        live.call(work, True, 0.1)  # detached: not recorded
    assert executed < len(script)  # some calls were rejected, so not in the trace

    loaded = load_trace(path)
    assert len(loaded) == executed
    replayed = breaker_cls("replay", config)
    admitted, states = replayed.replay(loaded.t, loaded.ok, loaded.latency)
    assert admitted == b"\x01" * executed  # every recorded call was admitted live, and again
    changes = [code for i, code in enumerate(states) if code != (states[i - 1] if i else 0)]
    names = ["closed", "open", "half_open", "repairing"]
    assert [names[code] for code in changes] == [state.value for state in live_states]
    assert len(live_states) >= 4


def test_recorder_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "threads.csv"
    threads_count, per_thread = 4, 500
    barrier = threading.Barrier(threads_count, timeout=10)
    recorder = TraceRecorder(path, buffer_rows=64, wall_clock=False)

    def record(offset: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            recorder.record(float(i * threads_count + offset), i % 3 != 0, 0.001)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
    recorder.close()
    loaded = load_trace(path, sort=True)
    assert loaded.t == array.array("d", [float(i) for i in range(threads_count * per_thread)])
    assert loaded.ok.count(0) == threads_count * len(range(0, per_thread, 3))


def test_detach_all_and_context_exit_stop_recording(tmp_path: Path) -> None:
    clock = FakeClock()
    breakers = [CircuitBreaker(name, clock=clock) for name in ("a", "b")]
    seen: list[Any] = []
    with TraceRecorder(tmp_path / "two.csv") as recorder:
        for breaker in breakers:
            recorder.attach(breaker)
        for breaker in breakers:
            breaker.call(seen.append, 1)
    for breaker in breakers:
        breaker.call(seen.append, 2)  # after the with block: not recorded
    assert len(load_trace(tmp_path / "two.csv")) == 2
    assert len(seen) == 4


# -- rejections: the time a recording breaker did not call the dependency ------------------


def down() -> None:
    raise ConnectionError("down")


def record_an_outage(
    path: Path, breaker_cls: type[CircuitBreaker], clock: FakeClock, **fields: Any
) -> tuple[float, float, int]:
    """One call every 0.1 s: 1 s healthy, 1 s down, 2 s healthy, recorded behind a breaker
    that opens on 3 failures and probes after 0.5 s. Returns (time it opened, time it
    closed again, calls that ran)."""
    config = CircuitBreakerConfig(failure_threshold=3, timeout=0.5, success_threshold=1,
                                  retry_backoff_factor=1.0, **fields)
    breaker = breaker_cls("dep", config, clock=clock)
    changes: list[tuple[str, float]] = []
    breaker.add_listener(lambda _b, _old, new: changes.append((new.value, clock.monotonic())))
    ran = 0
    with TraceRecorder(path, wall_clock=False, buffer_rows=5) as recorder:
        recorder.attach(breaker)
        for step in range(40):
            try:
                breaker.call(down if 10 <= step < 20 else int)
                ran += 1
            except ConnectionError:
                ran += 1
            except Exception:  # rejected: the call did not run
                pass
            clock.advance(0.1)
    opened = next(t for state, t in changes if state == "open")
    closed = [t for state, t in changes if state == "closed"]
    return opened, closed[-1] if closed else float("nan"), ran


def test_the_recorder_writes_the_time_a_breaker_rejected_calls_as_a_rejected_row(
    tmp_path: Path, breaker_cls: type[CircuitBreaker]
) -> None:
    clock = FakeClock(1000.0)
    path = tmp_path / "behind.csv"
    opened, closed, ran = record_an_outage(path, breaker_cls, clock)
    assert ran < 40  # some calls were rejected, and are no rows
    rows = path.read_text().splitlines()
    rejected = [row for row in rows if ",rejected," in row]
    assert rejected == [f"{opened!r},rejected,{closed - opened!r}"]
    loaded = load_trace(path)  # the rejected row comes late, and is taken out of the calls
    assert len(loaded) == ran
    assert loaded.rejections == ((opened, closed - opened),)
    assert loaded.rejected_share() == pytest.approx((closed - opened) / (loaded.t[-1] - 1000.0))


def test_an_observe_only_breaker_records_every_call_and_no_rejection(
    tmp_path: Path, breaker_cls: type[CircuitBreaker]
) -> None:
    path = tmp_path / "observed.csv"
    opened, _, ran = record_an_outage(
        path, breaker_cls, FakeClock(1000.0), enable_fast_fail=False
    )
    assert opened > 0 and ran == 40  # it opened, and still let every call run
    assert "rejected" not in path.read_text()
    loaded = load_trace(path)
    assert len(loaded) == 40 and loaded.rejections == ()
    assert loaded.rejected_share() == 0.0


def test_a_breaker_detached_while_it_rejects_ends_its_rejecting_time(
    tmp_path: Path, breaker_cls: type[CircuitBreaker]
) -> None:
    clock = FakeClock(1000.0)
    breaker = breaker_cls("dep", failure_threshold=1, timeout=60.0, clock=clock)
    path = tmp_path / "cut.csv"
    with TraceRecorder(path, wall_clock=False) as recorder:
        recorder.attach(breaker)
        with pytest.raises(ConnectionError):
            breaker.call(down)
        clock.advance(1.0)
        with pytest.raises(Exception, match="open"):
            breaker.call(int)
        clock.advance(2.0)
    # Left open: the recorder's close ends the span at the time it was detached.
    assert load_trace(path).rejections == ((1000.0, 3.0),)


def test_rejected_rows_load_apart_with_right_line_numbers_and_only_in_ok(
    tmp_path: Path,
) -> None:
    text = "t,ok,latency\n1,1,0\n2,0,0\n5,1,0\n2,REJECTED,2.5\n6,1,0\n"
    loaded = load_trace(write(tmp_path, text))
    assert list(loaded.t) == [1.0, 2.0, 5.0, 6.0]
    assert loaded.rejections == ((2.0, 2.5),)
    assert loaded.sorted_by_time().rejections == loaded.rejections
    with pytest.raises(TraceError, match=r"line 6: t goes back in time \(4\.0 after 5\.0\)"):
        load_trace(write(tmp_path, "t,ok,latency\n1,1,0\n2,0,0\n5,1,0\n2,rejected,2\n4,1,0\n"))
    with pytest.raises(TraceError, match=r"line 2: healthy must be 0 or 1, got 'rejected'"):
        load_trace(write(tmp_path, "t,ok,latency,healthy\n1,1,0,rejected\n"))
    assert Trace.from_rows([(1, 1, 0), (0.5, "rejected", 3)]).rejections == ((0.5, 3.0),)


def test_the_share_of_rejected_time_counts_overlaps_once() -> None:
    calls = [(float(t), 1, 0.0) for t in range(11)]  # 0 to 10 s
    spans = [(1.0, "rejected", 2.0), (2.0, "rejected", 2.0), (8.0, "rejected", 4.0)]
    trace = Trace.from_rows(calls + spans)
    # 1-4 and 8-12 of a recording from 0 to 12.
    assert trace.rejected_share() == pytest.approx(7.0 / 12.0)
