"""Evaluation: the answer for (plate, day X, zone), vectorised over a chunk and one by one.

Order of the answer for one item (DESIGN.md section 4, seed 002 par. 16-18 and 22-24):

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

`evaluate` and `evaluate_one` implement this independently; a hypothesis property checks that
they agree on random inputs.
"""

from __future__ import annotations

import bisect
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.decision import BatchInput, Decisions, Derived, Outcome, Reason
from lez.enrich import (
    MEMBERS,
    VehicleClass,
    enrich,
    enrich_one,
    plug_in_hybrid,
    plug_in_hybrid_one,
)
from lez.registrations import RegistrationKind
from lez.rules.catalog import Revision
from lez.rules.compile import (
    NO_RANK,
    RANK_REASON,
    REGISTRATION_RANK,
    STRIDES,
    criteria_one,
    foreign_on,
)
from lez.vehicle import U16_UNKNOWN

_CORRECTION: Final = int(RegistrationKind.EURO_CORRECTION)
_FOREIGN: Final = int(RegistrationKind.FOREIGN_VEHICLE)
_U8 = np.uint8


class Decision(NamedTuple):
    """One answer (the one-item path)."""

    outcome: int
    reason: int
    allowed_until: int
    euro: int
    category: int
    derived: int


def _reg_end(valid_to: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Inclusive last day of registrations (`valid_to` is exclusive; DAY_OPEN stays open)."""
    return np.where(valid_to == DAY_OPEN, DAY_OPEN, valid_to.astype(np.int64) - 1).astype(np.int32)


def evaluate(revision: Revision, zone_id: int, batch: BatchInput) -> Decisions:
    """Decisions for a chunk of items of one zone (raises UnknownZone).

    Built for throughput: one `searchsorted` and one gather from the compiled tables for every
    item; the rarer cases (registrations, no vehicle, zone not in force, invalid items) are
    handled on index subsets, never with a Python loop per item.
    """
    cz = revision.compiled(zone_id)
    zone = cz.zone
    days = np.asarray(batch.days, dtype=np.int32)
    n = len(days)
    records = batch.records
    belgian = np.asarray(batch.belgian, dtype=np.bool_)
    vehicle = np.asarray(batch.found, dtype=np.bool_) & belgian
    no_vehicle = np.flatnonzero(~vehicle)

    # Registrations that apply to this zone on the item's day.
    rows, item = batch.reg_rows, np.asarray(batch.reg_query, dtype=np.int64)
    correction = None
    if len(rows):
        d = days[item]
        zone_ok = (rows["zone"] == zone.id) | (
            (rows["zone"] == 0) & (rows["region"] == zone.region)
        )
        live = zone_ok & (rows["valid_from"] <= d) & (d < rows["valid_to"])
        rows, item, d = rows[live], item[live], d[live]
        kind = rows["kind"]
        fix = np.flatnonzero(kind == _CORRECTION)
        if len(fix):
            low = np.iinfo(np.int64).min
            best = np.full(n, low, dtype=np.int64)
            score = (rows["valid_from"][fix].astype(np.int64) << 8) | rows["euro"][fix]
            np.maximum.at(best, item[fix], score)
            correction = np.zeros(n, dtype=np.uint8)
            has = np.flatnonzero(best != low)
            correction[has] = (best[has] & 0xFF).astype(np.uint8)
    en = enrich(records, correction)
    vclass, euro, category, derived = en.vclass, en.euro, en.category, en.derived
    vclass[no_vehicle] = VehicleClass.UNKNOWN
    euro[no_vehicle], category[no_vehicle], derived[no_vehicle] = 0, 0, 0

    ground_items = np.zeros(0, dtype=np.int64)
    if len(rows) and cz.grants:
        reg_until = np.full(n, DAY_UNKNOWN, dtype=np.int32)
        reg_rank = np.full(n, NO_RANK, dtype=np.uint8)
        power = records["power_kw"][item]
        power[~vehicle[item]] = U16_UNKNOWN
        end = _reg_end(rows["valid_to"])
        cls = vclass[item]
        usable = ~((kind == _FOREIGN) & belgian[item])
        hits = []
        for g in cz.grants:
            sel = usable & (kind == g.kind) & (g.start <= d) & (d <= g.end) & g.class_ok[cls]
            if g.power_below_kw is not None:
                sel &= (power == U16_UNKNOWN) | (power < g.power_below_kw)
            hit = np.flatnonzero(sel)
            if len(hit):
                np.maximum.at(reg_until, item[hit], np.minimum(end[hit], g.end).astype(np.int32))
                np.minimum.at(reg_rank, item[hit], _U8(g.rank))
                hits.append(item[hit])
        if hits:
            ground_items = np.unique(np.concatenate(hits))

    # The criteria: one searchsorted and one gather from the compiled tables.
    idx = np.searchsorted(cz.bounds, days, side="right").astype(np.int32)
    idx -= 1
    period = idx.copy()
    idx *= STRIDES[0]
    for values, stride in ((vclass, STRIDES[1]), (en.family, STRIDES[2]), (euro, STRIDES[3])):
        part = values.astype(np.int32)
        part *= stride
        idx += part
    if cz.phev_limit is not None:
        # Only items on a day where some plug-in hybrid rule is in force need the detection.
        sub = np.flatnonzero(cz.phev_periods[period] & vehicle)
        if len(sub):
            idx[sub] += plug_in_hybrid(records, *cz.phev_limit, rows=sub)
    outcome = cz.outcome[idx]
    reason = cz.reason[idx]
    until = cz.until[idx]

    # Grounds from registrations.
    if len(ground_items):
        gi = ground_items
        g_until, g_reason = reg_until[gi], RANK_REASON[reg_rank[gi]]
        by_criteria = vehicle[gi] & (outcome[gi] == Outcome.ALLOWED)
        until[gi] = np.where(by_criteria, np.maximum(until[gi], g_until), g_until)
        reason[gi] = np.where(by_criteria, reason[gi], g_reason)
        outcome[gi] = Outcome.ALLOWED
        if len(no_vehicle):
            without = np.ones(len(no_vehicle), dtype=np.bool_)
            without[np.isin(no_vehicle, gi, assume_unique=True)] = False
            no_vehicle = no_vehicle[without]

    # Plates without a vehicle on day X and without a ground.
    if len(no_vehicle):
        nv = no_vehicle
        bel = belgian[nv]
        known = np.asarray(batch.known)[nv]
        p = period[nv]
        dutch = ~bel & np.asarray(batch.dutch)[nv] & cz.dutch_elsewhere[p]
        required = ~bel & cz.foreign_required[p] & ~dutch
        outcome[nv] = np.where(bel | ~required, Outcome.UNKNOWN_PLATE, Outcome.NOT_ALLOWED).astype(
            np.uint8
        )
        reason[nv] = np.select(
            [bel & known, bel, dutch, required],
            [
                Reason.NO_VERSION_ON_DAY,
                Reason.NOT_IN_REGISTER,
                Reason.DUTCH_PLATE_CHECKED_ELSEWHERE,
                Reason.FOREIGN_NOT_REGISTERED,
            ],
            Reason.NOT_IN_REGISTER,
        ).astype(np.uint8)
        until[nv] = DAY_UNKNOWN

    # Zone not yet in force.
    if n and int(days.min()) < zone.start:
        early = np.flatnonzero(days < zone.start)
        outcome[early] = Outcome.ALLOWED
        reason[early] = Reason.ZONE_NOT_IN_FORCE
        until[early] = zone.start - 1

    # Public checker: the claimed first registration must match.
    if batch.claimed_first_registration is not None:
        claimed = np.asarray(batch.claimed_first_registration, dtype=np.int32)
        bad = np.flatnonzero(
            vehicle & (claimed != DAY_UNKNOWN) & (records["first_registration"] != claimed)
        )
        outcome[bad] = Outcome.COMBINATION_MISMATCH
        reason[bad] = Reason.FIRST_REGISTRATION_MISMATCH
        until[bad] = DAY_UNKNOWN
        euro[bad], category[bad], derived[bad] = 0, 0, 0

    invalid = np.asarray(batch.invalid, dtype=np.uint8)
    if invalid.any():
        bad = np.flatnonzero(invalid)
        outcome[bad] = Outcome.INVALID
        reason[bad] = invalid[bad]
        until[bad] = DAY_UNKNOWN
        euro[bad], category[bad], derived[bad] = 0, 0, 0

    if cz.phev_limit is not None:
        derived[reason == Reason.PLUG_IN_HYBRID_EXEMPT] |= _U8(Derived.PLUG_IN_HYBRID)
    return Decisions(
        outcome=outcome,
        reason=reason,
        allowed_until=until,
        euro=euro,
        category=category,
        derived=derived,
    )


def evaluate_one(
    revision: Revision,
    zone_id: int,
    record: np.void | None,
    known: bool,
    day: int,
    belgian: bool,
    dutch: bool,
    invalid: int,
    registrations: npt.NDArray[np.void],
    claimed_first_registration: int | None = None,
) -> Decision:
    """The answer for one item, straight from the revision's rows (reference path).

    `record` is the version valid on `day` (None if none); `registrations` are all rows of the
    item's key (REGISTRATION_DTYPE).
    """
    zone = revision.zone_def(zone_id)
    rev = revision.data
    if invalid:
        return Decision(Outcome.INVALID, invalid, DAY_UNKNOWN, 0, 0, 0)
    vehicle = record if (record is not None and belgian) else None
    if (
        vehicle is not None
        and claimed_first_registration is not None
        and claimed_first_registration != DAY_UNKNOWN
        and int(vehicle["first_registration"]) != claimed_first_registration
    ):
        return Decision(
            Outcome.COMBINATION_MISMATCH, Reason.FIRST_REGISTRATION_MISMATCH, DAY_UNKNOWN, 0, 0, 0
        )
    live = []
    for row in registrations:
        zone_ok = int(row["zone"]) == zone.id or (
            int(row["zone"]) == 0 and int(row["region"]) == zone.region
        )
        if zone_ok and int(row["valid_from"]) <= day < int(row["valid_to"]):
            live.append(row)
    corrections = [
        (int(r["valid_from"]), int(r["euro"])) for r in live if int(r["kind"]) == _CORRECTION
    ]
    correction = max(corrections)[1] if corrections else 0
    en = enrich_one(vehicle, correction) if vehicle is not None else None
    vclass = en.vclass if en is not None else int(VehicleClass.UNKNOWN)
    power = int(vehicle["power_kw"]) if vehicle is not None else U16_UNKNOWN
    ground_until, ground_rank = DAY_UNKNOWN, NO_RANK
    for row in live:
        kind = int(row["kind"])
        if kind == _CORRECTION or (kind == _FOREIGN and belgian):
            continue
        valid_to = int(row["valid_to"])
        end = DAY_OPEN if valid_to == DAY_OPEN else valid_to - 1
        for g in rev.grants:
            if int(g.kind) != kind or not g.where.applies_to(zone) or not g.where.in_force(day):
                continue
            if g.classes is not None and not set(MEMBERS[VehicleClass(vclass)]) & g.classes:
                continue
            limit = g.power_below_kw
            if limit is not None and power != U16_UNKNOWN and power >= limit:
                continue
            ground_until = max(ground_until, min(end, g.where.end))
            ground_rank = min(ground_rank, REGISTRATION_RANK[RegistrationKind(kind)])
    has_ground = ground_rank != NO_RANK
    ground_reason = int(RANK_REASON[ground_rank]) if has_ground else 0
    if day < zone.start:
        euro = en.euro if en else 0
        cat = en.category if en else 0
        der = en.derived if en else 0
        return Decision(Outcome.ALLOWED, Reason.ZONE_NOT_IN_FORCE, zone.start - 1, euro, cat, der)
    if en is not None and vehicle is not None:
        phev = False
        limits = [r for r in rev.plug_in_hybrid if r.where.applies_to(zone)]
        if limits:
            phev = plug_in_hybrid_one(vehicle, limits[0].max_co2, limits[0].inclusive)
        outcome, reason, until = criteria_one(rev, zone, vclass, en.family, en.euro, phev, day)
        derived = en.derived
        if outcome == Outcome.ALLOWED:
            if has_ground:
                until = max(until, ground_until)
        elif has_ground:
            outcome, reason, until = Outcome.ALLOWED, ground_reason, ground_until
        if reason == Reason.PLUG_IN_HYBRID_EXEMPT:
            derived |= Derived.PLUG_IN_HYBRID
        return Decision(outcome, reason, until, en.euro, en.category, int(derived))
    if has_ground:
        return Decision(Outcome.ALLOWED, ground_reason, ground_until, 0, 0, 0)
    if belgian:
        why = Reason.NO_VERSION_ON_DAY if known else Reason.NOT_IN_REGISTER
        return Decision(Outcome.UNKNOWN_PLATE, why, DAY_UNKNOWN, 0, 0, 0)
    rule = foreign_on(rev, zone, day)
    if rule is not None and dutch and rule.dutch_checked_elsewhere:
        return Decision(
            Outcome.UNKNOWN_PLATE, Reason.DUTCH_PLATE_CHECKED_ELSEWHERE, DAY_UNKNOWN, 0, 0, 0
        )
    if rule is not None and rule.registration_required:
        return Decision(Outcome.NOT_ALLOWED, Reason.FOREIGN_NOT_REGISTERED, DAY_UNKNOWN, 0, 0, 0)
    return Decision(Outcome.UNKNOWN_PLATE, Reason.NOT_IN_REGISTER, DAY_UNKNOWN, 0, 0, 0)


def decide_one(
    revision: Revision,
    zone_id: int,
    record: np.void | None,
    known: bool,
    day: int,
    belgian: bool,
    dutch: bool,
    invalid: int,
    registrations: npt.NDArray[np.void],
    claimed_first_registration: int | None = None,
) -> Decision:
    """The answer for one item, for single checks: same arguments and answer as `evaluate_one`.

    The common case (a Belgian vehicle with a version on `day`, no registration rows, zone in
    force) reads the zone's compiled tables with scalar index arithmetic, as `evaluate` does
    for a chunk, instead of scanning the revision's rows; every other case goes through
    `evaluate_one`. The engine's property tests hold all three paths equal.
    """
    cz = revision.compiled(zone_id)
    if invalid or record is None or not belgian or len(registrations) or day < cz.zone.start:
        return evaluate_one(
            revision, zone_id, record, known, day, belgian, dutch, invalid, registrations,
            claimed_first_registration,
        )  # fmt: skip
    if (
        claimed_first_registration is not None
        and claimed_first_registration != DAY_UNKNOWN
        and int(record["first_registration"]) != claimed_first_registration
    ):
        return Decision(
            Outcome.COMBINATION_MISMATCH, Reason.FIRST_REGISTRATION_MISMATCH, DAY_UNKNOWN, 0, 0, 0
        )
    en = enrich_one(record, 0)
    period = bisect.bisect_right(cz.bounds, day) - 1
    idx = (
        period * STRIDES[0]
        + int(en.vclass) * STRIDES[1]
        + int(en.family) * STRIDES[2]
        + int(en.euro) * STRIDES[3]
    )
    derived = int(en.derived)
    if cz.phev_limit is not None and cz.phev_periods[period]:
        idx += int(plug_in_hybrid_one(record, *cz.phev_limit))
    reason = int(cz.reason[idx])
    if cz.phev_limit is not None and reason == Reason.PLUG_IN_HYBRID_EXEMPT:
        derived |= Derived.PLUG_IN_HYBRID
    return Decision(
        int(cz.outcome[idx]), reason, int(cz.until[idx]), int(en.euro), int(en.category), derived
    )
