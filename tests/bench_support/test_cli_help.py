"""Every bench command's `--help` is plain text: the Markdown of its docstring is taken out."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import bench
from bench.cli_help import plain_text

COMMANDS = sorted(
    info.name
    for info in pkgutil.iter_modules(bench.__path__)
    if "\ndef main(" in (Path(bench.__path__[0]) / f"{info.name}.py").read_text()
)
"""Every bench module with a command line (`python -m bench.<name>`)."""
MARKDOWN = re.compile(r"\*\*|`|\]\(")


def test_marks_are_taken_out_and_the_words_kept() -> None:
    text = (
        "1. **Stream.** The `CheckStream` against ``bench.unary_floor --mode flush``; see\n"
        "   [docs/quotas.md](docs/quotas.md), [the guide](docs/guide.md) and `a` `b`.\n"
        "- a list item stays"
    )
    assert plain_text(text) == (
        "1. Stream. The CheckStream against bench.unary_floor --mode flush; see\n"
        "   docs/quotas.md, the guide (docs/guide.md) and a b.\n- a list item stays"
    )
    assert plain_text(None) == ""


def test_the_bench_commands_are_found() -> None:
    assert {"audit_bench", "build_bench", "run", "unary_floor", "workload"} <= set(COMMANDS)
    assert "cli_help" not in COMMANDS and "report" not in COMMANDS


@pytest.mark.parametrize("name", COMMANDS)
def test_help_is_plain_text(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"bench.{name}")
    with pytest.raises(SystemExit) as done:
        module.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m bench.{name}")
    assert not MARKDOWN.search(out), MARKDOWN.search(out)
    first = (module.__doc__ or "").strip().splitlines()[0]
    assert plain_text(first).split()[:4] == out.split("\n\n")[1].split()[:4]  # the docstring
