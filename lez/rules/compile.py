"""Compile a revision's rows into per-zone lookup arrays: the one form the engine reads.

For one zone, every day where any row starts or ends becomes a period boundary (`bounds`, with
`DAY_UNKNOWN` first so every day falls in a period). Within a period the rows in force are fixed,
so the whole answer of the criteria is a table indexed by
`[period, vehicle class, fuel family, euro id, plug-in hybrid]` holding outcome, reason and
allowed-until. Evaluation is then one `searchsorted` and one gather per item.

Zone rows win over region rows for the same class and fuel. A compound fuel family (UNKNOWN,
OTHER) or vehicle class (`lez.enrich.MEMBERS`) gets the answer its members agree on, else
INSUFFICIENT_DATA with FUEL_UNKNOWN or CATEGORY_UNKNOWN. `allowed_until` is the last day before
the first later period in which the same vehicle is no longer ALLOWED (DAY_OPEN if none).

Both engine paths (`lez.rules.engine`: `evaluate` for a chunk, `decide_one` for a single
check) read these tables; the tests' reference (`tests/support/reference_rules.py`) recomputes the
same answers straight from the rows, so a compilation mistake cannot hide behind agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from lez import codes
from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.decision import Outcome, Reason
from lez.enrich import BASE_CLASSES, MEMBERS, N_CLASSES, VehicleClass
from lez.registrations import RegistrationKind
from lez.rules.schema import (
    Criterion,
    Effect,
    ForeignRule,
    OldtimerPlate,
    RegistrationTime,
    RevisionData,
    Scoped,
    WarningWindow,
    ZoneDef,
)

N_FAMILIES: Final = len(codes.FuelFamily)
N_EUROS: Final = codes.EURO.size
N_PHEV: Final = 2
N_KINDS: Final = max(RegistrationKind) + 1
REAL_FAMILIES: Final = (
    codes.FuelFamily.PETROL,
    codes.FuelFamily.DIESEL,
    codes.FuelFamily.ELECTRIC,
    codes.FuelFamily.HYDROGEN,
)
COMBUSTION_FAMILIES: Final = (codes.FuelFamily.PETROL, codes.FuelFamily.DIESEL)

_ALLOWED: Final = int(Outcome.ALLOWED)
_INSUFFICIENT: Final = int(Outcome.INSUFFICIENT_DATA)

REGISTRATION_REASON: Final = {
    RegistrationKind.DISABLED_PERSON: Reason.REGISTERED_DISABLED_PERSON,
    RegistrationKind.OLDTIMER: Reason.REGISTERED_OLDTIMER,
    RegistrationKind.TRACTOR_UNDER_130KW: Reason.REGISTERED_TRACTOR_UNDER_130KW,
    RegistrationKind.PRIORITY_VEHICLE: Reason.REGISTERED_PRIORITY_VEHICLE,
    RegistrationKind.WHEELCHAIR_LIFT: Reason.REGISTERED_WHEELCHAIR_LIFT,
    RegistrationKind.LOCAL_PERMIT: Reason.LOCAL_PERMIT,
    RegistrationKind.DAY_PASS: Reason.DAY_PASS,
    RegistrationKind.FOREIGN_VEHICLE: Reason.FOREIGN_REGISTERED,
}
REGISTRATION_RANK: Final = {
    kind: rank
    for rank, kind in enumerate(
        (
            RegistrationKind.WHEELCHAIR_LIFT,
            RegistrationKind.DISABLED_PERSON,
            RegistrationKind.PRIORITY_VEHICLE,
            RegistrationKind.OLDTIMER,
            RegistrationKind.TRACTOR_UNDER_130KW,
            RegistrationKind.FOREIGN_VEHICLE,
            RegistrationKind.LOCAL_PERMIT,
            RegistrationKind.DAY_PASS,
        )
    )
}
"""Which registration names the reason when several apply (the end day is the latest of all)."""
NO_RANK: Final = 255
RANK_REASON: Final = np.zeros(256, dtype=np.uint8)
for _kind, _rank in REGISTRATION_RANK.items():
    RANK_REASON[_rank] = REGISTRATION_REASON[_kind]


# -- the rows in force for a zone on a day --------------------------------------------------------


def _pick(rows: list[Scoped], zone: ZoneDef) -> int | None:
    """Index of the row that applies (a zone row wins over a region row), or None."""
    zone_rows = [i for i, w in enumerate(rows) if w.zone_id == zone.id]
    if zone_rows:
        return zone_rows[0]
    region_rows = [i for i, w in enumerate(rows) if w.zone_id == 0 and w.region == zone.region]
    return region_rows[0] if region_rows else None


def criterion_on(
    rev: RevisionData, zone: ZoneDef, vclass: int, family: int, day: int
) -> Criterion | None:
    """The criterion row in force for a base class and a real fuel family on `day`."""
    rows = [
        c
        for c in rev.criteria
        if c.where.applies_to(zone)
        and c.where.in_force(day)
        and vclass in c.classes
        and family in c.families
    ]
    i = _pick([c.where for c in rows], zone)
    return None if i is None else rows[i]


def phev_exempt_on(rev: RevisionData, zone: ZoneDef, vclass: int, day: int) -> bool:
    rows = [
        r
        for r in rev.plug_in_hybrid
        if r.where.applies_to(zone) and r.where.in_force(day) and vclass in r.classes
    ]
    return _pick([r.where for r in rows], zone) is not None


def foreign_on(rev: RevisionData, zone: ZoneDef, day: int) -> ForeignRule | None:
    rows = [r for r in rev.foreign if r.where.applies_to(zone) and r.where.in_force(day)]
    i = _pick([r.where for r in rows], zone)
    return None if i is None else rows[i]


def registration_time_on(
    rev: RevisionData, zone: ZoneDef, kind: int, day: int
) -> RegistrationTime | None:
    """The `[[registration_time]]` row in force for a kind on `day` (a zone row wins)."""
    rows = [
        r
        for r in rev.registration_times
        if r.kind == kind and r.where.applies_to(zone) and r.where.in_force(day)
    ]
    i = _pick([r.where for r in rows], zone)
    return None if i is None else rows[i]


def warning_on(rev: RevisionData, zone: ZoneDef, day: int) -> WarningWindow | None:
    """The warning-only window in force on `day` (a zone row wins), None if none."""
    rows = [r for r in rev.warnings if r.where.applies_to(zone) and r.where.in_force(day)]
    i = _pick([r.where for r in rows], zone)
    return None if i is None or rows[i].undetermined else rows[i]


def oldtimer_plate_on(rev: RevisionData, zone: ZoneDef, day: int) -> OldtimerPlate | None:
    """The automatic oldtimer-plate exemption in force on `day` (a zone row wins)."""
    rows = [r for r in rev.oldtimer_plates if r.where.applies_to(zone) and r.where.in_force(day)]
    i = _pick([r.where for r in rows], zone)
    return None if i is None else rows[i]


def change_days(rev: RevisionData, zone: ZoneDef) -> list[int]:
    """Every day on which something that applies to the zone starts or stops applying."""
    days = {zone.start}
    rows: list[Scoped] = [c.where for c in rev.criteria]
    rows += [r.where for r in rev.plug_in_hybrid] + [r.where for r in rev.foreign]
    rows += [r.where for r in rev.registration_times] + [r.where for r in rev.warnings]
    rows += [r.where for r in rev.oldtimer_plates]
    for w in rows:
        if w.applies_to(zone):
            days.add(w.start)
            if w.end != DAY_OPEN:
                days.add(w.end + 1)
    return sorted(days)


# -- compiled tables ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledGrant:
    """A registration grant row of the zone, with its conditions as lookup arrays."""

    kind: int
    rank: int
    start: int
    end: int  # inclusive
    class_ok: npt.NDArray[np.bool_]  # by vehicle class: the condition can hold
    power_below_kw: int | None
    min_age_years: int | None


@dataclass(frozen=True, slots=True)
class CompiledZone:
    """One zone of a revision as lookup tables: what both engine paths read."""

    zone: ZoneDef
    bounds: npt.NDArray[np.int32]  # period starts; bounds[0] = DAY_UNKNOWN
    outcome: npt.NDArray[np.uint8]  # flat [period, class, family, euro, phev]
    reason: npt.NDArray[np.uint8]
    until: npt.NDArray[np.int32]
    foreign_required: npt.NDArray[np.bool_]  # by period
    dutch_elsewhere: npt.NDArray[np.bool_]  # by period
    phev_limit: tuple[int, bool] | None  # (max CO2, inclusive) when the zone has a PHEV rule
    phev_periods: npt.NDArray[np.bool_]  # by period: a plug-in hybrid rule is in force
    grants: tuple[CompiledGrant, ...]
    grace_days: npt.NDArray[np.uint8]  # [period, registration kind]: days before its first day
    until_hour: npt.NDArray[np.uint8]  # [period, kind]: hour of the day after (0: none)
    has_timing: bool  # some kind of some period has grace days or an hour
    warn_prev: npt.NDArray[
        np.int32
    ]  # by period: NO_WARNING, WARN_ALL or the period before the step
    plate_age: npt.NDArray[np.uint8]  # by period: oldtimer-plate exemption's age (0: none)
    plate_until: npt.NDArray[np.int32]  # by period: last day of the run of exemption periods


NO_WARNING: Final = -2
"""`warn_prev` of a period without a warning-only window."""
WARN_ALL: Final = -1
"""`warn_prev` of a window whose step is the zone's start: every refusal is a warning."""


STRIDES: Final = (N_CLASSES * N_FAMILIES * N_EUROS * N_PHEV, N_FAMILIES * N_EUROS * N_PHEV,
                  N_EUROS * N_PHEV, N_PHEV)  # fmt: skip
"""Flat-index strides of period, class, family and euro (phev has stride 1)."""

_EURO_IDS: Final = np.arange(N_EUROS)


def _effect_vec(crit: Criterion | None) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    out = np.full(N_EUROS, _ALLOWED, dtype=np.uint8)
    why = np.full(N_EUROS, Reason.CATEGORY_NOT_REGULATED, dtype=np.uint8)
    if crit is None:
        return out, why
    if crit.effect == Effect.ALLOW:
        why[:] = Reason.MEETS_CRITERIA
    elif crit.effect == Effect.EXEMPT:
        why[:] = crit.exempt_reason
    elif crit.effect == Effect.BAN:
        out[:], why[:] = Outcome.NOT_ALLOWED, Reason.FUEL_BANNED
    elif crit.effect == Effect.UNDETERMINED:
        out[:], why[:] = _INSUFFICIENT, Reason.CRITERIA_NOT_FOUND
    else:
        meets = codes.EURO_LEVEL[crit.min_euro] <= codes.EURO_LEVEL
        out[:] = np.where(meets, _ALLOWED, Outcome.NOT_ALLOWED)
        why[:] = np.where(meets, Reason.MEETS_CRITERIA, Reason.EURO_BELOW_MINIMUM)
        unusable = (_EURO_IDS == codes.UNKNOWN) | (
            codes.EURO_SCALE[crit.min_euro] != codes.EURO_SCALE
        )
        out[unusable], why[unusable] = _INSUFFICIENT, Reason.EURO_UNKNOWN
    return out, why


def _agree(
    cells: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]], otherwise: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    outs = np.stack([c[0] for c in cells])
    whys = np.stack([c[1] for c in cells])
    same = np.all((outs == outs[0]) & (whys == whys[0]), axis=0)
    out = np.where(same, outs[0], _INSUFFICIENT).astype(np.uint8)
    why = np.where(same, whys[0], otherwise).astype(np.uint8)
    return out, why


def _base_class_period(
    rev: RevisionData,
    zone: ZoneDef,
    vclass: int,
    day: int,
    outcome: npt.NDArray[np.uint8],
    reason: npt.NDArray[np.uint8],
) -> bool:
    """Fill one base class's [family, euro, phev] cells of one period (starting on `day`);
    True when a plug-in hybrid exemption is in force for the class."""
    phev_ok = phev_exempt_on(rev, zone, vclass, day)
    for f in REAL_FAMILIES:
        o, r = _effect_vec(criterion_on(rev, zone, vclass, f, day))
        outcome[f, :, 0], reason[f, :, 0] = o, r
        if phev_ok and f in COMBUSTION_FAMILIES:
            lift = o != _ALLOWED
            o, r = o.copy(), r.copy()
            o[lift], r[lift] = _ALLOWED, Reason.PLUG_IN_HYBRID_EXEMPT
        outcome[f, :, 1], reason[f, :, 1] = o, r
    for f in set(codes.FuelFamily) - set(REAL_FAMILIES):  # compound families: members agree
        for h in range(N_PHEV):
            cells = [(outcome[g, :, h], reason[g, :, h]) for g in REAL_FAMILIES]
            outcome[f, :, h], reason[f, :, h] = _agree(cells, Reason.FUEL_UNKNOWN)
    return phev_ok


def _compound_classes(outcome: npt.NDArray[np.uint8], reason: npt.NDArray[np.uint8]) -> None:
    """Fill one period's compound vehicle classes with the answer their members agree on."""
    for cls in VehicleClass:
        if cls in BASE_CLASSES:
            continue
        for f in codes.FuelFamily:
            for h in range(N_PHEV):
                cells = [(outcome[m, f, :, h], reason[m, f, :, h]) for m in MEMBERS[cls]]
                outcome[cls, f, :, h], reason[cls, f, :, h] = _agree(cells, Reason.CATEGORY_UNKNOWN)


def _allowed_until(
    outcome: npt.NDArray[np.uint8], bounds: npt.NDArray[np.int32]
) -> npt.NDArray[np.int32]:
    """For each allowed cell, the last day before the first later period that does not allow
    it (DAY_OPEN if none); DAY_UNKNOWN where not allowed."""
    allowed = outcome == _ALLOWED
    until = np.full(outcome.shape, DAY_UNKNOWN, dtype=np.int32)
    until[-1][allowed[-1]] = DAY_OPEN
    for p in range(len(bounds) - 2, -1, -1):
        carry = np.where(allowed[p + 1], until[p + 1], bounds[p + 1] - 1)
        until[p] = np.where(allowed[p], carry, DAY_UNKNOWN)
    return until


def _compiled_grants(rev: RevisionData, zone: ZoneDef) -> tuple[CompiledGrant, ...]:
    return tuple(
        CompiledGrant(
            kind=int(g.kind),
            rank=REGISTRATION_RANK[g.kind],
            start=g.where.start,
            end=g.where.end,
            class_ok=np.array(
                [g.classes is None or bool(set(MEMBERS[c]) & g.classes) for c in VehicleClass],
                dtype=np.bool_,
            ),
            power_below_kw=g.power_below_kw,
            min_age_years=g.min_age_years,
        )
        for g in rev.grants
        if g.where.applies_to(zone)
    )


def compile_zone(rev: RevisionData, zone: ZoneDef) -> CompiledZone:
    """The lookup tables of one zone."""
    bounds = np.array([DAY_UNKNOWN, *change_days(rev, zone)], dtype=np.int32)
    n_periods = len(bounds)
    shape = (n_periods, N_CLASSES, N_FAMILIES, N_EUROS, N_PHEV)
    outcome = np.zeros(shape, dtype=np.uint8)
    reason = np.zeros(shape, dtype=np.uint8)
    foreign_required = np.zeros(n_periods, dtype=np.bool_)
    dutch_elsewhere = np.zeros(n_periods, dtype=np.bool_)
    phev_periods = np.zeros(n_periods, dtype=np.bool_)
    for p, day in enumerate(bounds.tolist()):
        rule = foreign_on(rev, zone, day)
        if rule is not None:
            foreign_required[p] = rule.registration_required
            dutch_elsewhere[p] = rule.dutch_checked_elsewhere
        for c in BASE_CLASSES:
            phev_periods[p] |= _base_class_period(rev, zone, c, day, outcome[p, c], reason[p, c])
        _compound_classes(outcome[p], reason[p])
    phev_rows = [r for r in rev.plug_in_hybrid if r.where.applies_to(zone)]
    grace_days = np.zeros((n_periods, N_KINDS), dtype=np.uint8)
    until_hour = np.zeros((n_periods, N_KINDS), dtype=np.uint8)
    warn_prev = np.full(n_periods, NO_WARNING, dtype=np.int32)
    plate_age = np.zeros(n_periods, dtype=np.uint8)
    for p, day in enumerate(bounds.tolist()):
        for kind in RegistrationKind:
            timing = registration_time_on(rev, zone, kind, day)
            if timing is not None:
                grace_days[p, kind], until_hour[p, kind] = (
                    timing.grace_days,
                    timing.valid_until_hour,
                )
        window = warning_on(rev, zone, day)
        if window is not None:
            before = window.step - 1
            warn_prev[p] = (
                WARN_ALL
                if before < zone.start
                else int(np.searchsorted(bounds, before, "right")) - 1
            )
        plate = oldtimer_plate_on(rev, zone, day)
        if plate is not None:
            plate_age[p] = plate.min_age_years
    return CompiledZone(
        zone=zone,
        bounds=bounds,
        outcome=outcome.ravel(),
        reason=reason.ravel(),
        until=_allowed_until(outcome, bounds).ravel(),
        foreign_required=foreign_required,
        dutch_elsewhere=dutch_elsewhere,
        phev_limit=(phev_rows[0].max_co2, phev_rows[0].inclusive) if phev_rows else None,
        phev_periods=phev_periods,
        grants=_compiled_grants(rev, zone),
        grace_days=grace_days,
        until_hour=until_hour,
        has_timing=bool(grace_days.any() or until_hour.any()),
        warn_prev=warn_prev,
        plate_age=plate_age,
        plate_until=_allowed_until(
            np.where(plate_age > 0, _ALLOWED, 0).astype(np.uint8)[:, None], bounds
        )[:, 0],
    )
