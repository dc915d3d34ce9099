"""Fleet statistics (`lez.fleet`): counts by cell on a day, small cells suppressed."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lez import codes, fleet
from lez.days import DAY_OPEN, parse_day
from lez.enrich import enrich
from lez.errors import InvalidRequest
from lez.vehicle import VehicleArray, empty

DAY = parse_day("2026-03-01")
PETROL, DIESEL = codes.FUEL.id_of("01"), codes.FUEL.id_of("02")
EURO_6, EURO_4 = codes.EURO.id_of("6"), codes.EURO.id_of("4")


def _fleet() -> VehicleArray:
    """12 petrol euro 6 cars in NIS 11002, 2 diesel euro 4 in 44021, 1 version not valid on DAY."""
    rec = empty(15)
    rec["valid_from"], rec["valid_to"] = DAY - 100, DAY_OPEN
    rec["fuel"], rec["euro"], rec["nis"] = PETROL, EURO_6, 11002
    rec["fuel"][12:14], rec["euro"][12:14], rec["nis"][12:14] = DIESEL, EURO_4, 44021
    rec["valid_to"][14] = DAY  # ended the day before
    return rec


def test_cells_and_suppression() -> None:
    got = fleet.count_fleet(
        _fleet(),
        DAY,
        [fleet.Dimension.FUEL, fleet.Dimension.EURO],
        min_cell_size=10,
        rounding_base=1,
    )
    assert got.cells == [fleet.FleetCell(values=(PETROL, EURO_6), vehicles=12)]
    assert (got.suppressed_cells, got.suppressed_vehicles) == (1, 2)
    at_the_minimum = fleet.count_fleet(
        _fleet(), DAY, [fleet.Dimension.FUEL], min_cell_size=12, rounding_base=1
    )
    assert [c.vehicles for c in at_the_minimum.cells] == [12]  # a cell of exactly the minimum


def test_grouping_order_and_nis_filter() -> None:
    got = fleet.count_fleet(
        _fleet(),
        DAY,
        [fleet.Dimension.EURO, fleet.Dimension.NIS],
        nis=[44021],
        min_cell_size=1,
        rounding_base=1,
    )
    assert got.cells == [fleet.FleetCell(values=(EURO_4, 44021), vehicles=2)]
    assert got.suppressed_cells == 0


def test_parts_add_up_to_the_whole() -> None:
    """A layered store is counted part by part (never merged in memory): a cell split over
    parts is one cell, counted once, and suppression applies to the sum."""
    whole = _fleet()
    dims = [fleet.Dimension.FUEL, fleet.Dimension.EURO]
    for cuts in ([5], [1, 13], [0, 0, 15], [7, 12, 14]):
        edges = [0, *cuts, len(whole)]
        parts = [whole[a:b] for a, b in itertools.pairwise(edges)]
        for minimum in (1, 10, 13):
            assert fleet.count_fleet(parts, DAY, dims, min_cell_size=minimum, rounding_base=1) == (
                fleet.count_fleet(whole, DAY, dims, min_cell_size=minimum, rounding_base=1)
            )
    assert fleet.count_fleet([], DAY, dims, min_cell_size=1, rounding_base=1).cells == []


def test_no_vehicle_on_the_day() -> None:
    got = fleet.count_fleet(
        _fleet(), DAY - 200, [fleet.Dimension.FUEL], min_cell_size=1, rounding_base=1
    )
    assert (got.cells, got.suppressed_cells, got.suppressed_vehicles) == ([], 0, 0)


def test_code_text() -> None:
    assert fleet.code_text(fleet.Dimension.FUEL, PETROL) == "01"
    assert fleet.code_text(fleet.Dimension.EURO, 250) == ""


@pytest.mark.parametrize("values", [[], [2, 2], [0], [9], [1, 0]])
def test_dimensions_refuses_bad_groupings(values: list[int]) -> None:
    with pytest.raises(InvalidRequest, match="distinct dimensions"):
        fleet.dimensions(values)


def test_dimensions_in_the_order_asked() -> None:
    assert fleet.dimensions([4, 1]) == [fleet.Dimension.CATEGORY, fleet.Dimension.NIS]


def test_counts_are_rounded_and_the_suppressed_remainder_too() -> None:
    got = fleet.count_fleet(
        _fleet(), DAY, [fleet.Dimension.FUEL], min_cell_size=10, rounding_base=10
    )
    assert [c.vehicles for c in got.cells] == [10]  # 12 vehicles, rounded
    assert (got.suppressed_cells, got.suppressed_vehicles) == (1, 0)  # 2 vehicles, rounded
    assert got.suppression == fleet.suppression_name(10, 10)
    assert fleet.round_count(np.array([0, 4, 5, 14, 15, 25]), 10).tolist() == [0, 0, 10, 10, 20, 30]


def test_the_euro_dimension_counts_the_effective_norm_and_how_many_were_derived() -> None:
    """DIV's norm where it has one, else the norm derived from the first-registration date."""
    rec = empty(30)
    rec["valid_from"], rec["valid_to"] = DAY - 100, DAY_OPEN
    rec["category"], rec["fuel"] = codes.CATEGORY.id_of("M1"), PETROL
    rec["first_registration"] = parse_day("2019-06-01")
    rec["euro"][:18] = EURO_6
    rec["euro"][18:] = codes.UNKNOWN  # 12 without a norm in DIV
    derived_norm = int(enrich(rec[18:19]).euro[0])
    assert derived_norm == EURO_6  # the table gives them euro 6 too: one cell
    got = fleet.count_fleet(rec, DAY, [fleet.Dimension.EURO], min_cell_size=1, rounding_base=1)
    assert got.cells == [fleet.FleetCell(values=(EURO_6,), vehicles=30, euro_derived=12)]
    by_fuel = fleet.count_fleet(rec, DAY, [fleet.Dimension.FUEL], min_cell_size=1, rounding_base=1)
    assert by_fuel.cells[0].euro_derived == 0  # counted when grouping by euro norm only
