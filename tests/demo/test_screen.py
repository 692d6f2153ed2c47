"""The live table's frame: redrawn in place over exactly the rows it took."""

from __future__ import annotations

import io
import math
import re

import pytest

from recovery.demo.screen import LiveTable, fit_columns

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_a_line_kept_whole_counts_the_rows_it_wraps_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "30")
    out = io.StringIO()
    command = "  python -m recovery dashboard --cluster redis://127.0.0.1:6379/0 --namespace x"
    live = LiveTable(out, 0.0, 10.0, subtitle=["how to watch:", command])
    for index in range(40):
        live.event("p", f"event {index}")
    live.refresh(["TABLE " + "x" * 80, "row"])
    first = out.getvalue()
    live.refresh(["TABLE", "row"])
    second = out.getvalue()[len(first):]

    assert command + "\x1b[K\n" in first  # whole, not cut to 39 columns
    assert "\nTABLE\x1b[K\n" in first  # the table is cut, at a column: no half of one
    drawn = ESCAPES.sub("", first).split("\n")[:-1]
    rows = sum(max(1, math.ceil(len(line) / 40)) for line in drawn)
    assert rows == len(drawn) + 1  # the command takes two rows
    assert second.startswith(f"\x1b[{rows}A\r")
    live.close(["TABLE", "row"])
    assert "dashboard" not in out.getvalue()[len(first) + len(second):]


@pytest.mark.parametrize(("lines", "shown"), [(40, 20), (27, 20), (19, 12), (12, 5), (7, 0)])
def test_the_frame_shows_the_latest_events_that_fit(
    lines: int, shown: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", str(lines))
    out = io.StringIO()
    live = LiveTable(out, 0.0, 10.0)
    for index in range(25):
        live.event("p", f"event {index}")
    live.refresh(["TABLE", "row"])  # title, "", 2 lines, "", "recent events:": 6 rows
    drawn = ESCAPES.sub("", out.getvalue()).split("\n")[:-1]
    events = [line.split()[-1] for line in drawn if "event " in line]
    assert events == [str(n) for n in range(25 - shown, 25)]
    assert len(drawn) == min(lines - 1, 6 + LiveTable.RECENT)


HEADER = ("PLUGIN     STATE     CALLS    OK ERRORS  FALLBACK SERVED  REJECTED FAIL% TRIPS "
          "FLAGS     LAST ACTION")
ROW = ("slow       half_open  1038   486     15              537        17  100%     3 "
       "degraded  degrade ok")


@pytest.mark.parametrize(("width", "last"), [
    (99, "FLAGS"), (88, "FLAGS"), (87, "TRIPS"), (80, "TRIPS"), (60, "FALLBACK SERVED"),
    (200, "LAST ACTION"),
])
def test_a_narrow_terminal_loses_whole_columns_never_half_a_title(width: int, last: str) -> None:
    header, row, blank, legend = fit_columns([HEADER, ROW, "", "a legend " * 20], width)
    assert header.endswith(last) and len(header) <= width
    assert len(row) <= len(header) + len("degraded") - len("FLAGS")
    assert ROW.startswith(row) and HEADER.startswith(header)
    assert blank == "" and legend == ("a legend " * 20)[:width]
