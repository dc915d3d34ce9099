"""The bench's peer-equality part on a tiny register: the SQL peers decide exactly as we do.

A 20,000-plate register, its store and the peers' copy of it; the real server (2 workers) over
gRPC; DuckDB on plain plates and with HMAC keys computed in SQL; PostgreSQL when installed.
Every zone of the newest revision, days over every rule period and before each zone's start.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from bench.build_bench import build_once
from bench.peer_data import peer_register, wire_batch
from bench.peers_duckdb import DuckPeer
from bench.stream import LezServer, StreamClient, free_port
from bench.workload import batch_from_plates, read_plates
from lez.keys import load_key
from lez.rules import load_catalog_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FIELDS = ("outcome", "reason", "allowed_until", "euro")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("bench")
    reg_dir, key, store = tmp / "register", tmp / "hmac.key", tmp / "store"
    subprocess.run(
        [str(BIN / "lez-loader"), "synth", "--plates", "20000", "--seed", "5", "--out",
         str(reg_dir)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run([str(BIN / "lez-loader"), "keygen", "--key", str(key)], check=True,
                   capture_output=True)  # fmt: skip
    extract = reg_dir / "extract.csv"
    built = build_once(extract, key, store)  # `lez-loader build --json`: the build's own report
    preg = peer_register(extract, key, tmp / "peers")
    b = batch_from_plates(
        read_plates(extract), 6000, 3, day_from=dt.date(2016, 1, 1), day_to=dt.date(2027, 12, 31)
    )
    batch = wire_batch(b.plates, b.countries, b.days)
    revision = load_catalog_dir(ROOT / "rules").get()
    ours = {}
    with LezServer(store, key, tmp / "server", workers=2) as server:
        client = StreamClient(server.address)
        try:
            for zone in revision.zones:
                ours[zone.id] = client.decide(client.pairs(batch), str(zone.id))
        finally:
            client.close()
    return {
        "tmp": tmp, "key": key, "preg": preg, "batch": batch, "revision": revision, "ours": ours,
        "built": built, "store": store,
    }  # fmt: skip


def _assert_equal(ours: object, theirs: object) -> None:
    for f in FIELDS:
        a, b = getattr(ours, f), getattr(theirs, f)
        bad = np.flatnonzero(a != b)
        assert len(bad) == 0, f"{f}: {len(bad)} differ, first rows {bad[:5].tolist()}"


def test_peer_register_matches_store(world: dict[str, object]) -> None:
    """The peers' copy holds exactly the plates and versions the loader put in the store."""
    preg, built = world["preg"], world["built"]
    assert built["versions"] > 0 and built["plates"] > 0  # type: ignore[index]
    assert (preg.plates, preg.versions) == (built["plates"], built["versions"])  # type: ignore[attr-defined,index]


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "hmac"])
def test_duckdb_decides_like_the_service(world: dict[str, object], keyed: bool) -> None:
    revision = world["revision"]
    peer = DuckPeer(world["preg"].path, revision, load_key(world["key"]))  # type: ignore[attr-defined,arg-type]
    try:
        if keyed:
            assert peer.check_hmac(["1ABC234", "ABC123", "LENA12"])
        for zone_id, ours in world["ours"].items():  # type: ignore[attr-defined]
            _assert_equal(ours, peer.decide(world["batch"], zone_id, keyed=keyed))  # type: ignore[arg-type]
    finally:
        peer.close()


def test_postgres_decides_like_the_service(world: dict[str, object]) -> None:
    import psycopg  # noqa: F401  (a declared bench dependency: a broken install fails, not skips)

    from bench.peers_postgres import PgPeer, PgServer, pg_bin_dir

    if pg_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed")
    # pytest's temporary directories are private (0700): the `postgres` user that runs the
    # server needs a directory it can reach
    scratch = Path(tempfile.mkdtemp(prefix="lez-bench-pg-"))
    scratch.chmod(0o755)
    server = PgServer(scratch / "pg", free_port())
    server.start()
    try:
        peer = PgPeer(server, world["preg"].path, world["revision"])  # type: ignore[attr-defined,arg-type]
        for zone_id, ours in world["ours"].items():  # type: ignore[attr-defined]
            _assert_equal(ours, peer.decide(world["batch"], zone_id))  # type: ignore[arg-type]
        peer.close()
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def test_pair_breakdown_times_every_stage_on_the_servers_code(world: dict[str, object]) -> None:
    from bench.pair_breakdown import STAGES, breakdown

    batch = world["batch"]
    got = breakdown(
        world["store"], world["key"], batch, "Antwerpen",  # type: ignore[arg-type]
        chunk_pairs=1000, runs=1, end_to_end_s=10.0,
    )  # fmt: skip
    assert got["pairs"] == len(batch)  # type: ignore[arg-type]
    assert all(got["stages_s"][s] > 0 for s in STAGES), got["stages_s"]
    shares = got["share"]
    assert abs(sum(shares.values()) - 1.0) < 0.01  # the stages and the rest make the whole
    assert shares["transport_and_waiting"] > 0  # 10 s is far more than 6,000 pairs take
