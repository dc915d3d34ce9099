"""Warning campaigns: the vehicles of some municipalities that will lose access to a zone.

Before a zone or a stricter step starts, a city warns the residents whose vehicle will no
longer be allowed (docs/campaigns.md; the purpose "communication" of the DIV-VMM protocol,
docs/sources.md#div-vmm-protocol). A `CampaignQuestion` names the zone, the rule revision, the
reference day (today, by default), the future date and the holders' municipalities (NIS codes).
A vehicle is listed when its register version valid on the reference day has its holder in one
of those municipalities, and the engine (`lez.rules.evaluate`) answers:

- ALLOWED on the reference day, with the registrations valid that day, and
- NOT_ALLOWED on the future date, for the same vehicle data (the register as it is on the
  reference day: there is no register of the future) with the registrations valid on the date,
  so an exemption that covers the date keeps a vehicle off the list.

Only NOT_ALLOWED counts as losing access: a vehicle whose data cannot decide on the date
(INSUFFICIENT_DATA) is not known to be refused. Each listed vehicle carries the reason it is
refused on the date and the first day it loses access: the first day after the reference day
on which the engine no longer allows it. The engine is asked again only on the days its answer
could change: the day after its own allowed-until (the end of the step or registration that
allows the vehicle), or an earlier day on which one of the vehicle's registrations starts or
ends or a registration grant of the zone does; until it refuses, or the date. No rule is
restated here.

The register is read in parts (`Snapshot.vehicles_in_parts`), one at a time, so memory stays
bounded; `losing_in_part` answers one part and `CampaignTally` adds the parts up for the
closing summary: counts by category, fuel and euro norm under the small-cell rule of
`lez.fleet.published`. Pure: no gRPC, no wire contract; keys only, never a plate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from lez import fleet
from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.decision import BatchInput, DecisionColumns, Outcome
from lez.errors import InvalidRequest
from lez.keys import KEY_BYTES
from lez.rules import Revision, evaluate
from lez.store.columns import KeyedRecords, take_rows
from lez.vehicle import VehicleArray

NIS_MIN: Final = 1
NIS_MAX: Final = 99_999
"""NIS codes are Statbel's five-digit municipality codes."""
CELL_DIMENSIONS: Final = (fleet.Dimension.CATEGORY, fleet.Dimension.FUEL, fleet.Dimension.EURO)
"""The grouping of the summary's cells, in this order."""

RegistrationsOf = Callable[
    [npt.NDArray[np.uint8]], tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]
]
"""A snapshot's `registrations_of`: for (n, 16) keys, (query index per row, registration rows)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignQuestion:
    """Who, among the holders of some municipalities, loses access to a zone by a date."""

    revision: Revision
    zone_id: int
    reference_day: int  # the vehicles must be allowed on this day
    date: int  # ... and not allowed on this one (after the reference day)
    nis: npt.NDArray[np.uint32]  # the holders' municipalities, sorted, distinct


def campaign_question(
    revision: Revision,
    zone_id: int,
    *,
    reference_day: int,
    date: int,
    nis: Sequence[int],
    max_nis: int,
) -> CampaignQuestion:
    """The question, once its parts are acceptable; InvalidRequest naming the field otherwise."""
    if date <= reference_day:
        raise InvalidRequest(
            "date must come after the reference day (the vehicles allowed then and refused on "
            "the date are listed)",
            field="date",
        )
    if not nis:
        raise InvalidRequest(
            "give the NIS codes of the municipalities whose residents are warned", field="nis"
        )
    if len(nis) > max_nis:
        raise InvalidRequest(f"{len(nis)} NIS codes; at most {max_nis}", field="nis")
    codes = np.asarray(list(nis), dtype=np.int64)
    bad = (codes < NIS_MIN) | (codes > NIS_MAX)
    if bad.any():
        raise InvalidRequest(
            f"NIS code {int(codes[bad][0])} is not a five-digit municipality code", field="nis"
        )
    return CampaignQuestion(
        revision=revision,
        zone_id=zone_id,
        reference_day=reference_day,
        date=date,
        nis=np.unique(codes).astype(np.uint32),
    )


@dataclass(frozen=True, slots=True)
class LosingVehicles:
    """The vehicles of one part of the register that lose access, as aligned columns."""

    keys: npt.NDArray[np.uint8]  # (m, 16) pseudonymised keys
    reason: npt.NDArray[np.uint8]  # why each is refused on the date (lez.decision.Reason)
    first_day_lost: npt.NDArray[np.int32]  # the first day it is no longer allowed
    category: npt.NDArray[np.uint8]  # effective category id on the date (after derivation)
    fuel: npt.NDArray[np.uint8]  # fuel id
    euro: npt.NDArray[np.uint8]  # effective euro id on the date (after derivation)
    examined: int  # vehicles of the municipalities on the reference day in this part

    def __len__(self) -> int:
        return len(self.reason)

    def rows(self, start: int, stop: int) -> LosingVehicles:
        """Rows [start, stop) (views)."""
        return LosingVehicles(
            keys=self.keys[start:stop],
            reason=self.reason[start:stop],
            first_day_lost=self.first_day_lost[start:stop],
            category=self.category[start:stop],
            fuel=self.fuel[start:stop],
            euro=self.euro[start:stop],
            examined=0,
        )


def losing_in_part(
    part: KeyedRecords, registrations_of: RegistrationsOf, question: CampaignQuestion
) -> LosingVehicles:
    """The vehicles of one part of the register (key columns and their versions) that are
    allowed on the reference day and refused on the date, in key order."""
    records = part.records
    ref = question.reference_day
    resident = (records["valid_from"] <= ref) & (ref < records["valid_to"])
    resident &= np.isin(records["nis"], question.nis)
    rows = np.flatnonzero(resident)
    # the version rows of one key are contiguous: the key of a row is the last offset <= it
    key_of_row = np.searchsorted(part.offsets.astype(np.int64), rows, side="right") - 1
    keys = _key_matrix(part, key_of_row)
    vehicles = take_rows(records, rows)
    reg_query, reg_rows = registrations_of(keys)

    now = _decide(question, vehicles, np.full(len(rows), ref, np.int32), reg_query, reg_rows)
    allowed = np.flatnonzero(now.outcome == Outcome.ALLOWED)
    reg_query, reg_rows = _regs_of(allowed, len(rows), reg_query, reg_rows)
    vehicles = vehicles[allowed]
    on_date = np.full(len(allowed), question.date, np.int32)
    then = _decide(question, vehicles, on_date, reg_query, reg_rows)
    lost = np.flatnonzero(then.outcome == Outcome.NOT_ALLOWED)
    reg_query, reg_rows = _regs_of(lost, len(allowed), reg_query, reg_rows)
    vehicles = vehicles[lost]
    first = _first_days_lost(
        question, vehicles, reg_query, reg_rows, now.allowed_until[allowed][lost]
    )
    return LosingVehicles(
        keys=keys[allowed][lost],
        reason=then.reason[lost],
        first_day_lost=first,
        category=then.category[lost],
        fuel=np.ascontiguousarray(vehicles["fuel"]),
        euro=then.euro[lost],
        examined=len(rows),
    )


def _key_matrix(part: KeyedRecords, index: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    """The (m, 16) keys of rows `index` of a table (the big-endian halves side by side)."""
    halves = np.empty((len(index), 2), dtype=">u8")
    halves[:, 0] = part.key_hi[index]
    halves[:, 1] = part.key_lo[index]
    return halves.view(np.uint8).reshape(-1, KEY_BYTES)


def _regs_of(
    items: npt.NDArray[np.intp],
    n: int,
    reg_query: npt.NDArray[np.int64],
    reg_rows: npt.NDArray[np.void],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]:
    """The registration rows of `items` (indices among `n` items), renumbered to them."""
    if not len(reg_query):
        return reg_query, reg_rows
    position = np.full(n, -1, dtype=np.int64)
    position[items] = np.arange(len(items))
    kept = position[reg_query]
    keep = kept >= 0
    return kept[keep], reg_rows[keep]


def _decide(
    question: CampaignQuestion,
    vehicles: VehicleArray,
    days: npt.NDArray[np.int32],
    reg_query: npt.NDArray[np.int64],
    reg_rows: npt.NDArray[np.void],
) -> DecisionColumns:
    """The engine's answers for Belgian vehicles with a register version, each on its day."""
    n = len(vehicles)
    yes = np.ones(n, dtype=np.bool_)
    return evaluate(
        question.revision,
        question.zone_id,
        BatchInput(
            records=vehicles,
            found=yes,
            known=yes,
            days=days,
            belgian=yes,
            dutch=np.zeros(n, dtype=np.bool_),
            invalid=np.zeros(n, dtype=np.uint8),
            reg_query=reg_query,
            reg_rows=reg_rows,
        ),
    )


def _first_days_lost(
    question: CampaignQuestion,
    vehicles: VehicleArray,
    reg_query: npt.NDArray[np.int64],
    reg_rows: npt.NDArray[np.void],
    allowed_until: npt.NDArray[np.int32],
) -> npt.NDArray[np.int32]:
    """The first day after the reference day each vehicle (refused on the date) is no longer
    allowed: the engine is asked again on the next day its answer could change, until it
    refuses or the date is reached (see `_next_change`)."""
    n = len(vehicles)
    day = np.full(n, question.reference_day, dtype=np.int32)
    first = _next_change(question, day, allowed_until, reg_query, reg_rows)
    pending = np.flatnonzero(first < question.date)
    while len(pending):  # each round moves every pending vehicle strictly later
        q, rows = _regs_of(pending, n, reg_query, reg_rows)
        again = _decide(question, vehicles[pending], first[pending], q, rows)
        still = np.flatnonzero(again.outcome == Outcome.ALLOWED)
        q, rows = _regs_of(still, len(pending), q, rows)
        moved = pending[still]
        first[moved] = _next_change(question, first[moved], again.allowed_until[still], q, rows)
        pending = moved[first[moved] < question.date]
    return first


def _next_change(
    question: CampaignQuestion,
    day: npt.NDArray[np.int32],
    allowed_until: npt.NDArray[np.int32],
    reg_query: npt.NDArray[np.int64],
    reg_rows: npt.NDArray[np.void],
) -> npt.NDArray[np.int32]:
    """For vehicles allowed on `day` until `allowed_until` (the engine's answer), the next day
    the answer could change, the date at the latest: the day after the allowed-until, or an
    earlier day on which one of the vehicle's registrations starts or ends (a euro correction
    that ends changes the euro norm the allowed-until was computed with), or a registration
    grant of the zone starts or ends."""
    date = question.date
    until = allowed_until.astype(np.int64)
    open_ended = (allowed_until == DAY_OPEN) | (allowed_until == DAY_UNKNOWN)
    upcoming = np.where(open_ended, date, until + 1)
    if len(reg_query):
        for edge in (reg_rows["valid_from"], reg_rows["valid_to"]):
            edge = edge.astype(np.int64)
            later = edge > day[reg_query]
            np.minimum.at(upcoming, reg_query[later], edge[later])
    grants = question.revision.compiled(question.zone_id).grants
    edges = {g.start for g in grants} | {g.end + 1 for g in grants if g.end < DAY_OPEN}
    if edges:
        sorted_edges = np.array(sorted(edges), dtype=np.int64)
        at = np.searchsorted(sorted_edges, day, side="right")
        has = at < len(sorted_edges)
        upcoming[has] = np.minimum(upcoming[has], sorted_edges[at[has]])
    return np.minimum(upcoming, date).astype(np.int32)


@dataclass(slots=True)
class CampaignTally:
    """The parts answered so far, added up for the closing summary."""

    examined: int = 0  # resident vehicles looked at
    listed: int = 0  # vehicles listed
    _cells: list[npt.NDArray[np.uint32]] = field(default_factory=list)
    _counts: list[npt.NDArray[np.int64]] = field(default_factory=list)

    def add(self, part: LosingVehicles) -> None:
        self.examined += part.examined
        self.listed += len(part)
        stacked = np.stack([part.category, part.fuel, part.euro], axis=1).astype(np.uint32)
        cells, counts = fleet.unique_rows(stacked)
        self._cells.append(cells)
        self._counts.append(counts)

    def summary(self, min_cell_size: int) -> fleet.FleetCount:
        """Vehicles listed by (category, fuel, euro) id, small cells suppressed as in
        FleetStats (`lez.fleet.published`). Counts are not rounded: every listed key comes
        with its own category, fuel and euro id, so the caller can count them exactly anyway;
        rounding would hide nothing and only make the summary disagree with the list."""
        cells, counts = fleet.add_up(self._cells, self._counts, len(CELL_DIMENSIONS))
        return fleet.published(cells, counts, min_cell_size, rounding_base=1)
