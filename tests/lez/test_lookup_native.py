"""The native batch lookup (`lez._lookup`) answers exactly as the NumPy search it replaces.

Tables are built to tempt it: keys sharing their high half (a 64-bit prefix collision), keys
whose rows were removed (a layer's empty groups), many versions per key, tables with and
without the bucket index, queries that hit, miss, and fall just beside a stored key.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez.store import columns
from lez.store.columns import (
    KeyedRecords,
    VehicleLookup,
    bucket_bits_for,
    fill_versions_native,
    fill_versions_numpy,
    group_sorted,
    sort_by_key,
)
from lez.vehicle import VEHICLE_DTYPE, empty


def test_the_native_lookup_was_built() -> None:
    """`make install` compiles it; a missing compiler must not silently hide these tests."""
    assert columns.NATIVE, "lez._lookup was not built: install gcc, then make install"


def _table(seed: int, keys: int, collisions: int, removed: int, indexed: bool) -> KeyedRecords:
    rng = np.random.default_rng(seed)
    hi = rng.integers(0, 2**63, keys, dtype=np.uint64) * np.uint64(2)  # spread over 64 bits
    lo = rng.integers(0, 2**63, keys, dtype=np.uint64)
    if collisions and keys > 1:  # some keys share the high half of another
        at = rng.integers(0, keys, collisions)
        hi[at] = hi[rng.integers(0, keys, collisions)]
    versions = rng.integers(1, 5, keys)
    rows = int(versions.sum())
    k_hi, k_lo = np.repeat(hi, versions), np.repeat(lo, versions)
    records = empty(rows)
    records["valid_from"] = rng.integers(0, 400, rows)
    records["valid_to"] = records["valid_from"] + rng.integers(1, 200, rows)
    records["nis"] = rng.integers(1, 99999, rows)
    order = sort_by_key(k_hi, k_lo, records["valid_from"])
    table = group_sorted(k_hi[order], k_lo[order], records[order])
    if removed:  # empty groups, as a layer marks a removed key
        counts = table.counts()
        gone = np.zeros(table.size, dtype=np.bool_)
        gone[rng.integers(0, table.size, removed)] = True
        counts[gone] = 0
        keep = np.repeat(~gone, table.counts())
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.uint64)
        table = KeyedRecords(table.key_hi, table.key_lo, offsets, table.records[keep])
    return table.indexed() if indexed else table


def _queries(
    table: KeyedRecords, seed: int, n: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    rng = np.random.default_rng(seed + 1)
    hi = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    lo = rng.integers(0, 2**63, n, dtype=np.uint64)
    if table.size:
        stored = rng.integers(0, table.size, n)
        kind = rng.integers(0, 4, n)  # 0: random, 1: stored, 2: stored high + other low, 3: +1
        hi = np.where(kind >= 1, table.key_hi[stored], hi)
        lo = np.where(kind == 1, table.key_lo[stored], lo)
        lo = np.where(kind == 3, table.key_lo[stored] + np.uint64(1), lo)
    return hi, lo


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    keys=st.integers(0, 3000),
    collisions=st.integers(0, 50),
    removed=st.integers(0, 30),
    indexed=st.booleans(),
    queries=st.integers(0, 2000),
)
def test_native_lookup_equals_numpy(
    seed: int, keys: int, collisions: int, removed: int, indexed: bool, queries: int
) -> None:
    table = _table(seed, keys, collisions, removed if keys else 0, indexed)
    hi, lo = _queries(table, seed, queries)
    native_idx = table.find_halves_native(hi, lo)
    numpy_idx = table.find_halves_numpy(hi, lo)
    np.testing.assert_array_equal(native_idx, numpy_idx)

    days = np.random.default_rng(seed + 2).integers(0, 600, queries).astype(np.int32)
    answers = []
    for fill in (fill_versions_native, fill_versions_numpy):
        lookup = VehicleLookup.empty(queries)
        fill(lookup, table, numpy_idx, days)
        answers.append(lookup)
    native, numpy_ = answers
    assert native.records.tobytes() == numpy_.records.tobytes()
    np.testing.assert_array_equal(native.found, numpy_.found)
    np.testing.assert_array_equal(native.known, numpy_.known)


def test_native_finds_colliding_high_halves() -> None:
    """Three keys share one high half: each is found by its low half, a fourth low is not."""
    hi = np.full(3, 7 << 40, dtype=np.uint64)
    lo = np.array([5, 9, 11], dtype=np.uint64)
    records = empty(3)
    table = group_sorted(hi, lo, records).indexed()
    q_lo = np.array([11, 5, 9, 10], dtype=np.uint64)
    q_hi = np.full(4, 7 << 40, dtype=np.uint64)
    assert table.find_halves_native(q_hi, q_lo).tolist() == [2, 0, 1, -1]


def test_native_refuses_a_corrupt_table_instead_of_reading_outside_it() -> None:
    table = _table(3, 100, 0, 0, True)
    bad_offsets = table.offsets.copy()
    bad_offsets[-1] = len(table.records) + 10  # a group that runs past the records
    corrupt = KeyedRecords(table.key_hi, table.key_lo, bad_offsets, table.records)
    lookup = VehicleLookup.empty(1)
    with pytest.raises(ValueError, match="outside the table"):
        fill_versions_native(lookup, corrupt, np.array([table.size - 1]), np.zeros(1, np.int32))
    with pytest.raises(ValueError, match="outside the table"):
        fill_versions_native(lookup, table, np.array([table.size]), np.zeros(1, np.int32))
    assert table.bucket_starts is not None
    bad_buckets = table.bucket_starts.copy()
    bucket = int(table.key_hi[0]) >> (64 - table.bucket_bits)
    bad_buckets[bucket + 1] = table.size + 5  # the bucket of the query runs past the keys
    broken = KeyedRecords(table.key_hi, table.key_lo, table.offsets, table.records, bad_buckets)
    with pytest.raises(ValueError, match="bucket index"):
        broken.find_halves_native(table.key_hi[:1], table.key_lo[:1])
    with pytest.raises(ValueError, match="bucket index"):  # the single-key lookup checks it too
        broken.find_one(table.key_bytes(0))
    assert table.bucket_bits == bucket_bits_for(table.size)


def test_records_dtype_is_what_the_native_core_reads() -> None:
    """The native fill reads `valid_from` and `valid_to` as int32 at their offsets."""
    fields = VEHICLE_DTYPE.fields
    assert fields is not None
    assert fields["valid_from"][0] == np.dtype("<i4")
    assert fields["valid_to"][0] == np.dtype("<i4")


@pytest.mark.parametrize("keys", [3_000, 60_000, 700_000])
def test_the_bucket_index_grows_with_the_table(keys: int) -> None:
    """About 4 keys a bucket at every size, so a key search reads as many cache lines in a big
    register as in a small one (a fixed number of buckets made the 16M store's search twice
    the 1M store's)."""
    table = _table(11, keys, 0, 0, True)
    assert table.bucket_starts is not None
    per_bucket = table.size / 2**table.bucket_bits
    assert 2 <= per_bucket <= 8, per_bucket
    hi, lo = _queries(table, 11, 5_000)
    np.testing.assert_array_equal(table.find_halves_native(hi, lo), table.find_halves_numpy(hi, lo))
