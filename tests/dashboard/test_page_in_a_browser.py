"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

Playwright's own browser download cannot work on a sandboxed machine, so these
tests launch the system Chromium (``RECOVERY_CHROMIUM`` overrides the path).
Without it (or without playwright) they skip with one reason; under
``RECOVERY_REQUIRE_BROWSER=1`` (as in CI) that skip is a failure instead.
Every test saves a screenshot in its tmp dir. Waits are Playwright's bounded
``expect`` timeouts.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from recovery import FailureInfo, RecoveryManager, RecoveryStatus
from recovery.dashboard import Dashboard
from tests.dashboard.test_http_and_stream import (
    TOKEN,
    XSS,
    failing_manager,
    register_loaded,
    with_crash_loop,
)

CHROMIUM = os.environ.get("RECOVERY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
REASON = (f"browser tests need playwright (the 'test' extra) and Chromium at {CHROMIUM} "
          "(apt-get install chromium)")
SOON = 2000  # ms: how fast a change must show on the page

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None

if sync_playwright is None or not os.access(CHROMIUM, os.X_OK):  # pragma: no cover
    if os.environ.get("RECOVERY_REQUIRE_BROWSER") == "1":
        pytest.fail(REASON + "; RECOVERY_REQUIRE_BROWSER=1 makes this a failure",
                    pytrace=False)
    pytest.skip(REASON, allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def rm() -> Iterator[RecoveryManager]:
    manager = failing_manager("payments", "search", XSS)
    yield manager
    manager.stop(timeout=5.0)


@pytest.fixture
def page(browser: Browser, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A 1280x800 page that records dialogs and script errors; screenshot at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.dialogs = []  # type: ignore[attr-defined]
    opened.errors = []  # type: ignore[attr-defined]
    opened.on("dialog", lambda dialog: (opened.dialogs.append(dialog.message),  # type: ignore[attr-defined]
                                        dialog.dismiss()))
    opened.on("pageerror", lambda error: opened.errors.append(str(error)))  # type: ignore[attr-defined]
    yield opened
    opened.screenshot(path=str(tmp_path / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert opened.errors == []  # type: ignore[attr-defined]


def tile(page: Page, name: str) -> Any:
    return page.locator("article.tile").filter(
        has=page.get_by_role("heading", name=name, exact=True))


def test_the_page_shows_a_tile_per_plugin_and_the_manager(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page, tmp_path: Path
) -> None:
    for _ in range(20):
        rm.execute_with_recovery("payments", lambda: None)
    board = boards(rm)
    page.goto(board.url)
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("article.tile")).to_have_count(3)
    for name in ("payments", "search", XSS):
        expect(tile(page, name).locator(".state")).to_have_text("CLOSED")
    expect(page.locator("#manager")).to_contain_text("running")
    expect(page.locator("#summary")).to_contain_text("3 closed")
    expect(tile(page, "payments")).to_contain_text("requests20")
    page.set_viewport_size({"width": 420, "height": 800})  # a narrow window
    page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, "the narrow layout scrolls sideways"


def test_forcing_a_breaker_open_turns_its_tile_open_without_a_reload(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page
) -> None:
    page.goto(boards(rm).url)
    expect(page.locator("#connection")).to_have_text("live")
    rm.breaker("search").force_open()
    expect(tile(page, "search")).to_have_attribute("data-state", "open", timeout=SOON)
    expect(tile(page, "search").locator(".state")).to_have_text("OPEN", timeout=SOON)
    expect(page.locator("#timeline li").first).to_contain_text("closed \u2192 open")
    expect(tile(page, "payments")).to_have_attribute("data-state", "closed")
    # trouble first: the open tile moves to the top
    expect(page.locator("article.tile").first).to_have_attribute("data-state", "open")


def test_a_recovery_action_appears_in_the_timeline(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page
) -> None:
    page.goto(boards(rm).url)
    expect(page.locator("#connection")).to_have_text("live")
    rm.record_failure("payments", FailureInfo("error", message="connection refused"))
    # The failing strategy may run more than once before the page is read: the
    # newest of its entries is enough (several would break a strict locator).
    entry = page.locator("#timeline li", has_text="bad failed").first
    expect(entry).to_contain_text("payments", timeout=SOON)
    expect(entry.locator(".kind")).to_have_text("recovery")
    expect(tile(page, "payments").locator(":scope > .line").last).to_contain_text("bad failed")


def test_a_plugin_named_like_markup_is_shown_as_text_and_runs_nothing(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page
) -> None:
    page.goto(boards(rm).url)
    expect(page.locator("#connection")).to_have_text("live")
    rm.breaker(XSS).force_open()  # its name goes to the timeline as well
    expect(page.locator("#timeline li", has_text=XSS)).to_have_count(1, timeout=SOON)
    expect(tile(page, XSS).locator(".tile-name")).to_have_text(XSS)
    expect(page.locator("#summary")).to_contain_text("1 open", timeout=SOON)
    assert page.locator("img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_without_a_token_there_are_no_controls_and_a_post_is_refused(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page
) -> None:
    page.goto(boards(rm).url)
    expect(page.locator("article.tile")).to_have_count(3)
    expect(page.locator("#connection")).to_have_text("live")
    assert page.locator("button").count() == 0
    status = page.evaluate("""async () => (await fetch('/control/reset', {method: 'POST',
        headers: {'Content-Type': 'application/json', 'X-Recovery-Token': 'guess'},
        body: JSON.stringify({plugin: 'payments'})})).status""")
    assert status == 403


def test_with_the_token_a_reset_works_from_a_button(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page
) -> None:
    board = boards(rm, token=TOKEN, allow_control=True)
    page.goto(board.url)
    assert TOKEN not in page.url  # taken out of the address bar
    rm.breaker("payments").force_open()
    payments = tile(page, "payments")
    expect(payments).to_have_attribute("data-state", "open", timeout=SOON)
    payments.get_by_role("button", name="Reset").click()
    expect(payments).to_have_attribute("data-state", "closed", timeout=SOON)
    expect(payments.locator(".result")).to_have_text("reset requested from the dashboard")
    expect(page.locator("#timeline li", has_text="reset requested")).to_contain_text("control")
    assert rm.breaker("payments").state.value == "closed"


def test_a_crash_loop_shows_its_badge_its_next_attempt_and_its_control(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    # A crash loop on demand: the manager's status, with "search" looping until reset.
    looping = [True]
    monkeypatch.setattr(rm, "status", with_crash_loop(
        rm, "search", lambda: time.time() + 90 if looping[0] else None))
    original_reset = rm.reset_plugin

    def reset(name: str) -> None:
        looping[0] = False
        original_reset(name)

    monkeypatch.setattr(rm, "reset_plugin", reset)
    page.goto(boards(rm, token=TOKEN, allow_control=True).url)
    search = tile(page, "search")
    expect(search.locator(".badge")).to_have_text(["CRASH LOOP"])
    expect(search).to_contain_text("next attempt in 1m")
    expect(page.locator("#summary")).to_contain_text("1 crash loop")
    expect(page.locator("article.tile").first).to_contain_text("search")  # trouble first
    page.screenshot(path=str(tmp_path / "crash_loop.png"), full_page=True)
    search.get_by_role("button", name="End crash loop").click()
    expect(search.locator(".badge")).to_have_count(0, timeout=SOON)
    expect(search.get_by_role("button", name="End crash loop")).to_have_count(0)


def test_a_stopped_server_shows_disconnected_and_a_restart_reconnects(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page, tmp_path: Path
) -> None:
    board = boards(rm)
    page.goto(board.url)
    expect(page.locator("#connection")).to_have_text("live")
    board.stop()
    expect(page.locator("#connection")).to_have_text("disconnected", timeout=SOON)
    page.screenshot(path=str(tmp_path / "disconnected.png"), full_page=True)
    rm.breaker("search").force_open()  # happens while nobody serves
    again = boards(rm, port=board.address[1])
    assert again.address == board.address
    expect(page.locator("#connection")).to_have_text("live", timeout=5000)
    expect(tile(page, "search")).to_have_attribute("data-state", "open", timeout=SOON)


def test_a_tile_speaks_the_terminal_s_words_rejected_fallback_served_in_progress(
    rm: RecoveryManager, boards: Callable[..., Dashboard], page: Page, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_loaded(rm, "checkout", fallback=lambda: "cached")
    rm.breaker("checkout").force_open()
    for _ in range(4):  # refused by the breaker, answered by the fallback
        assert rm.execute_with_recovery("checkout", lambda: "live") == "cached"
    for _ in range(10):
        rm.execute_with_recovery("search", lambda: None)
    # An episode in progress on demand: the manager's status, with one running for 12 s.
    real_status = rm.status

    def status() -> RecoveryStatus:
        view = real_status()
        plugin = view.plugins["payments"]
        recovery = attrs.evolve(plugin.recovery, in_progress=True,
                                episode_started=time.time() - 12)
        plugins = {**view.plugins, "payments": attrs.evolve(plugin, recovery=recovery)}
        return attrs.evolve(view, plugins=plugins, episodes_in_progress=1)

    monkeypatch.setattr(rm, "status", status)
    page.goto(boards(rm).url)
    expect(page.locator("#connection")).to_have_text("live")
    checkout = tile(page, "checkout")
    expect(checkout.locator(".facts")).to_contain_text("rejected4")
    expect(checkout.locator(".facts")).to_contain_text("fallback served4")
    expect(checkout.locator(".facts")).to_contain_text("failed, last 100 calls\u2014 (open)")
    expect(tile(page, "search").locator(".facts")).to_contain_text("failed, last 100 calls0%")
    payments = tile(page, "payments")
    expect(payments.locator(":scope > .line").last).to_contain_text("in progress for 12s")
    expect(payments.locator(".badge")).to_have_text(["RECOVERING"])
    expect(page.locator("#manager")).to_contain_text("episodes in progress 1")
    page.screenshot(path=str(tmp_path / "vocabulary.png"), full_page=True)


def test_a_name_with_a_lone_surrogate_gets_its_tile_and_the_page_runs_on(
    boards: Callable[..., Dashboard], page: Page
) -> None:
    name = os.fsdecode(b"plugin-\xff")  # "plugin-\udcff": a file name that is not UTF-8
    manager = failing_manager(name, "payments")
    try:
        page.goto(boards(manager).url)
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("article.tile")).to_have_count(2)
        manager.breaker(name).force_open()
        expect(page.locator("#summary")).to_contain_text("1 open", timeout=SOON)
        shown = page.locator("article.tile").first.locator(".tile-name").text_content()
        assert shown is not None and shown.startswith("plugin-")  # the surrogate drawn as U+FFFD
    finally:
        manager.stop(timeout=5.0)


def test_an_early_warning_shows_its_badge_and_line_and_goes_away(
    boards: Callable[..., Dashboard], page: Page, tmp_path: Path
) -> None:
    from recovery import RecoveryConfig
    from tests.manager.test_early_warning import ParkingClock, Upstream

    clock = ParkingClock()
    config = RecoveryConfig(early_warning=True, enable_health_checking=False)
    with RecoveryManager(config=config, clock=clock) as rm:
        rm.register_dependency("payments")
        rm.register_dependency("search")
        assert clock.wait_for_waiters(1)
        page.goto(boards(rm).url)
        expect(page.locator("#connection")).to_have_text("live")
        payments = tile(page, "payments")
        expect(payments.locator(".badge")).to_have_count(0)
        expect(payments.locator(".line", has_text="early warning")).to_be_hidden()
        upstream = Upstream(rm, clock, "payments")

        def warned() -> bool:
            warning = rm.status().plugins["payments"].warning
            return warning is not None and warning.active

        upstream.run(240, 0.01)
        assert upstream.run(60, 0.06, until=warned) < 60
        expect(payments.locator(".badge")).to_have_text(["EARLY WARNING"], timeout=SOON)
        line = payments.locator(".line", has_text="early warning")
        expect(line).to_be_visible()
        expect(line).to_contain_text("failure rate")
        expect(line).to_contain_text("usually")
        expect(payments.locator(".state")).to_have_text("CLOSED")  # foreseen, not yet open
        expect(page.locator("#summary")).to_contain_text("1 early warning")
        expect(page.locator("article.tile").first).to_contain_text("payments")  # trouble first
        expect(page.locator("#timeline li").first).to_contain_text("early warning: failure rate")
        payments.screenshot(path=str(tmp_path / "early_warning_tile.png"))
        page.screenshot(path=str(tmp_path / "early_warning.png"), full_page=True)
        assert upstream.run(120, 0.01, until=lambda: not warned()) < 120
        expect(payments.locator(".badge")).to_have_count(0, timeout=SOON)
        expect(line).to_be_hidden()
        expect(page.locator("#timeline li").first).to_contain_text(
            "early warning over: failure rate")


def test_a_dependency_tile_says_down_since_and_next_probe_never_crash_loop(
    boards: Callable[..., Dashboard], page: Page, tmp_path: Path
) -> None:
    from recovery import CircuitBreakerConfig, RecoveryConfig
    from recovery.testing import FakeClock
    from tests.helpers import settle

    clock = FakeClock(1000.0)
    with RecoveryManager(config=RecoveryConfig(enable_health_checking=False),
                         clock=clock) as rm:
        rm.register_dependency(
            "payments", health_check=lambda: False,
            breaker_config=CircuitBreakerConfig(failure_threshold=2, minimum_requests=2))
        page.goto(boards(rm, token=TOKEN, allow_control=True).url)
        expect(page.locator("#connection")).to_have_text("live")
        payments = tile(page, "payments")
        expect(payments.locator(".sub")).to_contain_text("dependency")

        def fail() -> None:
            raise ConnectionError("payments said no")

        for _ in range(2):
            with pytest.raises(ConnectionError):
                rm.call("payments", fail)
        settle(rm, clock, step=0.5)
        expect(payments.locator(".badge")).to_have_text(["DOWN"], timeout=SOON)
        recovery = payments.locator(".line", has_text="recovery")
        expect(recovery).to_contain_text("down since ")
        expect(recovery).to_contain_text(", next probe ")
        expect(page.locator("#summary")).to_contain_text("1 down")
        expect(page.locator("#summary")).to_contain_text("0 crash loop")
        expect(page.locator("#timeline")).to_contain_text("dependency_down: down since")
        for word in ("CRASH LOOP", "crash loop", "restart", "FAILED", "RECOVERING"):
            expect(payments).not_to_contain_text(word)
            expect(page.locator("#timeline")).not_to_contain_text(word)
        expect(payments.get_by_role("button", name="Mark as up")).to_be_visible()
        payments.screenshot(path=str(tmp_path / "dependency_down_tile.png"))
        page.screenshot(path=str(tmp_path / "dependency_down.png"), full_page=True)
        payments.get_by_role("button", name="Mark as up").click()
        expect(payments.locator(".badge")).to_have_count(0, timeout=SOON)


def test_an_incident_groups_its_tiles_under_one_header_root_first(
    boards: Callable[..., Dashboard], page: Page, tmp_path: Path
) -> None:
    from recovery.testing import FakeClock
    from tests.dashboard.test_incident_grouping import MEMBERS, incident_manager
    from tests.incidents.test_manager_incidents import Outage, quiet, trip

    clock, outage = FakeClock(1000.0), Outage()
    with incident_manager(clock, outage) as rm:
        page.goto(boards(rm).url)
        expect(page.locator("#connection")).to_have_text("live")
        expect(page.locator("#summary")).to_contain_text("0 incidents")
        trip(rm, "db", *MEMBERS)
        quiet(rm)
        group = page.locator("section.incident")
        expect(group).to_have_count(1, timeout=SOON)
        expect(group.locator("article.tile")).to_have_count(4, timeout=SOON)
        expect(group.locator(".incident-title")).to_have_text("Incident \u00b7 root db")
        facts = group.locator(".incident-facts")
        expect(facts).to_contain_text("started ")
        expect(facts).to_contain_text("cause known: linked by depends_on")
        expect(group.locator(".incident-members")).to_have_text(
            "members: " + ", ".join(("db", *MEMBERS)))
        first = group.locator("article.tile").first
        expect(first.locator(".tile-name")).to_have_text("db")
        expect(first.locator(".badge", has_text="ROOT")).to_be_visible()
        for name in MEMBERS:  # the markup-named one too, as text
            member = group.locator("article.tile").filter(
                has=page.get_by_role("heading", name=name, exact=True))
            expect(member.locator(".badge", has_text="held until ")).to_have_text(
                re.compile(r"held until \d\d:\d\d:\d\d"))
            expect(member.locator(".badge", has_text="ROOT")).to_have_count(0)
        expect(page.locator("#summary")).to_contain_text("1 incident")
        expect(page.locator("#timeline")).to_contain_text("incident opened: root db, with ")
        assert page.dialogs == [] and page.locator("img").count() == 0  # type: ignore[attr-defined]
        page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)

        outage.down = False
        clock.advance(5.0)  # db's probe finds it back: the members' trials pass
        quiet(rm)
        expect(page.locator("section.incident")).to_have_count(0, timeout=SOON)
        expect(page.locator("#tiles > article.tile")).to_have_count(4)
        expect(page.locator("#summary")).to_contain_text("0 incidents")
        expect(page.locator("#timeline")).to_contain_text("incident resolved: root db, 4 members")
        page.screenshot(path=str(tmp_path / "incident_resolved.png"), full_page=True)
