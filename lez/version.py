"""The one version of the project: the installed package's metadata.

`lez --version`, `lez-loader --version`, `lez-server --version` and the server's `ServerInfo`
all read `VERSION`. It comes from the distribution's metadata (`importlib.metadata`, written by
the install from `pyproject.toml`); a source tree used without an install (PYTHONPATH) reads
`pyproject.toml` itself.
"""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path
from typing import Final

DISTRIBUTION: Final = "lez-access"
"""The project's name on PyPI and in `pyproject.toml`."""

_PYPROJECT: Final = Path(__file__).resolve().parents[1] / "pyproject.toml"


def package_version() -> str:
    """The installed distribution's version; else the source tree's `pyproject.toml` version;
    else `0+unknown`."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        project = tomllib.loads(_PYPROJECT.read_text(encoding="utf-8"))["project"]
        return str(project["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


VERSION: Final = package_version()


def version_line(program: str) -> str:
    """What `PROGRAM --version` prints."""
    return f"{program} {VERSION} ({DISTRIBUTION})"
