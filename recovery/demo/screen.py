"""Where a run is shown: a live table redrawn in place, event lines, or nothing (--json)."""

from __future__ import annotations

import collections
import shutil
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from recovery.alerts import Alert
from recovery.breaker import CircuitBreaker
from recovery.demo.interrupt import STOPPING
from recovery.demo.output import write
from recovery.state import CircuitBreakerState

TICK = 0.1
"""Seconds between refreshes of the view (and checks of the faults and of Ctrl-C)."""


class Reporter:
    """Where the run is shown. This one shows only that Ctrl-C was heard (--json)."""

    def __init__(self, out: TextIO, started: float) -> None:
        self._out = out
        self._started = started
        self._lock = threading.Lock()
        self._gone = False

    def _write(self, text: str) -> None:
        """Write now; once the reader has gone (``| head``), the rest of the run is silent."""
        if not self._gone:
            self._gone = not write(self._out, text)

    def _line(self, plugin: str, text: str) -> str:
        return f"{time.monotonic() - self._started:7.2f}s  {plugin:<11} {text}"

    def event(self, plugin: str, text: str) -> None:
        """Called from any thread: a state change, a recovery action, an alert, a fault."""

    def refresh(self, lines: list[str]) -> None:
        """Called from the main thread every tick, with the table to show."""

    def stopping(self) -> None:
        """The first Ctrl-C was heard: say so, and how to quit at once."""
        with self._lock:
            self._write("recovery demo: " + STOPPING + "\n")

    def close(self, lines: list[str]) -> None:
        """The run is over (``lines``: the final table); leave the terminal to the summary."""

    def transition(
        self, breaker: CircuitBreaker, old: CircuitBreakerState, new: CircuitBreakerState
    ) -> None:
        self.event(breaker.name, f"breaker: {old.value} -> {new.value}")

    def alert(self, alert: Alert) -> None:
        kind = getattr(alert.kind, "value", alert.kind)
        self.event(alert.plugin_name, f"alert {kind}: {alert.message}")


class EventLines(Reporter):
    """One line per event, as it happens: the view off a terminal (piped, or TERM=dumb)."""

    def event(self, plugin: str, text: str) -> None:
        with self._lock:
            self._write(self._line(plugin, text) + "\n")

    def stopping(self) -> None:
        self.event("-", STOPPING)


class LiveTable(Reporter):
    """The status table, redrawn in place with plain ANSI escapes, and the latest events."""

    RECENT = 20

    def __init__(
        self, out: TextIO, started: float, duration: float, subtitle: Sequence[str] = (),
    ) -> None:
        """``subtitle``: lines shown under the title while the run lasts, never cut to the
        terminal's width (a command to paste must stay whole: the terminal wraps it)."""
        super().__init__(out, started)
        self._duration = duration
        self._subtitle = list(subtitle)
        self._recent: collections.deque[str] = collections.deque(maxlen=self.RECENT)
        self._drawn = 0
        self._note = "(Ctrl-C ends it early)"
        self._write("\x1b[?25l")  # hide the cursor while redrawing

    def event(self, plugin: str, text: str) -> None:
        with self._lock:
            self._recent.append(self._line(plugin, text))

    def stopping(self) -> None:
        self._note = STOPPING

    def refresh(self, lines: list[str]) -> None:
        elapsed = time.monotonic() - self._started
        now = time.strftime("%H:%M:%S")
        self._draw(
            f"recovery demo  {elapsed:5.1f}s of {self._duration:g}s  {now}   {self._note}",
            self._subtitle, lines,
        )

    def _draw(self, title: str, whole: list[str], table: list[str]) -> None:
        """Draw over the last frame: ``title``, the ``whole`` lines, ``table``, events."""
        size = shutil.get_terminal_size()
        width = max(size.columns - 1, 20)
        cut = [title[:width], "", *fit_columns(table, width), "", "recent events:"]
        # A whole line longer than the screen is wide takes more than one row.
        rows = len(cut) + sum(max(1, -(-len(line) // size.columns)) for line in whole)
        # The frame must fit the screen, or moving back up over it would fall short.
        room = max(size.lines - 1 - rows, 0)
        with self._lock:
            events = list(self._recent)[-room:] if room else []
        lines = [cut[0], *whole, *cut[1:], *(line[:width] for line in events)]
        text = f"\x1b[{self._drawn}A\r" if self._drawn else ""
        text += "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J"
        self._write(text)
        self._drawn = rows + len(events)

    def close(self, lines: list[str]) -> None:
        self._draw("recovery demo: the final numbers (the summary follows)", [], lines)
        self._write("\x1b[?25h\n")


# Column titles of two words: the space inside one is no place to cut the table.
TWO_WORD_TITLES = ("FALLBACK SERVED", "LAST ACTION")


def fit_columns(table: list[str], width: int) -> list[str]:
    """``table`` cut to ``width``: its first block (a header and its rows, up to the first
    empty line) loses whole columns, never part of one, so a narrow terminal shows no
    half title; the lines after that block are cut at ``width``.

    A column starts where a header word follows a space, unless the two words are one
    title (:data:`TWO_WORD_TITLES`); each column's cells lie within its title's span.
    """
    end = table.index("") if "" in table else len(table)
    block, rest = table[:end], table[end:]
    if block and len(block[0]) > width:
        header = block[0]
        starts = [
            i for i in range(1, len(header))
            if header[i] != " " and header[i - 1] == " "
            and not any(header.startswith(title, i - title.index(" ") - 1)
                        and title.index(" ") + 1 <= i for title in TWO_WORD_TITLES)
        ]
        fitting = [i for i in starts if i <= width + 1]
        cut_at = max(fitting) - 1 if fitting else width
        block = [line[:cut_at].rstrip() for line in block]
    return [*block, *(line[:width] for line in rest)]
