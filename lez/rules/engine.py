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

Time of day (docs/rules.md#time-of-day), all from the zone's compiled tables for the read's
period: a registration also counts as a ground for a read within the kind's grace days before
its first day, or (when the read's second of the Brussels day is known) before the kind's hour
on the day after its last day; a read without an hour where only the latter could have allowed
it gets HOUR_UNKNOWN. A Belgian vehicle on an oldtimer plate old enough is exempt as if the
criteria allowed it (OLDTIMER_PLATE_EXEMPT); a grant's age condition fails on a known
first-registration date, and a refused vehicle with such an oldtimer registration gets
OLDTIMER_TOO_YOUNG. A NOT_ALLOWED answer inside a warning-only window that the rules before the
window's step did not give gets WARNING_ONLY. Notes are `lez.decision.Note` bits.

There are two implementations, each kept for a figure (`python -m bench.single_paths`, one core):

- `evaluate`, vectorised over a chunk: about 0.07 us per item on a 1,000,000-item chunk (14.6M
  items/s in `bench.engine_bench`, the records enriched by `lez._enrich`), but 50-140 us for a
  chunk of one item (array set-up).
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

from lez.days import DAY_OPEN, DAY_UNKNOWN, anniversaries, anniversary
from lez.decision import BatchInput, DecisionColumns, Derived, ItemInput, Note, Outcome, Reason
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
from lez.rules.compile import NO_RANK, NO_WARNING, RANK_REASON, STRIDES, WARN_ALL, CompiledZone
from lez.vehicle import U16_UNKNOWN, Flag, VehicleArray

_CORRECTION: Final = int(RegistrationKind.EURO_CORRECTION)
_FOREIGN: Final = int(RegistrationKind.FOREIGN_VEHICLE)
_OLDTIMER: Final = int(RegistrationKind.OLDTIMER)
_OLDTIMER_PLATE: Final = int(Flag.OLDTIMER_PLATE)
_HOUR_SECONDS: Final = 3600
_REFUSED_HOUR_MATTERS: Final = (
    int(Outcome.NOT_ALLOWED),
    int(Outcome.UNKNOWN_PLATE),
    int(Outcome.INSUFFICIENT_DATA),
)
"""Outcomes a registration valid until an hour could have turned into ALLOWED."""

# How a registration row relates to its item's read (`_LiveRegistrations.how`), and the bits of
# `_Grounds.via` saying how an item's grounds came about.
_PLAIN, _GRACE, _HOUR, _MAYBE = 0, 1, 2, 3
_VIA_PLAIN, _VIA_GRACE, _VIA_HOUR, _VIA_MAYBE, _VIA_YOUNG = 1, 2, 4, 8, 16
_VIA_OF_HOW: Final = np.array([_VIA_PLAIN, _VIA_GRACE, _VIA_HOUR, _VIA_MAYBE], dtype=np.uint8)
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
    notes: int = 0


def _notes_of_grounds(via: int) -> int:
    """Note bits of an item allowed by registrations only: after entry, until an hour (none
    when a registration covers the read's day itself)."""
    if via & _VIA_PLAIN:
        return 0
    notes = Note.REGISTERED_AFTER_ENTRY if via & _VIA_GRACE else Note.NONE
    if via & _VIA_HOUR:
        notes |= Note.VALID_UNTIL_HOUR
    return int(notes)


# ---- a chunk: vectorised, one step per function --------------------------------------------


@dataclass(frozen=True, slots=True)
class _LiveRegistrations:
    """The registration rows that apply to the zone on their item's day."""

    rows: RegistrationArray
    item: npt.NDArray[np.int64]  # the item each row belongs to
    day: npt.NDArray[np.int32]  # that item's day
    how: npt.NDArray[np.uint8]  # _PLAIN, _GRACE (read before its first day), _HOUR (read on the
    # day after its last, before the hour), _MAYBE (the same day after, hour not known)


@dataclass(frozen=True, slots=True)
class _Grounds:
    """Items allowed by a registration: their latest allowed day and best-ranked kind."""

    items: npt.NDArray[np.int64]  # sorted, unique
    until: npt.NDArray[np.int32]  # by item of the chunk (DAY_UNKNOWN where none)
    rank: npt.NDArray[np.uint8]  # by item of the chunk (NO_RANK where none)
    via: npt.NDArray[np.uint8]  # by item of the chunk: _VIA_* bits


def _registration_end(valid_to: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Inclusive last day of registrations (`valid_to` is exclusive; DAY_OPEN stays open)."""
    return np.where(valid_to == DAY_OPEN, DAY_OPEN, valid_to.astype(np.int64) - 1).astype(np.int32)


def _live_registrations(
    tables: CompiledZone,
    batch: BatchInput,
    days: npt.NDArray[np.int32],
    period: npt.NDArray[np.int32],
) -> _LiveRegistrations:
    rows, item = batch.reg_rows, np.asarray(batch.reg_query, dtype=np.int64)
    if not len(rows):
        return _LiveRegistrations(rows, item, np.zeros(0, dtype=np.int32), np.zeros(0, np.uint8))
    zone = tables.zone
    day = days[item]
    zone_ok = (rows["zone"] == zone.id) | ((rows["zone"] == 0) & (rows["region"] == zone.region))
    valid_from, valid_to = rows["valid_from"], rows["valid_to"]
    live = zone_ok & (valid_from <= day) & (day < valid_to)
    if not tables.has_timing:
        return _LiveRegistrations(rows[live], item[live], day[live], np.zeros(live.sum(), np.uint8))
    kind, at = rows["kind"], period[item]
    grace = tables.grace_days[at, kind].astype(np.int64)
    graced = zone_ok & ~live & (valid_from.astype(np.int64) - grace <= day) & (day < valid_from)
    hour = tables.until_hour[at, kind].astype(np.int32)
    after = zone_ok & (hour > 0) & (valid_to != DAY_OPEN) & (day == valid_to)
    seconds = (
        np.full(len(item), -1, dtype=np.int32)
        if batch.seconds is None
        else np.asarray(batch.seconds, dtype=np.int32)[item]
    )
    by_hour = after & (seconds >= 0) & (seconds < hour * _HOUR_SECONDS)
    maybe = after & (seconds < 0)
    keep = live | graced | by_hour | maybe
    how = np.select([graced, by_hour, maybe], [_GRACE, _HOUR, _MAYBE], _PLAIN).astype(np.uint8)
    return _LiveRegistrations(rows[keep], item[keep], day[keep], how[keep])


def _euro_corrections(live: _LiveRegistrations, n: int) -> npt.NDArray[np.uint8] | None:
    """The corrected euro id of each item (0: none), or None when no item has one. The latest
    start wins, then the highest euro id."""
    if not len(live.rows):
        return None
    fix = np.flatnonzero((live.rows["kind"] == _CORRECTION) & (live.how == _PLAIN))
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


def _old_enough(
    first: npt.NDArray[np.int32], day: npt.NDArray[np.int32], years: int
) -> npt.NDArray[np.bool_]:
    """At least `years` old on `day` from the first registration; True where it is unknown."""
    unknown = first == DAY_UNKNOWN
    born = anniversaries(np.where(unknown, 0, first).astype(np.int32), years)
    old: npt.NDArray[np.bool_] = unknown | (born <= day)
    return old


def _grounds(
    tables: CompiledZone,
    live: _LiveRegistrations,
    vclass: npt.NDArray[np.uint8],
    records: VehicleArray,
    vehicle: npt.NDArray[np.bool_],
    belgian: npt.NDArray[np.bool_],
) -> _Grounds | None:
    """The grants of the zone that registrations earn on their item's day, and how."""
    if not len(live.rows) or not tables.grants:
        return None
    n = len(vclass)
    rows, item, day, how = live.rows, live.item, live.day, live.how
    kind = rows["kind"]
    until = np.full(n, DAY_UNKNOWN, dtype=np.int32)
    rank = np.full(n, NO_RANK, dtype=np.uint8)
    via = np.zeros(n, dtype=np.uint8)
    power = records["power_kw"][item]
    power[~vehicle[item]] = U16_UNKNOWN
    first = records["first_registration"][item]
    first[~vehicle[item]] = DAY_UNKNOWN
    end = _registration_end(rows["valid_to"])
    end = np.where(how == _HOUR, day, end).astype(np.int32)  # allowed until the hour of its day
    cls = vclass[item]
    usable = ~((kind == _FOREIGN) & belgian[item])
    counted = how != _MAYBE
    for g in tables.grants:
        sel = usable & (kind == g.kind) & (g.start <= day) & (day <= g.end) & g.class_ok[cls]
        if g.power_below_kw is not None:
            sel &= (power == U16_UNKNOWN) | (power < g.power_below_kw)
        if g.min_age_years is not None and sel.any():
            old = _old_enough(first, day, g.min_age_years)
            young = np.flatnonzero(sel & ~old & counted & (kind == _OLDTIMER))
            np.bitwise_or.at(via, item[young], _U8(_VIA_YOUNG))
            sel &= old
        hit = np.flatnonzero(sel)
        if len(hit):
            np.bitwise_or.at(via, item[hit], _VIA_OF_HOW[how[hit]])
            hit = hit[counted[hit]]
            np.maximum.at(until, item[hit], np.minimum(end[hit], g.end).astype(np.int32))
            np.minimum.at(rank, item[hit], _U8(g.rank))
    if not via.any():
        return None
    return _Grounds(items=np.flatnonzero(rank != NO_RANK), until=until, rank=rank, via=via)


def _periods(tables: CompiledZone, days: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Each item's period of the compiled tables (one searchsorted)."""
    period = np.searchsorted(tables.bounds, days, side="right").astype(np.int32)
    period -= 1
    return period


def _criteria(
    tables: CompiledZone,
    period: npt.NDArray[np.int32],
    enriched: Enriched,
    records: VehicleArray,
    vehicle: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int32]]:
    """Outcome, reason and allowed-until from the tables (one gather)."""
    idx = period * STRIDES[0]
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
    return tables.outcome[idx], tables.reason[idx], tables.until[idx]


def _oldtimer_plates(
    tables: CompiledZone,
    period: npt.NDArray[np.int32],
    days: npt.NDArray[np.int32],
    records: VehicleArray,
    vehicle: npt.NDArray[np.bool_],
    outcome: npt.NDArray[np.uint8],
    reason: npt.NDArray[np.uint8],
    until: npt.NDArray[np.int32],
) -> None:
    """The automatic exemption of vehicles on an oldtimer plate old enough on the day: allowed
    like the criteria allow (their reason first, the latest end of both)."""
    sub = np.flatnonzero(records["flags"] & _OLDTIMER_PLATE)  # few: test them first
    if not len(sub):
        return
    sub_age = tables.plate_age[period[sub]]
    keep = (sub_age > 0) & vehicle[sub] & (records["first_registration"][sub] != DAY_UNKNOWN)
    sub, sub_age = sub[keep], sub_age[keep]
    if not len(sub):
        return
    first = records["first_registration"][sub]
    old = np.zeros(len(sub), dtype=np.bool_)
    for years in np.unique(sub_age).tolist():
        of = sub_age == years
        old[of] = anniversaries(first[of], years) <= days[sub[of]]
    sub = sub[old]
    plate_until = tables.plate_until[period[sub]]
    by_criteria = outcome[sub] == Outcome.ALLOWED
    until[sub] = np.where(by_criteria, np.maximum(until[sub], plate_until), plate_until)
    reason[sub] = np.where(by_criteria, reason[sub], Reason.OLDTIMER_PLATE_EXEMPT)
    outcome[sub] = Outcome.ALLOWED


def _warnings(
    tables: CompiledZone,
    period: npt.NDArray[np.int32],
    enriched: Enriched,
    records: VehicleArray,
    vehicle: npt.NDArray[np.bool_],
    outcome: npt.NDArray[np.uint8],
    notes: npt.NDArray[np.uint8],
) -> None:
    """WARNING_ONLY on refusals inside a warning-only window that the rules in force before the
    window's step did not make (every refusal when the step is the zone's start)."""
    windows = tables.warn_prev != NO_WARNING
    sub = np.flatnonzero(windows[period] & (outcome == Outcome.NOT_ALLOWED))
    if not len(sub):
        return
    before = tables.warn_prev[period[sub]]
    warn = before == WARN_ALL
    known = np.flatnonzero(~warn)
    if len(known):
        rows, at = sub[known], before[known]
        with_vehicle = vehicle[rows]
        idx = at * STRIDES[0]
        idx += enriched.vclass[rows].astype(np.int32) * STRIDES[1]
        idx += enriched.family[rows].astype(np.int32) * STRIDES[2]
        idx += enriched.euro[rows].astype(np.int32) * STRIDES[3]
        if tables.phev_limit is not None and with_vehicle.any():
            idx[with_vehicle] += plug_in_hybrid(
                records, *tables.phev_limit, rows=rows[with_vehicle]
            )
        allowed_before = np.where(
            with_vehicle, tables.outcome[idx] == Outcome.ALLOWED, ~tables.foreign_required[at]
        )
        warn[known] = allowed_before
    notes[sub[warn]] |= _U8(Note.WARNING_ONLY)


def _apply_grounds(
    grounds: _Grounds,
    vehicle: npt.NDArray[np.bool_],
    outcome: npt.NDArray[np.uint8],
    reason: npt.NDArray[np.uint8],
    until: npt.NDArray[np.int32],
    notes: npt.NDArray[np.uint8],
) -> None:
    """A ground allows: the criteria's reason where they allow too (until the later end), the
    ground's reason otherwise, with a note when no registration covers the day itself. An
    oldtimer registration the vehicle is too young for names the refusal."""
    items = grounds.items
    ground_until, ground_reason = grounds.until[items], RANK_REASON[grounds.rank[items]]
    by_criteria = vehicle[items] & (outcome[items] == Outcome.ALLOWED)
    until[items] = np.where(by_criteria, np.maximum(until[items], ground_until), ground_until)
    reason[items] = np.where(by_criteria, reason[items], ground_reason)
    outcome[items] = Outcome.ALLOWED
    via = grounds.via
    only_later = items[~by_criteria & ((via[items] & _VIA_PLAIN) == 0)]
    if len(only_later):
        bits = np.where((via[only_later] & _VIA_GRACE) != 0, _U8(Note.REGISTERED_AFTER_ENTRY), 0)
        bits |= np.where((via[only_later] & _VIA_HOUR) != 0, _U8(Note.VALID_UNTIL_HOUR), 0)
        notes[only_later] |= bits.astype(np.uint8)
    young = np.flatnonzero(((via & _VIA_YOUNG) != 0) & (outcome == Outcome.NOT_ALLOWED))
    reason[young] = Reason.OLDTIMER_TOO_YOUNG


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
    columns.notes[rows] = 0
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
    period = _periods(tables, days)

    live = _live_registrations(tables, batch, days, period)
    enriched = enrich(records, _euro_corrections(live, len(days)))
    enriched.vclass[no_vehicle] = VehicleClass.UNKNOWN
    (
        enriched.euro[no_vehicle],
        enriched.category[no_vehicle],
        enriched.derived[no_vehicle],
    ) = 0, 0, 0
    grounds = _grounds(tables, live, enriched.vclass, records, vehicle, belgian)

    outcome, reason, until = _criteria(tables, period, enriched, records, vehicle)
    notes = np.zeros(len(days), dtype=np.uint8)
    # the periods the chunk's days fall in: most chunks meet no exemption or warning period
    low, high = (int(period.min()), int(period.max()) + 1) if len(period) else (0, 0)
    if tables.plate_age[low:high].any():
        _oldtimer_plates(tables, period, days, records, vehicle, outcome, reason, until)
    if grounds is not None:
        _apply_grounds(grounds, vehicle, outcome, reason, until, notes)
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
        notes=notes,
    )
    _final_overrides(tables, batch, days, vehicle, columns)
    if tables.phev_limit is not None:
        columns.derived[columns.reason == Reason.PLUG_IN_HYBRID_EXEMPT] |= _U8(
            Derived.PLUG_IN_HYBRID
        )
    if grounds is not None:
        maybe = np.flatnonzero(grounds.via & _VIA_MAYBE)
        maybe = maybe[np.isin(outcome[maybe], _REFUSED_HOUR_MATTERS)]
        notes[maybe] |= _U8(Note.HOUR_UNKNOWN)
    if (tables.warn_prev[low:high] != NO_WARNING).any():
        _warnings(tables, period, enriched, records, vehicle, outcome, notes)
    return columns


# ---- one item: scalar, for single checks ---------------------------------------------------


def _live_rows(
    tables: CompiledZone, registrations: RegistrationArray, day: int, period: int, second: int
) -> list[tuple[int, int, int, int, int]]:
    """(kind, valid_from, valid_to, euro, how) of the registration rows that apply to the
    read: on `day` (_PLAIN), within the grace days before their first day (_GRACE), or on the
    day after their last day before the kind's hour (_HOUR; _MAYBE when the hour is unknown)."""
    zone = tables.zone
    live = []
    for row in registrations.tolist():  # plain tuples: field access on np.void is slow
        kind, row_zone, region, valid_from, valid_to, euro = (
            row[_REG_KIND], row[_REG_ZONE], row[_REG_REGION], row[_REG_FROM], row[_REG_TO],
            row[_REG_EURO],
        )  # fmt: skip
        if not (row_zone == zone.id or (row_zone == 0 and region == zone.region)):
            continue
        if valid_from <= day < valid_to:
            live.append((kind, valid_from, valid_to, euro, _PLAIN))
        elif tables.has_timing:
            grace = int(tables.grace_days[period, kind])
            hour = int(tables.until_hour[period, kind])
            if valid_from - grace <= day < valid_from:
                live.append((kind, valid_from, valid_to, euro, _GRACE))
            elif hour and valid_to != DAY_OPEN and day == valid_to:
                if second < 0:
                    live.append((kind, valid_from, valid_to, euro, _MAYBE))
                elif second < hour * _HOUR_SECONDS:
                    live.append((kind, valid_from, valid_to, euro, _HOUR))
    return live


def _ground_one(
    tables: CompiledZone,
    live: list[tuple[int, int, int, int, int]],
    vclass: int,
    vehicle: np.void | None,
    belgian: bool,
    day: int,
) -> tuple[int, int, int]:
    """(latest allowed day, best rank, _VIA_* bits) of the grants the live registrations earn;
    NO_RANK when none."""
    power = int(vehicle["power_kw"]) if vehicle is not None else U16_UNKNOWN
    first = int(vehicle["first_registration"]) if vehicle is not None else DAY_UNKNOWN
    until, rank, via = DAY_UNKNOWN, NO_RANK, 0
    for kind, _, valid_to, _, how in live:
        if kind == _CORRECTION or (kind == _FOREIGN and belgian):
            continue
        end = valid_to if valid_to == DAY_OPEN else valid_to - 1
        if how == _HOUR:
            end = day  # allowed until the hour of the read's day
        for g in tables.grants:
            if g.kind != kind or not g.start <= day <= g.end or not g.class_ok[vclass]:
                continue
            limit = g.power_below_kw
            if limit is not None and power != U16_UNKNOWN and power >= limit:
                continue
            years = g.min_age_years
            if years is not None and first != DAY_UNKNOWN and anniversary(first, years) > day:
                if how != _MAYBE and kind == _OLDTIMER:
                    via |= _VIA_YOUNG
                continue
            via |= int(_VIA_OF_HOW[how])
            if how == _MAYBE:
                continue
            until = max(until, min(end, g.end))
            rank = min(rank, g.rank)
    return until, rank, via


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


def _plate_exempt_one(tables: CompiledZone, period: int, vehicle: np.void, day: int) -> bool:
    years = int(tables.plate_age[period])
    if not years or not int(vehicle["flags"]) & _OLDTIMER_PLATE:
        return False
    first = int(vehicle["first_registration"])
    return first != DAY_UNKNOWN and anniversary(first, years) <= day


def _warned_one(
    tables: CompiledZone,
    period: int,
    vehicle: np.void | None,
    cell: tuple[int, int, int] | None,
) -> bool:
    """A refusal in a warning-only window that the rules before its step did not make.
    `cell` is the vehicle's (class, family, euro), None without a vehicle."""
    before = int(tables.warn_prev[period])
    if before == NO_WARNING:
        return False
    if before == WARN_ALL:
        return True
    if vehicle is None or cell is None:
        return not bool(tables.foreign_required[before])
    vclass, family, euro = cell
    idx = before * STRIDES[0] + vclass * STRIDES[1] + family * STRIDES[2] + euro * STRIDES[3]
    if tables.phev_limit is not None:
        idx += int(plug_in_hybrid_one(vehicle, *tables.phev_limit))
    return int(tables.outcome[idx]) == Outcome.ALLOWED


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
    period = bisect.bisect_right(tables.bounds, day) - 1
    live = _live_rows(tables, registrations, day, period, item.second) if len(registrations) else []
    corrections = [
        (valid_from, euro)
        for kind, valid_from, _, euro, how in live
        if kind == _CORRECTION and how == _PLAIN
    ]
    enriched = (
        enrich_one(vehicle, max(corrections)[1] if corrections else 0)
        if vehicle is not None
        else None
    )
    vclass = enriched.vclass if enriched is not None else int(VehicleClass.UNKNOWN)
    ground_until, ground_rank, via = (
        _ground_one(tables, live, vclass, vehicle, belgian, day)
        if live
        else (DAY_UNKNOWN, NO_RANK, 0)
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
    if enriched is None or vehicle is None:
        if has_ground:
            notes = _notes_of_grounds(via)
            return Verdict(
                Outcome.ALLOWED, int(RANK_REASON[ground_rank]), ground_until, 0, 0, 0, notes
            )
        verdict = _without_vehicle_one(tables, period, item.known, belgian, item.dutch)
        notes = 0
        if via & _VIA_MAYBE and verdict.outcome in _REFUSED_HOUR_MATTERS:
            notes |= Note.HOUR_UNKNOWN
        if verdict.outcome == Outcome.NOT_ALLOWED and _warned_one(tables, period, None, None):
            notes |= Note.WARNING_ONLY
        return verdict._replace(notes=int(notes)) if notes else verdict
    outcome, reason, until = _criteria_one(
        tables, period, vehicle, vclass, enriched.family, enriched.euro
    )
    if _plate_exempt_one(tables, period, vehicle, day):
        plate_until = int(tables.plate_until[period])
        if outcome == Outcome.ALLOWED:
            until = max(until, plate_until)
        else:
            outcome, reason, until = Outcome.ALLOWED, Reason.OLDTIMER_PLATE_EXEMPT, plate_until
    notes = 0
    if outcome == Outcome.ALLOWED and has_ground:
        until = max(until, ground_until)
    elif has_ground:
        outcome, reason, until = Outcome.ALLOWED, int(RANK_REASON[ground_rank]), ground_until
        notes = _notes_of_grounds(via)
    if outcome == Outcome.NOT_ALLOWED and via & _VIA_YOUNG:
        reason = Reason.OLDTIMER_TOO_YOUNG
    derived = int(enriched.derived)
    if reason == Reason.PLUG_IN_HYBRID_EXEMPT:
        derived |= Derived.PLUG_IN_HYBRID
    if via & _VIA_MAYBE and outcome in _REFUSED_HOUR_MATTERS:
        notes |= Note.HOUR_UNKNOWN
    cell = (vclass, enriched.family, enriched.euro)
    if outcome == Outcome.NOT_ALLOWED and _warned_one(tables, period, vehicle, cell):
        notes |= Note.WARNING_ONLY
    return Verdict(
        outcome, reason, until, int(enriched.euro), int(enriched.category), derived, int(notes)
    )
