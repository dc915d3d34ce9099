"""DIV code lists: load, map, and never fail on an unknown code."""

from __future__ import annotations

import pytest

from lez import codes


@pytest.mark.parametrize(
    "lst", [codes.FUEL, codes.EURO, codes.CATEGORY, codes.KIND, codes.BODYWORK, codes.STATUS]
)
def test_ids_unique_and_nonzero(lst: codes.CodeList) -> None:
    ids = [c.id for c in lst.codes]
    assert len(ids) == len(set(ids))
    assert 0 not in ids
    assert len({c.code for c in lst.codes}) == len(ids)


def test_unknown_and_blank_codes_become_unknown() -> None:
    ids, unrecognised = codes.EURO.encode_many(["5a", " 5A ", "", "ZZ", "EEV"])
    assert ids.tolist() == [codes.EURO.id_of("5A")] * 2 + [0, 0, codes.EURO.id_of("EEV")]
    assert unrecognised.tolist() == [False, False, False, True, False]


def test_eev_compares_as_euro_v() -> None:
    eev = codes.EURO.id_of("EEV")
    assert codes.EURO_LEVEL[eev] == codes.EURO_LEVEL[codes.EURO.id_of("V")]
    assert codes.EURO_SCALE[codes.EURO.id_of("P3B")] == codes.EuroScale.STAGE


def test_fuel_families_follow_the_criteria() -> None:
    fam = codes.FUEL_FAMILY
    assert fam[codes.FUEL.id_of("02")] == codes.FuelFamily.DIESEL
    assert fam[codes.FUEL.id_of("03")] == codes.FuelFamily.PETROL  # LPG reads as petrol
    assert fam[codes.FUEL.id_of("08")] == codes.FuelFamily.DIESEL  # hybrids follow combustion
    assert fam[codes.FUEL.id_of("04")] == codes.FuelFamily.ELECTRIC
    assert codes.CATEGORY_GROUP[codes.CATEGORY.id_of("O2")] == codes.CategoryGroup.O


def test_labels_in_known_languages() -> None:
    kind = codes.KIND.by_code["AA"]
    assert kind.label("fr") == "berline"
    assert kind.label("nl") == "sedan"
