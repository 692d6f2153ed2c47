"""Run the examples of the README and the documentation site, so neither can drift.

Every ```python block runs in a fresh interpreter (a subprocess, in a temp directory:
blocks write audit files and register collectors on process-wide registries) with a
fresh namespace that holds only the placeholders of ``RUNNER``: the reader's own
functions and objects the text assumes (``fetch``, ``do_work``, a manager ``rm``...).
The library's names are not among them: a block that uses ``recovery`` must import
it, as a reader pasting it would. A block with a top-level ``await`` runs in an event
loop, as in ``python -m asyncio``.

Every ```sh block runs in bash (``-e -o pipefail``), and every ``$ command`` of a
```console block (its output is an illustration: timings differ from run to run), with
``python``, ``python3`` and ``.venv/bin/python`` the interpreter running the suite.
Every block runs in a temp directory that links the checkout's ``benchmarks`` and
``contrib``, so a path such as ``benchmarks/traces/steady.csv`` works as from the root.

A comment on the line before a fence says what a block needs:

    <!-- docs-test: skip (needs a Redis server at its address) -->
    <!-- docs-test: needs redis -->      (redis://127.0.0.1:6379/0 becomes the suite's Redis)
    <!-- docs-test: needs promtool -->

``skip`` must give a reason; ``needs`` skips with the suite's usual reason when the
thing is missing, and fails instead under the matching ``RECOVERY_REQUIRE_*`` variable.
(``readme-test:`` is the older spelling of ``docs-test:``.) A failure names the block
by its file and first line and shows its traceback in that file's line numbers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(
    r"<!--\s*(?:readme|docs)-test:\s*(?:skip\s*\((?P<reason>[^)]+)\)|needs\s+(?P<needs>\w+))\s*-->"
)
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\S*)\s*$")
BLOCK_TIMEOUT = 120.0
LANGUAGES = {"python": "python", "sh": "shell", "bash": "shell", "console": "console"}
# The address examples use for "your Redis"; a block that needs redis gets the suite's.
EXAMPLE_REDIS_URL = "redis://127.0.0.1:6379/0"


class Block(NamedTuple):
    path: str  # relative to the checkout, e.g. "docs/breaker.md"
    line: int  # 1-based line of the block's first code line
    kind: str  # "python", "shell" or "console"
    source: str
    skip_reason: str | None
    needs: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def blocks(text: str, path: str = "README.md") -> list[Block]:
    """The runnable blocks of ``text``, dedented, with what their markers say."""
    lines = text.splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        kind = LANGUAGES.get(opening["lang"])
        if kind is not None:
            previous = next((ln for ln in reversed(lines[:index]) if ln.strip()), "")
            marker = MARKER.search(previous)
            source = textwrap.dedent("\n".join(lines[index + 1 : end]))
            found.append(Block(path, index + 2, kind, source,
                               marker["reason"] if marker else None,
                               marker["needs"] if marker else None))
        index = end + 1
    return found


def python_blocks(text: str, path: str = "README.md") -> list[Block]:
    return [block for block in blocks(text, path) if block.kind == "python"]


def markdown_blocks(*paths: Path) -> list[Block]:
    return [
        block
        for path in paths
        for block in blocks(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    ]


# Runs in the subprocess: builds the placeholders, then the block (read from stdin)
# compiled under its file's name and line numbers.
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

source = sys.stdin.read()
# Servers the examples start on fixed ports get a free port instead, so that two
# runs of the suite on one machine never collide. prometheus_client is imported only
# for a block that starts its server: it reads its environment (multiprocess mode) once,
# when imported, and a block may set that environment first.
if "start_http_server" in source:
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
code = compile("\n" * (line - 1) + source, sys.argv[2], "exec",
               flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
try:
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)
finally:
    rm.stop()
'''


def _shell_dir(tmp_path: Path) -> dict[str, str]:
    """Make ``tmp_path`` look like the checkout to an example (its ``benchmarks`` and
    ``contrib``); the environment of a shell example."""
    for name in ("benchmarks", "contrib"):
        (tmp_path / name).symlink_to(ROOT / name)
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for name in ("python", "python3"):  # scripts, not links: a link would lose the venv
        script = venv_bin / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        script.chmod(0o755)
    path = os.pathsep.join([str(venv_bin), str(Path(sys.executable).parent),
                            os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path}


def console_commands(source: str) -> str:
    """The ``$ command`` lines of a console transcript (with their continuations)."""
    commands: list[str] = []
    continuing = False
    for line in source.splitlines():
        if line.startswith("$ ") or continuing:
            commands.append(line[2:] if line.startswith("$ ") else line)
            continuing = line.rstrip().endswith("\\")
    return "\n".join(commands)


def _require(needs: str) -> None:
    """Skip, or fail under RECOVERY_REQUIRE_<NEEDS>=1, when ``needs`` is missing."""
    missing = {
        "promtool": shutil.which("promtool") is None,
        "redis": False,  # the redis_url fixture skips or fails on its own
    }
    if needs not in missing:
        pytest.fail(f"unknown docs-test need {needs!r}")
    if missing[needs]:
        reason = f"needs {needs} on PATH"
        if os.environ.get(f"RECOVERY_REQUIRE_{needs.upper()}") == "1":
            pytest.fail(f"RECOVERY_REQUIRE_{needs.upper()}=1 but the example {reason}")
        pytest.skip(reason)


def run_block(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Run one block; fail with its source and output when it fails."""
    if block.skip_reason is not None:
        pytest.skip(f"{block.id}: {block.skip_reason}")
    source = block.source
    if block.needs is not None:
        _require(block.needs)
        if block.needs == "redis":
            source = source.replace(EXAMPLE_REDIS_URL, request.getfixturevalue("redis_url"))
    shell_env = _shell_dir(tmp_path)
    if block.kind == "python":
        command = [sys.executable, "-c", RUNNER, str(block.line), str(ROOT / block.path)]
        env = None
    else:
        script = source if block.kind == "shell" else console_commands(source)
        command = ["bash", "-e", "-o", "pipefail", "-c", script]
        source, env = "", shell_env
    done = subprocess.run(
        command, input=source, capture_output=True, text=True, cwd=tmp_path,
        timeout=BLOCK_TIMEOUT, env=env,
    )
    assert done.returncode == 0, (
        f"the ```{block.kind} block starting at {block.id} failed "
        f"(exit status {done.returncode}); fix the block or the code it shows, or mark it "
        f"'<!-- docs-test: skip (reason) -->' if it needs what the suite cannot give.\n"
        f"--- block ---\n{block.source}\n--- stdout ---\n{done.stdout[-2000:]}\n"
        f"--- stderr ---\n{done.stderr}"
    )
