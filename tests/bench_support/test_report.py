"""The README's bench table is written from a run, between its markers, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[2]


def test_splice_replaces_only_the_marked_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\nbefore\n<!-- bench-table:start (written by make bench) -->\nold table\n"
        "<!-- bench-table:end -->\nafter\n"
    )
    report.splice_readme(readme, "| new | table |\n")
    assert readme.read_text() == (
        "# Title\nbefore\n<!-- bench-table:start (written by make bench) -->\n| new | table |\n"
        "<!-- bench-table:end -->\nafter\n"
    )


def test_splice_refuses_a_readme_without_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\nno markers\n")
    with pytest.raises(SystemExit, match="markers"):
        report.splice_readme(readme, "| t |\n")
    assert readme.read_text() == "# Title\nno markers\n"


def test_the_project_readme_has_the_markers() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(report.README_START) == 1 and text.count(report.README_END) == 1
