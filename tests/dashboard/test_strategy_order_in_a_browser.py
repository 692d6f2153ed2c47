"""The strategy order on a plugin tile, in a real browser (Chromium, as in
tests/dashboard/test_page_in_a_browser.py): a plugin a restart never fixes but a reload does,
after twelve episodes on the fake clock, shows "order (learned): reload 10/10 ...".
A strategy named like markup (tried now and then: the learner samples) is shown as
text. The screenshot of the tile is saved in the test's tmp dir (tile.png).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from recovery import FailureInfo
from recovery.audit import MemoryAuditLogger
from recovery.config import RecoveryConfig
from recovery.dashboard import Dashboard
from recovery.manager import RecoveryManager
from recovery.strategies import RecoveryContext
from recovery.testing import FakeClock
from tests.dashboard.test_http_and_stream import XSS
from tests.dashboard.test_page_in_a_browser import Page, browser, expect, page, tile  # noqa: F401
from tests.helpers import StubPluginManager
from tests.manager.test_learned_strategy_order import Wedged, _episodes


class Noop:
    """A strategy of the lowest priority, named like markup, that fixes nothing."""

    name = XSS
    priority = 1

    def can_handle(self, failure: FailureInfo) -> bool:
        return True

    def recover(self, plugin_name: str, failure: FailureInfo, ctx: RecoveryContext) -> None:
        return None


def test_a_tile_shows_the_learned_order_and_why(
    clock: FakeClock, boards: Callable[..., Dashboard], page: Page,  # noqa: F811
    tmp_path: Path,
) -> None:
    plugin, audit = Wedged(clock, name="payments"), MemoryAuditLogger()
    rm = RecoveryManager(StubPluginManager(plugin), audit, RecoveryConfig(
        enable_health_checking=False, max_episodes_per_period=1000, random_seed=7,
        strategy_order="learned"), clock=clock)
    try:
        rm.register_strategy(XSS, Noop())
        rm.register_plugin(plugin.name, health_check=plugin.healthy)
        rm.start()
        _episodes(rm, plugin, clock, audit, 12)
        page.goto(boards(rm).url)
        expect(page.locator("#connection")).to_have_text("live")
        order = tile(page, "payments").locator(".orders .line")
        expect(order).to_have_count(1)
        expect(order.locator(".label")).to_have_text("order (learned):")
        # Reload leads, having fixed every episode it was tried in, in its 1 s.
        expect(order.locator(".value")).to_have_text(
            re.compile(r"^reload (\d+)/\1 \u00b7 1\.0s, .*restart 0/\d"))
        expect(order.locator(".value")).to_contain_text(XSS)  # as text
        assert page.locator("img").count() == 0
        assert page.dialogs == []  # type: ignore[attr-defined]
        box = tile(page, "payments").bounding_box()
        line = order.bounding_box()
        assert box is not None and line is not None
        assert line["x"] + line["width"] <= box["x"] + box["width"]  # fits the tile
        tile(page, "payments").screenshot(path=str(tmp_path / "tile.png"))
    finally:
        rm.stop(timeout=5.0)
