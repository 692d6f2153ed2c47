"""What serving the dashboard costs: its own CPU, and the call path's.

    python benchmarks/bench_dashboard.py                   # 60 s, prints the numbers
    python benchmarks/bench_dashboard.py --duration 12     # shorter
    pytest benchmarks/bench_dashboard.py --benchmark-disable   # a quick smoke run (3 s)

100 plugins under steady traffic (worker threads calling ``execute_with_recovery``,
about 10,000 calls a second, some plugins failing enough to trip and recover),
20 Server-Sent-Event clients in a separate process (so their reading is not
counted here). The run alternates phases without and with the dashboard serving,
in the same process and under the same traffic, and reports:

- the dashboard's CPU: the CPU time of its threads (read from /proc) over the
  serving phases' wall time, in % of one core (goal <= 5 %);
- ``execute_with_recovery`` on a trivial function, median ns per call, timed on
  the main thread in each phase (goal: the same within noise), and the workers'
  call throughput in each phase.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import subprocess
import sys
import threading
import time
import timeit
from typing import Any

import pytest

from recovery import dashboard
from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.plugins import PluginRegistry
from recovery.strategies import CustomStrategy, RecoveryContext

PLUGINS = 100
CLIENTS = 20
WORKERS = 4
BATCH = 25  # calls per worker between pauses
PAUSE = 0.01  # so the traffic is about WORKERS * BATCH / PAUSE = 10,000 calls a second
FAILING_EVERY = 10  # one plugin in ten fails 30 % of its calls, and trips now and then

# The clients: a separate process reading and discarding every stream until stdin closes.
CLIENT = r"""
import selectors, socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
selector = selectors.DefaultSelector()
for _ in range(count):
    conn = socket.create_connection((host, port))
    conn.sendall(b"GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    conn.setblocking(False)
    selector.register(conn, selectors.EVENT_READ)
selector.register(sys.stdin, selectors.EVENT_READ)
received = events = 0
while True:
    for key, _ in selector.select():
        if key.fileobj is sys.stdin:
            print(received, events)
            sys.exit(0)
        try:
            data = key.fileobj.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            selector.unregister(key.fileobj)
            key.fileobj.close()
            continue
        received += len(data)
        events += data.count(b"\n\n")
"""


class _NoAudit:
    def log_failure_recovery(
        self, plugin_name: str, failure_type: str, recovery_action: str, success: bool
    ) -> None:
        pass


def work() -> int:
    return 1


def _manager() -> RecoveryManager:
    quiet = logging.getLogger("recovery.bench")
    quiet.setLevel(logging.CRITICAL)

    def recover(name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        pass

    rm = RecoveryManager(
        PluginRegistry(), _NoAudit(),
        RecoveryConfig(enable_health_checking=False, default_recovery_strategy="noop"),
        quiet,
    )
    rm.register_strategy("noop", CustomStrategy("noop", 1, lambda f: True, recover))
    for index in range(PLUGINS):
        rm.register_dependency(f"plugin-{index:03d}")
    return rm


class Traffic:
    """Worker threads calling random plugins; counts the calls."""

    def __init__(self, rm: RecoveryManager) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(rm, seed), name=f"bench-{seed}")
                         for seed in range(WORKERS)]
        for thread in self._threads:
            thread.start()

    def _work(self, rm: RecoveryManager, seed: int) -> None:
        chooser = random.Random(seed)
        names = [f"plugin-{index:03d}" for index in range(PLUGINS)]
        erw = rm.execute_with_recovery

        def failing() -> int:
            if chooser.random() < 0.3:
                raise ConnectionError("down")
            return 1

        while not self._stop.is_set():
            for _ in range(BATCH):
                index = chooser.randrange(PLUGINS)
                try:
                    erw(names[index], failing if index % FAILING_EVERY == 0 else work)
                except Exception:
                    pass
            with self._lock:
                self.calls += BATCH
            self._stop.wait(PAUSE)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _dashboard_cpu() -> float:
    """CPU seconds used so far by the live threads of the dashboard (each thread's CPU clock)."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith("recovery-dashboard") and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except OSError:
                continue  # it just ended
    return total


def _erw_ns(rm: RecoveryManager, seconds: float) -> list[float]:
    """ns per execute_with_recovery call, one sample per 10,000 calls, for ``seconds``."""
    erw = rm.execute_with_recovery
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(timeit.timeit(lambda: erw("plugin-001", work), number=10_000) / 1e4 * 1e9)
        time.sleep(0.004)  # leave the GIL to the others most of the time, as real callers do
    return samples


def run(duration: float) -> dict[str, Any]:
    """Alternate phases without and with the dashboard serving; the numbers of each."""
    rm = _manager()
    rm.start()
    traffic = Traffic(rm)
    phase = duration / 6
    results: dict[str, Any] = {"off_ns": [], "on_ns": [], "off_calls": 0, "on_calls": 0,
                               "on_seconds": 0.0, "cpu_seconds": 0.0, "events": 0}
    try:
        for serving in (False, True) * 3:
            board = clients = None
            if serving:
                board = dashboard.serve(rm)
                clients = subprocess.Popen(
                    [sys.executable, "-c", CLIENT, *map(str, board.address), str(CLIENTS)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                deadline = time.monotonic() + 10
                while board.clients < CLIENTS and time.monotonic() < deadline:
                    time.sleep(0.01)
                cpu_before = _dashboard_cpu()
            calls_before, started = traffic.calls, time.monotonic()
            samples = _erw_ns(rm, phase)
            elapsed, calls = time.monotonic() - started, traffic.calls - calls_before
            key = "on" if serving else "off"
            results[f"{key}_ns"] += samples
            results[f"{key}_calls"] += calls
            results[f"{key}_seconds"] = results.get(f"{key}_seconds", 0.0) + elapsed
            if board is not None and clients is not None:
                results["cpu_seconds"] += _dashboard_cpu() - cpu_before
                results["clients"] = board.clients
                board.stop()
                out, _ = clients.communicate(timeout=10)
                results["events"] += int(out.split()[1])
    finally:
        traffic.stop()
        rm.stop()
    return results


def report(results: dict[str, Any]) -> str:
    off, on = statistics.median(results["off_ns"]), statistics.median(results["on_ns"])
    cpu = 100 * results["cpu_seconds"] / results["on_seconds"]
    return "\n".join([
        f"{PLUGINS} plugins, {CLIENTS} SSE clients, {WORKERS} workers, "
        f"{results['off_seconds'] + results['on_seconds']:.0f} s",
        f"dashboard CPU: {cpu:.2f} % of one core (goal <= 5 %)",
        f"execute_with_recovery: {off:.0f} ns without the dashboard, {on:.0f} ns with it "
        f"({(on - off) / off * 100:+.1f} %)",
        f"worker throughput: {results['off_calls'] / results['off_seconds']:.0f} calls/s "
        f"without, {results['on_calls'] / results['on_seconds']:.0f} calls/s with",
        f"events delivered to the clients: {results['events']}",
    ])


def test_dashboard_serving_under_load(benchmark: Any, request: pytest.FixtureRequest) -> None:
    duration = 3.0 if request.config.getoption("benchmark_disable") else 60.0
    results = benchmark.pedantic(run, args=(duration,), rounds=1, iterations=1)
    assert results["clients"] == CLIENTS
    assert results["events"] >= CLIENTS  # every client got at least its snapshot
    benchmark.extra_info["report"] = report(results)
    print(report(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    print(report(run(parser.parse_args().duration)))


if __name__ == "__main__":
    main()
