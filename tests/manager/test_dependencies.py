"""Dependencies: upstreams a web app calls, supervised with nothing to write by hand.

The upstream is a real HTTP server of the standard library on 127.0.0.1, switched
between healthy (200), failing (500), redirecting (302) and hanging. Time is a
FakeClock's; the server's threads are joined when the test ends.
"""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import recovery
from recovery.alerts import Alert
from recovery.failures import FailureInfo
from recovery.manager import RecoveryConfig, RecoveryManager
from recovery.state import CircuitBreakerState
from recovery.strategies import CustomStrategy
from recovery.testing import FakeClock
from tests.helpers import StubPluginManager, eventually, settle

OPEN = CircuitBreakerState.OPEN


class Upstream:
    """A local HTTP server whose ``/healthz`` answers as ``mode`` says."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.mode = "healthy"
        self.release = threading.Event()  # ends every hanging answer
        self.hits = 0
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                upstream.hits += 1
                if upstream.mode == "hanging":
                    upstream.release.wait(10.0)
                if upstream.mode == "streaming":  # a body that never ends
                    self.send_response(200)
                    self.end_headers()
                    while not upstream.release.is_set():
                        self.wfile.write(b"x" * 65536)
                    return
                status = {"healthy": 200, "failing": 500, "redirect": 302}.get(upstream.mode, 200)
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/healthz"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def _manager(clock: FakeClock, **config: Any) -> RecoveryManager:
    config.setdefault("enable_health_checking", False)
    return RecoveryManager(config=RecoveryConfig(**config), clock=clock)


def test_a_manager_needs_no_arguments_and_keeps_a_queryable_audit_in_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rm = RecoveryManager()
    assert isinstance(rm.audit_logger, recovery.MemoryAuditLogger)
    assert rm.audit_logger.maxlen == 10_000
    with caplog.at_level("INFO", logger="recovery.audit"):
        rm.audit_logger.log_failure_recovery("payments", "error", "probe", False)
    assert [r["action"] for r in rm.audit_logger.query(plugin="payments")] == ["probe"]
    assert rm.audit_logger.query(plugin="other") == []
    assert "recovery probe of 'payments'" in caplog.text


def test_a_dependency_down_is_probed_never_restarted_and_served_by_its_fallback(
    clock: FakeClock, upstream: Upstream,
) -> None:
    upstream.mode = "failing"
    alerts: list[Alert] = []
    rm = _manager(clock, max_recovery_attempts=2, crash_loop_delay=5.0,
                  default_recovery_strategy="restart")  # never for a dependency
    rm.add_alert_handler(alerts.append)
    rm.register_dependency("payments", health_check=upstream.url,
                           fallback=lambda *a, **kw: "cached", tags={"team": "billing"})
    with rm:
        rm.record_failure("payments", FailureInfo("error"))
        settle(rm, clock)
        actions = [r["action"] for r in rm.audit_logger.query(plugin="payments")]
        assert actions == ["probe", "probe"]
        assert upstream.hits == 2
        assert [a.kind for a in alerts] == ["dependency_down"]
        assert alerts[0].message.startswith("down since ")
        assert "next probe in 5s" in alerts[0].message
        assert "crash loop" not in alerts[0].message and "restart" not in alerts[0].message
        status = rm.get_recovery_status()["plugins"]["payments"]
        assert (status["kind"], status["tags"]) == ("dependency", {"team": "billing"})
        assert status["recovery"]["down_since"] is not None
        assert rm.call("payments", lambda: "live") == "cached"  # fallback while down

        upstream.mode = "healthy"
        clock.advance(5.0)  # the next probe finds it back
        eventually(lambda: upstream.hits == 3, message="no probe after the delay")
        settle(rm, clock)
        assert [a.kind for a in alerts] == ["dependency_down", "dependency_up"]
        assert rm.audit_logger.query(plugin="payments")[-1]["success"] is True
        assert rm.get_recovery_status()["plugins"]["payments"]["recovery"]["failed"] is False


def test_a_hanging_health_url_is_bounded_by_the_check_timeout(
    clock: FakeClock, upstream: Upstream,
) -> None:
    upstream.mode = "hanging"
    rm = _manager(clock, max_recovery_attempts=1, health_check_timeout=1.0)
    rm.register_dependency("payments", health_check=upstream.url)
    with rm:
        rm.record_failure("payments", FailureInfo("error"))
        assert clock.wait_for_waiters(1)  # the probe waits for its check on the clock
        clock.advance(1.0)
        assert rm.wait_idle(5.0)
        assert rm.audit_logger.query(plugin="payments")[-1]["success"] is False
        assert rm.breaker("payments").state is OPEN  # down: probed again later
        upstream.release.set()


@pytest.mark.parametrize(("mode", "healthy"), [("healthy", True), ("redirect", True),
                                               ("failing", False)])
def test_a_health_url_is_healthy_on_2xx_and_3xx(
    clock: FakeClock, upstream: Upstream, mode: str, healthy: bool
) -> None:
    upstream.mode = mode
    rm = _manager(clock, max_recovery_attempts=1)
    rm.register_dependency("payments", health_check=upstream.url)
    with rm:
        rm.record_failure("payments", FailureInfo("error"))
        settle(rm, clock)
        assert rm.audit_logger.query(plugin="payments")[-1]["success"] is healthy


def test_a_health_url_reads_a_bounded_part_of_an_endless_body(
    clock: FakeClock, upstream: Upstream,
) -> None:
    upstream.mode = "streaming"
    rm = _manager(clock, max_recovery_attempts=1)
    rm.register_dependency("payments", health_check=upstream.url)
    with rm:
        rm.record_failure("payments", FailureInfo("error"))
        settle(rm, clock)  # the check came back while the body still streams
        assert not upstream.release.is_set()
        assert rm.audit_logger.query(plugin="payments")[-1]["success"] is True
        upstream.release.set()


def test_a_health_url_over_tls_is_verified(clock: FakeClock, tmp_path: Any) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    upstream = Upstream(tls=context)  # a self-signed certificate: not to be trusted
    try:
        rm = _manager(clock, max_recovery_attempts=1)
        rm.register_dependency("payments", health_check=upstream.url)
        with rm:
            rm.record_failure("payments", FailureInfo("error"))
            settle(rm, clock)
            assert rm.audit_logger.query(plugin="payments")[-1]["success"] is False
        assert upstream.hits == 0  # refused at the handshake
    finally:
        upstream.close()


def test_a_custom_strategy_named_for_a_dependency_still_runs(clock: FakeClock) -> None:
    ran: list[str] = []
    rm = _manager(clock, plugin_recovery_strategies={"db": "failover"}, max_recovery_attempts=1)
    rm.register_strategy("failover", CustomStrategy("failover", 1, lambda f: True,
                                                    lambda n, f, c: ran.append(n)))
    rm.register_dependency("db", health_check=lambda: True)
    with rm:
        rm.record_failure("db", FailureInfo("error"))
        settle(rm, clock)
    assert ran == ["db"]
    assert [r["action"] for r in rm.audit_logger.query()] == ["failover"]


def test_bad_health_checks_and_graphs_are_refused_where_they_are_given() -> None:
    rm = RecoveryManager()
    with pytest.raises(ValueError, match="health_check must be a callable or an http"):
        rm.register_dependency("a", health_check="ftp://example/")
    with pytest.raises(TypeError, match="health_check must be a callable or an http"):
        rm.register_dependency("a", health_check=42)  # type: ignore[arg-type]
    rm.register_dependency("a", depends_on=("b",))
    with pytest.raises(KeyError, match="'a' depends on 'b', which is not registered"):
        rm.start()
    rm.register_dependency("b", depends_on=("c",))
    rm.register_dependency("c", depends_on=("a",))
    with pytest.raises(ValueError, match="cycle: a -> b -> c -> a"):
        rm.start()
    assert rm.get_recovery_status()["plugins"]["a"]["depends_on"] == ["b"]


def test_a_plugin_the_plugin_manager_does_not_have_is_refused_at_registration() -> None:
    rm = RecoveryManager(StubPluginManager("db", "cache"))
    with pytest.raises(LookupError, match=r"'upstream' is not in the plugin manager "
                                          r"\(it has: 'db', 'cache'\)"):
        rm.register_plugin("upstream")
    assert rm.register_plugin("db").name == "db"
