"""Rule-table files: the TOML schema, its validation and the parsed rows.

One file per revision (`rules/<revision>.toml`, docs in `rules/README.md`). Tables:

- `[revision]`: `id` (the file stem), `adopted`, `title`, `note`.
- `[[zone]]`: `id` (1..65535, stable), `name`, `region` (`flanders` | `brussels`), `nis`,
  `start` (first day in force), `source`.
- `[[criterion]]`: `scope` (a region or zone name), `categories`, `fuels`, `from`, `until`
  (inclusive; absent = open) and exactly one effect: `min_euro` (a DIV euro code of
  lez/codes/euro.csv, light or heavy notation, EEV, or a tractor stage `P3A`...), `ban`, `allow`
  (no condition), `exempt` (`ZERO_EMISSION` | `CATEGORY_NOT_REGULATED` |
  `CATEGORY_ALWAYS_ALLOWED`) or `undetermined` (the sources do not settle it: the decision says
  INSUFFICIENT_DATA / CRITERIA_NOT_FOUND, never a guess).
- `[[plug_in_hybrid]]`: `scope`, `categories`, `from`, `until`, `max_co2`, `co2_inclusive`.
- `[[registration]]`: which registration kinds grant access where and when: `kind`, `scope`,
  `from`, `until`, optional conditions `categories`, `power_below_kw` and `min_age_years` (the
  vehicle's age on the day, from its first registration, where the register knows it).
- `[[foreign]]`: `scope`, `from`, `until`, `registration_required`, `dutch_checked_elsewhere`.
- `[[registration_time]]`: when a registration kind covers a read beyond its days: `kind`,
  `scope`, `from`, `until` and `valid_until_hour` (a registration stays valid on the day after
  its last day until this hour, Brussels time) and/or `grace_days` (it covers reads up to this
  many days before its first day: registering after entering), or `undetermined = true` with a
  note (NOT FOUND: the registration covers its own days only). A zone row wins over a region
  row for the same kind.
- `[[warning]]`: `scope`, `from`, `until`, `step`: in `[from, until]` a refusal leads to a
  warning, not a fine, when the rules in force the day before `step` (the zone's start or a
  stricter step) did not refuse the vehicle; `undetermined = true` with a note marks a window
  the sources do not settle (no warning is claimed).
- `[[oldtimer_plate]]`: `scope`, `from`, `until`, `min_age_years`: a vehicle on an oldtimer plate
  (plate type `O` in the register) at least that old on the day is exempt without registration.

Every row carries `source`; optional `note`; `unconfirmed = true` (with a `note`) marks data the
sources do not confirm. Unknown tables or fields, wrong types, unknown zones, regions, categories,
fuels or euro codes, and overlapping periods within one scope are refused with a
`RuleTableError` naming file, line and field (tomllib reports no positions, so `_Lines` finds
them in the text).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from lez import codes
from lez.days import DAY_OPEN, to_day
from lez.decision import Reason
from lez.enrich import VehicleClass
from lez.errors import RuleTableError
from lez.registrations import Region, RegistrationKind

REGIONS: Final = {"flanders": Region.FLANDERS, "brussels": Region.BRUSSELS}

_C = VehicleClass
CATEGORY_NAMES: Final[dict[str, frozenset[int]]] = {
    "M": frozenset({_C.M1, _C.M2, _C.M3}),
    "N": frozenset({_C.N1_I, _C.N1_II, _C.N1_III, _C.N2_LIGHT, _C.N2_HEAVY, _C.N3}),
    "T": frozenset({_C.T}),
    "L": frozenset({_C.L}),
    "O": frozenset({_C.O}),
    "OTHER": frozenset({_C.OTHER}),
    "M1": frozenset({_C.M1}),
    "M2": frozenset({_C.M2}),
    "M3": frozenset({_C.M3}),
    "N1": frozenset({_C.N1_I, _C.N1_II, _C.N1_III}),
    "N2": frozenset({_C.N2_LIGHT, _C.N2_HEAVY}),
    "N3": frozenset({_C.N3}),
    "N1_I": frozenset({_C.N1_I}),
    "N1_II": frozenset({_C.N1_II}),
    "N1_III": frozenset({_C.N1_III}),
    "N2_LIGHT": frozenset({_C.N2_LIGHT}),
    "N2_HEAVY": frozenset({_C.N2_HEAVY}),
}
"""Category names a rule may use, as sets of base vehicle classes (lez.enrich)."""

FUEL_NAMES: Final = {
    "petrol": codes.FuelFamily.PETROL,
    "diesel": codes.FuelFamily.DIESEL,
    "electric": codes.FuelFamily.ELECTRIC,
    "hydrogen": codes.FuelFamily.HYDROGEN,
}
"""Fuel families a rule may name. UNKNOWN and OTHER are answered only where these agree."""

EXEMPT_REASONS: Final = {
    "ZERO_EMISSION": Reason.ZERO_EMISSION,
    "CATEGORY_NOT_REGULATED": Reason.CATEGORY_NOT_REGULATED,
    "CATEGORY_ALWAYS_ALLOWED": Reason.CATEGORY_ALWAYS_ALLOWED,
}

GRANT_KINDS: Final = {k.name: k for k in RegistrationKind if k != RegistrationKind.EURO_CORRECTION}


class Effect(enum.IntEnum):
    """What a criterion row does to the vehicles it covers."""

    MIN_EURO = 1
    BAN = 2
    ALLOW = 3
    EXEMPT = 4
    UNDETERMINED = 5


_EFFECT_FIELDS: Final = ("min_euro", "ban", "allow", "exempt", "undetermined")


@dataclass(frozen=True, slots=True)
class ZoneDef:
    id: int
    name: str
    region: Region
    nis: int
    start: int  # first day in force
    source: str


@dataclass(frozen=True, slots=True)
class Scoped:
    """Where and when a row applies. `zone_id` 0: every zone of `region`."""

    zone_id: int
    region: Region
    start: int
    end: int  # inclusive last day; DAY_OPEN when open
    line: int
    source: str

    def in_force(self, day: int) -> bool:
        return self.start <= day <= self.end

    def applies_to(self, zone: ZoneDef) -> bool:
        return self.zone_id == zone.id if self.zone_id else self.region == zone.region


@dataclass(frozen=True, slots=True)
class Criterion:
    where: Scoped
    classes: frozenset[int]
    families: frozenset[int]
    effect: Effect
    min_euro: int = 0  # euro id for MIN_EURO
    exempt_reason: Reason = Reason.UNSPECIFIED


@dataclass(frozen=True, slots=True)
class PlugInHybridRule:
    where: Scoped
    classes: frozenset[int]
    max_co2: int
    inclusive: bool


@dataclass(frozen=True, slots=True)
class Grant:
    where: Scoped
    kind: RegistrationKind
    classes: frozenset[int] | None  # condition on the vehicle class (None: any)
    power_below_kw: int | None  # condition: net power strictly below (None: any)
    min_age_years: int | None = None  # condition: at least this old on the day (None: any)


@dataclass(frozen=True, slots=True)
class ForeignRule:
    where: Scoped
    registration_required: bool
    dutch_checked_elsewhere: bool


@dataclass(frozen=True, slots=True)
class RegistrationTime:
    """When a registration kind covers reads beyond its own days (both 0: its days only)."""

    where: Scoped
    kind: RegistrationKind
    valid_until_hour: int  # 0: none; else valid on the day after its last day until this hour
    grace_days: int  # reads up to this many days before its first day are covered
    undetermined: bool  # NOT FOUND in the sources: its own days only


@dataclass(frozen=True, slots=True)
class WarningWindow:
    """A warning-only window: refusals the rules before `step` did not make are warned."""

    where: Scoped
    step: int  # first day of the zone or rule step the window belongs to
    undetermined: bool  # NOT FOUND in the sources: no warning is claimed


@dataclass(frozen=True, slots=True)
class OldtimerPlate:
    """The automatic exemption of vehicles on an oldtimer plate of at least an age."""

    where: Scoped
    min_age_years: int


@dataclass(frozen=True, slots=True)
class RevisionData:
    """One parsed and validated revision file."""

    id: str
    path: str
    adopted: int
    title: str
    zones: tuple[ZoneDef, ...]
    criteria: tuple[Criterion, ...]
    plug_in_hybrid: tuple[PlugInHybridRule, ...]
    grants: tuple[Grant, ...]
    foreign: tuple[ForeignRule, ...]
    registration_times: tuple[RegistrationTime, ...] = ()
    warnings: tuple[WarningWindow, ...] = ()
    oldtimer_plates: tuple[OldtimerPlate, ...] = ()


# -- schema -----------------------------------------------------------------------------------

_STR, _INT, _BOOL, _DATE, _STRS = "text", "integer", "true/false", "date YYYY-MM-DD", "list of text"
_COMMON: Final = {"source": (_STR, True), "note": (_STR, False), "unconfirmed": (_BOOL, False)}
_WHEN: Final = {"scope": (_STR, True), "from": (_DATE, True), "until": (_DATE, False)}
SCHEMA: Final[dict[str, dict[str, tuple[str, bool]]]] = {
    "revision": {"id": (_STR, True), "adopted": (_DATE, True), "title": (_STR, True),
                 "note": (_STR, False)},
    "zone": {"id": (_INT, True), "name": (_STR, True), "region": (_STR, True),
             "nis": (_INT, True), "start": (_DATE, True), **_COMMON},
    "criterion": {**_WHEN, "categories": (_STRS, True), "fuels": (_STRS, True),
                  "min_euro": (_STR, False), "ban": (_BOOL, False), "allow": (_BOOL, False),
                  "exempt": (_STR, False), "undetermined": (_BOOL, False), **_COMMON},
    "plug_in_hybrid": {**_WHEN, "categories": (_STRS, True), "max_co2": (_INT, True),
                       "co2_inclusive": (_BOOL, True), **_COMMON},
    "registration": {**_WHEN, "kind": (_STR, True), "categories": (_STRS, False),
                     "power_below_kw": (_INT, False), "min_age_years": (_INT, False), **_COMMON},
    "registration_time": {**_WHEN, "kind": (_STR, True), "valid_until_hour": (_INT, False),
                          "grace_days": (_INT, False), "undetermined": (_BOOL, False),
                          **_COMMON},
    "warning": {**_WHEN, "step": (_DATE, True), "undetermined": (_BOOL, False), **_COMMON},
    "oldtimer_plate": {**_WHEN, "min_age_years": (_INT, True), **_COMMON},
    "foreign": {**_WHEN, "registration_required": (_BOOL, True),
                "dutch_checked_elsewhere": (_BOOL, True), **_COMMON},
}  # fmt: skip
"""Field name -> (type, required), per table. `revision` is a table, the others arrays."""

_CHECKS: Final[dict[str, Callable[[Any], bool]]] = {
    _STR: lambda v: isinstance(v, str) and v.strip() != "",
    _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    _BOOL: lambda v: isinstance(v, bool),
    _DATE: lambda v: isinstance(v, dt.date) and not isinstance(v, dt.datetime),
    _STRS: lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v),
}

_HEADER_ARRAY = re.compile(r"^\s*\[\[\s*([A-Za-z0-9_.-]+)\s*\]\]")
_HEADER_TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")
_TOML_LINE = re.compile(r"line (\d+)")


class _Lines:
    """Line numbers of table headers and keys, found by scanning the text."""

    def __init__(self, text: str) -> None:
        self.headers: dict[tuple[str, int], int] = {}
        self.keys: dict[tuple[str, int], dict[str, int]] = {}
        counts: dict[str, int] = {}
        current = ("", 0)
        for number, line in enumerate(text.splitlines(), start=1):
            if m := _HEADER_ARRAY.match(line):
                name = m.group(1)
                current = (name, counts.get(name, 0))
                counts[name] = current[1] + 1
                self.headers[current] = number
            elif m := _HEADER_TABLE.match(line):
                current = (m.group(1), 0)
                self.headers[current] = number
            elif m := _KEY.match(line):
                self.keys.setdefault(current, {}).setdefault(m.group(1), number)

    def of(self, table: str, index: int, field: str | None = None) -> int | None:
        if field is not None:
            found = self.keys.get((table, index), {}).get(field)
            if found is not None:
                return found
        return self.headers.get((table, index))


class _Parser:
    def __init__(self, text: str, path: str, revision_id: str) -> None:
        self.text = text
        self.path = path
        self.revision_id = revision_id
        self.lines = _Lines(text)

    def fail(self, table: str, index: int, field: str, problem: str) -> RuleTableError:
        return RuleTableError(self.path, self.lines.of(table, index, field), field, problem)

    def parse(self) -> RevisionData:
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            m = _TOML_LINE.search(str(exc))
            raise RuleTableError(
                self.path, int(m.group(1)) if m else None, "<syntax>", f"not valid TOML: {exc}"
            ) from None
        for name in doc:
            if name not in SCHEMA:
                raise self.fail(name, 0, name, f"unknown table; expected one of {sorted(SCHEMA)}")
        revision = doc.get("revision")
        if not isinstance(revision, dict):
            raise RuleTableError(self.path, None, "revision", "a [revision] table is required")
        self.check_fields("revision", 0, revision)
        if revision["id"] != self.revision_id:
            raise self.fail(
                "revision", 0, "id", f"must equal the revision id {self.revision_id!r} (file stem)"
            )
        rows = {name: self.array(doc, name) for name in SCHEMA if name != "revision"}
        zones = self.zones(rows["zone"])
        return RevisionData(
            id=self.revision_id,
            path=self.path,
            adopted=to_day(revision["adopted"]),
            title=revision["title"],
            zones=zones,
            criteria=self.criteria(rows["criterion"], zones),
            plug_in_hybrid=self.phev(rows["plug_in_hybrid"], zones),
            grants=self.grants(rows["registration"], zones),
            foreign=self.foreign(rows["foreign"], zones),
            registration_times=self.registration_times(rows["registration_time"], zones),
            warnings=self.warnings(rows["warning"], zones),
            oldtimer_plates=self.oldtimer_plates(rows["oldtimer_plate"], zones),
        )

    def array(self, doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
        value = doc.get(name, [])
        if not isinstance(value, list):
            raise self.fail(name, 0, name, f"write each row as [[{name}]]")
        for i, row in enumerate(value):
            self.check_fields(name, i, row)
        return value

    def check_fields(self, table: str, index: int, row: Mapping[str, Any]) -> None:
        spec = SCHEMA[table]
        for field, value in row.items():
            if field not in spec:
                raise self.fail(table, index, field, f"unknown field in [{table}]")
            kind, _ = spec[field]
            if not _CHECKS[kind](value):
                raise self.fail(table, index, field, f"expected {kind}")
        for field, (_, required) in spec.items():
            if required and field not in row:
                raise self.fail(table, index, field, f"required field missing in [{table}]")
        if row.get("unconfirmed") and "note" not in row:
            raise self.fail(table, index, "note", "an unconfirmed row must say why in a note")

    # -- tables -----------------------------------------------------------------------------

    def zones(self, rows: list[dict[str, Any]]) -> tuple[ZoneDef, ...]:
        zones: list[ZoneDef] = []
        for i, row in enumerate(rows):
            if not 1 <= row["id"] <= 0xFFFF:
                raise self.fail("zone", i, "id", "zone ids are 1..65535 (0 means every zone)")
            if row["region"] not in REGIONS:
                raise self.fail("zone", i, "region", f"unknown region; expected {sorted(REGIONS)}")
            if any(z.id == row["id"] for z in zones):
                raise self.fail("zone", i, "id", "duplicate zone id")
            if any(z.name.casefold() == row["name"].casefold() for z in zones):
                raise self.fail("zone", i, "name", "duplicate zone name")
            if row["name"] in REGIONS:
                raise self.fail("zone", i, "name", "a zone may not be named like a region")
            zones.append(
                ZoneDef(
                    id=row["id"],
                    name=row["name"],
                    region=REGIONS[row["region"]],
                    nis=row["nis"],
                    start=to_day(row["start"]),
                    source=row["source"],
                )
            )
        if not zones:
            raise RuleTableError(self.path, None, "zone", "a revision needs at least one [[zone]]")
        return tuple(zones)

    def scoped(self, table: str, i: int, row: dict[str, Any], zones: tuple[ZoneDef, ...]) -> Scoped:
        scope = row["scope"]
        start = to_day(row["from"])
        end = to_day(row["until"]) if "until" in row else DAY_OPEN
        if end < start:
            raise self.fail(table, i, "until", "ends before it starts")
        line = self.lines.of(table, i) or 0
        if scope in REGIONS:
            return Scoped(0, REGIONS[scope], start, end, line, row["source"])
        for z in zones:
            if z.name == scope:
                return Scoped(z.id, z.region, start, end, line, row["source"])
        raise self.fail(table, i, "scope", "unknown zone or region")

    def classes(self, table: str, i: int, names: list[str], field: str) -> frozenset[int]:
        out: set[int] = set()
        for name in names:
            if name not in CATEGORY_NAMES:
                raise self.fail(table, i, field, f"unknown category {name!r}")
            out |= CATEGORY_NAMES[name]
        return frozenset(out)

    def criteria(
        self, rows: list[dict[str, Any]], zones: tuple[ZoneDef, ...]
    ) -> tuple[Criterion, ...]:
        out: list[Criterion] = []
        for i, row in enumerate(rows):
            where = self.scoped("criterion", i, row, zones)
            classes = self.classes("criterion", i, row["categories"], "categories")
            families: set[int] = set()
            for name in row["fuels"]:
                if name not in FUEL_NAMES:
                    raise self.fail("criterion", i, "fuels", f"unknown fuel {name!r}")
                families.add(FUEL_NAMES[name])
            given = [f for f in _EFFECT_FIELDS if f in row]
            if len(given) != 1:
                raise self.fail(
                    "criterion", i, given[1] if len(given) > 1 else "min_euro",
                    f"exactly one of {', '.join(_EFFECT_FIELDS)} is required",
                )  # fmt: skip
            field = given[0]
            effect, euro, reason = Effect.MIN_EURO, 0, Reason.UNSPECIFIED
            if field == "min_euro":
                if not codes.EURO.is_known(row["min_euro"]):
                    raise self.fail("criterion", i, "min_euro", "unknown euro code")
                euro = codes.EURO.id_of(row["min_euro"])
            elif field == "exempt":
                if row["exempt"] not in EXEMPT_REASONS:
                    raise self.fail(
                        "criterion", i, "exempt", f"expected one of {sorted(EXEMPT_REASONS)}"
                    )
                effect, reason = Effect.EXEMPT, EXEMPT_REASONS[row["exempt"]]
            else:
                if row[field] is not True:
                    raise self.fail("criterion", i, field, "write it as true (or leave it out)")
                effect = {"ban": Effect.BAN, "allow": Effect.ALLOW}.get(field, Effect.UNDETERMINED)
                if effect == Effect.UNDETERMINED and "note" not in row:
                    raise self.fail("criterion", i, "note", "say in a note what was not found")
            crit = Criterion(where, classes, frozenset(families), effect, euro, reason)
            for other in out:
                if (
                    _same_scope(other.where, where)
                    and other.classes & classes
                    and other.families & families
                    and _overlap(other.where, where)
                ):
                    raise self.fail(
                        "criterion", i, "from",
                        f"overlaps the criterion at line {other.where.line} for the same scope, "
                        "category and fuel",
                    )  # fmt: skip
            out.append(crit)
        return tuple(out)

    def phev(
        self, rows: list[dict[str, Any]], zones: tuple[ZoneDef, ...]
    ) -> tuple[PlugInHybridRule, ...]:
        out: list[PlugInHybridRule] = []
        for i, row in enumerate(rows):
            where = self.scoped("plug_in_hybrid", i, row, zones)
            classes = self.classes("plug_in_hybrid", i, row["categories"], "categories")
            rule = PlugInHybridRule(where, classes, row["max_co2"], row["co2_inclusive"])
            for other in out:
                same = _same_scope(other.where, where) and _overlap(other.where, where)
                if same and other.classes & classes:
                    raise self.fail(
                            "plug_in_hybrid", i, "from",
                            f"overlaps the row at line {other.where.line}",
                        )  # fmt: skip
            for other in out:
                if (other.max_co2, other.inclusive) != (rule.max_co2, rule.inclusive):
                    raise self.fail(
                        "plug_in_hybrid", i, "max_co2",
                        "all plug-in hybrid rows of a revision must share one CO2 limit",
                    )  # fmt: skip
            out.append(rule)
        return tuple(out)

    def grants(self, rows: list[dict[str, Any]], zones: tuple[ZoneDef, ...]) -> tuple[Grant, ...]:
        out: list[Grant] = []
        for i, row in enumerate(rows):
            where = self.scoped("registration", i, row, zones)
            if row["kind"] not in GRANT_KINDS:
                raise self.fail("registration", i, "kind", f"expected one of {sorted(GRANT_KINDS)}")
            kind = GRANT_KINDS[row["kind"]]
            classes = (
                self.classes("registration", i, row["categories"], "categories")
                if "categories" in row
                else None
            )
            age = row.get("min_age_years")
            if age is not None and not 1 <= age <= _MAX_AGE_YEARS:
                raise self.fail("registration", i, "min_age_years", f"expected 1..{_MAX_AGE_YEARS}")
            grant = Grant(where, kind, classes, row.get("power_below_kw"), age)
            for other in out:
                same = other.kind == kind and _same_scope(other.where, where)
                if same and _overlap(other.where, where):
                    raise self.fail(
                        "registration", i, "from",
                        f"overlaps the row at line {other.where.line} for the same kind",
                    )  # fmt: skip
            out.append(grant)
        return tuple(out)

    def foreign(
        self, rows: list[dict[str, Any]], zones: tuple[ZoneDef, ...]
    ) -> tuple[ForeignRule, ...]:
        out: list[ForeignRule] = []
        for i, row in enumerate(rows):
            where = self.scoped("foreign", i, row, zones)
            rule = ForeignRule(where, row["registration_required"], row["dutch_checked_elsewhere"])
            for other in out:
                if _same_scope(other.where, where) and _overlap(other.where, where):
                    raise self.fail(
                        "foreign", i, "from", f"overlaps the row at line {other.where.line}"
                    )
            out.append(rule)
        return tuple(out)

    def registration_times(
        self, rows: list[dict[str, Any]], zones: tuple[ZoneDef, ...]
    ) -> tuple[RegistrationTime, ...]:
        out: list[RegistrationTime] = []
        for i, row in enumerate(rows):
            table = "registration_time"
            where = self.scoped(table, i, row, zones)
            if row["kind"] not in GRANT_KINDS:
                raise self.fail(table, i, "kind", f"expected one of {sorted(GRANT_KINDS)}")
            hour, grace = row.get("valid_until_hour", 0), row.get("grace_days", 0)
            undetermined = row.get("undetermined", False) is True
            if "undetermined" in row and not undetermined:
                raise self.fail(table, i, "undetermined", "write it as true (or leave it out)")
            if undetermined and ("valid_until_hour" in row or "grace_days" in row):
                raise self.fail(table, i, "undetermined", "an undetermined row carries no hour "
                                "or grace days")  # fmt: skip
            if undetermined and "note" not in row:
                raise self.fail(table, i, "note", "say in a note what was not found")
            if not undetermined and "valid_until_hour" not in row and "grace_days" not in row:
                raise self.fail(table, i, "valid_until_hour", "give valid_until_hour, grace_days "
                                "or undetermined = true")  # fmt: skip
            if "valid_until_hour" in row and not 1 <= hour <= _MAX_HOUR:
                raise self.fail(table, i, "valid_until_hour", f"expected an hour 1..{_MAX_HOUR}")
            if "grace_days" in row and not 1 <= grace <= _MAX_GRACE_DAYS:
                raise self.fail(table, i, "grace_days", f"expected 1..{_MAX_GRACE_DAYS} days")
            kind = GRANT_KINDS[row["kind"]]
            timing = RegistrationTime(where, kind, hour, grace, undetermined)
            for other in out:
                same = other.kind == kind and _same_scope(other.where, where)
                if same and _overlap(other.where, where):
                    raise self.fail(
                        table, i, "from",
                        f"overlaps the row at line {other.where.line} for the same kind",
                    )  # fmt: skip
            out.append(timing)
        return tuple(out)

    def warnings(
        self, rows: list[dict[str, Any]], zones: tuple[ZoneDef, ...]
    ) -> tuple[WarningWindow, ...]:
        out: list[WarningWindow] = []
        for i, row in enumerate(rows):
            where = self.scoped("warning", i, row, zones)
            undetermined = row.get("undetermined", False) is True
            if "undetermined" in row and not undetermined:
                raise self.fail("warning", i, "undetermined", "write it as true (or leave it out)")
            if undetermined and "note" not in row:
                raise self.fail("warning", i, "note", "say in a note what was not found")
            step = to_day(row["step"])
            if step > where.start:
                raise self.fail("warning", i, "step", "the step starts after its warning window")
            window = WarningWindow(where, step, undetermined)
            for other in out:
                if _same_scope(other.where, where) and _overlap(other.where, where):
                    raise self.fail(
                        "warning", i, "from", f"overlaps the row at line {other.where.line}"
                    )
            out.append(window)
        return tuple(out)

    def oldtimer_plates(
        self, rows: list[dict[str, Any]], zones: tuple[ZoneDef, ...]
    ) -> tuple[OldtimerPlate, ...]:
        out: list[OldtimerPlate] = []
        for i, row in enumerate(rows):
            where = self.scoped("oldtimer_plate", i, row, zones)
            if not 1 <= row["min_age_years"] <= _MAX_AGE_YEARS:
                raise self.fail(
                    "oldtimer_plate", i, "min_age_years", f"expected 1..{_MAX_AGE_YEARS}"
                )
            rule = OldtimerPlate(where, row["min_age_years"])
            for other in out:
                if _same_scope(other.where, where) and _overlap(other.where, where):
                    raise self.fail(
                        "oldtimer_plate", i, "from", f"overlaps the row at line {other.where.line}"
                    )
            out.append(rule)
        return tuple(out)


_MAX_HOUR: Final = 23
_MAX_GRACE_DAYS: Final = 31
_MAX_AGE_YEARS: Final = 200


def _same_scope(a: Scoped, b: Scoped) -> bool:
    return (a.zone_id, a.region) == (b.zone_id, b.region)


def _overlap(a: Scoped, b: Scoped) -> bool:
    return a.start <= b.end and b.start <= a.end


def parse_revision(text: str, path: str, revision_id: str) -> RevisionData:
    """Parse and validate one revision file; raises RuleTableError naming file, line and field."""
    return _Parser(text, path, revision_id).parse()
