"""`lez-server serve --help` names the kind of value of every option and, for a number, what 0
means (or that it is refused)."""

from __future__ import annotations

import argparse
import typing
from dataclasses import fields, replace

import pytest

from server.config import ServerConfig, add_serve_arguments, metavar_of, zero_meaning

TYPES = typing.get_type_hints(ServerConfig)
NUMERIC = [f.name for f in fields(ServerConfig) if TYPES[f.name] in (int, float)]


def _options() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser(prog="lez-server serve")
    add_serve_arguments(parser)
    return {a.dest: a for a in parser._actions if a.dest in TYPES}


def test_every_option_names_its_kind_of_value() -> None:
    options = _options()
    assert set(options) == set(TYPES)
    for name, action in options.items():
        assert action.metavar == metavar_of(name) and action.metavar not in ("", "VALUE"), name


@pytest.mark.parametrize("name", NUMERIC)
def test_every_number_says_what_0_means(name: str) -> None:
    text = _options()[name].help or ""
    said = text.split(" [env ")[0]
    assert "0" in said, f"--{name.replace('_', '-')}: {text}"
    try:
        replace(ServerConfig(), **{name: TYPES[name](0)}).validate()
        accepted = True
    except ValueError:
        accepted = False
    # what it says agrees with what the server does with 0
    assert ("0 is refused" in said) == (not accepted), text
    assert zero_meaning(name) == "" or zero_meaning(name) in said
