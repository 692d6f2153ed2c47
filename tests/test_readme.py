"""Every example of README.md runs, so the README cannot drift from the code.

The runner (placeholders, markers, shell and console blocks) is in
``tests/doc_examples.py``; ``tests/test_docs_examples.py`` runs the site's pages the
same way. This module also checks the links between the README, the site and the code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.doc_examples import ROOT, Block, blocks, console_commands, python_blocks, run_block

README = ROOT / "README.md"
DOCS = ROOT / "docs"
BLOCKS = blocks(README.read_text(encoding="utf-8"), "README.md")


def test_the_readme_has_examples() -> None:
    assert len([b for b in BLOCKS if b.kind == "python"]) >= 5, "no ```python blocks found"
    assert [b for b in BLOCKS if b.kind == "shell"], "no ```sh blocks found"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    run_block(block, tmp_path, request)


def test_markers_parse() -> None:
    text = (
        "intro\n"
        "<!-- readme-test: skip (needs redis) -->\n\n"
        "```python\nimport redis\n```\n"
        "```sh\nls\n```\n"
        "  ```python\n  x = 1\n  ```\n"
        "<!-- docs-test: needs promtool -->\n"
        "```console\n$ promtool --version\nprometheus 2\n```\n"
        "```yaml\na: 1\n```\n"
    )
    assert blocks(text, "x.md") == [
        Block("x.md", 5, "python", "import redis", "needs redis"),
        Block("x.md", 8, "shell", "ls", None),
        Block("x.md", 11, "python", "x = 1", None),
        Block("x.md", 15, "console", "$ promtool --version\nprometheus 2", None, "promtool"),
    ]
    assert [b.line for b in python_blocks(text, "x.md")] == [5, 11]


def test_console_commands_keep_continuations_and_drop_output() -> None:
    transcript = "$ python -m x \\\n    --flag\nsome output\n$ echo hi\nhi"
    assert console_commands(transcript) == "python -m x \\\n    --flag\necho hi"


# -- links: the code's pointers into docs/design.md, and the pages' links ----------------------

DESIGN = DOCS / "design.md"
# A pointer into the design document from code or docs: docs/design.md, "Section"
# or docs/design.md ("Section"), possibly across a line break.
DESIGN_POINTER = re.compile(r'docs/design\.md,?\s*\(?"(?P<section>[^"]+)"')
PAGES = sorted(page.resolve() for page in DOCS.rglob("*.md"))


def _headings(text: str) -> list[str]:
    in_fence = False
    headings = []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif line.startswith("#") and not in_fence:
            headings.append(line.lstrip("#").strip())
    return headings


def _anchor(heading: str) -> str:
    """The fragment MkDocs gives a heading (Python-Markdown's toc ``slugify``)."""
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", heading).strip().lower())


def _sources() -> list[Path]:
    return [README, *sorted((ROOT / "recovery").rglob("*.py")),
            *sorted((ROOT / "tests").rglob("*.py")), *sorted((ROOT / "benchmarks").rglob("*.py"))]


def test_every_pointer_into_the_design_document_names_one_of_its_sections() -> None:
    sections = set(_headings(DESIGN.read_text(encoding="utf-8")))
    this_file = Path(__file__).resolve()
    pointers = [
        (path.relative_to(ROOT), match["section"])
        for path in _sources()
        if path.resolve() != this_file
        for match in DESIGN_POINTER.finditer(path.read_text(encoding="utf-8"))
    ]
    assert len(pointers) >= 5
    assert [p for p in pointers if p[1] not in sections] == []


def test_the_pages_links_to_each_other_resolve() -> None:
    """The fast half of ``mkdocs build --strict``: every relative link between pages
    names a page that exists and, with a fragment, one of its headings."""
    anchors = {page: {_anchor(h) for h in _headings(page.read_text(encoding="utf-8"))}
               for page in PAGES}
    broken = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target, fragment in re.findall(r"\]\((?!https?:)([\w./-]*\.md)?(?:#([\w-]+))?\)", text):
            linked = (page.parent / target).resolve() if target else page
            if linked not in anchors or (fragment and fragment not in anchors[linked]):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{fragment}")
    assert broken == []


def test_the_readme_links_into_the_site_resolve() -> None:
    links = re.findall(r"\]\((docs/[\w./-]+\.md)(?:#[\w-]+)?\)", README.read_text(encoding="utf-8"))
    assert links
    assert [link for link in links if not (ROOT / link).is_file()] == []


# A file of the checkout named in prose: recovery/_window.pyx, benchmarks/traces/steady.csv...
CHECKOUT_PATH = re.compile(
    r"\b(?:recovery|tests|benchmarks|contrib|docs)/[\w/.-]+\.(?:py|pyx|pxi|pyi|h|json|yml|csv|md)\b"
)


def test_every_file_the_docs_name_exists() -> None:
    """A module moved or renamed takes the pages that name it along."""
    named = {
        (str(page.relative_to(ROOT)), path)
        for page in [README, ROOT / "CONTRIBUTING.md", *PAGES]
        for path in CHECKOUT_PATH.findall(page.read_text(encoding="utf-8"))
    }
    assert len(named) >= 10
    assert sorted(pair for pair in named if not (ROOT / pair[1]).exists()) == []


def test_nothing_cites_the_outside_contract() -> None:
    """The project states its contract in docs/design.md; no file cites another."""
    paths = [*_sources(), *PAGES, ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md",
             *sorted((ROOT / "recovery").glob("*.pyx"))]
    this_file = Path(__file__).resolve()
    citing = [
        str(path.relative_to(ROOT))
        for path in paths
        if path.resolve() != this_file and path.exists()
        and re.search(r"\bSPEC\b|§", path.read_text(encoding="utf-8"))
    ]
    assert citing == []
