"""The decision rules as SQL, generated from the compiled rule revision and the enrichment data.

Nothing here is a hand-copied number: every constant comes from the objects the engine itself
loads.

- **Criteria**: `lez.rules.Revision.compiled(zone)` holds, per zone, the period boundaries and
  the answer table indexed by [period, vehicle class, fuel family, euro id, plug-in hybrid].
  It becomes the table `lez_cell(idx, outcome, reason, until)` and a generated `CASE` that maps a
  day to its period; foreign/Dutch handling per period and the zone start come from the same
  object.
- **Enrichment** (`lez.enrich`): the category-to-class table, the kind hints and the mass/seat
  thresholds of `enrich.toml` (category derivation and N1/N2 refinement as `CASE`), the fuel
  families and hybrid fuels of `lez.codes`, and the euro-by-first-registration tables of
  `euro_by_date.csv` (a `CASE` per class over date ranges; for a compound class the members
  must agree, computed here independently of `lez.enrich.derive_euro`).
- **Plates and days**: normalisation and validation (`lez.plates` rules: separators, A-Z0-9,
  Belgian 2-8 characters with a letter, foreign 1-10, ISO country), the INVALID_* precedence of
  `server.pipeline.decode_plates`, the readable day range of `server.pipeline`
  (`EARLIEST_DAY`..`LATEST_DAY`) and the server's default plate limit
  (`server.config.ServerConfig.max_plate_bytes`).

- **Oldtimer plates**: the automatic exemption of `CompiledZone.plate_age` / `plate_until` by
  period, on the record's oldtimer-plate flag and its age on the day (the anniversary as the
  first of the month plus whole years, plus the day of the month: 29 February turns on 1 March,
  as in `lez.days.anniversary`).

What is left out, on purpose: registrations (exemptions, permits, corrections, their grace days
and hours), the public checker's first-registration match, and the notes (warnings, hours),
which are not among the compared columns. The benchmark store has no registrations and the batch has
no claimed dates; the harness asserts on the real batch that the peers decide exactly as we do.

Two dialects (DuckDB, PostgreSQL) differ only in a few spellings (`Dialect`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from lez import codes
from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.decision import Outcome, Reason
from lez.enrich import (
    _HINT_NAMES,
    CATEGORY_CLASS,
    CLASS_TABLE,
    KIND_HINT,
    MEMBERS,
    THRESHOLDS,
    VehicleClass,
)
from lez.plates import BELGIAN_MAX_LEN, BELGIAN_MIN_LEN, FOREIGN_MAX_LEN
from lez.rules.catalog import Revision
from lez.rules.compile import STRIDES, CompiledZone
from lez.vehicle import U8_UNKNOWN, U16_UNKNOWN, U32_UNKNOWN, Flag
from server.config import ServerConfig
from server.pipeline import EARLIEST_DAY, LATEST_DAY

MAX_PLATE_BYTES: Final = ServerConfig().max_plate_bytes
"""The server's default `--max-plate-bytes` (a longer raw plate is INVALID_PLATE)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    tiny: str  # type of small codes in the register table

    def has(self, col: str, pattern: str) -> str:
        """`col` contains a match of the regular expression."""
        if self.name == "duckdb":
            return f"regexp_matches({col}, '{pattern}')"
        return f"({col} ~ '{pattern}')"

    def strip(self, col: str) -> str:
        """`col` without the separators space, tab, '-' and '.'."""
        if self.name == "duckdb":
            # four plain replaces: a third cheaper than one regexp_replace in DuckDB (measured)
            return (
                f"replace(replace(replace(replace({col}, '-', ''), ' ', ''), '.', ''), chr(9), '')"
            )
        return f"regexp_replace({col}, '[-. \\t]', '', 'g')"

    def no_letter(self, col: str) -> str:
        """`col`, holding only A-Z0-9, has no letter."""
        if self.name == "duckdb":
            return f"NOT regexp_matches({col}, '[A-Z]')"
        # lower() moves a string iff it has a letter
        return f"lower({col}) = {col}"


DUCKDB: Final = Dialect("duckdb", "UTINYINT")
POSTGRES: Final = Dialect("postgres", "SMALLINT")


def _case(expr: str, mapping: dict[int, int], default: int) -> str:
    """CASE expr WHEN k THEN v ... ELSE default (entries equal to the default left out)."""
    whens = " ".join(f"WHEN {k} THEN {v}" for k, v in sorted(mapping.items()) if v != default)
    return f"(CASE {expr} {whens} ELSE {default} END)" if whens else str(default)


def _steps(expr: str, starts: list[int], values: list[int], before: int) -> str:
    """A step function: the value of the last start <= expr (`before` if none)."""
    if not starts:
        return str(before)
    whens = " ".join(
        f"WHEN {expr} >= {s} THEN {v}" for s, v in reversed(list(zip(starts, values, strict=True)))
    )
    return f"(CASE {whens} ELSE {before} END)"


# ---- enrichment -------------------------------------------------------------------------------


def class_sql() -> str:
    """Vehicle class from category, or derived from kind, masses and seats (lez.enrich)."""
    th = THRESHOLDS
    c = VehicleClass
    hint = {name: i for i, name in enumerate(_HINT_NAMES)}
    mass_unknown = f"max_mass = {U32_UNKNOWN}"
    bus = (
        f"(CASE WHEN {mass_unknown} THEN {c.M_BUS} WHEN max_mass <= {th.m2_max_mass} "
        f"THEN {c.M2} ELSE {c.M3} END)"
    )
    many_seats = f"(seats <> {U8_UNKNOWN} AND seats > {th.m1_max_seats})"
    truck = (
        f"(CASE WHEN {mass_unknown} THEN {c.N} WHEN max_mass <= {th.n1_max_mass} THEN {c.N1} "
        f"WHEN max_mass <= {th.n2_max_mass} THEN {c.N2} ELSE {c.N3} END)"
    )
    kind_hint = _case("kind", {i: int(h) for i, h in enumerate(KIND_HINT)}, 0)
    derived = (
        f"(CASE {kind_hint} "
        f"WHEN {hint['M1']} THEN (CASE WHEN {many_seats} THEN {bus} ELSE {c.M1} END) "
        f"WHEN {hint['M_BUS']} THEN {bus} "
        f"WHEN {hint['N']} THEN {truck} "
        f"WHEN {hint['O']} THEN {c.O} WHEN {hint['L']} THEN {c.L} WHEN {hint['T']} THEN {c.T} "
        f"ELSE {c.UNKNOWN} END)"
    )
    by_category = _case("category", {i: int(v) for i, v in enumerate(CATEGORY_CLASS)}, 0)
    base = f"(CASE WHEN category <> {codes.UNKNOWN} THEN {by_category} ELSE {derived} END)"
    ref = f"(running_mass::BIGINT - {th.driver_kg} + {th.added_kg})"
    known = f"running_mass <> {U32_UNKNOWN}"
    return (
        f"(CASE WHEN {base} = {c.N1} AND {known} THEN (CASE WHEN {ref} <= {th.n1_i_max} "
        f"THEN {c.N1_I} WHEN {ref} <= {th.n1_ii_max} THEN {c.N1_II} ELSE {c.N1_III} END) "
        f"WHEN {base} = {c.N2} AND {known} THEN (CASE WHEN {ref} <= {th.n2_light_max} "
        f"THEN {c.N2_LIGHT} ELSE {c.N2_HEAVY} END) ELSE {base} END)"
    )


def _euro_steps(vclass: VehicleClass) -> tuple[list[int], list[int]]:
    """Derived euro id of a class as a step function of the first-registration day.

    For a compound class every member's table must give the same id, else 0 (unknown); a member
    without a table gives 0.
    """
    tables = [CLASS_TABLE.get(m) for m in MEMBERS[vclass]]
    bounds = sorted({int(s) for t in tables if t is not None for s in t.starts})
    starts: list[int] = []
    values: list[int] = []
    for b in bounds:
        got = set()
        for t in tables:
            if t is None:
                got.add(0)
                continue
            pos = int(np.searchsorted(t.starts, b, side="right")) - 1
            got.add(int(t.euro[pos]) if pos >= 0 else 0)
        value = got.pop() if len(got) == 1 else 0
        if not values or values[-1] != value:
            starts.append(b)
            values.append(value)
    return starts, values


def euro_sql(vclass_col: str) -> str:
    """Effective euro id: DIV's, else derived from the first-registration date and the class."""
    per_class = " ".join(
        f"WHEN {int(c)} THEN {_steps('first_registration', *_euro_steps(c), 0)}"
        for c in VehicleClass
        if any(v for v in _euro_steps(c)[1])
    )
    derive = f"(CASE {vclass_col} {per_class} ELSE 0 END)" if per_class else "0"
    return (
        f"(CASE WHEN euro <> {codes.UNKNOWN} THEN euro "
        f"WHEN first_registration = {DAY_UNKNOWN} THEN 0 ELSE {derive} END)"
    )


def family_sql() -> str:
    return _case("fuel", {i: int(v) for i, v in enumerate(codes.FUEL_FAMILY)}, 0)


def phev_sql(cz: CompiledZone, period_col: str) -> str:
    """Plug-in hybrid (0/1): only where the zone has a rule in force in the item's period."""
    if cz.phev_limit is None:
        return "0"
    max_co2, inclusive = cz.phev_limit
    periods = [str(p) for p in np.flatnonzero(cz.phev_periods)]
    if not periods:
        return "0"
    hybrid = ", ".join(str(i) for i in np.flatnonzero(codes.FUEL_HYBRID))
    cmp = "<=" if inclusive else "<"
    return (
        f"(CASE WHEN {period_col} IN ({', '.join(periods)}) AND co2 <> {U16_UNKNOWN} "
        f"AND co2 {cmp} {max_co2} AND fuel IN ({hybrid}) "
        f"AND (flags & {int(Flag.ELECTRIC_MOTOR)}) <> 0 THEN 1 ELSE 0 END)"
    )


def plate_exempt_sql(cz: CompiledZone, period_col: str, day_col: str) -> str:
    """The automatic oldtimer-plate exemption (a boolean): the flag, a known first registration
    and the period's age reached on the day; FALSE for a zone without the exemption."""
    ages = {int(p): int(a) for p, a in enumerate(cz.plate_age) if a}
    if not ages:
        return "FALSE"
    first = "(DATE '1970-01-01' + first_registration)"
    years = _case(period_col, ages, 0)
    turns = (
        f"(date_trunc('month', {first}) + INTERVAL '1 month' * (12 * {years}) "
        f"+ INTERVAL '1 day' * (extract(day FROM {first}) - 1))"
    )
    return (
        f"((flags & {int(Flag.OLDTIMER_PLATE)}) <> 0 AND first_registration <> {DAY_UNKNOWN} "
        f"AND {period_col} IN ({', '.join(map(str, sorted(ages)))}) "
        f"AND {turns} <= (DATE '1970-01-01' + {day_col}))"
    )


def plate_until_sql(cz: CompiledZone, period_col: str) -> str:
    """The last day of the run of exemption periods the item's period starts."""
    return _case(
        period_col, {int(p): int(u) for p, u in enumerate(cz.plate_until) if cz.plate_age[p]},
        DAY_UNKNOWN,
    )  # fmt: skip


def period_sql(cz: CompiledZone, day_col: str) -> str:
    bounds = [int(b) for b in cz.bounds]
    return _steps(day_col, bounds[1:], list(range(1, len(bounds))), 0)


def enriched_register_sql(source: str, key_col: str) -> str:
    """The register for the "scan_once" skeleton, from a table or table function `source` with
    the peer-data columns: the hash of `key_col` as `h`, the validity, and the enrichment the
    service's loader also does at load (vehicle class, fuel family, effective euro id), plus
    what the plug-in hybrid rule and the oldtimer-plate exemption read (co2, fuel, flags, first
    registration)."""
    return f"""
SELECT hash({key_col}) AS h, valid_from, valid_to, co2, fuel, flags, first_registration,
       vclass, family, {euro_sql("vclass")} AS eff_euro
FROM (SELECT *, {class_sql()} AS vclass, {family_sql()} AS family FROM {source})
"""


def cell_rows(cz: CompiledZone) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(idx, outcome, reason, until) of the zone's answer table."""
    idx = np.arange(len(cz.outcome), dtype=np.int32)
    return idx, cz.outcome.astype(np.int16), cz.reason.astype(np.int16), cz.until.astype(np.int32)


# ---- the query --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionSql:
    """The generated query for one zone of one revision."""

    query: str  # columns i, outcome, reason, allowed_until, euro
    zone_id: int
    revision: str


def decision_sql(
    revision: Revision,
    zone_id: int,
    dialect: Dialect,
    *,
    batch: str = "batch",
    register: str = "veh",
    plates: str = "veh_plates",
    cells: str = "lez_cell",
    key_sql: str | None = None,
    skeleton: str = "scan_once",
) -> DecisionSql:
    """The decision query over `batch(i, plate, country, day)`.

    `key_sql`: None joins the register on the normalised plate; otherwise an SQL expression of
    `np` (normalised plate) giving the 16-byte key. "scan_once" joins on the register's `h`
    (the hash of that plate or key); "nested" on `plate` or `pkey`, and probes `plates` (a table
    of the register's plates or keys) for "known".
    `skeleton`: "scan_once" (one hash join on an enriched, hashed register, for DuckDB) or
    "nested" (one index nested loop per item, for PostgreSQL); both evaluate the same rules.
    """
    cz = revision.compiled(zone_id)
    zone = cz.zone
    d = dialect
    strides = STRIDES
    bad_country = (
        "(length(cty) <> 2 OR NOT (substr(cty, 1, 1) BETWEEN 'A' AND 'Z') "
        "OR NOT (substr(cty, 2, 1) BETWEEN 'A' AND 'Z'))"
    )
    bad_char = d.has("plate", "[^-A-Za-z0-9 .\\t]")
    length = "length(np)"
    # np holds only A-Z0-9 once bad characters are excluded
    be_bad = (
        f"({length} > {BELGIAN_MAX_LEN} OR {length} < {BELGIAN_MIN_LEN} OR {d.no_letter('np')})"
    )
    bad_plate = (
        f"(length(plate) > {MAX_PLATE_BYTES} OR {bad_char} OR {length} = 0 OR "
        f"(cty = 'BE' AND {be_bad}) OR (cty <> 'BE' AND {length} > {FOREIGN_MAX_LEN}))"
    )
    bad_day = f"(day < {EARLIEST_DAY} OR day > {LATEST_DAY})"
    invalid = (
        f"(CASE WHEN {bad_country} THEN {Reason.INVALID_COUNTRY} "
        f"WHEN {bad_plate} THEN {Reason.INVALID_PLATE} "
        f"WHEN {bad_day} THEN {Reason.INVALID_DAY} ELSE 0 END)"
    )
    if key_sql is not None and skeleton != "scan_once":
        raise ValueError("keys computed in SQL are joined by the scan_once skeleton only")
    match_col, match_expr = "plate", "np"

    foreign_required = [int(p) for p in np.flatnonzero(cz.foreign_required)]
    dutch_elsewhere = [int(p) for p in np.flatnonzero(cz.dutch_elsewhere)]

    def in_periods(periods: list[int]) -> str:
        return f"p IN ({', '.join(map(str, periods))})" if periods else "FALSE"

    o, r = Outcome, Reason
    dutch = f"cty = 'NL' AND {in_periods(dutch_elsewhere)}"
    required = in_periods(foreign_required)
    cell_idx = (
        f"p * {strides[0]} + vclass * {strides[1]} + family * {strides[2]} "
        f"+ eff_euro * {strides[3]} + phev"
    )

    def final(found: str, known: str, outcome: str, reason: str, until: str, euro: str) -> str:
        """The answer columns (lez.rules.engine order: invalid, zone start, vehicle, none)."""
        return f"""
  CASE WHEN invalid <> 0 THEN {o.INVALID}
       WHEN day < {zone.start} THEN {o.ALLOWED}
       WHEN {found} THEN {outcome}
       WHEN cty = 'BE' THEN {o.UNKNOWN_PLATE}
       WHEN {dutch} THEN {o.UNKNOWN_PLATE}
       WHEN {required} THEN {o.NOT_ALLOWED}
       ELSE {o.UNKNOWN_PLATE} END AS outcome,
  CASE WHEN invalid <> 0 THEN invalid
       WHEN day < {zone.start} THEN {r.ZONE_NOT_IN_FORCE}
       WHEN {found} THEN {reason}
       WHEN cty = 'BE' AND {known} THEN {r.NO_VERSION_ON_DAY}
       WHEN cty = 'BE' THEN {r.NOT_IN_REGISTER}
       WHEN {dutch} THEN {r.DUTCH_PLATE_CHECKED_ELSEWHERE}
       WHEN {required} THEN {r.FOREIGN_NOT_REGISTERED}
       ELSE {r.NOT_IN_REGISTER} END AS reason,
  CASE WHEN invalid <> 0 THEN {DAY_UNKNOWN}
       WHEN day < {zone.start} THEN {zone.start - 1}
       WHEN {found} THEN {until}
       ELSE {DAY_UNKNOWN} END AS allowed_until,
  CASE WHEN invalid <> 0 OR NOT ({found}) THEN 0 ELSE {euro} END AS euro"""

    batch_cols = f"""
  SELECT i, cty, day, np, {invalid} AS invalid, {period_sql(cz, "day")} AS p FROM (
    SELECT i, plate, upper(country) AS cty, day, upper({d.strip("plate")}) AS np FROM {batch}
  ) b0"""
    vehicle_cols = (
        "first_registration, max_mass, running_mass, co2, seats, category, kind, fuel, euro, flags"
    )
    enrich_cols = f"{class_sql()} AS vclass, {family_sql()} AS family, {phev_sql(cz, 'p')} AS phev"
    exempt = plate_exempt_sql(cz, "p", "day")

    def with_plate(outcome: str, reason: str, until: str, plate: str, period: str) -> str:
        """The criteria's cell with the oldtimer-plate exemption: allowed as if the criteria
        allowed (their reason first, the later end of both)."""
        plate_until = plate_until_sql(cz, period)
        return (
            f"CASE WHEN {plate} THEN {o.ALLOWED} ELSE {outcome} END AS outcome, "
            f"CASE WHEN {plate} AND {outcome} <> {o.ALLOWED} THEN {r.OLDTIMER_PLATE_EXEMPT} "
            f"ELSE {reason} END AS reason, "
            f"CASE WHEN NOT {plate} THEN {until} WHEN {outcome} <> {o.ALLOWED} THEN {plate_until} "
            f"ELSE GREATEST({until}, {plate_until}) END AS until"
        )

    if skeleton == "scan_once":
        # DuckDB at its best (bench/README.md#duckdb-at-its-best): the register was enriched at
        # load (`enriched_register_sql`) and carries a 64-bit hash of its join key; one hash join
        # of the materialised batch on that hash reads the register once, and the versions of a
        # plate found are folded per item: the one covering the day gives the answer table's
        # index, the oldtimer-plate exemption and the euro id (packed in one integer), any found
        # says the plate is known.
        key_expr = f"hash({key_sql})" if key_sql is not None else "hash(np)"
        cell_in_join = cell_idx.replace("phev", phev_sql(cz, "p"))
        exempt_in_join = plate_exempt_sql(cz, "p", "b.day")
        cell = with_plate(
            "c.outcome", "c.reason", "c.until", "((z.code // 256) % 2 = 1)", "z.p"
        )  # fmt: skip
        cell = (
            cell.replace(" AS outcome", " AS c_outcome")
            .replace(" AS reason", " AS c_reason")
            .replace(" AS until", " AS c_until")
        )
        query = f"""
WITH b AS MATERIALIZED ({batch_cols}
), j AS (
  SELECT b.i, max(CASE WHEN v.valid_from <= b.day AND b.day < v.valid_to
                       THEN (({cell_in_join}) * 2
                             + CASE WHEN {exempt_in_join} THEN 1 ELSE 0 END) * 256
                            + v.eff_euro END) AS code
  FROM b JOIN {register} v ON v.h = {key_expr}
  WHERE b.invalid = 0 AND b.cty = 'BE'
  GROUP BY b.i
)
SELECT i, {final("code IS NOT NULL", "known", "c_outcome", "c_reason", "c_until", "code % 256")}
FROM (
  SELECT z.*, {cell}
  FROM (SELECT b.*, j.code, j.i IS NOT NULL AS known FROM b LEFT JOIN j ON j.i = b.i) z
  LEFT JOIN {cells} c ON c.idx = z.code // 512
) y
"""
    else:
        # PostgreSQL: one join, an index nested loop per item into the register; the answer
        # table as array constants (no second join); "known" probed only for misses.
        # OFFSET 0 keeps each level a separate step: PostgreSQL would otherwise pull the
        # subqueries up and copy the class expression into every place that reads it.
        out_arr, why_arr, until_arr = (
            "ARRAY[" + ",".join(str(int(v)) for v in arr) + "]"
            for arr in (cz.outcome, cz.reason, cz.until)
        )
        known = f"EXISTS (SELECT 1 FROM {plates} k WHERE k.{match_col} = {match_expr} OFFSET 0)"
        cell = with_plate(
            f"({out_arr})[{cell_idx} + 1]", f"({why_arr})[{cell_idx} + 1]",
            f"({until_arr})[{cell_idx} + 1]", f"(vf IS NOT NULL AND {exempt})", "p",
        )  # fmt: skip
        query = f"""
SELECT i, {final("vf IS NOT NULL", known, "c_outcome", "c_reason", "c_until", "eff_euro")}
FROM (
  SELECT *, {
            cell.replace(" AS outcome", " AS c_outcome")
            .replace(" AS reason", " AS c_reason")
            .replace(" AS until", " AS c_until")
        }
  FROM (
  SELECT *, {euro_sql("vclass")} AS eff_euro FROM (
    SELECT b.*, v.valid_from AS vf, {", ".join("v." + c for c in vehicle_cols.split(", "))},
           {enrich_cols}
    FROM ({batch_cols}) b
    LEFT JOIN {register} v
      ON v.{match_col} = b.{match_expr} AND v.valid_from <= b.day AND b.day < v.valid_to
         AND b.invalid = 0 AND b.cty = 'BE'
    OFFSET 0
  ) y OFFSET 0
  ) w OFFSET 0
) z
"""
    return DecisionSql(query=query, zone_id=zone_id, revision=revision.id)


__all__ = ["DAY_OPEN", "DUCKDB", "POSTGRES", "DecisionSql", "cell_rows", "decision_sql"]
