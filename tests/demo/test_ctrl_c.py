"""Ctrl-C (once or twice) always ends the demo cleanly. These tests send real SIGINTs to
a real process and wait on its output, never on a sleep."""

from __future__ import annotations

import signal
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from recovery import demo
from recovery.demo.interrupt import CtrlC
from tests.demo.process import COMMAND, Demo

# The manager's stop() never returns: what a wedged shutdown looks like to the demo.
WEDGED_STOP = textwrap.dedent("""
    import sys, threading
    from recovery import __main__ as cli
    from recovery.manager import RecoveryManager
    RecoveryManager.stop = lambda self, timeout=10.0: threading.Event().wait()
    sys.exit(cli.main(sys.argv[1:]))
""")


def test_ctrl_c_stops_it_cleanly_with_the_summary(
    tmp_path: Path, start: Callable[..., Demo]
) -> None:
    run = start(*COMMAND, "--duration", "60", "--audit", str(tmp_path / "a.jsonl"))
    run.wait_for("recovery demo:")  # the banner: the run has started
    run.wait_for("s  ")  # an event line: the workers and the manager are up
    run.interrupt()
    out, err = run.finish(timeout=20)
    assert run.process.returncode == 0, err
    assert "Ctrl-C: stopping" in out
    assert "interrupted after" in out
    assert out.rstrip().endswith("threads left: 0")
    assert err == ""


def test_ctrl_c_twice_back_to_back_ends_it_cleanly(
    tmp_path: Path, start: Callable[..., Demo]
) -> None:
    run = start(*COMMAND, "--duration", "60", "--audit", str(tmp_path / "a.jsonl"))
    run.wait_for("s  ")
    run.interrupt()
    run.interrupt()
    out, err = run.finish(timeout=20)
    assert "Traceback" not in out + err
    # The two may reach it as one (signals do not queue): then it is one Ctrl-C.
    if run.process.returncode == 0:
        assert out.rstrip().endswith("threads left: 0")
    else:
        assert run.process.returncode == demo.EXIT_INTERRUPTED
        assert err.count("\n") == 1 and "quit at once" in err


def test_a_second_ctrl_c_quits_at_once_even_if_the_shutdown_hangs(
    tmp_path: Path, start: Callable[..., Demo]
) -> None:
    audit = tmp_path / "a.jsonl"
    run = start(sys.executable, "-c", WEDGED_STOP, "demo", "--duration", "60",
               "--audit", str(audit))
    run.wait_for("s  ")
    run.interrupt()
    run.wait_for("Ctrl-C: stopping")  # heard: the shutdown has begun, and hangs
    run.interrupt()
    out, err = run.finish(timeout=10)
    assert run.process.returncode == demo.EXIT_INTERRUPTED, err
    assert err == (
        "recovery demo: Ctrl-C twice: quit at once, without the summary "
        f"(the audit trail so far is in {audit})\n"
    )
    assert "interrupted after" not in out


def test_the_second_ctrl_c_quits_with_status_130() -> None:
    exits: list[int] = []
    ctrl_c = CtrlC("bye\n", show_cursor=False, exit=exits.append)
    ctrl_c(signal.SIGINT, None)
    assert (ctrl_c.presses, exits) == (1, [])
    ctrl_c(signal.SIGINT, None)
    assert exits == [130]
