"""Every `lez-loader` subcommand tells what it does and shows an example that it accepts."""

from __future__ import annotations

import argparse
import shlex

import pytest

from loader.__main__ import COMMAND_HELP, _parser


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_subcommand_has_its_help_entry() -> None:
    assert set(_commands()) == set(COMMAND_HELP)


@pytest.mark.parametrize("name", sorted(COMMAND_HELP))
def test_each_subcommand_describes_itself_with_an_example(name: str) -> None:
    command = _commands()[name]
    text = command.format_help()
    description = " ".join((command.description or "").split())
    assert len(description) > 60, "a sentence or two on what it does"
    assert description[:40] in " ".join(text.split())
    assert "example" in text
    _, examples = COMMAND_HELP[name]
    assert examples
    for example in examples:
        argv = shlex.split(example.replace("\\\n", " "))
        assert argv[:2] == ["lez-loader", name]
        _parser().parse_args(argv[1:])  # the example is a valid command line
