"""Running the demo as a user does: a real process, its output read on a thread."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time

from tests.helpers import hears_ctrl_c, kill_if_running

COMMAND = [sys.executable, "-m", "recovery", "demo"]


def run_demo(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Demo:
    """A demo process whose stdout is read on a thread, so that every wait is bounded."""

    def __init__(self, *command: str) -> None:
        self.process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=hears_ctrl_c,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """Until a line of stdout contains ``text``; that line."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise AssertionError(f"{text!r} not printed within {timeout} s") from None
            assert line is not None, f"{text!r} never printed: {self._seen}"
            self._seen.append(line)
            if text in line:
                return line

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def finish(self, timeout: float) -> tuple[str, str]:
        """Wait for it to exit (killed after ``timeout``); its whole stdout and stderr."""
        try:
            self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout)
        while (line := self._lines.get()) is not None:
            self._seen.append(line)
        assert self.process.stderr is not None
        return "".join(self._seen), self.process.stderr.read()

    def close(self) -> None:
        """Kill it if it still runs, and close our ends of its pipes."""
        kill_if_running(self.process)
        self._reader.join(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def summary_rows(out: str) -> dict[str, list[str]]:
    """The summary's call table: plugin -> [CALLS, OK, ERRORS, FALLBACK SERVED, REJECTED]."""
    rows = {}
    header = re.search(r"\nPLUGIN +CALLS +OK +ERRORS", out)
    assert header, out
    table = out[header.start() + 1:]
    for line in table.splitlines()[1:]:
        if not line.strip():
            break
        fields = line.split()
        rows[fields[0]] = fields[1:6]
    return rows
