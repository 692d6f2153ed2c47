"""A plugin tile says which strategy order is in force and why.

A real manager on the fake clock, with the plugin a restart never fixes but a
reload does (tests/manager/test_learned_strategy_order.py): once it has learned, its tile reads
"order (learned): reload 12/12 · 1.0s, backoff, restart 0/1"; under the fixed order it is
"(priority)" with restart first; before any recovery there is nothing to show. The
feed is not started: each reading is taken by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from recovery.audit import MemoryAuditLogger
from recovery.config import RecoveryConfig
from recovery.dashboard.feed import Feed
from recovery.dashboard.hub import Hub
from recovery.failures import FailureInfo
from recovery.manager import RecoveryManager
from recovery.testing import FakeClock
from tests.helpers import StubPluginManager, settle
from tests.manager.test_learned_strategy_order import Wedged, _episodes

Build = Callable[..., tuple[RecoveryManager, Wedged, MemoryAuditLogger, Feed]]


@pytest.fixture
def wedged(clock: FakeClock) -> Iterator[Build]:
    """``wedged(**config)`` -> a started manager of one Wedged plugin, it, its audit
    log and a feed reading the manager (not started)."""
    made: list[tuple[RecoveryManager, Feed]] = []

    def build(**config: Any) -> tuple[RecoveryManager, Wedged, MemoryAuditLogger, Feed]:
        plugin, audit = Wedged(clock), MemoryAuditLogger()
        config = {"enable_health_checking": False, "max_episodes_per_period": 1000,
                  "random_seed": 7, **config}
        rm = RecoveryManager(StubPluginManager(plugin), audit, RecoveryConfig(**config),
                             clock=clock)
        rm.register_plugin(plugin.name, health_check=plugin.healthy)
        rm.start()
        feed = Feed(rm, [], Hub(), control=False)
        made.append((rm, feed))
        return rm, plugin, audit, feed

    yield build
    for rm, feed in made:
        feed.stop(timeout=5.0)
        rm.stop(timeout=5.0)


def orders(feed: Feed) -> list[dict[str, Any]]:
    feed._tick()
    (tile,) = feed.snapshot()["tiles"]
    assert "strategy_order" not in tile["recovery"]  # said once, in words
    return tile["strategy_order"]  # type: ignore[no-any-return]


def test_nothing_is_shown_before_any_recovery(wedged: Build) -> None:
    _, _, _, feed = wedged(strategy_order="learned")
    assert orders(feed) == []


def test_a_learned_order_shows_what_worked_first_and_why(
    wedged: Build, clock: FakeClock
) -> None:
    rm, plugin, audit, feed = wedged(strategy_order="learned")
    _episodes(rm, plugin, clock, audit, 12)
    # Restart failed its verification once (the first episode); reload has fixed
    # every one since, in its 1 s; backoff (never tried) is drawn ahead of restart.
    assert orders(feed) == [{"failure_type": "error", "mode": "learned",
                             "text": "reload 12/12 \u00b7 1.0s, backoff, restart 0/1"}]


def test_the_priority_order_shows_restart_first_however_often_it_failed(
    wedged: Build, clock: FakeClock
) -> None:
    rm, plugin, audit, feed = wedged(strategy_order="priority")
    _episodes(rm, plugin, clock, audit, 3)  # restart three times each, then marked failed
    assert orders(feed) == [{"failure_type": "error", "mode": "priority",
                             "text": "restart 0/9, reload, backoff"}]


def test_the_latest_failure_type_comes_first(wedged: Build, clock: FakeClock) -> None:
    rm, plugin, audit, feed = wedged(strategy_order="learned")
    _episodes(rm, plugin, clock, audit, 2)
    assert [order["failure_type"] for order in orders(feed)] == ["error"]
    plugin.wedged = True
    rm.record_failure(plugin.name, FailureInfo("timeout"))
    settle(rm, clock)
    assert rm.wait_idle(5)
    assert [order["failure_type"] for order in orders(feed)] == ["timeout", "error"]
    _episodes(rm, plugin, clock, audit, 1)  # an error again: it leads again
    assert [order["failure_type"] for order in orders(feed)] == ["error", "timeout"]
