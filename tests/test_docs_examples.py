"""Every Python and shell example of the documentation site (docs/**/*.md) runs.

The same runner as the README's (``tests/doc_examples.py``): a ```python block in a
fresh interpreter, a ```sh block in bash, the ``$`` commands of a ```console block;
markers before a fence skip a block, with a reason, or say what it needs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_examples import ROOT, Block, markdown_blocks, run_block

BLOCKS = markdown_blocks(*sorted((ROOT / "docs").rglob("*.md")))


def test_the_site_has_examples() -> None:
    kinds = {block.kind for block in BLOCKS}
    assert {"python", "shell", "console"} <= kinds, kinds
    assert len(BLOCKS) >= 20


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_docs_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_block(block, tmp_path, request)
