"""Reusable fixtures for server tests: small stores built with StoreBuilder, an in-process server
on port 0 in a background event loop, plain and mutual-TLS channels, dev certificates.

The stores hold a handful of Belgian plates with known answers (see `VEHICLES`), one local
permit, and every rule-table file of `rules/` as the store's revisions. Plates appear here only
as test data; the tests check they never reach logs, errors or the audit file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from lez import codes
from lez.days import DAY_OPEN, to_day
from lez.keys import PlateKeyer, generate_key_file, load_key
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.store import StoreBuilder, StoreMeta, group_by_key
from lez.vehicle import FORMAT_VERSION, empty
from server.app import App
from server.auth import Identity
from server.certs import write_dev_certs
from server.config import ServerConfig

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = Path(os.environ.get("LEZTEST_RULES_DIR", str(REPO / "rules")))
"""Rule files the test stores carry (override to try other revisions)."""
DAY = to_day(dt.date(2025, 6, 2))
"""The day most tests ask about."""
_SEQ = itertools.count(1)


@dataclass(frozen=True)
class Vehicle:
    plate: str
    category: str = "M1"
    fuel: str = "01"
    euro: str = "6"
    first_registration: dt.date = dt.date(2019, 3, 1)
    max_mass: int = 1500
    nis: int = 44021  # Gent


VEHICLES = (
    Vehicle("1ABC234"),  # petrol euro 6: allowed
    Vehicle("1XYZ987", fuel="02", euro="3", first_registration=dt.date(2003, 1, 1)),  # old diesel
    Vehicle("2DEF456", fuel="02", euro="3", first_registration=dt.date(2003, 5, 5)),  # + permit
    Vehicle("1ELE001", fuel="04", euro=""),  # electric
)
PERMIT_PLATE = "2DEF456"
UNKNOWN_PLATE = "9ZZZ999"


def rule_texts() -> dict[str, str]:
    """Every rule-table file of `rules/`, keyed by revision id (file stem)."""
    files = sorted(RULES_DIR.glob("*.toml"))
    assert files, f"no rule files in {RULES_DIR}"
    return {p.stem: p.read_text(encoding="utf-8") for p in files}


def build_store(
    root: Path,
    keyer: PlateKeyer,
    *,
    vehicles: tuple[Vehicle, ...] = VEHICLES,
    permit_zone: int = 0,
    snapshot_id: str | None = None,
    extra_plates: int = 0,
    **meta_changes: Any,
) -> Path:
    """Build and publish a small store under `root`; returns the build directory.
    `meta_changes` replace fields of its meta (e.g. `data_quality`, `synced_at`)."""
    plates = [v.plate for v in vehicles]
    rec = empty(len(vehicles) + extra_plates)
    for i, v in enumerate(vehicles):
        rec[i]["valid_from"] = to_day(dt.date(2000, 1, 1))
        rec[i]["valid_to"] = DAY_OPEN
        rec[i]["first_registration"] = to_day(v.first_registration)
        rec[i]["category"] = codes.CATEGORY.id_of(v.category)
        rec[i]["fuel"] = codes.FUEL.id_of(v.fuel)
        rec[i]["euro"] = codes.EURO.id_of(v.euro)
        rec[i]["max_mass"] = v.max_mass
        rec[i]["nis"] = v.nis
        rec[i]["status"] = codes.STATUS.id_of("A")
    if extra_plates:
        filler = np.arange(extra_plates)
        plates += [f"X{i:07d}" for i in filler]
        base = len(vehicles)
        rec["valid_from"][base:] = to_day(dt.date(2000, 1, 1))
        rec["valid_to"][base:] = DAY_OPEN
        rec["category"][base:] = codes.CATEGORY.id_of("M1")
        rec["fuel"][base:] = codes.FUEL.id_of("01")
        rec["euro"][base:] = codes.EURO.id_of("6")
    countries = np.full((len(plates), 2), list(b"BE"), dtype=np.uint8)
    from lez.plates import as_matrix, normalise_many

    norm, _ = normalise_many(as_matrix(plates), countries)
    keys = keyer.key_matrix(countries, norm)
    reg = np.zeros(1, dtype=REGISTRATION_DTYPE)
    reg["valid_from"] = to_day(dt.date(2025, 1, 1))
    reg["valid_to"] = to_day(dt.date(2025, 12, 31))
    reg["zone"] = permit_zone
    reg["region"] = Region.FLANDERS
    reg["kind"] = RegistrationKind.LOCAL_PERMIT
    permit_key = keys[plates.index(PERMIT_PLATE)][None, :]
    texts = rule_texts()
    seq = next(_SEQ)
    meta = StoreMeta(
        format_version=FORMAT_VERSION,
        key_id=keyer.key_id,
        snapshot_id=snapshot_id or f"test-{seq:04d}",
        snapshot_seq=seq,
        source_date="2025-06-01",
        built_at="2025-06-01T00:00:00+00:00",
        plates=len(plates),
        versions=len(plates),
        registrations=1,
        mutation_watermark=f"m{seq}",
    )
    meta = replace(meta, **meta_changes)
    return StoreBuilder(root).build(
        meta=meta,
        vehicles=group_by_key(keys, rec),
        registrations=group_by_key(permit_key, reg),
        rulesets=texts,
    )


class ServerThread:
    """An App on port 0 running in its own event loop thread (tests use sync channels)."""

    def __init__(self, config: ServerConfig, clients: dict[str, Identity] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        try:
            self.app = App(config, clients=clients)
            self.thread.start()
            self.port = self.run(self.app.start())
        except BaseException:  # a server that refuses to start leaves no loop or socket open
            if self.thread.is_alive():
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(timeout=10)
            self.loop.close()
            raise

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def settle(self) -> None:
        """Return once the server's loop has run what it scheduled before now: a unary call's
        log line and metrics follow its answer by one turn of the loop (`server.status`)."""
        self.run(asyncio.sleep(0))

    def stop(self) -> None:
        self.run(self.app.stop(0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("key") / "hmac.key"
    generate_key_file(path)
    return path


@pytest.fixture(scope="session")
def keyer(key_file: Path) -> PlateKeyer:
    return load_key(key_file)


@pytest.fixture
def store_root(tmp_path: Path, keyer: PlateKeyer) -> Path:
    root = tmp_path / "store"
    build_store(root, keyer)
    return root


def server_config_for(
    tmp_path: Path, key_file: Path, store_root: Path, **changes: Any
) -> ServerConfig:
    """The tests' server settings on `store_root` (fast reloads, small chunks), with `changes`."""
    return ServerConfig(
        address="127.0.0.1:0",
        store_root=store_root,
        key_file=key_file,
        audit_dir=tmp_path / "audit",
        reload_interval_s=0.05,
        warm_store=False,
        grace_period_s=1.0,
        max_chunk_pairs=1000,
        audit_inline_keys=8,
        **changes,
    ).validate()


@pytest.fixture
def base_config(tmp_path: Path, key_file: Path, store_root: Path) -> ServerConfig:
    return server_config_for(tmp_path, key_file, store_root)


@pytest.fixture
def server(base_config: ServerConfig) -> Iterator[ServerThread]:
    s = ServerThread(base_config)
    yield s
    s.stop()


@pytest.fixture
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.target) as ch:
        yield ch


def make_server(config: ServerConfig, **changes: Any) -> ServerThread:
    clients = changes.pop("clients", None)
    return ServerThread(replace(config, **changes), clients=clients)


@pytest.fixture(scope="session")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    write_dev_certs(
        out,
        clients=(
            "dev-operator", "gent-enforcement", "public-checker", "brussels-integrator", "stranger",
        ),
    )  # fmt: skip
    return out


def tls_settings(cert_dir: Path, clients_file: Path) -> dict[str, Path]:
    """The config fields of a mutual-TLS server with the development certificates of
    `cert_dir` and a clients file (for `make_server(config, **...)` or `replace`)."""
    return {
        "tls_cert": cert_dir / "server.pem",
        "tls_key": cert_dir / "server.key",
        "tls_ca": cert_dir / "ca.pem",
        "clients_file": clients_file,
    }


def tls_channel(cert_dir: Path, port: int, client: str) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(cert_dir / "ca.pem").read_bytes(),
        private_key=(cert_dir / f"{client}.key").read_bytes(),
        certificate_chain=(cert_dir / f"{client}.pem").read_bytes(),
    )
    return grpc.secure_channel(f"localhost:{port}", creds)
