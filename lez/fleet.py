"""Fleet statistics: how many vehicles of the register fall in each cell of a grouping.

Monitoring asks how the fleet on a day splits by municipality (NIS code), fuel, euro norm or
category, within a set of municipalities or over all. Counted over the vehicle versions valid on
the day, one per plate. The euro dimension counts the *effective* norm, as decisions use it: the
norm DIV holds, else the one derived from the first-registration date (`lez.enrich`); each
euro cell says how many of its vehicles had their norm derived.

No answer, and no difference of two answers, may single out a small group (docs/fleet.md):

- cells under `min_cell_size` vehicles are **suppressed**: not listed, counted together as
  suppressed cells and their vehicles;
- every published count (a cell's vehicles, its derived count, the suppressed vehicles) is
  **rounded** to a multiple of `rounding_base` (half up; `rounding_base >= min_cell_size`). A
  group an attacker isolates by differencing (a municipality's total minus the kept cells of a
  finer grouping; the same grouping over two sets of municipalities) then carries the rounding
  of each term, an uncertainty of at least `rounding_base` values, which covers every count a
  suppressed cell can have. tests/lez/test_fleet_attack.py tries every pair of answers.

`Dimension` mirrors the proto enum `lez.api.v1.Dimension` value for value (a test checks it);
the servicer only translates. Pure: no gRPC; the records come from a store snapshot.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lez import codes
from lez.decision import Derived
from lez.enrich import enrich
from lez.errors import InvalidRequest
from lez.vehicle import VehicleArray


class Dimension(enum.IntEnum):
    """A grouping field. Stable numbers."""

    NIS = 1  # NIS code of the holder's municipality
    FUEL = 2
    EURO = 3
    CATEGORY = 4

    @property
    def field(self) -> str:
        """The vehicle record field it groups by."""
        return _FIELDS[self]


_FIELDS = {
    Dimension.NIS: "nis",
    Dimension.FUEL: "fuel",
    Dimension.EURO: "euro",
    Dimension.CATEGORY: "category",
}
_CODE_LISTS = {
    Dimension.FUEL: codes.FUEL,
    Dimension.EURO: codes.EURO,
    Dimension.CATEGORY: codes.CATEGORY,
}


@dataclass(frozen=True, slots=True)
class FleetCell:
    """One published cell: a value per grouping dimension (in the order asked), its vehicles and,
    when grouped by euro norm, how many of them had their norm derived (both rounded)."""

    values: tuple[int, ...]
    vehicles: int
    euro_derived: int = 0


@dataclass(frozen=True, slots=True)
class FleetCount:
    """The published cells and what was suppressed below the minimum cell size (the number of
    cells exact, their vehicles rounded), and the protection applied, by name."""

    cells: list[FleetCell]
    suppressed_cells: int
    suppressed_vehicles: int
    suppression: str = ""


def suppression_name(min_cell_size: int, rounding_base: int) -> str:
    """The protection as the answer names it (`FleetStatsResponse.suppression`)."""
    return (
        f"small cells suppressed (under {min_cell_size}); counts rounded to multiples of "
        f"{rounding_base}"
    )


def round_count(count: npt.NDArray[np.int64], base: int) -> npt.NDArray[np.int64]:
    """Counts rounded half up to a multiple of `base` (base 1: unchanged)."""
    return ((count + base // 2) // base) * base


def dimensions(values: Sequence[int]) -> list[Dimension]:
    """The grouping asked for: one or more distinct known dimensions; InvalidRequest otherwise."""
    known = {d.value for d in Dimension}
    if not values or len(set(values)) != len(values) or not set(values) <= known:
        raise InvalidRequest("group_by needs one or more distinct dimensions", field="group_by")
    return [Dimension(v) for v in values]


def code_text(dimension: Dimension, value: int) -> str:
    """The DIV code of a fuel, euro or category id ("" when unknown); NIS codes have none."""
    found = _CODE_LISTS[dimension].by_id.get(int(value))
    return found.code if found is not None else ""


def count_fleet(
    records: VehicleArray | Iterable[VehicleArray],
    day: int,
    group_by: Sequence[Dimension],
    *,
    nis: Sequence[int] = (),
    min_cell_size: int,
    rounding_base: int,
) -> FleetCount:
    """Vehicles valid on `day` (within the `nis` municipalities when given), grouped by the
    dimensions; cells under `min_cell_size` are suppressed and every count is rounded to a
    multiple of `rounding_base` (1: exact counts, for tests of the counting itself).

    `records` is one version array or the register in parts (`Snapshot.vehicles_in_parts`):
    parts are counted one at a time and their cells added up, so a layered store is never
    merged into one copy of the whole register in memory (about 1.3 GB at 8,000,000 plates).
    """
    if rounding_base < 1:
        raise ValueError("rounding_base must be at least 1")
    parts = [records] if isinstance(records, np.ndarray) else records
    counted = [_cells_of(part, day, group_by, nis) for part in parts]
    cells, counts, derived = _add_up(counted, len(group_by))
    return published(cells, counts, min_cell_size, rounding_base, derived)


def published(
    cells: npt.NDArray[np.uint32],
    counts: npt.NDArray[np.int64],
    min_cell_size: int,
    rounding_base: int,
    derived: npt.NDArray[np.int64] | None = None,
) -> FleetCount:
    """The protection of every aggregate the service gives out (`FleetStats`, the summary of a
    warning campaign in `lez.campaign`): cells of at least `min_cell_size` vehicles are
    published, the others only counted together; every published count is rounded to a
    multiple of `rounding_base`."""
    if derived is None:
        derived = np.zeros(len(counts), dtype=np.int64)
    keep = counts >= min_cell_size
    vehicles = round_count(counts[keep], rounding_base)
    derived_kept = round_count(derived[keep], rounding_base)
    return FleetCount(
        cells=[
            FleetCell(values=tuple(int(v) for v in row), vehicles=int(n), euro_derived=int(d))
            for row, n, d in zip(cells[keep], vehicles, derived_kept, strict=True)
        ],
        suppressed_cells=int((~keep).sum()),
        suppressed_vehicles=int(round_count(counts[~keep].sum(keepdims=True), rounding_base)[0]),
        suppression=suppression_name(min_cell_size, rounding_base),
    )


def unique_rows(
    stacked: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """The distinct rows of an (n, dimensions) matrix and how often each occurs."""
    ones = np.ones(len(stacked), dtype=np.int64)
    cells, counts, _ = _sum_rows(stacked, ones, np.zeros_like(ones))
    return cells, counts


def add_up(
    cells: list[npt.NDArray[np.uint32]], counts: list[npt.NDArray[np.int64]], width: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """Cells counted in parts (`unique_rows` of each), their counts summed."""
    parts = [(c, n, np.zeros_like(n)) for c, n in zip(cells, counts, strict=True)]
    total_cells, total, _ = _add_up(parts, width)
    return total_cells, total


_Cells = tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], npt.NDArray[np.int64]]
"""Distinct cells (one row of values each), their vehicles, and of them how many had their
euro norm derived."""


def _cells_of(
    records: VehicleArray, day: int, group_by: Sequence[Dimension], nis: Sequence[int]
) -> _Cells:
    """The distinct cells of one part, their vehicle counts and derived-euro counts."""
    on_day = (records["valid_from"] <= day) & (day < records["valid_to"])
    if nis:
        on_day &= np.isin(records["nis"], np.array(list(nis), dtype=np.uint32))
    valid = records[on_day]
    columns = []
    derived = np.zeros(len(valid), dtype=np.int64)
    for d in group_by:
        if d == Dimension.EURO:  # the effective norm, as decisions read it
            enriched = enrich(valid)
            columns.append(enriched.euro.astype(np.uint32))
            derived = ((enriched.derived & np.uint8(Derived.EURO)) != 0).astype(np.int64)
        else:
            columns.append(valid[d.field].astype(np.uint32))
    stacked = np.stack(columns, axis=1) if columns else np.zeros((0, 0), dtype=np.uint32)
    return _sum_rows(stacked, np.ones(len(valid), dtype=np.int64), derived)


def _add_up(parts: list[_Cells], width: int) -> _Cells:
    """The cells of all parts with their counts summed (sorted like `np.unique`)."""
    if not parts:
        empty_counts = np.zeros(0, dtype=np.int64)
        return np.zeros((0, width), dtype=np.uint32), empty_counts, empty_counts
    return _sum_rows(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _sum_rows(
    rows: npt.NDArray[np.uint32], counts: npt.NDArray[np.int64], derived: npt.NDArray[np.int64]
) -> _Cells:
    """Distinct rows with the counts and derived counts of equal rows summed."""
    if not len(rows):
        return rows, counts[:0], derived[:0]
    distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    n = len(distinct)
    total = np.bincount(inverse, weights=counts, minlength=n).astype(np.int64)
    total_derived = np.bincount(inverse, weights=derived, minlength=n).astype(np.int64)
    return distinct, total, total_derived
