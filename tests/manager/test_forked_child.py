"""A manager started before os.fork() (gunicorn --preload) works in the child.

Each case runs in a fresh interpreter: forking the test process itself would copy
pytest's threads and state. The child reports on its stdout; every wait is bounded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork() is POSIX only")

CHILD_RECOVERS = textwrap.dedent("""
    import os, sys, time
    import recovery

    healthy = False
    rm = recovery.RecoveryManager(config=recovery.RecoveryConfig(
        recovery_backoff_base=0.05, recovery_backoff_factor=1.0, health_check_interval=0.1,
        default_circuit_breaker=recovery.CircuitBreakerConfig(timeout=0.1)))
    rm.register_dependency("payments", health_check=lambda: healthy,
                           fallback=lambda: "fallback")
    rm.start()
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        rm.stop()
        sys.exit(os.waitstatus_to_exitcode(status))

    def fail():
        raise OSError("upstream down")

    for _ in range(20):
        try:
            rm.call("payments", fail)
        except OSError:
            pass
    tripped = rm.breaker("payments").state.value
    healthy = True
    deadline = time.monotonic() + 20
    answer = None
    while rm.breaker("payments").state.value != "closed" and time.monotonic() < deadline:
        answer = rm.call("payments", lambda: "upstream")
        time.sleep(0.05)
    print(tripped, answer, rm.breaker("payments").state.value, flush=True)
    rm.stop()
    os._exit(0)
""")


def run(script: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_dependency_tripped_in_a_forked_child_is_probed_and_closes_there() -> None:
    # Before: the child had none of the manager's threads; the breaker stayed
    # REPAIRING and the fallback answered for good.
    tripped, answer, state = run(CHILD_RECOVERS).split()
    assert tripped in ("repairing", "open")
    assert (answer, state) == ("upstream", "closed")


def test_the_idna_codec_is_loaded_before_any_health_check_thread_can_race_a_fork() -> None:
    # A URL check's thread importing it during a fork left the child unable to
    # resolve any host name ("LookupError: unknown encoding: idna").
    assert run("import sys, recovery; print('encodings.idna' in sys.modules)") == "True"
