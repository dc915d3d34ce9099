"""`sort_u64` (the loader's radix sort, `lez._sort`) against NumPy's sort, its oracle.

The radix sort groups values by their top bits and sorts each group by the rest, skipping the
digits a group's values share: the cases that matter are skewed inputs (every value in one
group, so one large group), values that share digits (skipped passes, which change where the
result ends up), the extremes of the range, duplicates, and the split of the groups among
threads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez.store import columns
from lez.store.columns import sort_u64

_EDGES = [0, 1, 255, 256, 2**52, 2**53 - 1, 2**53, 2**63, 2**64 - 1, 2**64 - 256]
_value = st.one_of(st.sampled_from(_EDGES), st.integers(0, 2**64 - 1), st.integers(0, 1000))


def test_the_native_sort_was_built() -> None:
    assert columns.NATIVE_SORT, "lez._sort was not built: install gcc, then make install"


@settings(max_examples=300, deadline=None)
@given(st.lists(_value, max_size=300), st.integers(1, 3))
def test_sort_u64_equals_numpys_sort(values: list[int], workers: int) -> None:
    array = np.array(values, dtype=np.uint64)
    sort_u64(array, workers)
    assert np.array_equal(array, np.sort(np.array(values, dtype=np.uint64)))


@pytest.mark.parametrize(
    "make",
    [
        lambda rng, n: rng.integers(0, 2**64, n, dtype=np.uint64),  # uniform: keys
        lambda rng, n: rng.integers(0, 2**20, n, dtype=np.uint64),  # every value in one group
        lambda rng, n: (
            (rng.integers(0, 4, n, dtype=np.uint64) << np.uint64(62))
            | rng.integers(0, 3, n, dtype=np.uint64)
        ),  # four groups, most digits shared
        lambda rng, n: np.full(n, 2**64 - 1, dtype=np.uint64),  # one value repeated
        lambda rng, n: np.arange(n, dtype=np.uint64)[::-1].copy() << np.uint64(40),  # reversed
    ],
)
@pytest.mark.parametrize("workers", [1, 2, 5])
def test_sort_u64_at_scale(
    make: Callable[[np.random.Generator, int], npt.NDArray[np.uint64]], workers: int
) -> None:
    rng = np.random.default_rng(11)
    array = make(rng, 200_000)
    expected = np.sort(array)
    sort_u64(array, workers)
    assert np.array_equal(array, expected)


def test_sort_u64_refuses_what_it_cannot_sort_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="contiguous uint64"):
        sort_u64(np.arange(10, dtype=np.int64).view(np.uint64)[::2])
    with pytest.raises(ValueError, match="contiguous uint64"):
        sort_u64(np.arange(10, dtype=np.int64))  # type: ignore[arg-type]
    monkeypatch.setattr(columns, "_native_sort", None)  # NumPy's sort: the same refusals
    with pytest.raises(ValueError, match="contiguous uint64"):
        sort_u64(np.arange(10, dtype=np.int64))  # type: ignore[arg-type]
    values = np.array([3, 1, 2**64 - 1, 0], dtype=np.uint64)
    sort_u64(values, 2)
    assert values.tolist() == [0, 1, 3, 2**64 - 1]


def test_the_native_core_checks_its_arrays() -> None:
    from lez import _sort

    values = np.arange(10, dtype=np.uint64)
    with pytest.raises(ValueError, match="scratch must hold"):
        _sort.partition(
            values, np.empty(9, dtype=np.uint64), np.empty(_sort.BUCKETS + 1, np.uint64)
        )
    starts = np.zeros(_sort.BUCKETS + 1, dtype=np.uint64)
    starts[1:] = 11  # one more value than the arrays hold
    with pytest.raises(ValueError, match="starts outside"):
        _sort.sort_buckets(np.empty_like(values), values, starts, 0, _sort.BUCKETS)
    with pytest.raises(ValueError, match="bucket range"):
        _sort.sort_buckets(values.copy(), values, starts, 0, _sort.BUCKETS + 1)


def test_the_native_core_refuses_overlapping_arrays() -> None:
    from lez import _sort

    values = np.arange(10, dtype=np.uint64)
    starts = np.zeros(_sort.BUCKETS + 1, dtype=np.uint64)
    with pytest.raises(ValueError, match="overlap"):
        _sort.partition(values, values, starts)
    with pytest.raises(ValueError, match="overlap"):
        _sort.sort_buckets(values, values, starts, 0, _sort.BUCKETS)
    both = np.zeros(20, dtype=np.uint64)  # two halves of one buffer do not overlap
    both[:10] = values[::-1]
    _sort.partition(both[:10], both[10:], starts)
    _sort.sort_buckets(both[10:], both[:10], starts, 0, _sort.BUCKETS)
    assert both[:10].tolist() == list(range(10))
