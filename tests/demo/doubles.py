"""Stand-ins for what the demo writes to: a terminal, a reporter that keeps its events."""

from __future__ import annotations

import io

from recovery.demo.screen import Reporter


class FakeTerminal(io.StringIO):
    """Text written to a terminal: the demo draws its live table on it."""

    def isatty(self) -> bool:
        return True


class RecordedEvents(Reporter):
    """A reporter that keeps each event as ``"plugin: text"`` in ``lines``."""

    def __init__(self) -> None:
        super().__init__(io.StringIO(), 0.0)
        self.lines: list[str] = []

    def event(self, plugin: str, text: str) -> None:
        self.lines.append(f"{plugin}: {text}")
