"""The end of a fleet run: the nodes' own final counts, added up per plugin and per node."""

from __future__ import annotations

import collections
import textwrap
import urllib.parse
from typing import Any

from recovery.demo.scenario import PLUGINS
from recovery.demo.tables import (
    COUNTS_EXPLAINED,
    NUMBERS,
    NUMBERS_HEADER,
    action_lines,
    clock_time,
    number_cells,
)


def shown(url: str) -> str:
    """The URL without its password, for the screen."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, "", ""))


def fleet_summary(
    done: dict[int, dict[str, Any]], processes: int, elapsed: float, interrupted: bool,
    wall_started: float, url: str, namespace: str,
) -> list[str]:
    """The run's numbers, from the nodes' own final counts, added up two ways."""
    ended = "interrupted" if interrupted else "finished"
    span = " to ".join(clock_time(wall) for wall in (wall_started, wall_started + elapsed))
    columns = f"{NUMBERS_HEADER} {'TRIPS':>5} {'FOLLOWED':>8}"

    def cells(counts: collections.Counter[str]) -> str:
        return f"{number_cells(counts)} {counts['trips']:>5} {counts['followed']:>8}"

    by_plugin = {name: collections.Counter[str]() for name in PLUGINS}
    by_node = {node: collections.Counter[str]() for node in sorted(done)}
    actions = {name: collections.Counter[tuple[str, bool]]() for name in PLUGINS}
    for node, report in sorted(done.items()):
        for name in PLUGINS:
            row = report["rows"][name]
            counts = collections.Counter({key: row[key] for key in NUMBERS})
            counts["trips"] = report["trips"].get(name, 0)
            counts["followed"] = report["followed"].get(name, 0)
            by_plugin[name].update(counts)
            by_node[node].update(counts)
            for (action, success), count in report["actions"][name]:
                actions[name][action, success] += count
    total = sum(by_plugin.values(), collections.Counter[str]())
    lines = [
        f"{ended} after {elapsed:.3f}s ({span}), {processes} processes",
        f"sharing the plugins' breakers through {shown(url)} as {namespace}",
        "",
        f"{'PLUGIN':<11} {columns}",
        *(f"{name:<11} {cells(counts)}" for name, counts in by_plugin.items()),
        f"{'total':<11} {cells(total)}",
        "",
        *action_lines("RECOVERY ACTIONS (all nodes)", actions, {}),
        "",
        f"{'NODE':<11} {columns}  CLUSTER EVENTS",
    ]
    for node, counts in by_node.items():
        cluster = done[node]["cluster"]
        lines.append(
            f"{'node ' + str(node):<11} {cells(counts)}  published "
            f"{cluster['events_published']}, received {cluster['events_received']}"
            + (f", stale {cluster['events_stale']}" if cluster["events_stale"] else "")
            + (f", dropped {cluster['events_dropped']}" if cluster["events_dropped"] else "")
        )
    node_total = sum(by_node.values(), collections.Counter[str]())
    lines.append(f"{'total':<11} {cells(node_total)}")
    missing = processes - len(done)
    published = sum(report["cluster"]["events_published"] for report in done.values())
    received = sum(report["cluster"]["events_received"] for report in done.values())
    reach = (f": each reached the {processes - 1} other nodes" if
             received == published * (processes - 1) else "")
    lines += [
        "",
        *COUNTS_EXPLAINED,
        *textwrap.wrap(
            "Each call is counted once, by the node that made it; a plugin's row is the sum "
            "of its rows on the nodes, and both tables add up to the same total:", 79),
        "  " + " + ".join(str(c["calls"]) for c in by_node.values())
        + f" = {node_total['calls']} calls"
        + (f" ({missing} node(s) sent no final counts)" if missing else "") + ".",
        *textwrap.wrap(
            "TRIPS: a breaker opened by its own node (its calls, a failed trial); FOLLOWED: a "
            "closed breaker opened by the cluster because another node tripped: a trip from "
            "closed is followed by the nodes whose breaker was still closed (N-1 at most).",
            79),
        f"cluster events: {published} published, {received} received{reach}.",
    ]
    return lines
