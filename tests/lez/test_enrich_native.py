"""The native enrichment (`lez._enrich`) gives exactly what the NumPy passes it replaces give.

Records are drawn to tempt it: every category, kind and fuel id, masses, seats and reference
masses at each threshold and one beside it, unknown markers, first registrations on and around
every start day of the euro tables, and euro-norm corrections.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez import codes, enrich
from lez.days import DAY_UNKNOWN
from lez.enrich import (
    EURO_TABLES,
    THRESHOLDS,
    Enriched,
    enrich_native,
    enrich_numpy,
)
from lez.vehicle import U8_UNKNOWN, U32_UNKNOWN, VehicleArray, empty

TH = THRESHOLDS
_STARTS = np.unique(np.concatenate([t.starts for t in EURO_TABLES.values()]))


def test_the_native_enrichment_was_built() -> None:
    """`make install` compiles it; a missing compiler must not silently hide these tests."""
    assert enrich.NATIVE, "lez._enrich was not built: install gcc, then make install"


def _edges(*limits: int) -> npt.NDArray[np.int64]:
    return np.array([v + d for v in limits for d in (-1, 0, 1)], dtype=np.int64)


MASSES = _edges(TH.m2_max_mass, TH.n1_max_mass, TH.n2_max_mass, TH.o1_max_mass,
                TH.o2_max_mass, TH.o3_max_mass)  # fmt: skip
RUNNING = _edges(TH.n1_i_max, TH.n1_ii_max, TH.n2_light_max) + TH.driver_kg - TH.added_kg
SEATS = _edges(TH.m1_max_seats)


def _records(seed: int, n: int) -> tuple[VehicleArray, npt.NDArray[np.uint8]]:
    rng = np.random.default_rng(seed)

    def pick(
        edges: npt.NDArray[np.int64], low: int, high: int, unknown: int
    ) -> npt.NDArray[np.int64]:
        way = rng.integers(0, 3, n)  # an edge, anything in range, unknown
        return np.where(
            way == 0, rng.choice(edges, n), np.where(way == 1, rng.integers(low, high, n), unknown)
        )

    rec = empty(n)
    rec["category"] = np.where(rng.random(n) < 0.4, 0, rng.integers(0, codes.CATEGORY.size, n))
    rec["kind"] = rng.integers(0, codes.KIND.size, n)
    rec["fuel"] = rng.integers(0, codes.FUEL.size, n)
    rec["euro"] = np.where(rng.random(n) < 0.5, 0, rng.integers(0, codes.EURO.size, n))
    rec["max_mass"] = pick(MASSES, 0, 40_000, U32_UNKNOWN)
    rec["running_mass"] = pick(RUNNING, 0, 5_000, U32_UNKNOWN)
    rec["seats"] = pick(SEATS, 1, 80, U8_UNKNOWN)
    near_start = rng.choice(_STARTS, n) + rng.integers(-1, 2, n)
    rec["first_registration"] = np.where(
        rng.random(n) < 0.1, DAY_UNKNOWN, np.where(rng.random(n) < 0.6, near_start,
                                                   rng.integers(-5_000, 25_000, n)))  # fmt: skip
    correction = np.where(rng.random(n) < 0.2, rng.integers(0, codes.EURO.size, n), 0)
    return rec, correction.astype(np.uint8)


def _same(a: Enriched, b: Enriched) -> None:
    for name in ("category", "vclass", "family", "euro", "derived"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 3000), corrected=st.booleans())
def test_native_enrichment_equals_numpy(seed: int, n: int, corrected: bool) -> None:
    records, correction = _records(seed, n)
    given_correction = correction if corrected else None
    _same(enrich_native(records, given_correction), enrich_numpy(records, given_correction))


def test_a_code_id_beyond_its_table_is_refused_not_read() -> None:
    records, _ = _records(1, 10)
    records["fuel"][3] = 255
    with pytest.raises(ValueError, match="outside the tables"):
        enrich_native(records)


def test_enrich_uses_the_native_core_for_contiguous_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dispatch: a contiguous chunk goes native, a strided view falls back to NumPy; both
    answer alike."""
    calls: list[int] = []
    in_core = enrich._enrich_in_core

    def counted(*args: Any) -> Enriched:
        calls.append(len(args[0]))
        return in_core(*args)

    monkeypatch.setattr(enrich, "_enrich_in_core", counted)
    records, correction = _records(5, 200)
    _same(enrich.enrich(records, correction), enrich_numpy(records, correction))
    assert calls == [200]
    _same(enrich.enrich(records[::2], correction[::2]), enrich_numpy(records[::2], correction[::2]))
    assert calls == [200]  # the strided view went to NumPy
