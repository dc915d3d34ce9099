"""`sort_by_key` against the plain definition: a stable sort of rows by (hi, lo, then).

The fast path sorts the high halves with the row index packed into their low bits and fixes up
the rows that share the remaining prefix, so the cases that matter are the ties: versions of one
plate, equal versions (kept in input order), and keys whose high halves share a long prefix or
are equal with different low halves (the redo of mixed runs).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez.store import columns
from lez.store.columns import sort_by_key

# a few high halves that agree in their top bits and differ only in the lowest ones, so the
# row bits packed into them collide with real key bits
_NEAR = [0, 1, 2, 2**20 + 3, 2**63, 2**63 + 1, 2**64 - 1, 2**64 - 2, 12345 << 24]
_high = st.one_of(st.sampled_from(_NEAR), st.integers(0, 2**64 - 1))
_row = st.tuples(_high, st.integers(0, 3), st.integers(-(2**31), 2**31 - 1) | st.integers(0, 3))


def _reference(hi: np.ndarray, lo: np.ndarray, then: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(len(hi)), then, lo, hi))


@settings(max_examples=300, deadline=None)
@given(st.lists(_row, max_size=200))
def test_sort_by_key_is_a_stable_sort_by_hi_lo_then(rows: list[tuple[int, int, int]]) -> None:
    hi = np.array([r[0] for r in rows], dtype=np.uint64)
    lo = np.array([r[1] for r in rows], dtype=np.uint64)
    then = np.array([r[2] for r in rows], dtype=np.int32)
    order = sort_by_key(hi, lo, then)
    assert order.dtype == np.int64
    assert np.array_equal(order, _reference(hi, lo, then))


@pytest.mark.parametrize("block", [1 << 20, 1000, 7])
def test_sort_by_key_at_scale_with_versions_and_collisions(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(columns, "_BLOCK", block)  # the block-wise passes, several blocks
    rng = np.random.default_rng(7)
    plates = rng.integers(0, 2**64, 50_000, dtype=np.uint64)
    plates[:100] = plates[100:200] ^ np.uint64(1)  # equal but for the lowest bit
    plate_lo = rng.integers(0, 2**64, len(plates), dtype=np.uint64)
    plate_lo[200:210] = plate_lo[210:220]
    plates[200:210] = plates[210:220]  # the same high half with another low half
    plate_lo[200:210] ^= np.uint64(5)
    which = rng.integers(0, len(plates), 120_000)
    hi, lo = plates[which], plate_lo[which]
    then = rng.integers(16_000, 20_000, len(which)).astype(np.int32)
    for workers in (1, 2):
        assert np.array_equal(sort_by_key(hi, lo, then, workers), _reference(hi, lo, then))


def test_sort_by_key_of_no_and_one_row() -> None:
    none = np.zeros(0, dtype=np.uint64)
    assert sort_by_key(none, none, np.zeros(0, dtype=np.int32)).tolist() == []
    one = np.ones(1, dtype=np.uint64)
    assert sort_by_key(one, one, np.zeros(1, dtype=np.int32)).tolist() == [0]
