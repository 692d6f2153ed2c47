"""What ``tune`` prints: the recommendation compared with the defaults in plain sentences,
a table that fits the terminal, and the same as JSON."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from recovery.trace import Trace
from recovery.tune.labels import LabelRule
from recovery.tune.ranking import FRONT_SCORES, TuneResult, Tuning


@attrs.frozen
class ReportContext:
    """What a report says beside the results: the (labelled) trace, the weights, where the
    labels came from (``"incidents"``, ``"column"``, ``"derived"`` or None), the rule that
    derived them, the incident log's path and the warnings."""

    trace: Trace
    weights: Mapping[str, float]
    labels: str | None
    derived: LabelRule | None
    incidents: str | None
    warnings: list[str]


def json_report(context: ReportContext, found: Tuning) -> dict[str, Any]:
    """The report as JSON-ready data (what ``--json`` prints)."""
    trace = context.trace
    recommended = found.recommended
    return {
        "trace": trace.source,
        "events": len(trace),
        "labelled": trace.labelled,
        "rejections": {"spans": len(trace.rejections), "share": trace.rejected_share()},
        "labels": context.labels,
        "label_rule": None if context.derived is None else attrs.asdict(context.derived),
        "incidents": context.incidents,
        "weights": dict(context.weights),
        "warnings": context.warnings,
        "recommendation": None if recommended is None else {
            **recommended.to_dict(),
            "changes": dict(recommended.candidate.changes),
            "summary": comparison(recommended, found.defaults),
        },
        "defaults": found.defaults.to_dict(),
        "search": None if found.search_size is None else {
            "explored": found.explored,
            "space": found.search_size,
            "complete": found.complete,
            "seconds": found.seconds,
            "front_scores": list(FRONT_SCORES),
        },
        "front": [result.to_dict() for result in found.front],
        "results": [result.to_dict() for result in found.results],
    }


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def comparison(chosen: TuneResult, defaults: TuneResult) -> str:
    """Two or three plain sentences: the chosen config against the defaults on this trace."""
    new, old = chosen.scores, defaults.scores
    if new.outages is None:
        return ""
    same = chosen is defaults
    subject = "No candidate beat the defaults on this trace. They" if same else "On this trace it"

    def verb(singular: str) -> str:
        """``opens`` for "it", ``open`` for "they" (the defaults)."""
        return singular.replace("does ", "do ") if same else singular

    def versus(default: str) -> str:
        return "" if same else f" (defaults: {default})"

    if not new.outages:
        return (
            f"{subject} {verb('opens') if not same else 'open'} {new.opens:,} time(s) on a "
            f"trace without an outage{versus(_count(old.opens))}, rejecting "
            f"{_count(new.rejected_healthy)} good calls{versus(_count(old.rejected_healthy))}."
        )
    first = (
        f"{subject} {'reject' if same else 'rejects'} {_count(new.rejected_healthy)} good calls"
        f"{versus(_count(old.rejected_healthy))} and {'let' if same else 'lets'} "
        f"{_count(new.passed_unhealthy)} calls through to the broken dependency"
        f"{versus(_count(old.passed_unhealthy))}."
    )
    if new.detection_delay_mean is None:
        detect = verb("does not open in any of the ") + f"{new.outages} outage(s)"
    else:
        detect = (
            f"{'open' if same else 'opens'} {new.detection_delay_mean:.2f} s after an outage "
            "starts, on average"
            + (f" ({new.missed_outages} of {new.outages} missed)" if new.missed_outages else "")
        )
    detect += versus(_short(old.detection_delay_mean, old.missed_outages, "missed"))
    if not new.recoveries:
        return f"{first} {'They' if same else 'It'} {detect}."
    if new.recovery_delay_mean is None:
        recover = verb("does not close again before the trace ends")
    else:
        recover = (
            f"{'close' if same else 'closes'} {new.recovery_delay_mean:.2f} s after the "
            "dependency is back"
            + (f" ({new.unrecovered} of {new.recoveries} still open at the end)"
               if new.unrecovered else "")
        )
    recover += versus(_short(old.recovery_delay_mean, old.unrecovered, "still open"))
    return f"{first} {'They' if same else 'It'} {detect}, and {recover}."


def _short(mean: float | None, missed: int | None, what: str) -> str:
    """A default's delay in brief: ``0.95 s``, ``0.95 s, 1 missed``, ``never``."""
    if mean is None:
        return "never"
    return f"{mean:.2f} s" + (f", {missed} {what}" if missed else "")


# The table: which scores to show first when the terminal is narrow.
_COLUMN_ORDER = (
    "rejected_healthy", "passed_unhealthy", "detection_delay_mean", "recovery_delay_mean",
    "false_opens", "missed_outages", "opens", "rejected", "unrecovered",
    "detection_delay_max", "recovery_delay_max", "outages", "recoveries", "events",
)
_MIN_CONFIG_WIDTH = 26


def _table(results: Sequence[TuneResult], recommended: TuneResult | None,
           width: int | None) -> tuple[list[str], int]:
    """The table's lines and how many score columns it left out to fit ``width``."""
    available = [
        name for name in _COLUMN_ORDER
        if any(getattr(result.scores, name) is not None for result in results)
    ]
    cells = {
        name: [
            _secs(value) if isinstance(value, float) or name.endswith(("_mean", "_max"))
            else _count(value)
            for value in (getattr(result.scores, name) for result in results)
        ]
        for name in available
    }
    lead = [
        ("", ["*" if result is recommended else "" for result in results]),
        ("rank", ["-" if result.rank is None else str(result.rank) for result in results]),
        ("cost", ["-" if result.cost is None else f"{result.cost:,.6g}" for result in results]),
    ]
    configs = [result.candidate.label for result in results]
    config_width = max(len("config"), *map(len, configs))

    def width_of(name: str, column: list[str]) -> int:
        return max(len(name), *map(len, column))

    used = sum(width_of(name, column) + 2 for name, column in lead)
    # The config column keeps its whole width if the four main scores still fit beside it.
    main = sum(width_of(name, cells[name]) + 2 for name in available[:4])
    fits_whole = width is not None and used + main + config_width <= width
    reserve = config_width if fits_whole else min(config_width, _MIN_CONFIG_WIDTH)
    chosen = []
    for name in available:
        needed = width_of(name, cells[name]) + 2
        if width is None or used + needed + reserve <= width:
            chosen.append(name)
            used += needed
    if width is not None:
        room = max(_MIN_CONFIG_WIDTH, width - used)
        configs = [label if len(label) <= room else label[: room - 3] + "..." for label in configs]
    columns = [*lead, *((name, cells[name]) for name in chosen), ("config", configs)]
    widths = [width_of(name, column) for name, column in columns]
    lines = []
    for row in range(-1, len(results)):
        parts = []
        for index, ((name, column), size) in enumerate(zip(columns, widths, strict=True)):
            cell = name if row < 0 else column[row]
            parts.append(cell.ljust(size) if index in (0, len(columns) - 1) else cell.rjust(size))
        lines.append("  ".join(parts).rstrip())
    return lines, len(available) - len(chosen)


def _code_lines(code: str, width: int) -> list[str]:
    """``code`` indented, its arguments wrapped onto lines of their own when too wide."""
    if len(code) + 4 <= width or "(" not in code:
        return [f"    {code}"]
    name, _, arguments = code.partition("(")
    wrapped = textwrap.wrap(arguments.rstrip(")"), width=max(20, width - 8))
    return [f"    {name}(", *(f"        {line}" for line in wrapped), "    )"]


def text_report(context: ReportContext, found: Tuning, width: int | None, top: int) -> str:
    trace, recommended = context.trace, found.recommended
    t = trace.t
    head = f"{trace.source}: {len(trace):,} events over {t[-1] - t[0]:,.0f} s"
    if trace.healthy is not None:
        head += f", {found.defaults.scores.outages} outage(s)"
    head += {
        "incidents": f" (labels: incidents from {context.incidents})",
        "column": " (labels: the trace's healthy column)",
        "derived": " (labels derived: "
        + (context.derived.description if context.derived else "")
        + "; --incidents FILE to use your incident log)",
        None: " (no labels: label-free scores only, no recommendation)",
    }[context.labels]
    out = [_fill(head, width), ""]
    formula = " + ".join(f"{w:g}*{k}" for k, w in context.weights.items() if w) or "0"
    if recommended is not None:
        searched = ""
        if found.search_size is not None:
            searched = (
                f"; --search explored {found.explored:,} candidates of {found.search_size:,} "
                f"in {found.seconds:.1f} s"
                + ("" if found.complete else ", raise --budget to explore more")
            )
        code = recommended.candidate.code
        if recommended is found.defaults:
            code += "    # the defaults"
        out += [
            _fill(f"Recommended (lowest cost = {formula}{searched}):", width),
            "",
            *_code_lines(code, width or len(code) + 4),
            "",
        ]
        summary = comparison(recommended, found.defaults)
        if summary:
            out += [_fill(summary, width), ""]
    rows = [r for r in found.results if r.rank is None or r.rank <= top]
    for must in (found.defaults, recommended):
        if must is not None and must not in rows:
            rows.append(must)
    lines, hidden = _table(rows, recommended, width)
    out += lines
    notes = [f"cost = {formula} (lower is better; --weight score=w)"]
    if found.results[0].rank is None:
        notes[0] += "; not ranked: no weighted score exists for this trace"
    if hidden:
        notes.append(f"{hidden} more score column(s) with --wide; * = recommended")
    elif recommended is not None:
        notes.append("* = recommended")
    if len(rows) < len(found.results):
        notes.append(f"{len(found.results) - len(rows)} more row(s) with --top or --json")
    out += ["", *(_fill(note, width) for note in notes)]
    if context.warnings:
        out += ["", "Warnings:", *(_fill(f"- {note}", width, "  ") for note in context.warnings)]
    return "\n".join(out)


def _fill(text: str, width: int | None, indent: str = "") -> str:
    """``text`` wrapped to ``width`` (None: as it is), never breaking a path or a name."""
    if width is None:
        return text
    return textwrap.fill(
        text, width, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False
    )
