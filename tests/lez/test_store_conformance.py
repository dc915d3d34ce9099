"""One contract, three readers: an LMDB base build, an LMDB layer over a base holding other data,
and the in-memory reader answer alike."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lez import plates, vehicle
from lez.days import DAY_OPEN
from lez.keys import PlateKeyer
from lez.registrations import REGISTRATION_DTYPE, RegistrationKind
from lez.store import StoreBuilder, StoreMeta, group_by_key, open_store
from lez.store.columns import empty_table, sort_by_key, vehicle_from, versions_on
from lez.store.memory import MemoryReader
from lez.store.overlay import overlay

PLATES = ["1ABC234", "2XYZ999", "GABC123", "JAN2"]


def _keys(keyer: PlateKeyer, items: list[str], country: str = "BE") -> np.ndarray:
    pm = plates.as_matrix(items, width=plates.PLATE_WIDTH)
    return keyer.key_matrix(plates.countries_matrix(country, len(items)), pm)


def _data(keyer: PlateKeyer) -> tuple[StoreMeta, Any, Any]:
    # plate 0 has two versions (moved to another vehicle on day 1000); plate 3 ended on day 500
    rec = vehicle.empty(5)
    rec["valid_from"] = [0, 1000, 10, 20, 30]
    rec["valid_to"] = [1000, DAY_OPEN, DAY_OPEN, DAY_OPEN, 500]
    rec["fuel"] = [2, 1, 2, 4, 1]
    rec["euro"] = [5, 9, 6, 0, 3]
    owners = _keys(keyer, [PLATES[0], PLATES[0], PLATES[1], PLATES[2], PLATES[3]])
    order = np.array([1, 0, 3, 2, 4])  # deliberately unsorted input
    vehicles = group_by_key(owners[order], rec[order])
    reg = np.zeros(3, dtype=REGISTRATION_DTYPE)
    reg["kind"] = [
        RegistrationKind.DAY_PASS,
        RegistrationKind.FOREIGN_VEHICLE,
        RegistrationKind.LOCAL_PERMIT,
    ]
    reg["valid_from"] = [50, 0, 60]
    reg["valid_to"] = [51, DAY_OPEN, 90]
    reg["zone"] = [1, 0, 2]
    reg_keys = np.concatenate(
        [_keys(keyer, [PLATES[1]]), _keys(keyer, ["AB123"], "NL"), _keys(keyer, [PLATES[1]])]
    )
    registrations = group_by_key(reg_keys, reg)
    meta = StoreMeta(
        format_version=vehicle.FORMAT_VERSION,
        key_id=keyer.key_id,
        snapshot_id="s1",
        snapshot_seq=1,
        source_date="2026-11-01",
        built_at="now",
        plates=vehicles.size,
        versions=len(vehicles.records),
        registrations=len(registrations.records),
    )
    return meta, vehicles, registrations


def _layered(root: Path, keyer: PlateKeyer, meta: StoreMeta, vehicles: Any, regs: Any) -> None:
    """Publish the same data as a base holding other data plus a layer of changes: plates 0 and
    1 replaced, 2 and 3 added, one plate removed, the registrations replaced."""
    stale = vehicle.empty(3)
    stale["valid_from"] = [5, 6, 7]
    stale["euro"] = 1
    base = group_by_key(_keys(keyer, [PLATES[0], PLATES[1], "GONE1"]), stale)
    builder = StoreBuilder(root)
    builder.build(
        meta=replace(meta, snapshot_id="base", plates=3, versions=3, registrations=0),
        vehicles=base,
        registrations=empty_table(REGISTRATION_DTYPE),
        rulesets={"r1": "text"},
    )
    gone = group_by_key(_keys(keyer, ["GONE1"]), vehicle.empty(1))
    removal = replace(gone, offsets=np.zeros(2, dtype=np.uint64), records=vehicle.empty(0))
    changes = overlay(vehicles, removal, keep_empty=True)
    builder.publish_changes(changes, meta=meta, registrations=regs)


@pytest.fixture(params=["lmdb", "lmdb-layered", "memory"])
def reader(request: pytest.FixtureRequest, keyer: PlateKeyer, tmp_path: Path) -> Iterator[Any]:
    meta, vehicles, registrations = _data(keyer)
    if request.param == "memory":
        yield MemoryReader(meta, vehicles, registrations, {"r1": "text"})
        return
    if request.param == "lmdb-layered":
        _layered(tmp_path / "store", keyer, meta, vehicles, registrations)
    else:
        StoreBuilder(tmp_path / "store").build(
            meta=meta, vehicles=vehicles, registrations=registrations, rulesets={"r1": "text"}
        )
    r = open_store(tmp_path / "store", expected_key_id=keyer.key_id)
    assert r.meta.is_layer == (request.param == "lmdb-layered")
    yield r
    r.close()


def test_batch_lookup_is_aligned_with_the_query(reader: Any, keyer: PlateKeyer) -> None:
    query = [PLATES[1], "NOPE99", PLATES[0], PLATES[0], PLATES[3], PLATES[3], PLATES[2]]
    days = np.array([100, 100, 999, 1000, 499, 500, 5], dtype=np.int32)
    with reader.snapshot() as snap:
        got = snap.vehicles_on(_keys(keyer, query), days)
        assert got.known.tolist() == [True, False, True, True, True, True, True]
        assert got.found.tolist() == [True, False, True, True, True, False, False]
        assert got.records["fuel"].tolist() == [2, 0, 2, 1, 1, 0, 0]
        assert got.records["euro"].tolist()[:5] == [6, 0, 5, 9, 3]


def test_registrations_rows_per_query(reader: Any, keyer: PlateKeyer) -> None:
    with reader.snapshot() as snap:
        keys = np.concatenate([_keys(keyer, ["AB123"], "NL"), _keys(keyer, [PLATES[0], PLATES[1]])])
        q, rows = snap.registrations_of(keys)
        pairs = sorted(zip(q.tolist(), rows["kind"].tolist(), strict=True))
        assert pairs == [
            (0, RegistrationKind.FOREIGN_VEHICLE),
            (2, RegistrationKind.LOCAL_PERMIT),
            (2, RegistrationKind.DAY_PASS),
        ]


def test_versions_and_rulesets(reader: Any, keyer: PlateKeyer) -> None:
    with reader.snapshot() as snap:
        versions = snap.versions_of(_keys(keyer, [PLATES[0]])[0].tobytes())
        assert versions["valid_from"].tolist() == [0, 1000]
        assert len(snap.versions_of(b"\x00" * 16)) == 0
        assert snap.ruleset_texts() == {"r1": "text"}
        assert snap.vehicles.size == 4
    assert reader.meta.plates == 4 and reader.meta.versions == 5


@pytest.mark.parametrize("plate", [*PLATES, "NOPE99"])
def test_single_key_reads_agree_with_the_batch_reads(
    reader: Any, keyer: PlateKeyer, plate: str
) -> None:
    key = _keys(keyer, [plate])
    with reader.snapshot() as snap:
        _, versions = snap.vehicle_rows(key)
        assert snap.versions_of(key[0].tobytes()).tolist() == versions.tolist()
        _, rows = snap.registrations_of(key)
        assert snap.registrations_for(key[0].tobytes()).tolist() == rows.tolist()
    with reader.snapshot() as snap:
        assert len(snap.versions_of(b"\xff" * 16)) == 0
        assert len(snap.registrations_for(b"\x00" * 15)) == 0


def test_empty_query(reader: Any) -> None:
    with reader.snapshot() as snap:
        got = snap.vehicles_on(np.zeros((0, 16), np.uint8), np.zeros(0, np.int32))
        assert len(got.records) == 0


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(-5, 5)), max_size=60))
def test_sort_by_key_equals_lexsort(rows: list[tuple[int, int, int]]) -> None:
    # tiny value ranges force shared high halves, prefix collisions and equal days
    hi = np.array([r[0] for r in rows], dtype=np.uint64)
    lo = np.array([r[1] for r in rows], dtype=np.uint64)
    then = np.array([r[2] for r in rows], dtype=np.int32)
    got = sort_by_key(hi, lo, then)
    want = np.lexsort((then, lo, hi))
    for column in (hi, lo, then):
        assert column[got].tolist() == column[want].tolist()


def _table(pairs: list[tuple[int, int]]) -> Any:
    keys = np.zeros((len(pairs), 16), dtype=np.uint8)
    for i, (hi, lo) in enumerate(pairs):
        keys[i] = np.frombuffer(hi.to_bytes(8, "big") + lo.to_bytes(8, "big"), dtype=np.uint8)
    rec = vehicle.empty(len(pairs))
    rec["valid_from"] = np.arange(len(pairs))
    return group_by_key(keys, rec).indexed()


# high halves drawn from a few values, some sharing a bucket, some differing only in low bits
HIGH_HALVES = st.sampled_from([0, 1, 2, 1 << 44, (1 << 44) + 1, 2**63, 2**64 - 1])


@given(
    st.lists(st.tuples(HIGH_HALVES, st.integers(0, 4)), max_size=40),
    st.lists(st.tuples(HIGH_HALVES, st.integers(0, 4)), min_size=1, max_size=10),
)
def test_find_one_equals_the_vectorised_find(
    stored: list[tuple[int, int]], queries: list[tuple[int, int]]
) -> None:
    table = _table(stored)
    q = np.zeros((len(queries), 16), dtype=np.uint8)
    for i, (hi, lo) in enumerate(queries):
        q[i] = np.frombuffer(hi.to_bytes(8, "big") + lo.to_bytes(8, "big"), dtype=np.uint8)
    want = table.find(q).tolist()
    got = [table.find_one(q[i].tobytes()) for i in range(len(queries))]
    assert got == want
    assert [table.find_one_numpy(q[i].tobytes()) for i in range(len(queries))] == want
    whole = replace(table, bucket_starts=None)  # a table without an index: searched whole
    assert [whole.find_one(q[i].tobytes()) for i in range(len(queries))] == want
    for i, idx in enumerate(got):  # and it is really the key asked for
        assert (idx >= 0) == (queries[i] in stored)


@given(
    st.lists(
        st.tuples(HIGH_HALVES, st.integers(0, 4), st.integers(-3, 6), st.integers(0, 5)),
        max_size=40,
    ),
    st.lists(
        st.tuples(HIGH_HALVES, st.integers(0, 4), st.integers(-4, 12)), min_size=1, max_size=10
    ),
)
def test_version_one_equals_the_vectorised_lookup(
    stored: list[tuple[int, int, int, int]], queries: list[tuple[int, int, int]]
) -> None:
    """A single check's vehicle (`version_one`, native and NumPy, as `vehicle_on` reads it) is
    the one the vectorised `fill_versions` finds for the same key and day, with the same
    `known`: keys with several versions, gaps and overlaps between them, absent keys, shared
    high halves."""
    keys = np.zeros((len(stored), 16), dtype=np.uint8)
    rec = vehicle.empty(len(stored))
    for i, (hi, lo, start, length) in enumerate(stored):
        keys[i] = np.frombuffer(hi.to_bytes(8, "big") + lo.to_bytes(8, "big"), dtype=np.uint8)
        rec["valid_from"][i], rec["valid_to"][i] = start, start + length
        rec["co2"][i] = i + 1  # tells the rows apart
    table = group_by_key(keys, rec).indexed()
    q = np.zeros((len(queries), 16), dtype=np.uint8)
    for i, (hi, lo, _) in enumerate(queries):
        q[i] = np.frombuffer(hi.to_bytes(8, "big") + lo.to_bytes(8, "big"), dtype=np.uint8)
    days = np.array([d for _, _, d in queries], dtype=np.int32)
    want = versions_on(table, q, days)
    for i in range(len(queries)):
        key, day = q[i].tobytes(), int(days[i])
        got = table.version_one(key, day)
        assert got == table.version_one_numpy(key, day)
        assert (got is not None) == (queries[i][:2] in [s[:2] for s in stored])
        known, record = vehicle_from(table, got)
        assert known == bool(want.known[i]) and (record is not None) == bool(want.found[i])
        if record is not None:
            assert record.tobytes() == want.records[i].tobytes()
