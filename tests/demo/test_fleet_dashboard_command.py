"""The fleet dashboard command the demo prints: ready to paste, the password kept off
the screen. (tests/demo/test_fleet_run.py pastes it against a real fleet.)"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from recovery.demo.fleet import PASSWORD_VARIABLE, dashboard_command

ARGUMENTS = 'printf "%s\\n" '


def shell_words(command: str, password: str) -> list[str]:
    """The words a POSIX shell makes of ``command``, the password variable set."""
    done = subprocess.run(
        ["sh", "-c", f'{PASSWORD_VARIABLE}="$1"; {ARGUMENTS}{command}', "sh", password],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return done.stdout.splitlines()


def test_the_command_names_the_runs_namespace_and_its_exact_url() -> None:
    url = "redis://127.0.0.1:6379/2"
    lines = dashboard_command(url, "recovery-demo-0123abcd")
    assert len(lines) == 2
    words = shlex.split(lines[-1])
    assert os.path.samefile(words[0], sys.executable)  # this interpreter, from here
    assert words[1:] == ["-m", "recovery", "dashboard", "--cluster", url,
                         "--namespace", "recovery-demo-0123abcd"]


def test_a_password_is_read_from_a_variable_and_the_shell_puts_it_back() -> None:
    password = 'p@ss"w$rd`x\\'
    url = f"redis://app:{password.replace('@', '%40')}@cache.internal:6380/0?ssl=1"
    lines = dashboard_command(url, "ns")
    shown = "\n".join(lines)
    assert "p%40ss" not in shown and "w$rd" not in shown
    assert f"export {PASSWORD_VARIABLE}=" in lines[1]
    command = lines[-1].strip()
    words = shell_words(command, password.replace("@", "%40"))
    assert words[4:] == ["--cluster", url, "--namespace", "ns"]
