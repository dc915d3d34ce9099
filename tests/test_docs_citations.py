"""Citations: the product cites its own docs or public sources, and every doc anchor resolves.

A maintainer has only the repository. So no file of the product may point at a document that is
not in it (the design notes and source copies the project started from), every
`docs/<page>.md#<anchor>` citation must name a heading that exists, and every rule row must name
its legal source and the section of docs/rules.md that explains it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("lez", "loader", "server", "clients", "bench", "tests", "rules", "docs", "proto")
SUFFIXES = {".py", ".pyi", ".proto", ".toml", ".csv", ".md", ".yaml", ".c"}
THIS_FILE = Path(__file__).resolve()

# Written with character classes so that a plain grep for these names finds no hit in this file.
PRIVATE_CITATION = re.compile(
    r"seed ?0\d\d|lez[-]rules\.md|DESIGN\.md|DESIGN section|\.\./shared|referenc[e]/[a-z-]+\.md|"
    r"the seeds'",
    re.IGNORECASE,
)
DOC_ANCHOR = re.compile(r"(?:docs/)?\b(rules|sources|architecture)\.md#([a-z0-9-]+)")
LEGAL_SOURCE = re.compile(
    r"numac \d{10}|BVR|BBHR|decree|ordinance|Constitutional Court|DIV-VMM protocol|"
    r"Regulation|CELEX",
)


def _product_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "buf.yaml"]
    for top in SCANNED:
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                files.append(path)
    return [f for f in files if f.resolve() != THIS_FILE and f.exists()]


def _anchors(page: str) -> set[str]:
    """GitHub-style anchors of a page's headings."""
    found: set[str] = set()
    for line in (ROOT / "docs" / page).read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^#+ (.*)", line):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


def test_no_citation_of_documents_outside_the_repository() -> None:
    hits = []
    for path in _product_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if PRIVATE_CITATION.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:90]}")
    assert not hits, "cite docs/*.md or the public source instead:\n" + "\n".join(hits)


def test_every_doc_anchor_cited_exists() -> None:
    anchors = {page: _anchors(f"{page}.md") for page in ("rules", "sources", "architecture")}
    missing = []
    for path in _product_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in DOC_ANCHOR.finditer(text):
            if m.group(2) not in anchors[m.group(1)]:
                missing.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not missing, "no such heading:\n" + "\n".join(sorted(set(missing)))


@pytest.mark.parametrize("path", sorted((ROOT / "rules").glob("*.toml")), ids=lambda p: p.name)
def test_every_rule_row_names_its_legal_source_and_its_explanation(path: Path) -> None:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    rows = [
        (table, i, row)
        for table, value in doc.items()
        if isinstance(value, list)
        for i, row in enumerate(value)
    ]
    assert rows, path
    bad = [
        f"[[{table}]] #{i + 1}: {row['source'][:80]}"
        for table, i, row in rows
        if not LEGAL_SOURCE.search(row["source"]) or "docs/rules.md#" not in row["source"]
    ]
    assert not bad, "a row's source names its act (numac, official URL) and docs/rules.md:\n" + (
        "\n".join(bad)
    )
