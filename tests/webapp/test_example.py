"""The web-app example (examples/webapp/app.py), run as a user runs it.

Real components only: the upstream is a standard-library HTTP server on a free
loopback port (the example's own stand-in, examples/webapp/payments.py), switched
between healthy, failing (500) and hanging, counting what reaches it; the workers
are ``gunicorn --preload -w 2``; they share the breaker's decisions through a
private redis-server (tests/redis_server.py: skipped without one, a failure with
RECOVERY_REQUIRE_REDIS=1). Every wait is bounded, and every process is killed at
teardown, whatever happened.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import free_port

APP_DIR = Path(__file__).resolve().parents[2] / "examples" / "webapp"
SECRET = "a-test-secret"

if os.name != "posix" or importlib.util.find_spec("gunicorn") is None:
    pytest.skip("the web-app example needs gunicorn, which runs on POSIX only "
                "(pip install gunicorn)", allow_module_level=True)


def _payments_module() -> Any:
    spec = importlib.util.spec_from_file_location("webapp_payments", APP_DIR / "payments.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


Upstream = Any  # examples/webapp/payments.py's Payments: the stand-in a user tries too


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = _payments_module().Payments()
    try:
        yield server
    finally:
        server.close()


class WebApp:
    """``gunicorn --preload -w 2 app:app`` in a process group of its own."""

    def __init__(self, redis_url: str, upstream: Upstream, namespace: str, log: Path) -> None:
        self.port = free_port()
        self.namespace = namespace
        self.url = f"http://127.0.0.1:{self.port}/"
        # HOME: gunicorn >= 24 puts a control socket under ~/.gunicorn; two runs at once
        # must not share one.
        env = {**os.environ, "PAYMENTS_URL": upstream.url, "REDIS_URL": redis_url,
               "RECOVERY_NAMESPACE": namespace, "RECOVERY_SECRET": SECRET,
               "HOME": str(log.parent)}
        self._log = log.open("wb")
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--preload", "-w", "2",
             "-b", f"127.0.0.1:{self.port}", "--chdir", str(APP_DIR),
             "--timeout", "30", "--graceful-timeout", "5", "app:app"],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def get(self, timeout: float = 10.0) -> tuple[int, dict[str, Any], float]:
        """One request: (status, JSON body, seconds it took)."""
        started = time.monotonic()
        try:
            with urllib.request.urlopen(self.url, timeout=timeout) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        try:
            answer = json.loads(body)
        except ValueError:  # not the app's answer: gunicorn's error page
            answer = {"unexpected": body.decode(errors="replace")[:200]}
        return status, answer, time.monotonic() - started

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"gunicorn exited ({self.proc.returncode}):\n{self.output()}")
            try:
                status, answer, _ = self.get(timeout=2.0)
            except OSError:
                time.sleep(0.1)  # poll-until-deadline: gunicorn gives no readiness signal
                continue
            if status != 200:
                pytest.fail(f"the app answered {status} {answer}:\n{self.output()}")
            return
        pytest.fail(f"gunicorn did not answer within {timeout} s:\n{self.output()}")

    def worker_pids(self) -> set[int]:
        return {int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.output())}

    def output(self) -> str:
        self._log.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGTERM the group (gunicorn's graceful stop), SIGKILL what is left."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                os.killpg(self.proc.pid, 0)  # workers outliving the master?
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        self.proc.wait(10)
        self._log.close()


@pytest.fixture
def webapp(redis_url: str, upstream: Upstream, tmp_path: Path,
           request: pytest.FixtureRequest) -> Iterator[WebApp]:
    from tests.redis_server import drop_namespace

    namespace = f"webapp-{os.getpid()}-{request.node.name}"[:200]
    app = WebApp(redis_url, upstream, namespace, tmp_path / "gunicorn.log")
    try:
        app.wait_ready()
        app.namespace = namespace
        yield app
    finally:
        app.kill()
        drop_namespace(redis_url, namespace)


def until(webapp: WebApp, done: Callable[[int, dict[str, Any]], bool],
          timeout: float, clients: int = 2) -> list[tuple[int, dict[str, Any], float]]:
    """Send requests, ``clients`` at a time (so both workers get some), until one answer
    is ``done``; returns every answer. Fails after ``timeout`` seconds."""
    answers: list[tuple[int, dict[str, Any], float]] = []
    deadline = time.monotonic() + timeout
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        while time.monotonic() < deadline:
            batch = list(pool.map(lambda _: webapp.get(), range(clients)))
            answers.extend(batch)
            if any(done(status, body) for status, body, _ in batch):
                return answers
    pytest.fail(f"no answer as awaited within {timeout} s; last: {answers[-3:]}\n"
                f"{webapp.output()}")


def open_on(redis_url: str, webapp: WebApp, timeout: float) -> set[int]:
    """The worker pids whose "payments" breaker the fleet dashboard shows not closed
    (open, or repairing where the manager probes it), once both are: the view that
    `python -m recovery dashboard --cluster` serves as /status.json."""
    from recovery.dashboard import serve_fleet

    board = serve_fleet(redis_url, webapp.namespace, secret=SECRET)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with urllib.request.urlopen(board.url.rstrip("/") + "/status.json",
                                        timeout=5) as response:
                view = json.load(response)
            pids = {node["pid"] for node in view["nodes"] if any(
                entry["name"] == "payments" and entry["state"] != "closed"
                for entry in node["breakers"])}
            workers = webapp.worker_pids()
            if (len(workers) == 2 and workers <= pids) or time.monotonic() > deadline:
                return pids & workers
            time.sleep(0.2)  # poll-until-deadline: summaries come once a second
    finally:
        board.stop()


def from_upstream(status: int, body: dict[str, Any]) -> bool:
    return status == 200 and body.get("served_by") == "upstream"


def from_fallback(status: int, body: dict[str, Any]) -> bool:
    return status == 200 and body.get("served_by") == "fallback"


def test_the_breaker_opens_for_every_worker_serves_the_fallback_and_closes_on_return(
    webapp: WebApp, upstream: Upstream, redis_url: str,
) -> None:
    status, body, _ = webapp.get()
    assert (status, body["served_by"]) == (200, "upstream")

    upstream.mode = "failing"
    answers = until(webapp, from_fallback, timeout=30)
    failed = [status for status, _, _ in answers if status != 200]
    assert failed and set(failed) == {502}, answers  # a failed call is a 502, not a crash
    tripped_at = upstream.count()

    # Open: both workers answer from the fallback, and the upstream is left alone.
    later = [webapp.get() for _ in range(40)]
    assert sum(from_fallback(s, b) for s, b, _ in later) >= 35, later
    assert upstream.count() - tripped_at <= 8, (tripped_at, upstream.count())
    # Both workers hold it open, the one that never saw a failure too: the fleet's view.
    assert len(open_on(redis_url, webapp, timeout=10)) == 2

    # Stay down, with no traffic, across a few of the fleet's open periods (2 s, then
    # x1.2): each one's end hands the trial lease to a process, gunicorn's master
    # included, which serves no calls (it once kept the lease, and the fleet open, for
    # ever). Real time passes here: it is the scenario, a quiet spell, not a wait.
    time.sleep(8)

    upstream.mode = "healthy"
    back = time.monotonic()
    until(webapp, from_upstream, timeout=15)
    assert time.monotonic() - back < 15


def test_a_hanging_upstream_costs_a_request_its_timeout_not_a_worker(
    webapp: WebApp, upstream: Upstream,
) -> None:
    upstream.mode = "hanging"
    status, body, took = webapp.get(timeout=15)
    assert status == 502 and "timed out" in body["error"], body
    assert took < 5, took  # the app's 2 s timeout, not gunicorn's 30 s
