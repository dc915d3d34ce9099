"""Fleet statistics: how many vehicles of the register fall in each cell of a grouping.

Monitoring asks how the fleet on a day splits by municipality (NIS code), fuel, euro norm or
category, and only sees cells of at least `min_cell_size` vehicles: smaller cells are counted
as suppressed (cells and vehicles) so that no answer singles out a few vehicles. Counted over
the vehicle versions valid on the day, one per plate. `Dimension` mirrors the proto enum
`lez.api.v1.Dimension` value for value (a test checks it); the servicer only translates. Pure:
no gRPC; the records come from a store snapshot.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lez import codes
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
    """One published cell: a value per grouping dimension (in the order asked) and its count."""

    values: tuple[int, ...]
    vehicles: int


@dataclass(frozen=True, slots=True)
class FleetCount:
    """The published cells and what was suppressed below the minimum cell size."""

    cells: list[FleetCell]
    suppressed_cells: int
    suppressed_vehicles: int


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
) -> FleetCount:
    """Vehicles valid on `day` (within the `nis` municipalities when given), grouped by the
    dimensions; cells under `min_cell_size` are suppressed.

    `records` is one version array or the register in parts (`Snapshot.vehicles_in_parts`):
    parts are counted one at a time and their cells added up, so a layered store is never
    merged into one copy of the whole register in memory (about 1.3 GB at 8,000,000 plates).
    """
    parts = [records] if isinstance(records, np.ndarray) else records
    part_cells: list[npt.NDArray[np.uint32]] = []
    part_counts: list[npt.NDArray[np.int64]] = []
    for part in parts:
        cells, counts = _cells_of(part, day, group_by, nis)
        part_cells.append(cells)
        part_counts.append(counts)
    cells, counts = add_up(part_cells, part_counts, len(group_by))
    return published(cells, counts, min_cell_size)


def published(
    cells: npt.NDArray[np.uint32], counts: npt.NDArray[np.int64], min_cell_size: int
) -> FleetCount:
    """The small-cell rule: cells of at least `min_cell_size` vehicles are published, the
    others only counted (cells and vehicles). Every aggregate the service gives out goes
    through here (`FleetStats`, the summary of a warning campaign in `lez.campaign`)."""
    keep = counts >= min_cell_size
    return FleetCount(
        cells=[
            FleetCell(values=tuple(int(v) for v in row), vehicles=int(count))
            for row, count in zip(cells[keep], counts[keep], strict=True)
        ],
        suppressed_cells=int((~keep).sum()),
        suppressed_vehicles=int(counts[~keep].sum()),
    )


def _cells_of(
    records: VehicleArray, day: int, group_by: Sequence[Dimension], nis: Sequence[int]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """The distinct cells of one part and their vehicle counts."""
    on_day = (records["valid_from"] <= day) & (day < records["valid_to"])
    if nis:
        on_day &= np.isin(records["nis"], np.array(list(nis), dtype=np.uint32))
    stacked = np.stack([records[d.field][on_day].astype(np.uint32) for d in group_by], axis=1)
    return unique_rows(stacked)


def add_up(
    cells: list[npt.NDArray[np.uint32]], counts: list[npt.NDArray[np.int64]], width: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """The cells of all parts with their counts summed (sorted like `np.unique`)."""
    if not cells:
        return np.zeros((0, width), dtype=np.uint32), np.zeros(0, dtype=np.int64)
    every = np.concatenate(cells)
    weights = np.concatenate(counts)
    if not len(every):
        return every, weights
    distinct, inverse = np.unique(every, axis=0, return_inverse=True)
    return distinct, np.bincount(inverse.ravel(), weights=weights, minlength=len(distinct)).astype(
        np.int64
    )


def unique_rows(
    stacked: npt.NDArray[np.uint32],
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """The distinct rows of an (n, dimensions) matrix and how often each occurs."""
    if not len(stacked):
        return stacked, np.zeros(0, dtype=np.int64)
    cells, counts = np.unique(stacked, axis=0, return_counts=True)
    return cells, counts.astype(np.int64)
