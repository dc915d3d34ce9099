"""Enrichment: derived category, class, euro norm and plug-in hybrid, at the data's boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from lez import codes
from lez.days import DAY_UNKNOWN, parse_day
from lez.decision import Derived
from lez.enrich import (
    THRESHOLDS,
    VehicleClass,
    derive_euro,
    derive_euro_one,
    enrich,
    enrich_one,
    plug_in_hybrid,
    plug_in_hybrid_one,
)
from lez.vehicle import U32_UNKNOWN, Flag, empty

C = VehicleClass
TH = THRESHOLDS


def _one(**fields: object) -> np.void:
    rec = empty(1)
    lists = {"category": codes.CATEGORY, "kind": codes.KIND, "fuel": codes.FUEL, "euro": codes.EURO}
    for name, value in fields.items():
        if name in lists:
            rec[name] = lists[name].id_of(str(value))
        elif name == "first_registration":
            rec[name] = parse_day(str(value))
        else:
            rec[name] = value
    first: np.void = rec[0]
    return first


def _both(record: np.void, correction: int = 0) -> tuple[int, int, int, int, int]:
    vec = enrich(np.array([record]), np.array([correction], dtype=np.uint8))
    one = enrich_one(record, correction)
    got = (int(vec.category[0]), int(vec.vclass[0]), int(vec.family[0]), int(vec.euro[0]),
           int(vec.derived[0]))  # fmt: skip
    assert got == tuple(one)
    return got


@pytest.mark.parametrize(
    ("fields", "category", "vclass"),
    [
        ({"kind": "CT", "max_mass": TH.n1_max_mass}, "N1", C.N1),
        ({"kind": "CT", "max_mass": TH.n1_max_mass + 1}, "N2", C.N2),
        ({"kind": "XL", "max_mass": TH.n2_max_mass}, "N2", C.N2),
        ({"kind": "XL", "max_mass": TH.n2_max_mass + 1}, "N3", C.N3),
        ({"kind": "XL"}, "", C.N),
        ({"kind": "BC", "max_mass": TH.m2_max_mass}, "M2", C.M2),
        ({"kind": "BC", "max_mass": TH.m2_max_mass + 1}, "M3", C.M3),
        ({"kind": "BC"}, "", C.M_BUS),
        ({"kind": "AA", "seats": TH.m1_max_seats}, "M1", C.M1),
        ({"kind": "AA", "seats": TH.m1_max_seats + 1, "max_mass": 3000}, "M2", C.M2),
        ({"kind": "AR", "max_mass": TH.o1_max_mass}, "O1", C.O),
        ({"kind": "AR", "max_mass": TH.o1_max_mass + 1}, "O2", C.O),
        ({"kind": "AR", "max_mass": TH.o3_max_mass + 1}, "O4", C.O),
        ({"kind": "AR"}, "", C.O),
        ({"kind": "XM"}, "", C.L),
        ({"kind": "XT"}, "T", C.T),
    ],
)
def test_category_from_kind_mass_and_seats(
    fields: dict[str, object], category: str, vclass: VehicleClass
) -> None:
    got = _both(_one(**fields))
    assert got[0] == codes.CATEGORY.id_of(category)
    assert got[1] == vclass
    assert got[4] & Derived.CATEGORY


def test_no_kind_hint_stays_unknown_and_is_not_flagged() -> None:
    got = _both(_one())
    assert got[1] == C.UNKNOWN and got[4] == 0


def test_register_category_is_kept_and_not_flagged() -> None:
    got = _both(_one(category="M1", kind="CT", max_mass=9000))
    assert got[0] == codes.CATEGORY.id_of("M1") and got[1] == C.M1 and got[4] == 0


@pytest.mark.parametrize(
    ("category", "running", "vclass"),
    [
        ("N1", TH.n1_i_max + TH.driver_kg - TH.added_kg, C.N1_I),
        ("N1", TH.n1_i_max + TH.driver_kg - TH.added_kg + 1, C.N1_II),
        ("N1", TH.n1_ii_max + TH.driver_kg - TH.added_kg, C.N1_II),
        ("N1", TH.n1_ii_max + TH.driver_kg - TH.added_kg + 1, C.N1_III),
        ("N1", U32_UNKNOWN, C.N1),
        ("N2", TH.n2_light_max + TH.driver_kg - TH.added_kg, C.N2_LIGHT),
        ("N2", TH.n2_light_max + TH.driver_kg - TH.added_kg + 1, C.N2_HEAVY),
        ("N2", U32_UNKNOWN, C.N2),
    ],
)
def test_class_by_reference_mass(category: str, running: int, vclass: VehicleClass) -> None:
    assert _both(_one(category=category, running_mass=running))[1] == vclass


@pytest.mark.parametrize(
    ("vclass", "first", "euro"),
    [
        (C.M1, "1992-06-30", "0"),
        (C.M1, "1992-07-01", "1"),
        (C.M1, "2015-08-31", "5"),
        (C.M1, "2015-09-01", "6"),
        (C.M1, "2019-09-01", "6D-TEMP"),
        (C.M1, "2021-01-01", "6D"),
        (C.N1_I, "1994-09-30", "0"),
        (C.N1_I, "1994-10-01", "1"),
        (C.N1_II, "1994-09-30", ""),
        (C.N1_II, "2001-12-31", "2"),
        (C.N1_II, "2002-01-01", ""),
        (C.N1_III, "2016-09-01", "6"),
        (C.M2, "2015-09-01", "6"),
        (C.M3, "2013-01-01", "VI"),
        (C.N2_HEAVY, "2000-09-30", "II"),
        (C.T, "2020-01-01", ""),
        (C.N1, "1999-01-01", "2"),  # all N1 classes agree on Euro 2
        (C.N1, "2011-06-01", ""),  # class I says 5, class II/III has a gap
        (C.UNKNOWN, "2015-01-01", ""),
    ],
)
def test_euro_from_first_registration(vclass: VehicleClass, first: str, euro: str) -> None:
    day = parse_day(first)
    want = codes.EURO.id_of(euro)
    got = derive_euro(np.array([vclass], dtype=np.uint8), np.array([day], dtype=np.int32))
    assert int(got[0]) == want == derive_euro_one(vclass, day)


def test_unknown_first_registration_derives_nothing() -> None:
    assert derive_euro_one(C.M1, DAY_UNKNOWN) == 0


def test_derived_euro_is_flagged_and_correction_wins() -> None:
    rec = _one(category="M1", fuel="02", first_registration="2012-05-05")
    got = _both(rec)
    assert got[3] == codes.EURO.id_of("5") and got[4] == Derived.EURO
    corrected = _both(rec, codes.EURO.id_of("6"))
    assert corrected[3] == codes.EURO.id_of("6") and corrected[4] == Derived.EURO_CORRECTED
    listed = _both(_one(category="M1", fuel="02", euro="4"), codes.EURO.id_of("5"))
    assert listed[3] == codes.EURO.id_of("5") and listed[4] == Derived.EURO_CORRECTED


@pytest.mark.parametrize(
    ("fuel", "electric", "co2", "inclusive", "want"),
    [
        ("07", True, 50, True, True),
        ("07", True, 50, False, False),
        ("08", True, 49, False, True),
        ("07", False, 30, True, False),  # no electric-motor indicator
        ("01", True, 30, True, False),  # not a hybrid fuel
        ("07", True, 51, True, False),
        ("07", True, 0xFFFF, True, False),  # CO2 unknown
    ],
)
def test_plug_in_hybrid(fuel: str, electric: bool, co2: int, inclusive: bool, want: bool) -> None:
    rec = _one(fuel=fuel, co2=co2, flags=Flag.ELECTRIC_MOTOR if electric else 0)
    assert bool(plug_in_hybrid(np.array([rec]), 50, inclusive)[0]) is want
    assert plug_in_hybrid_one(rec, 50, inclusive) is want


def test_vectorised_equals_one_item_on_a_grid() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    rec = empty(n)
    rec["category"] = rng.integers(0, codes.CATEGORY.size, n)
    rec["kind"] = rng.integers(0, codes.KIND.size, n)
    rec["fuel"] = rng.choice([0, *codes.FUEL.by_id], n)
    rec["euro"] = np.where(rng.random(n) < 0.5, 0, rng.integers(0, codes.EURO.size, n))
    rec["max_mass"] = np.where(rng.random(n) < 0.2, U32_UNKNOWN, rng.integers(500, 15000, n))
    rec["running_mass"] = np.where(rng.random(n) < 0.2, U32_UNKNOWN, rng.integers(900, 3000, n))
    rec["seats"] = rng.integers(1, 40, n)
    rec["first_registration"] = rng.integers(parse_day("1988-01-01"), parse_day("2024-01-01"), n)
    fix = np.where(rng.random(n) < 0.1, rng.integers(1, codes.EURO.size, n), 0).astype(np.uint8)
    vec = enrich(rec, fix)
    for i in range(n):
        one = enrich_one(rec[i], int(fix[i]))
        got = (int(vec.category[i]), int(vec.vclass[i]), int(vec.family[i]), int(vec.euro[i]),
               int(vec.derived[i]))  # fmt: skip
        assert got == tuple(one), i
