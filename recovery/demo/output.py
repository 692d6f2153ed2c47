"""Writing to the terminal or a pipe whose reader may go away, and the demo's exit statuses."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import TextIO

EXIT_USAGE = 2
"""Exit status for a bad argument, as argparse's own."""
THREAD_GRACE = 2.0
"""Seconds to wait at the end for threads that are finishing to go away."""


def write(stream: TextIO, text: str) -> bool:
    """Write and flush; False if the reader has gone (a closed pipe), which is no error.

    The stream's descriptor is then pointed at the null device, so that the flush at
    exit does not complain about the closed pipe either.
    """
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # no descriptor (a StringIO)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)
        return False
    return True


def usage_error(problem: str) -> int:
    """Say what is wrong with the command line, in one line on stderr; the exit status."""
    write(sys.stderr, f"recovery demo: error: {problem}\n")
    return EXIT_USAGE


def records(count: int) -> str:
    """``1 record``, ``2 records``: a count of audit records in words."""
    return f"{count} record" + ("" if count == 1 else "s")


def join_leftovers(
    before: set[threading.Thread], grace: float = THREAD_GRACE
) -> list[threading.Thread]:
    """Threads started since ``before`` that are still alive after ``grace`` seconds.

    Abandoned threads (a health check that hung, then was released) exit on their
    own shortly after the end; they get ``grace`` seconds to do so. The summary's
    last line counts what is left, so that a thread that outlives the run shows.
    """
    deadline = time.monotonic() + grace
    left = []
    for thread in threading.enumerate():
        if thread in before or thread is threading.current_thread():
            continue
        thread.join(max(deadline - time.monotonic(), 0.0))
        if thread.is_alive():
            left.append(thread)
    return left
