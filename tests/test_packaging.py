"""Packaging: one version everywhere, a client library without the server's and the loader's
dependencies, typed (the README's Python example runs in tests/clients/test_readme_example.py)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lez.version import VERSION, package_version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

IMPORT_NAMES = {
    "grpcio-reflection": "grpc_reflection",
    "grpcio-tools": "grpc_tools",
    "lmdb": "lmdb",
    "cryptography": "cryptography",
    "httpx": "httpx",
    "tenacity": "tenacity",
    "prometheus-client": "prometheus_client",
}
"""The import names of the distributions the extras add, as `clients` must not need them."""


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


@pytest.mark.parametrize("module", ["clients.cli", "loader", "server", "div_standin"])
def test_every_command_tells_the_one_version(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    program = {"clients.cli": "lez", "loader": "lez-loader", "server": "lez-server"}.get(
        module, "lez-div"
    )
    assert done.stdout.strip() == f"{program} {PYPROJECT['project']['version']} (lez-access)"


def test_the_version_is_the_package_metadata_or_the_pyproject() -> None:
    import lez
    from server.service import SERVER_VERSION

    assert VERSION == package_version() == PYPROJECT["project"]["version"]
    assert lez.__version__ == SERVER_VERSION == VERSION


def test_the_extras_hold_the_server_and_loader_dependencies_and_the_base_not() -> None:
    base = _names(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"lmdb", "cryptography", "grpcio-reflection", "prometheus-client"} <= _names(
        extras["server"]
    )
    assert {"lmdb", "httpx", "tenacity"} <= _names(extras["loader"])
    assert base.isdisjoint(IMPORT_NAMES)
    assert "grpcio-tools" in _names(extras["dev"])


BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Blocker())
import clients, clients.aio, clients.cli, clients.sync
sys.argv = ["lez", "--version"]
clients.cli.main()
"""


def test_the_client_library_runs_without_the_extras() -> None:
    blocked = ",".join(sorted(IMPORT_NAMES.values()))
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, blocked], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("lez ")


def test_the_blocker_would_see_an_extra_imported_by_the_client() -> None:
    """The test above proves something: importing a blocked module fails in the same way."""
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER.replace("import clients,", "import lmdb, clients,"), "lmdb"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode != 0 and "blocked: lmdb" in done.stderr


def test_client_and_domain_packages_are_typed() -> None:
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package in ("lez", "clients"):
        assert (ROOT / package / "py.typed").is_file()
        assert "py.typed" in package_data[package]
