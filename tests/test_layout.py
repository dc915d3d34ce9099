"""Import direction (docs/architecture.md#layers): who may import whom, checked on the source."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level modules imported by each file of a package (relative to ROOT)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        if "api/v1" in path.as_posix():
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[path.relative_to(ROOT).as_posix()] = names
    return found


def _roots(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


@pytest.mark.parametrize("package", ["lez"])
def test_lez_imports_no_application_package(package: str) -> None:
    for path, names in _imports(package).items():
        assert not _roots(names) & {"loader", "server", "clients", "bench"}, path


def test_domain_modules_import_no_infrastructure() -> None:
    for path, names in _imports("lez").items():
        if path.startswith("lez/store/"):
            continue  # the one place that imports lmdb
        assert not _roots(names) & {"lmdb", "grpc", "google"}, path


def test_only_the_store_imports_lmdb() -> None:
    for package in ("lez", "loader", "server", "clients"):
        for path, names in _imports(package).items():
            if "lmdb" in _roots(names):
                assert path.startswith("lez/store/"), path


def test_clients_see_only_the_contract() -> None:
    allowed = {"lez.api.v1", "lez.days", "lez.plates", "lez.progress", "lez.version"}
    for path, names in _imports("clients").items():
        lez_names = {n for n in names if n.split(".")[0] == "lez"}
        assert lez_names <= allowed, (path, lez_names - allowed)
        assert not _roots(names) & {"server", "loader"}, path


@pytest.mark.parametrize(
    ("package", "forbidden"), [("loader", {"server", "clients"}), ("server", {"loader", "clients"})]
)
def test_loader_and_server_stay_apart(package: str, forbidden: set[str]) -> None:
    for path, names in _imports(package).items():
        assert not _roots(names) & forbidden, path


def test_production_does_not_depend_on_the_div_standin() -> None:
    """The DIV stand-in is a development tool: it may import lez and loader, nothing imports it."""
    for package in ("lez", "loader", "server", "clients"):
        for path, names in _imports(package).items():
            assert "div_standin" not in _roots(names), path
    for path, names in _imports("div_standin").items():
        assert not _roots(names) & {"server", "clients", "bench"}, path


def test_clients_import_no_bench() -> None:
    # bench/ is not installed with the wheel: the clients (the demo included) must not need it,
    # neither imported nor run as `python -m bench...`
    for path, names in _imports("clients").items():
        assert "bench" not in _roots(names), path
        source = (ROOT / path).read_text(encoding="utf-8")
        assert not re.search(r"""["']bench[."']""", source), path


@pytest.mark.parametrize("client", ["clients/sync.py", "clients/aio.py"])
def test_both_clients_drive_the_one_core(client: str) -> None:
    # the retry policy, the spreading, the stream bookkeeping and the batch assembly live in
    # clients.core, written once; each client imports them instead of having its own
    core = {"clients.core.retry", "clients.core.spread", "clients.core.batch"}
    core |= {"clients.core.streams", "clients.core.health", "clients.core.base_client"}
    imported = _modules_imported_by(ROOT / client)
    assert core <= imported, (client, core - imported)
    assert "clients.request_builders" in imported, client


def _modules_imported_by(path: Path) -> set[str]:
    """Modules a file imports, `from package import module` counted as package.module."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_client_core_does_no_io() -> None:
    # sans-I/O: the core decides, the clients send, receive, sleep and run threads or tasks
    for path, names in _imports("clients/core").items():
        assert not _roots(names) & {"asyncio", "socket", "queue", "subprocess"}, path
        assert not {"grpc.aio", "clients.sync", "clients.aio"} & names, path


DOMAIN_MODULES_WITHOUT_WIRE = ("lez/fleet.py", "lez/recheck.py", "lez/rules/engine.py")


@pytest.mark.parametrize("path", DOMAIN_MODULES_WITHOUT_WIRE)
def test_domain_answers_import_neither_grpc_nor_the_wire_contract(path: str) -> None:
    # fleet counts, recheck change classes and verdicts are pure: the servicer translates them
    names = _imports("lez")[path]
    assert not _roots(names) & {"grpc", "google", "server"}, (path, names)
    assert not {n for n in names if n.startswith("lez.api")}, (path, names)


def _attributes_used(path: Path, module: str) -> set[str]:
    """Names taken from `module` in a file: `module.X` attribute reads and `from m import X`."""
    alias = module.rsplit(".", 1)[-1]
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == alias:
                used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == module:
            used.update(a.name for a in node.names)
    return used


def test_the_servicer_uses_only_the_pipelines_entry_points() -> None:
    # one entry per question (answer_chunk, answer_single) and their types, nothing inside
    from server import pipeline

    used = _attributes_used(ROOT / "server" / "service.py", "server.pipeline")
    assert used, "the servicer asks the pipeline"
    assert used <= set(pipeline.__all__), used - set(pipeline.__all__)
    private = {n for n in pipeline.__all__ if n.startswith("_")}
    assert not private, private


def test_the_servicer_holds_no_decision_or_recheck_rules() -> None:
    # recheck classification and fleet aggregation live in lez.recheck and lez.fleet
    source = (ROOT / "server" / "service.py").read_text(encoding="utf-8")
    for name in (
        "REGISTRATION_REASONS",
        "NO_DATA_OUTCOMES",
        "np.unique",
        "decide_one",
        "evaluate(",
    ):
        assert name not in source, name
