"""Evaluation: the answer for (plate, day X, zone), vectorised over a chunk and one by one.

Order of the answer for one item (docs/rules.md#order-of-evaluation; docs/sources.md: DIV-VMM
protocol annex par. 16-18 and 22-24):

1. INVALID: the item could not be read (`batch.invalid` holds the reason).
2. COMBINATION_MISMATCH: public checker, Belgian plate with a version on day X whose
   first-registration date differs from the claimed one or is unknown (the combination cannot
   be confirmed, so nothing about the vehicle is disclosed).
3. ALLOWED / ZONE_NOT_IN_FORCE before the zone's start; allowed until the day before it.
4. Registrations that apply (zone, or zone 0 and the zone's region; day inside their validity;
   kind granted by the revision there and then; the grant's conditions hold on known data):
   the *grounds*. A euro-norm correction is not a ground: it replaces the euro norm (the one
   with the latest start wins, then the highest euro id).
5. Belgian plate with a version on day X: the criteria (lez.rules.compile). If they allow, the
   reason is theirs; else a ground allows (reason of the highest-ranked ground); else their
   answer. `allowed_until` is the latest end of every ground that holds on day X (they all
   contain day X, so together they form one run of allowed days).
6. Belgian plate without a version on day X: a ground allows; else UNKNOWN_PLATE with
   NO_VERSION_ON_DAY (known plate) or NOT_IN_REGISTER.
7. Foreign plate: a ground allows (a foreign-vehicle registration is one); else Dutch plates
   where the revision says the RDW register is used: UNKNOWN_PLATE /
   DUTCH_PLATE_CHECKED_ELSEWHERE (we do not hold that register and do not guess); else
   NOT_ALLOWED / FOREIGN_NOT_REGISTERED where registration is required; else UNKNOWN_PLATE.

There are two implementations, each kept for a figure (`python -m bench.single_paths`, one core):

- `evaluate`, vectorised over a chunk: about 0.05 us per item on a 100,000-item chunk (15-18M
  items/s in `bench.engine_bench`), but 50-140 us for a chunk of one item (array set-up).
- `decide_one`, scalar over the same compiled tables, for single checks: 1.3-6.5 us per item on
  a quiet machine (5.4 us for a Belgian vehicle, 6.5 us with registrations, 1.5 us foreign or
  unknown), 10-60 times less than `evaluate` on a chunk of one in every run.

Both read the zone's compiled tables (`lez.rules.compile`); a hypothesis property and the golden
cases hold them equal to each other and to a reference that reads the revision's rows directly
(`tests/support/reference_rules.py`).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.decision import BatchInput, DecisionColumns, Derived, ItemInput, Outcome, Reason
from lez.enrich import (
    Enriched,
    VehicleClass,
    enrich,
    enrich_one,
    plug_in_hybrid,
    plug_in_hybrid_one,
)
from lez.registrations import REGISTRATION_DTYPE, RegistrationArray, RegistrationKind
from lez.rules.catalog import Revision
from lez.rules.compile import NO_RANK, RANK_REASON, STRIDES, CompiledZone
from lez.vehicle import U16_UNKNOWN, VehicleArray

_CORRECTION: Final = int(RegistrationKind.EURO_CORRECTION)
_FOREIGN: Final = int(RegistrationKind.FOREIGN_VEHICLE)
_U8 = np.uint8
_REG_FIELDS: Final = REGISTRATION_DTYPE.names or ()
_REG_FROM, _REG_TO, _REG_ZONE, _REG_KIND, _REG_REGION, _REG_EURO = (
    _REG_FIELDS.index(name) for name in ("valid_from", "valid_to", "zone", "kind", "region", "euro")
)


class Verdict(NamedTuple):
    """The answer for one item (`decide_one`); one row of `DecisionColumns`."""

    outcome: int
    reason: int
    allowed_until: int
    euro: int
    category: int
    derived: int


# ---- a chunk: vectorised, one step per function --------------------------------------------


@dataclass(frozen=True, slots=True)
class _LiveRegistrations:
    """The registration rows that apply to the zone on their item's day."""

    rows: RegistrationArray
    item: npt.NDArray[np.int64]  # the item each row belongs to
    day: npt.NDArray[np.int32]  # that item's day


@dataclass(frozen=True, slots=True)
class _Grounds:
    """Items allowed by a registration: their latest allowed day and best-ranked kind."""

    items: npt.NDArray[np.int64]  # sorted, unique
    until: npt.NDArray[np.int32]  # by item of the chunk (DAY_UNKNOWN where none)
    rank: npt.NDArray[np.uint8]  # by item of the chunk (NO_RANK where none)


def _registration_end(valid_to: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Inclusive last day of registrations (`valid_to` is exclusive; DAY_OPEN stays open)."""
    return np.where(valid_to == DAY_OPEN, DAY_OPEN, valid_to.astype(np.int64) - 1).astype(np.int32)


def _live_registrations(
    tables: CompiledZone, batch: BatchInput, days: npt.NDArray[np.int32]
) -> _LiveRegistrations:
    rows, item = batch.reg_rows, np.asarray(batch.reg_query, dtype=np.int64)
    if not len(rows):
        return _LiveRegistrations(rows, item, np.zeros(0, dtype=np.int32))
    zone = tables.zone
    day = days[item]
    zone_ok = (rows["zone"] == zone.id) | ((rows["zone"] == 0) & (rows["region"] == zone.region))
    live = zone_ok & (rows["valid_from"] <= day) & (day < rows["valid_to"])
    return _LiveRegistrations(rows[live], item[live], day[live])


def _euro_corrections(live: _LiveRegistrations, n: int) -> npt.NDArray[np.uint8] | None:
    """The corrected euro id of each item (0: none), or None when no item has one. The latest
    start wins, then the highest euro id."""
    if not len(live.rows):
        return None
    fix = np.flatnonzero(live.rows["kind"] == _CORRECTION)
    if not len(fix):
        return None
    low = np.iinfo(np.int64).min
    best = np.full(n, low, dtype=np.int64)
    score = (live.rows["valid_from"][fix].astype(np.int64) << 8) | live.rows["euro"][fix]
    np.maximum.at(best, live.item[fix], score)
    correction = np.zeros(n, dtype=np.uint8)
    has = np.flatnonzero(best != low)
    correction[has] = (best[has] & 0xFF).astype(np.uint8)
    return correction


def _grounds(
    tables: CompiledZone,
    live: _LiveRegistrations,
    vclass: npt.NDArray[np.uint8],
    records: VehicleArray,
    vehicle: npt.NDArray[np.bool_],
    belgian: npt.NDArray[np.bool_],
) -> _Grounds | None:
    """The grants of the zone that registrations earn on their item's day."""
    if not len(live.rows) or not tables.grants:
        return None
    n = len(vclass)
    rows, item, day = live.rows, live.item, live.day
    kind = rows["kind"]
    until = np.full(n, DAY_UNKNOWN, dtype=np.int32)
    rank = np.full(n, NO_RANK, dtype=np.uint8)
    power = records["power_kw"][item]
    power[~vehicle[item]] = U16_UNKNOWN
    end = _registration_end(rows["valid_to"])
    cls = vclass[item]
    usable = ~((kind == _FOREIGN) & belgian[item])
    hits = []
    for g in tables.grants:
        sel = usable & (kind == g.kind) & (g.start <= day) & (day <= g.end) & g.class_ok[cls]
        if g.power_below_kw is not None:
            sel &= (power == U16_UNKNOWN) | (power < g.power_below_kw)
        hit = np.flatnonzero(sel)
        if len(hit):
            np.maximum.at(until, item[hit], np.minimum(end[hit], g.end).astype(np.int32))
            np.minimum.at(rank, item[hit], _U8(g.rank))
            hits.append(item[hit])
    if not hits:
        return None
    return _Grounds(items=np.unique(np.concatenate(hits)), until=until, rank=rank)


def _criteria(
    tables: CompiledZone,
    days: npt.NDArray[np.int32],
    enriched: Enriched,
    records: VehicleArray,
    vehicle: npt.NDArray[np.bool_],
) -> tuple[
    npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int32], npt.NDArray[np.int32]
]:
    """Outcome, reason and allowed-until from the tables (one searchsorted, one gather), and
    each item's period."""
    idx = np.searchsorted(tables.bounds, days, side="right").astype(np.int32)
    idx -= 1
    period = idx.copy()
    idx *= STRIDES[0]
    for values, stride in (
        (enriched.vclass, STRIDES[1]),
        (enriched.family, STRIDES[2]),
        (enriched.euro, STRIDES[3]),
    ):
        part = values.astype(np.int32)
        part *= stride
        idx += part
    if tables.phev_limit is not None:
        # Only items on a day where some plug-in hybrid rule is in force need the detection.
        sub = np.flatnonzero(tables.phev_periods[period] & vehicle)
        if len(sub):
            idx[sub] += plug_in_hybrid(records, *tables.phev_limit, rows=sub)
    return tables.outcome[idx], tables.reason[idx], tables.until[idx], period


def _apply_grounds(
    grounds: _Grounds,
    vehicle: npt.NDArray[np.bool_],
    outcome: npt.NDArray[np.uint8],
    reason: npt.NDArray[np.uint8],
    until: npt.NDArray[np.int32],
) -> None:
    """A ground allows: the criteria's reason where they allow too (until the later end), the
    ground's reason otherwise."""
    items = grounds.items
    ground_until, ground_reason = grounds.until[items], RANK_REASON[grounds.rank[items]]
    by_criteria = vehicle[items] & (outcome[items] == Outcome.ALLOWED)
    until[items] = np.where(by_criteria, np.maximum(until[items], ground_until), ground_until)
    reason[items] = np.where(by_criteria, reason[items], ground_reason)
    outcome[items] = Outcome.ALLOWED


def _answer_without_vehicle(
    tables: CompiledZone,
    batch: BatchInput,
    unmatched: npt.NDArray[np.intp],
    period: npt.NDArray[np.int32],
    outcome: npt.NDArray[np.uint8],
    reason: npt.NDArray[np.uint8],
    until: npt.NDArray[np.int32],
) -> None:
    """Items without a vehicle on their day and without a ground: unknown, checked elsewhere,
    or refused where foreign vehicles must register."""
    bel = np.asarray(batch.belgian, dtype=np.bool_)[unmatched]
    known = np.asarray(batch.known)[unmatched]
    item_period = period[unmatched]
    dutch = ~bel & np.asarray(batch.dutch)[unmatched] & tables.dutch_elsewhere[item_period]
    required = ~bel & tables.foreign_required[item_period] & ~dutch
    outcome[unmatched] = np.where(
        bel | ~required, Outcome.UNKNOWN_PLATE, Outcome.NOT_ALLOWED
    ).astype(np.uint8)
    reason[unmatched] = np.select(
        [bel & known, bel, dutch, required],
        [
            Reason.NO_VERSION_ON_DAY,
            Reason.NOT_IN_REGISTER,
            Reason.DUTCH_PLATE_CHECKED_ELSEWHERE,
            Reason.FOREIGN_NOT_REGISTERED,
        ],
        Reason.NOT_IN_REGISTER,
    ).astype(np.uint8)
    until[unmatched] = DAY_UNKNOWN


def _without_ground(
    no_vehicle: npt.NDArray[np.intp], grounds: _Grounds | None
) -> npt.NDArray[np.intp]:
    if grounds is None or not len(no_vehicle):
        return no_vehicle
    return no_vehicle[~np.isin(no_vehicle, grounds.items, assume_unique=True)]


def _override(
    columns: DecisionColumns,
    rows: npt.NDArray[np.intp],
    outcome: int,
    reason: int | npt.NDArray[np.uint8],
    until: int,
    *,
    keep_vehicle_data: bool = False,
) -> None:
    """Set the answer of some items, the vehicle data too unless `keep_vehicle_data`."""
    columns.outcome[rows] = outcome
    columns.reason[rows] = reason
    columns.allowed_until[rows] = until
    if not keep_vehicle_data:
        columns.euro[rows], columns.category[rows], columns.derived[rows] = 0, 0, 0


def _final_overrides(
    tables: CompiledZone,
    batch: BatchInput,
    days: npt.NDArray[np.int32],
    vehicle: npt.NDArray[np.bool_],
    columns: DecisionColumns,
) -> None:
    """The answers that win over everything else, weakest first: zone not yet in force, a
    public checker's claim that does not match, an unreadable item."""
    start = tables.zone.start
    if len(days) and int(days.min()) < start:
        early = np.flatnonzero(days < start)
        _override(
            columns, early, Outcome.ALLOWED, Reason.ZONE_NOT_IN_FORCE, start - 1,
            keep_vehicle_data=True,
        )  # fmt: skip
    if batch.claimed_first_registration is not None:
        claimed = np.asarray(batch.claimed_first_registration, dtype=np.int32)
        first = batch.records["first_registration"]
        mismatch = np.flatnonzero(vehicle & (claimed != DAY_UNKNOWN) & (first != claimed))
        _override(
            columns, mismatch, Outcome.COMBINATION_MISMATCH, Reason.FIRST_REGISTRATION_MISMATCH,
            DAY_UNKNOWN,
        )  # fmt: skip
    invalid = np.asarray(batch.invalid, dtype=np.uint8)
    if invalid.any():
        bad = np.flatnonzero(invalid)
        _override(columns, bad, Outcome.INVALID, invalid[bad], DAY_UNKNOWN)


def evaluate(revision: Revision, zone_id: int, batch: BatchInput) -> DecisionColumns:
    """Decisions for a chunk of items of one zone (raises UnknownZone).

    Built for throughput: one `searchsorted` and one gather from the compiled tables for every
    item; the rarer cases (registrations, no vehicle, zone not in force, invalid items) are
    handled on index subsets, never with a Python loop per item.
    """
    tables = revision.compiled(zone_id)
    days = np.asarray(batch.days, dtype=np.int32)
    records = batch.records
    belgian = np.asarray(batch.belgian, dtype=np.bool_)
    vehicle = np.asarray(batch.found, dtype=np.bool_) & belgian
    no_vehicle = np.flatnonzero(~vehicle)

    live = _live_registrations(tables, batch, days)
    enriched = enrich(records, _euro_corrections(live, len(days)))
    enriched.vclass[no_vehicle] = VehicleClass.UNKNOWN
    (
        enriched.euro[no_vehicle],
        enriched.category[no_vehicle],
        enriched.derived[no_vehicle],
    ) = 0, 0, 0
    grounds = _grounds(tables, live, enriched.vclass, records, vehicle, belgian)

    outcome, reason, until, period = _criteria(tables, days, enriched, records, vehicle)
    if grounds is not None:
        _apply_grounds(grounds, vehicle, outcome, reason, until)
    unmatched = _without_ground(no_vehicle, grounds)
    if len(unmatched):
        _answer_without_vehicle(tables, batch, unmatched, period, outcome, reason, until)
    columns = DecisionColumns(
        outcome=outcome,
        reason=reason,
        allowed_until=until,
        euro=enriched.euro,
        category=enriched.category,
        derived=enriched.derived,
    )
    _final_overrides(tables, batch, days, vehicle, columns)
    if tables.phev_limit is not None:
        columns.derived[columns.reason == Reason.PLUG_IN_HYBRID_EXEMPT] |= _U8(
            Derived.PLUG_IN_HYBRID
        )
    return columns


# ---- one item: scalar, for single checks ---------------------------------------------------


def _live_rows(
    tables: CompiledZone, registrations: RegistrationArray, day: int
) -> list[tuple[int, int, int, int]]:
    """(kind, valid_from, valid_to, euro) of the registration rows that apply on `day`."""
    zone = tables.zone
    live = []
    for row in registrations.tolist():  # plain tuples: field access on np.void is slow
        kind, row_zone, region, valid_from, valid_to, euro = (
            row[_REG_KIND], row[_REG_ZONE], row[_REG_REGION], row[_REG_FROM], row[_REG_TO],
            row[_REG_EURO],
        )  # fmt: skip
        zone_ok = row_zone == zone.id or (row_zone == 0 and region == zone.region)
        if zone_ok and valid_from <= day < valid_to:
            live.append((kind, valid_from, valid_to, euro))
    return live


def _ground_one(
    tables: CompiledZone,
    live: list[tuple[int, int, int, int]],
    vclass: int,
    power: int,
    belgian: bool,
    day: int,
) -> tuple[int, int]:
    """(latest allowed day, best rank) of the grants the live registrations earn; NO_RANK
    when none."""
    until, rank = DAY_UNKNOWN, NO_RANK
    for kind, _, valid_to, _ in live:
        if kind == _CORRECTION or (kind == _FOREIGN and belgian):
            continue
        end = DAY_OPEN if valid_to == DAY_OPEN else valid_to - 1
        for g in tables.grants:
            if g.kind != kind or not g.start <= day <= g.end or not g.class_ok[vclass]:
                continue
            limit = g.power_below_kw
            if limit is not None and power != U16_UNKNOWN and power >= limit:
                continue
            until = max(until, min(end, g.end))
            rank = min(rank, g.rank)
    return until, rank


def _without_vehicle_one(
    tables: CompiledZone, period: int, known: bool, belgian: bool, dutch: bool
) -> Verdict:
    if belgian:
        why = Reason.NO_VERSION_ON_DAY if known else Reason.NOT_IN_REGISTER
        return Verdict(Outcome.UNKNOWN_PLATE, why, DAY_UNKNOWN, 0, 0, 0)
    if dutch and tables.dutch_elsewhere[period]:
        return Verdict(
            Outcome.UNKNOWN_PLATE, Reason.DUTCH_PLATE_CHECKED_ELSEWHERE, DAY_UNKNOWN, 0, 0, 0
        )
    if tables.foreign_required[period]:
        return Verdict(Outcome.NOT_ALLOWED, Reason.FOREIGN_NOT_REGISTERED, DAY_UNKNOWN, 0, 0, 0)
    return Verdict(Outcome.UNKNOWN_PLATE, Reason.NOT_IN_REGISTER, DAY_UNKNOWN, 0, 0, 0)


def _criteria_one(
    tables: CompiledZone, period: int, record: np.void, vclass: int, family: int, euro: int
) -> tuple[int, int, int]:
    """(outcome, reason, allowed_until) from the tables with scalar index arithmetic."""
    idx = period * STRIDES[0] + vclass * STRIDES[1] + family * STRIDES[2] + euro * STRIDES[3]
    if tables.phev_limit is not None and tables.phev_periods[period]:
        idx += int(plug_in_hybrid_one(record, *tables.phev_limit))
    return int(tables.outcome[idx]), int(tables.reason[idx]), int(tables.until[idx])


def decide_one(revision: Revision, zone_id: int, item: ItemInput) -> Verdict:
    """The answer for one item, for single checks: the answer `evaluate` gives that item.

    Reads the zone's compiled tables with scalar arithmetic; no arrays are set up.
    """
    record, day, belgian, invalid = item.record, item.day, item.belgian, item.invalid
    registrations, claimed_first_registration = item.registrations, item.claimed_first_registration
    if invalid:
        return Verdict(Outcome.INVALID, invalid, DAY_UNKNOWN, 0, 0, 0)
    tables = revision.compiled(zone_id)
    vehicle = record if (record is not None and belgian) else None
    if (
        vehicle is not None
        and claimed_first_registration is not None
        and claimed_first_registration != DAY_UNKNOWN
        and int(vehicle["first_registration"]) != claimed_first_registration
    ):
        return Verdict(
            Outcome.COMBINATION_MISMATCH, Reason.FIRST_REGISTRATION_MISMATCH, DAY_UNKNOWN, 0, 0, 0
        )
    live = _live_rows(tables, registrations, day) if len(registrations) else []
    corrections = [(valid_from, euro) for kind, valid_from, _, euro in live if kind == _CORRECTION]
    enriched = (
        enrich_one(vehicle, max(corrections)[1] if corrections else 0)
        if vehicle is not None
        else None
    )
    vclass = enriched.vclass if enriched is not None else int(VehicleClass.UNKNOWN)
    power = int(vehicle["power_kw"]) if vehicle is not None else U16_UNKNOWN
    ground_until, ground_rank = (
        _ground_one(tables, live, vclass, power, belgian, day) if live else (DAY_UNKNOWN, NO_RANK)
    )
    has_ground = ground_rank != NO_RANK
    if day < tables.zone.start:
        euro, category, derived = (
            (enriched.euro, enriched.category, enriched.derived) if enriched else (0, 0, 0)
        )
        return Verdict(
            Outcome.ALLOWED, Reason.ZONE_NOT_IN_FORCE, tables.zone.start - 1, euro, category,
            derived,
        )  # fmt: skip
    period = bisect.bisect_right(tables.bounds, day) - 1
    if enriched is None or vehicle is None:
        if has_ground:
            return Verdict(Outcome.ALLOWED, int(RANK_REASON[ground_rank]), ground_until, 0, 0, 0)
        return _without_vehicle_one(tables, period, item.known, belgian, item.dutch)
    outcome, reason, until = _criteria_one(
        tables, period, vehicle, vclass, enriched.family, enriched.euro
    )
    if outcome == Outcome.ALLOWED and has_ground:
        until = max(until, ground_until)
    elif has_ground:
        outcome, reason, until = Outcome.ALLOWED, int(RANK_REASON[ground_rank]), ground_until
    derived = int(enriched.derived)
    if reason == Reason.PLUG_IN_HYBRID_EXEMPT:
        derived |= Derived.PLUG_IN_HYBRID
    return Verdict(outcome, reason, until, int(enriched.euro), int(enriched.category), derived)
