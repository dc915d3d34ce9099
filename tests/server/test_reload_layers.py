"""Hot reload of layers: the server switches to each newly published layer of daily changes
without a failed call, calls in flight finish on their snapshot, and consecutive layers over one
base share its open environment."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np

from lez import codes
from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer
from lez.plates import as_matrix, countries_matrix, normalise_many
from lez.store import StoreBuilder, group_by_key, open_store
from lez.vehicle import VehicleArray
from server.state import StoreHolder
from tests.server.conftest import DAY, ServerThread
from tests.server.helpers import chunk, outcomes, stub

OLD_DIESEL = "1XYZ987"  # euro 3 diesel in the base: refused everywhere


def _key(keyer: PlateKeyer, plate: str) -> np.ndarray:
    countries = countries_matrix("BE", 1)
    norm, _ = normalise_many(as_matrix([plate]), countries)
    return keyer.key_matrix(countries, norm)


def _publish_euro(root: Path, keyer: PlateKeyer, plate: str, euro: str, snapshot_id: str) -> Path:
    """Publish a layer in which `plate`'s version carries another euro norm."""
    reader = open_store(root)
    try:
        key = _key(keyer, plate)
        with reader.snapshot() as snap:
            rows: VehicleArray = snap.versions_of(key[0].tobytes())
        meta = replace(
            reader.meta, snapshot_id=snapshot_id, snapshot_seq=reader.meta.snapshot_seq + 1
        )
    finally:
        reader.close()
    rows["euro"] = codes.EURO.id_of(euro)
    rows["first_registration"] = rows["valid_from"]
    return StoreBuilder(root, keep=3).publish_changes(
        group_by_key(np.repeat(key, len(rows), axis=0), rows), meta=meta
    )


def test_layers_reload_under_load_without_failures(
    server: ServerThread, channel: grpc.Channel, store_root: Path, keyer: PlateKeyer
) -> None:
    s = stub(channel)
    zone = s.ServerInfo(pb.ServerInfoRequest()).zones[0].name
    first = s.ServerInfo(pb.ServerInfoRequest()).snapshot_id
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                got = s.Check(pb.CheckRequest(plate="1ABC234", zone=zone, date="2025-06-02"))
                seen.add(got.snapshot_id)
                if got.decision.outcome != pb.OUTCOME_ALLOWED:
                    failures.append(f"outcome {got.decision.outcome}")
            except grpc.RpcError as exc:
                failures.append(str(exc.code()))

    def slow_stream() -> Iterator[pb.CheckChunk]:
        for i in range(6):
            yield chunk([OLD_DIESEL], [DAY], zone=zone if i == 0 else "")
            time.sleep(0.1)

    long_call: list[pb.DecisionChunk] = []
    streamer = threading.Thread(target=lambda: long_call.extend(s.CheckStream(slow_stream())))
    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in (*threads, streamer):
        t.start()
    time.sleep(0.15)
    for n, euro in enumerate(("6", "3", "6"), start=1):
        _publish_euro(store_root, keyer, OLD_DIESEL, euro, f"layer-{n}")
        time.sleep(0.25)
    deadline = time.monotonic() + 10
    while "layer-3" not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in (*threads, streamer):
        t.join(timeout=30)
    assert failures == []
    assert {first, "layer-3"} <= seen
    # the stream started on the base and finished on it: the old diesel stayed refused
    decided = [m for m in long_call if m.outcome]
    assert {m.snapshot_id for m in long_call} == {first}
    assert all(o == pb.OUTCOME_NOT_ALLOWED for m in decided for o in outcomes(m))
    # the last layer is what new calls see: the diesel now reads as euro 6
    got = s.Check(pb.CheckRequest(plate=OLD_DIESEL, zone=zone, date="2025-06-02"))
    assert got.snapshot_id == "layer-3"
    assert got.decision.outcome == pb.OUTCOME_ALLOWED


def test_the_holder_shares_the_base_between_layers_and_finishes_leases(
    store_root: Path, keyer: PlateKeyer
) -> None:
    holder = StoreHolder(store_root, key_id=keyer.key_id, warm=True)
    assert holder.load()
    key = _key(keyer, OLD_DIESEL)
    days = np.array([DAY], dtype=np.int32)
    with holder.lease() as on_base:
        _publish_euro(store_root, keyer, OLD_DIESEL, "6", "layer-a")
        assert asyncio.run(holder.refresh())
        with holder.lease() as on_a:
            assert on_a.meta.snapshot_id == "layer-a" and on_a.reader.base is not None
            base_env = on_a.reader.base.env
            assert base_env is on_base.reader.env  # one open environment for the base
            with on_a.reader.snapshot() as snap:
                assert snap.vehicles_on(key, days).records["euro"][0] == codes.EURO.id_of("6")
        # the lease taken before the switch still reads its own snapshot
        with on_base.reader.snapshot() as snap:
            assert snap.vehicles_on(key, days).records["euro"][0] == codes.EURO.id_of("3")
    _publish_euro(store_root, keyer, OLD_DIESEL, "5", "layer-b")
    assert asyncio.run(holder.refresh())
    current = holder.current
    assert current is not None and current.reader.base is not None
    assert current.reader.base.env is base_env  # layer-a closed, the base stayed open
    with holder.lease() as on_b, on_b.reader.snapshot() as snap:
        assert snap.vehicles_on(key, days).records["euro"][0] == codes.EURO.id_of("5")
    holder.close()
