"""The reference answer for one item, straight from a revision's rows: the tests' oracle.

The product answers with the compiled tables only (`lez.rules.evaluate` for a chunk,
`lez.rules.decide_one` for a single check). This module computes the same answer without them,
by scanning the revision's criterion, plug-in hybrid, foreign and grant rows for the item's
zone and day, so the property and golden tests check the compilation as well as the two
product paths. It lives in the tests because no caller needs it: `decide_one` answers a single
check faster in every case (`python -m bench.single_paths`).
"""

from __future__ import annotations

from lez import codes
from lez.days import DAY_OPEN, DAY_UNKNOWN, from_day, to_day
from lez.decision import Derived, ItemInput, Note, Outcome, Reason
from lez.enrich import MEMBERS, VehicleClass, enrich_one, plug_in_hybrid_one
from lez.registrations import RegistrationKind
from lez.rules import Revision, Verdict
from lez.rules.compile import (
    COMBUSTION_FAMILIES,
    NO_RANK,
    RANK_REASON,
    REAL_FAMILIES,
    REGISTRATION_RANK,
    change_days,
    criterion_on,
    foreign_on,
    oldtimer_plate_on,
    phev_exempt_on,
    registration_time_on,
    warning_on,
)
from lez.rules.schema import Criterion, Effect, RevisionData, ZoneDef
from lez.vehicle import U16_UNKNOWN, Flag

_ALLOWED = int(Outcome.ALLOWED)
_INSUFFICIENT = int(Outcome.INSUFFICIENT_DATA)
_CORRECTION = int(RegistrationKind.EURO_CORRECTION)
_FOREIGN = int(RegistrationKind.FOREIGN_VEHICLE)
_OLDTIMER = int(RegistrationKind.OLDTIMER)
_REFUSED = (Outcome.NOT_ALLOWED, Outcome.UNKNOWN_PLATE, Outcome.INSUFFICIENT_DATA)


def _old_enough(first: int, years: int, day: int) -> bool:
    """At least `years` old on `day`, by calendar arithmetic (29 Feb turns on 1 Mar)."""
    born = from_day(first)
    year = born.year + years
    try:
        turns = to_day(born.replace(year=year))
    except ValueError:  # 29 February in a year without one
        turns = to_day(born.replace(year=year, month=3, day=1))
    return turns <= day


def _plate_until(rev: RevisionData, zone: ZoneDef, day: int) -> int:
    for change in change_days(rev, zone):
        if change > day and oldtimer_plate_on(rev, zone, change) is None:
            return change - 1
    return DAY_OPEN


def _how(rev: RevisionData, zone: ZoneDef, kind: int, first: int, end: int, item: ItemInput) -> str:
    """How a registration row covers the read: plain, grace, hour, maybe or not at all."""
    day = item.day
    if first <= day < end:
        return "plain"
    timing = registration_time_on(rev, zone, kind, day)
    if timing is None or timing.undetermined:
        return ""
    if timing.grace_days and first - timing.grace_days <= day < first:
        return "grace"
    if timing.valid_until_hour and end != DAY_OPEN and day == end:
        if item.second < 0:
            return "maybe"
        if item.second < timing.valid_until_hour * 3600:
            return "hour"
    return ""


def _effect_one(crit: Criterion | None, euro: int) -> tuple[int, int]:
    if crit is None:
        return _ALLOWED, Reason.CATEGORY_NOT_REGULATED
    if crit.effect == Effect.ALLOW:
        return _ALLOWED, Reason.MEETS_CRITERIA
    if crit.effect == Effect.EXEMPT:
        return _ALLOWED, crit.exempt_reason
    if crit.effect == Effect.BAN:
        return Outcome.NOT_ALLOWED, Reason.FUEL_BANNED
    if crit.effect == Effect.UNDETERMINED:
        return _INSUFFICIENT, Reason.CRITERIA_NOT_FOUND
    if euro == codes.UNKNOWN or codes.EURO_SCALE[euro] != codes.EURO_SCALE[crit.min_euro]:
        return _INSUFFICIENT, Reason.EURO_UNKNOWN
    if codes.EURO_LEVEL[euro] >= codes.EURO_LEVEL[crit.min_euro]:
        return _ALLOWED, Reason.MEETS_CRITERIA
    return Outcome.NOT_ALLOWED, Reason.EURO_BELOW_MINIMUM


def _base_one(
    rev: RevisionData, zone: ZoneDef, vclass: int, family: int, euro: int, phev: bool, day: int
) -> tuple[int, int]:
    outcome, reason = _effect_one(criterion_on(rev, zone, vclass, family, day), euro)
    if (
        phev
        and outcome != _ALLOWED
        and family in COMBUSTION_FAMILIES
        and phev_exempt_on(rev, zone, vclass, day)
    ):
        return _ALLOWED, Reason.PLUG_IN_HYBRID_EXEMPT
    return int(outcome), int(reason)


def _cell_one(
    rev: RevisionData, zone: ZoneDef, vclass: int, family: int, euro: int, phev: bool, day: int
) -> tuple[int, int]:
    members = MEMBERS[VehicleClass(vclass)]
    if len(members) > 1 or members[0] != vclass:
        got = {_cell_one(rev, zone, m, family, euro, phev, day) for m in members}
        return got.pop() if len(got) == 1 else (_INSUFFICIENT, Reason.CATEGORY_UNKNOWN)
    if family not in REAL_FAMILIES:
        got = {_base_one(rev, zone, vclass, f, euro, phev, day) for f in REAL_FAMILIES}
        return got.pop() if len(got) == 1 else (_INSUFFICIENT, Reason.FUEL_UNKNOWN)
    return _base_one(rev, zone, vclass, family, euro, phev, day)


def criteria_one(
    rev: RevisionData, zone: ZoneDef, vclass: int, family: int, euro: int, phev: bool, day: int
) -> tuple[int, int, int]:
    """(outcome, reason, allowed_until) of the criteria for one vehicle on `day`."""
    outcome, reason = _cell_one(rev, zone, vclass, family, euro, phev, day)
    if outcome != _ALLOWED:
        return outcome, reason, DAY_UNKNOWN
    for change in change_days(rev, zone):
        if change > day and _cell_one(rev, zone, vclass, family, euro, phev, change)[0] != _ALLOWED:
            return outcome, reason, change - 1
    return outcome, reason, DAY_OPEN


def reference_verdict(revision: Revision, zone_id: int, item: ItemInput) -> Verdict:
    """The answer for one item from the revision's rows; the arguments of `decide_one`."""
    record, known, day, belgian, dutch = item.record, item.known, item.day, item.belgian, item.dutch
    invalid, registrations = item.invalid, item.registrations
    claimed_first_registration = item.claimed_first_registration
    zone = revision.zone_def(zone_id)
    rev = revision.data
    if invalid:
        return Verdict(Outcome.INVALID, invalid, DAY_UNKNOWN, 0, 0, 0)
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
    live = []
    for row in registrations:
        zone_ok = int(row["zone"]) == zone.id or (
            int(row["zone"]) == 0 and int(row["region"]) == zone.region
        )
        how = _how(rev, zone, int(row["kind"]), int(row["valid_from"]), int(row["valid_to"]), item)
        if zone_ok and how:
            live.append((row, how))
    corrections = [
        (int(r["valid_from"]), int(r["euro"]))
        for r, how in live
        if int(r["kind"]) == _CORRECTION and how == "plain"
    ]
    correction = max(corrections)[1] if corrections else 0
    en = enrich_one(vehicle, correction) if vehicle is not None else None
    vclass = en.vclass if en is not None else int(VehicleClass.UNKNOWN)
    power = int(vehicle["power_kw"]) if vehicle is not None else U16_UNKNOWN
    first = int(vehicle["first_registration"]) if vehicle is not None else DAY_UNKNOWN
    ground_until, ground_rank = DAY_UNKNOWN, NO_RANK
    hows: set[str] = set()
    too_young = False
    for row, how in live:
        kind = int(row["kind"])
        if kind == _CORRECTION or (kind == _FOREIGN and belgian):
            continue
        valid_to = int(row["valid_to"])
        end = DAY_OPEN if valid_to == DAY_OPEN else valid_to - 1
        if how == "hour":
            end = day
        for g in rev.grants:
            if int(g.kind) != kind or not g.where.applies_to(zone) or not g.where.in_force(day):
                continue
            if g.classes is not None and not set(MEMBERS[VehicleClass(vclass)]) & g.classes:
                continue
            limit = g.power_below_kw
            if limit is not None and power != U16_UNKNOWN and power >= limit:
                continue
            years = g.min_age_years
            if years is not None and first != DAY_UNKNOWN and not _old_enough(first, years, day):
                too_young |= kind == _OLDTIMER and how != "maybe"
                continue
            hows.add(how)
            if how == "maybe":
                continue
            ground_until = max(ground_until, min(end, g.where.end))
            ground_rank = min(ground_rank, REGISTRATION_RANK[RegistrationKind(kind)])
    has_ground = ground_rank != NO_RANK
    ground_reason = int(RANK_REASON[ground_rank]) if has_ground else 0
    ground_notes = 0
    if "plain" not in hows:
        ground_notes |= Note.REGISTERED_AFTER_ENTRY if "grace" in hows else 0
        ground_notes |= Note.VALID_UNTIL_HOUR if "hour" in hows else 0
    window = warning_on(rev, zone, day)
    if day < zone.start:
        euro = en.euro if en else 0
        cat = en.category if en else 0
        der = en.derived if en else 0
        return Verdict(Outcome.ALLOWED, Reason.ZONE_NOT_IN_FORCE, zone.start - 1, euro, cat, der)
    if en is not None and vehicle is not None:
        phev = False
        limits = [r for r in rev.plug_in_hybrid if r.where.applies_to(zone)]
        if limits:
            phev = plug_in_hybrid_one(vehicle, limits[0].max_co2, limits[0].inclusive)
        outcome, reason, until = criteria_one(rev, zone, vclass, en.family, en.euro, phev, day)
        plate = oldtimer_plate_on(rev, zone, day)
        if (
            plate is not None
            and int(vehicle["flags"]) & Flag.OLDTIMER_PLATE
            and first != DAY_UNKNOWN
            and _old_enough(first, plate.min_age_years, day)
        ):
            if outcome == Outcome.ALLOWED:
                until = max(until, _plate_until(rev, zone, day))
            else:
                outcome, reason = Outcome.ALLOWED, Reason.OLDTIMER_PLATE_EXEMPT
                until = _plate_until(rev, zone, day)
        derived = en.derived
        notes = 0
        if outcome == Outcome.ALLOWED:
            if has_ground:
                until = max(until, ground_until)
        elif has_ground:
            outcome, reason, until = Outcome.ALLOWED, ground_reason, ground_until
            notes = ground_notes
        if outcome == Outcome.NOT_ALLOWED and too_young:
            reason = Reason.OLDTIMER_TOO_YOUNG
        if reason == Reason.PLUG_IN_HYBRID_EXEMPT:
            derived |= Derived.PLUG_IN_HYBRID
        if "maybe" in hows and outcome in _REFUSED:
            notes |= Note.HOUR_UNKNOWN
        if outcome == Outcome.NOT_ALLOWED and window is not None:
            before = window.step - 1
            if before < zone.start:
                notes |= Note.WARNING_ONLY
            else:
                earlier = criteria_one(rev, zone, vclass, en.family, en.euro, phev, before)
                if earlier[0] == Outcome.ALLOWED:
                    notes |= Note.WARNING_ONLY
        return Verdict(outcome, reason, until, en.euro, en.category, int(derived), int(notes))
    if has_ground:
        return Verdict(Outcome.ALLOWED, ground_reason, ground_until, 0, 0, 0, int(ground_notes))
    verdict = _without_vehicle(rev, zone, day, known, belgian, dutch)
    notes = 0
    if "maybe" in hows and verdict.outcome in _REFUSED:
        notes |= Note.HOUR_UNKNOWN
    if verdict.outcome == Outcome.NOT_ALLOWED and window is not None:
        before = window.step - 1
        earlier = foreign_on(rev, zone, before)
        if before < zone.start or earlier is None or not earlier.registration_required:
            notes |= Note.WARNING_ONLY
    return verdict._replace(notes=int(notes))


def _without_vehicle(
    rev: RevisionData, zone: ZoneDef, day: int, known: bool, belgian: bool, dutch: bool
) -> Verdict:
    if belgian:
        why = Reason.NO_VERSION_ON_DAY if known else Reason.NOT_IN_REGISTER
        return Verdict(Outcome.UNKNOWN_PLATE, why, DAY_UNKNOWN, 0, 0, 0)
    rule = foreign_on(rev, zone, day)
    if rule is not None and dutch and rule.dutch_checked_elsewhere:
        return Verdict(
            Outcome.UNKNOWN_PLATE, Reason.DUTCH_PLATE_CHECKED_ELSEWHERE, DAY_UNKNOWN, 0, 0, 0
        )
    if rule is not None and rule.registration_required:
        return Verdict(Outcome.NOT_ALLOWED, Reason.FOREIGN_NOT_REGISTERED, DAY_UNKNOWN, 0, 0, 0)
    return Verdict(Outcome.UNKNOWN_PLATE, Reason.NOT_IN_REGISTER, DAY_UNKNOWN, 0, 0, 0)
