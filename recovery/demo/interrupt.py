"""Ctrl-C during the demo: the first stops the run in order, the second quits at once."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

EXIT_INTERRUPTED = 130
"""Exit status after a second Ctrl-C, as a shell reports a process ended by SIGINT."""
STOPPING = "Ctrl-C: stopping (press it again to quit at once, without the summary)"
"""What the run says when it has heard the first Ctrl-C."""


class CtrlC:
    """The SIGINT handler: the first Ctrl-C asks the run to stop, the second quits at once.

    It runs on the main thread between two bytecodes, wherever that thread is, even
    inside a lock it holds, so it takes no lock and raises nothing. The first press
    only counts: the main loop looks every tick and stops the run in order (a
    KeyboardInterrupt could land between two steps of the shutdown and leave the
    manager's threads running for ever). The second writes its note with ``os.write``
    and ends the process with ``os._exit``, which waits for no thread.

    ``show_cursor``: the live table hid the cursor, so the second press shows it
    again before quitting; the run sets it once it knows whether it draws one.
    """

    def __init__(
        self, note: str, show_cursor: bool, exit: Callable[[int], object] = os._exit
    ) -> None:
        self.presses = 0
        self.show_cursor = show_cursor
        self._note = note.encode()
        self._exit = exit

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.presses += 1
        if self.presses < 2:
            return
        if self.show_cursor:
            with contextlib.suppress(OSError):
                os.write(1, b"\x1b[?25h\n")
        with contextlib.suppress(OSError):
            os.write(2, self._note)
        self._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def handling_sigint(handler: CtrlC) -> Iterator[None]:
    """Install ``handler`` for SIGINT for the block; leave an ignored SIGINT ignored.

    Off the main thread (the demo run from a test's thread) signals are not ours.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
