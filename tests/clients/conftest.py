"""Fixtures of the client tests: a small store and an in-process server on port 0 (real
channel), reusing the server tests' store builder and server thread (tests/server/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from clients import LezClient
from lez.keys import PlateKeyer, generate_key_file, load_key
from server.config import ServerConfig
from tests.server.conftest import ServerThread, build_store

ZONE = "Gent"


@pytest.fixture(scope="session")
def client_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckey") / "hmac.key"
    generate_key_file(path)
    return path


@pytest.fixture(scope="session")
def client_keyer(client_key_file: Path) -> PlateKeyer:
    return load_key(client_key_file)


@pytest.fixture(scope="session")
def client_config(
    tmp_path_factory: pytest.TempPathFactory, client_key_file: Path, client_keyer: PlateKeyer
) -> ServerConfig:
    root = tmp_path_factory.mktemp("cstore") / "store"
    build_store(root, client_keyer)
    return ServerConfig(
        address="127.0.0.1:0",
        store_root=root,
        key_file=client_key_file,
        audit_dir=root.parent / "audit",
        reload_interval_s=0.05,
        warm_store=False,
        grace_period_s=1.0,
        max_chunk_pairs=1000,
        audit_inline_keys=8,
    ).validate()


@pytest.fixture(scope="session")
def live_server(client_config: ServerConfig) -> Iterator[ServerThread]:
    """One in-process server for the session (tests that change it start their own)."""
    s = ServerThread(client_config)
    yield s
    s.stop()


@pytest.fixture
def client(live_server: ServerThread) -> Iterator[LezClient]:
    with LezClient([live_server.target], timeout_s=10.0, backoff_initial_s=0.01) as c:
        yield c


def start_server(
    config: ServerConfig, keyer: PlateKeyer, where: Path, **changes: object
) -> ServerThread:
    """Another in-process server with its own store copy under `where` (LMDB opens an
    environment once per process)."""
    clients = changes.pop("clients", None)
    root = where / "store"
    build_store(root, keyer)
    changes.setdefault("store_root", root)
    changes.setdefault("audit_dir", where / "audit")
    return ServerThread(replace(config, **changes), clients=clients)  # type: ignore[arg-type]
