"""Every ```python block of README.md runs, so the README cannot drift from the code.

Each block runs in a fresh interpreter (a subprocess, in a temp directory: blocks
write audit files and register collectors on process-wide registries) with a
fresh namespace that holds only the placeholders below: the reader's own
functions and objects the README assumes (``fetch``, ``do_work``, a manager
``rm``...). The library's names are not among them: a block that uses
``recovery`` must import it, as a reader pasting it would. A block with a
top-level ``await`` runs in an event loop, as in ``python -m asyncio``.

Blocks that need something the suite cannot provide in a subprocess (a Redis
server at a fixed address, a secret file) are skipped by a marker comment on
the line before the fence, which must give a reason:

    <!-- readme-test: skip (needs a Redis server) -->

A failure names the block by its first line in README.md and shows the
block's traceback, whose line numbers are README.md's.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SKIP_MARKER = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\S*)\s*$")
BLOCK_TIMEOUT = 120.0


class Block(NamedTuple):
    line: int  # 1-based line of the block's first code line in README.md
    source: str
    skip_reason: str | None


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of ``text``, dedented, with their skip markers."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        if opening["lang"] == "python":
            previous = next((ln for ln in reversed(lines[:index]) if ln.strip()), "")
            marker = SKIP_MARKER.search(previous)
            source = textwrap.dedent("\n".join(lines[index + 1 : end]))
            blocks.append(Block(index + 2, source, marker["reason"] if marker else None))
        index = end + 1
    return blocks


# Runs in the subprocess: builds the placeholders, then the block (read from stdin)
# compiled under README.md's name and line numbers.
RUNNER = r'''
import ast, asyncio, inspect, sys

import recovery as _recovery

def fetch(*args, **kwargs):
    """The reader's blocking call."""
    return "fetched"

def do_work():
    """The reader's work inside ``with cb:``."""

async def fetch_json(url):
    return {"url": url}

class _Session:
    async def get(self, url):
        return url

session = _Session()
url = "https://example.invalid/"
breaker = _recovery.CircuitBreaker("readme-placeholder")
rm = _recovery.RecoveryManager(_recovery.PluginRegistry(), _recovery.LoggingAuditLogger())

# Servers the README starts on fixed ports get a free port instead, so that two
# runs of the suite on one machine never collide.
import prometheus_client
_start_http_server = prometheus_client.start_http_server
prometheus_client.start_http_server = lambda port, *a, **kw: _start_http_server(0, *a, **kw)
import recovery.dashboard
_serve = recovery.dashboard.serve
recovery.dashboard.serve = lambda rm, *a, port=0, **kw: _serve(rm, *a, port=0, **kw)

namespace = {
    "__name__": "__main__",
    "fetch": fetch, "do_work": do_work, "fetch_json": fetch_json,
    "session": session, "url": url, "breaker": breaker, "rm": rm,
}
line = int(sys.argv[1])
code = compile("\n" * (line - 1) + sys.stdin.read(), sys.argv[2], "exec",
               flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
try:
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)
finally:
    rm.stop()
'''


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))


def test_the_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 5, "the README's ```python blocks were not found"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
def test_readme_block_runs(block: Block, tmp_path: Path) -> None:
    if block.skip_reason is not None:
        pytest.skip(f"README.md:{block.line}: {block.skip_reason}")
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, str(block.line), str(README)],
        input=block.source,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=BLOCK_TIMEOUT,
    )
    assert done.returncode == 0, (
        f"the ```python block starting at README.md:{block.line} failed "
        f"(exit status {done.returncode}); fix the block or the code it shows, or mark it "
        f"'<!-- readme-test: skip (reason) -->' if it needs what the suite cannot give.\n"
        f"--- block ---\n{block.source}\n--- stderr ---\n{done.stderr}"
    )


def test_markers_parse() -> None:
    text = (
        "intro\n"
        "<!-- readme-test: skip (needs redis) -->\n\n"
        "```python\nimport redis\n```\n"
        "```sh\nls\n```\n"
        "  ```python\n  x = 1\n  ```\n"
    )
    assert python_blocks(text) == [
        Block(5, "import redis", "needs redis"),
        Block(11, "x = 1", None),
    ]


# -- docs/design.md: the links between it, the README and the code resolve ------------------

ROOT = README.parent
DESIGN = ROOT / "docs" / "design.md"
# A pointer into the design document from code or the README: docs/design.md, "Section"
# or docs/design.md ("Section"), possibly across a line break.
DESIGN_POINTER = re.compile(r'docs/design\.md,?\s*\(?"(?P<section>[^"]+)"')


def _headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]


def _github_anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_every_pointer_into_the_design_document_names_one_of_its_sections() -> None:
    sections = set(_headings(DESIGN.read_text(encoding="utf-8")))
    sources = [README, *sorted((ROOT / "recovery").rglob("*.py")),
               *sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
    this_file = Path(__file__).resolve()
    pointers = [
        (path.relative_to(ROOT), match["section"])
        for path in sources
        if path.resolve() != this_file
        for match in DESIGN_POINTER.finditer(path.read_text(encoding="utf-8"))
    ]
    assert len(pointers) >= 5
    assert [p for p in pointers if p[1] not in sections] == []


def test_the_design_documents_links_into_the_readme_resolve() -> None:
    anchors = {_github_anchor(h) for h in _headings(README.read_text(encoding="utf-8"))}
    links = re.findall(r"\]\(\.\./README\.md#([^)]+)\)", DESIGN.read_text(encoding="utf-8"))
    assert links
    assert [link for link in links if link not in anchors] == []


def test_nothing_cites_the_outside_contract() -> None:
    """The project states its contract in docs/design.md; no file cites another."""
    paths = [README, DESIGN, *sorted((ROOT / "recovery").rglob("*.py")),
             *sorted((ROOT / "recovery").glob("*.pyx")), *sorted((ROOT / "tests").glob("*.py")),
             *sorted((ROOT / "benchmarks").glob("*.py"))]
    this_file = Path(__file__).resolve()
    citing = [
        str(path.relative_to(ROOT))
        for path in paths
        if path.resolve() != this_file
        and re.search(r"\bSPEC\b|§", path.read_text(encoding="utf-8"))
    ]
    assert citing == []
