"""The fleet page in a real browser (Debian's Chromium through Playwright), fed by real nodes.

Nodes are spawned processes with a started cluster (tests/cluster/node_process.py) on a
real redis-server. Skips like tests/dashboard/test_page_in_a_browser.py (its browser and
page fixtures are reused: a screenshot per test in its tmp dir) and like the
cluster tests without Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from recovery.breaker import CircuitBreaker
from tests.cluster.test_nodes_across_processes import Node
from tests.dashboard import test_page_in_a_browser as single
from tests.dashboard.test_http_and_stream import XSS
from tests.helpers import fresh_namespace, node_processes

browser, page = single.browser, single.page  # the same fixtures: Chromium, a screenshot each

try:
    from playwright.sync_api import Page, expect

    from recovery.cluster import Cluster
    from recovery.dashboard import Dashboard, serve_fleet
except ImportError:  # the browser module skipped above, or redis_url skips
    pass

SOON = 5000  # ms: a summary a second, plus the page's own tick


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    yield from fresh_namespace(redis_url, "b")


@pytest.fixture
def board(redis_url: str, namespace: str, request: pytest.FixtureRequest
          ) -> Iterator[Dashboard]:
    options = getattr(request, "param", {})
    served = serve_fleet(redis_url, namespace, **options)
    yield served
    served.stop()


@pytest.fixture
def nodes(redis_url: str, namespace: str) -> Iterator[Callable[..., list[Node]]]:
    yield from node_processes(redis_url, namespace)


def node_tile(page: Page, node_id: str) -> Any:
    return page.locator(f'article.node[data-node="{node_id}"]')


def breaker_tile(page: Page, name: str) -> Any:
    return page.locator("article.breaker").filter(
        has=page.get_by_role("heading", name=name, exact=True))


def test_two_nodes_and_which_one_has_the_breaker_open(
    board: Dashboard, nodes: Any, page: Page, tmp_path: Path
) -> None:
    first, second = nodes(2, quorum=2)  # a quorum of 2: one trip opens only that node
    ids = [first.ask("node_id"), second.ask("node_id")]
    page.goto(board.url)
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("article.node")).to_have_count(2, timeout=SOON)
    expect(page.locator("#summary")).to_contain_text("2 nodes live")
    expect(breaker_tile(page, "payments").locator(".sub")).to_have_text(
        "closed on all 2 nodes", timeout=SOON)
    page.screenshot(path=str(tmp_path / "closed.png"), full_page=True)

    first.ask("trip")
    payments = breaker_tile(page, "payments")
    expect(payments.locator(".state")).to_have_text("OPEN", timeout=SOON)
    expect(payments.locator(".sub")).to_have_text("open on 1 of 2 nodes")
    for node_id, state in zip(ids, ("OPEN", "CLOSED"), strict=True):
        chip = payments.locator(f'.chip[data-node="{node_id}"]')
        expect(chip.locator(".cname")).to_have_text(node_id)
        expect(chip.locator(".cstate")).to_have_text(state)
    expect(node_tile(page, ids[0])).to_have_attribute("data-state", "open")
    expect(node_tile(page, ids[0]).locator(".row")).to_contain_text("OPEN")
    expect(node_tile(page, ids[1])).to_have_attribute("data-state", "closed")
    expect(page.locator("#summary")).to_contain_text("1 open somewhere")
    expect(page.locator("#timeline li", has_text=f"open on {ids[0]}")).to_have_count(1)
    page.screenshot(path=str(tmp_path / "open.png"), full_page=True)

    page.set_viewport_size({"width": 420, "height": 800})  # a narrow window
    page.screenshot(path=str(tmp_path / "narrow.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 420


@pytest.mark.parametrize("board", [{"fade_after": 1.5, "forget_after": 4.0}], indirect=True)
def test_a_node_that_disappears_fades_then_leaves_the_page(
    board: Dashboard, nodes: Any, page: Page, tmp_path: Path
) -> None:
    _stays, goes = nodes(2)
    gone = goes.ask("node_id")
    page.goto(board.url)
    expect(page.locator("article.node")).to_have_count(2, timeout=SOON)
    goes.process.kill()  # no goodbye: the process is just gone
    goes.process.join(10)
    expect(node_tile(page, gone)).to_have_class("tile node silent", timeout=SOON)
    expect(node_tile(page, gone).locator(".state")).to_have_text("SILENT")
    expect(page.locator("#summary")).to_contain_text("1 silent")
    payments = breaker_tile(page, "payments")
    expect(payments.locator(f'.chip[data-node="{gone}"] .cstate')).to_have_text(
        "CLOSED (silent)")
    expect(payments.locator(".sub")).to_have_text("closed on its one live node \u00b7 1 silent")
    page.screenshot(path=str(tmp_path / "silent.png"), full_page=True)
    expect(page.locator("article.node")).to_have_count(1, timeout=SOON)
    expect(node_tile(page, gone)).to_have_count(0)
    expect(page.locator("#timeline li", has_text="dropped after")).to_have_count(1)


def test_names_from_the_fleet_are_shown_as_text(
    redis_url: str, namespace: str, board: Dashboard, page: Page
) -> None:
    node_id = "<img/src=x/onerror=alert(1)>"  # a node id may not hold spaces
    breaker = CircuitBreaker(XSS)
    with Cluster(redis_url, namespace=namespace, node_id=node_id) as cluster:
        cluster.attach(breaker)
        breaker.force_open()
        page.goto(board.url)
        expect(breaker_tile(page, XSS).locator(".tile-name")).to_have_text(XSS, timeout=SOON)
        expect(page.locator("article.node h3")).to_have_text(node_id)
        expect(breaker_tile(page, XSS).locator(".sub")).to_have_text("open on its node")
        # A long node name is cut short on its chip; the state stays in full.
        chip = breaker_tile(page, XSS).locator(".chip .cstate")
        expect(chip).to_have_text("OPEN")
        assert chip.bounding_box()["width"] > 20  # type: ignore[index]
        expect(page.locator("#timeline li", has_text=XSS)).to_have_count(1)
    assert page.locator("img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_redis_out_of_reach_is_said_on_the_page(
    redis_url: str, page: Page, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with serve_fleet(f"redis://127.0.0.1:{port}/0", "nowhere") as served:
        page.goto(served.url)
        expect(page.locator("#redis-notice")).to_be_visible(timeout=SOON)
        expect(page.locator("#redis-notice")).to_contain_text("cannot reach Redis (Connection")
        expect(page.locator("#manager")).to_contain_text("redis disconnected")
        expect(page.locator("#empty")).to_be_visible()
        page.screenshot(path=str(tmp_path / "redis_down.png"), full_page=True)


@pytest.mark.parametrize("board", [{"fade_after": 30.0}], indirect=True)
def test_an_incident_across_nodes_is_shown_once_with_its_counts(
    redis_url: str, namespace: str, board: Dashboard, page: Page, tmp_path: Path
) -> None:
    import redis

    from recovery.cluster.summary import channel, encode_summary
    from tests.dashboard.test_fleet import entry, incident

    # Three nodes whose managers each opened their own incident for one outage of db
    # (the third saw payments fail, not db), and a fourth with nothing open.
    incidents = {
        "node-1": [incident("inc-1-1", "db", "payments", "orders")],
        "node-2": [incident("inc-2-4", "db", "payments")],
        "node-3": [incident("inc-3-9", "payments", "orders")],
        "node-4": [],
    }
    page.goto(board.url)
    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator("#incidents-section")).to_be_hidden()
    client = redis.Redis.from_url(redis_url)
    try:
        for seq, (node, open_ones) in enumerate(incidents.items(), 1):
            head = {"node": node, "ns": namespace, "host": "h", "pid": seq, "time": 1.0,
                    "seq": 1}
            breakers = [entry("db", "open" if open_ones else "closed",
                              incident=open_ones[0]["id"] if open_ones else None)]
            client.publish(channel(namespace),
                           encode_summary(head, breakers, None, open_ones))
    finally:
        client.close()
    tiles = page.locator("article.incident")
    expect(tiles).to_have_count(1, timeout=SOON)
    tile = tiles.first
    expect(tile.locator(".tile-name")).to_have_text("db")
    expect(tile.locator(".state")).to_have_text("INCIDENT")
    expect(tile.locator(".sub")).to_have_text("root db \u00b7 on 3 of 4 nodes")
    members = tile.locator(".row.member")
    expect(members.locator(".rname")).to_have_text(["db", "payments", "orders"])
    expect(members.locator(".rmore")).to_have_text([
        "open on 2 of 4 nodes (the root)",
        "open on 3 of 4 nodes, root db",
        "open on 2 of 4 nodes, root db",
    ])
    expect(members.nth(1)).to_have_attribute(
        "aria-label", "payments: open on 3 of 4 nodes, root db")
    expect(tile.locator(".chip .cstate")).to_have_text(["inc-1-1", "inc-2-4", "inc-3-9"])
    expect(node_tile(page, "node-1").locator(".row")).to_contain_text("incident inc-1-1")
    page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)
