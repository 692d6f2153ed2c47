"""The suite's own helpers hold under the conditions a runner may start it in."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.helpers import hears_ctrl_c

SAYS_ITS_SIGINT = (
    "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
)


def test_a_child_hears_ctrl_c_even_when_the_suite_was_started_ignoring_it() -> None:
    """A suite started in the background (``cmd &``, nohup, a CI runner) ignores SIGINT,
    and its children inherit that: without ``hears_ctrl_c`` every test that stops a
    command with Ctrl-C would wait out its bound and fail."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        inherited = subprocess.run([sys.executable, "-c", SAYS_ITS_SIGINT],
                                   capture_output=True, text=True, timeout=60, check=True)
        reset = subprocess.run([sys.executable, "-c", SAYS_ITS_SIGINT], preexec_fn=hears_ctrl_c,
                               capture_output=True, text=True, timeout=60, check=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert inherited.stdout.strip() == "False"  # the condition this guards against
    assert reset.stdout.strip() == "True"
