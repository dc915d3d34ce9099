"""Shared fixtures: a small synthetic register, a feed generated from it, certificates, and the
stand-in's server running in this process (the subprocess path has its own slow test)."""

from __future__ import annotations

import contextlib
import io
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from div_standin.faults import FaultPlan
from div_standin.generator import GenerationResult, generate
from div_standin.server import Feed, StandinServer, tls_context
from lez.certs import write_dev_set
from loader import synth

PLATES = 2_000
PER_DAY = 300
DAYS = 3
BAD_PER_DAY = 3
SEED = 9


@pytest.fixture(scope="session")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("register")
    return synth.generate(PLATES, 3, out).extract


@pytest.fixture(scope="session")
def generated(extract: Path, tmp_path_factory: pytest.TempPathFactory) -> GenerationResult:
    out = tmp_path_factory.mktemp("feed")
    return generate(extract, out, days=DAYS, seed=SEED, per_day=PER_DAY, bad_per_day=BAD_PER_DAY)


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    write_dev_set(out, server_cn="lez-div", clients=("client",))
    return out


@dataclass
class Running:
    url: str
    faults: FaultPlan
    log: io.StringIO
    client_tls: ssl.SSLContext

    def client(self, timeout: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.client_tls, timeout=timeout)


@contextlib.contextmanager
def serving(feed_dir: Path, certs: Path) -> Iterator[Running]:
    """The stand-in's server on a free port in a thread of this process."""
    log = io.StringIO()
    plan = FaultPlan()
    server = StandinServer(0, Feed(feed_dir), plan, tls_context(certs), log)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    tls = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    tls.load_cert_chain(certs / "client.pem", certs / "client.key")
    try:
        yield Running(f"https://127.0.0.1:{server.port}", plan, log, tls)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def standin(generated: GenerationResult, certs: Path) -> Iterator[Running]:
    with serving(generated.feed_dir, certs) as running:
        yield running
