"""Enrichment at evaluation time: the values a decision needs that DIV does not hold.

When category, fuel or euro norm is missing, derive it from other register data (docs/sources.md:
DIV-VMM protocol annex par. 8 and 12; docs/rules.md#enrichment). This module owns that
derivation and the vehicle *class* the rules read:

- **category** from the kind's `category_hint` (lez/codes/kind.csv), maximum mass and seats;
- **class**: the category refined by reference mass (N1 class I/II/III, N2 light/heavy), or a
  compound class (`N1`, `N2`, `N`, `M_BUS`, `UNKNOWN`) when the refinement cannot be made; the
  rules engine answers a compound class only where all its members get the same answer;
- **euro norm** from the first-registration date per class (`lez/rules/data/euro_by_date.csv`),
  after a registered euro-norm correction, which wins over DIV;
- **plug-in hybrid**: hybrid fuel, DIV electric-motor indicator and CO2 within a rule's limit.

All thresholds are data (`lez/rules/data/enrich.toml`, each with its source). Every derived value
is flagged with `lez.decision.Derived`. There is a vectorised path (`enrich`) and a plain
one-item path (`enrich_one`); they agree on every input (tests/lez/test_rules_property.py).

`enrich` runs in the native core `lez._enrich` where it was built and the records are
contiguous (one pass over the records), else in NumPy (`enrich_numpy`: a pass per field and a
mask per rule; the oracle of tests/lez/test_enrich_native.py). On the bench's 500,000 camera
reads in chunks of 50,000 this took `lez.rules.evaluate` from 80 to 46 ns a pair on one core.
The plug-in hybrid test stays in NumPy (`plug_in_hybrid`): the rules ask it of few items.
"""

from __future__ import annotations

import bisect
import csv
import enum
import functools
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from lez import codes
from lez.days import DAY_UNKNOWN, parse_day
from lez.decision import Derived
from lez.vehicle import U8_UNKNOWN, U16_UNKNOWN, U32_UNKNOWN, Flag, VehicleArray

try:
    from lez import _enrich as _native
except ImportError:  # built without a compiler: the NumPy path below
    _native = None  # type: ignore[assignment]

NATIVE: Final = _native is not None
"""Whether chunks are enriched in the native core."""


class VehicleClass(enum.IntEnum):
    """What the criteria distinguish. Base classes first, then compound (not exactly known)."""

    UNKNOWN = 0  # compound of every base class
    M1 = 1
    M2 = 2
    M3 = 3
    N1_I = 4
    N1_II = 5
    N1_III = 6
    N2_LIGHT = 7  # N2 with reference mass at or below the Brussels heavy threshold
    N2_HEAVY = 8
    N3 = 9
    T = 10
    L = 11
    O = 12  # noqa: E741 - the legal name of trailers
    OTHER = 13
    M_BUS = 14  # M2 or M3 (mass unknown)
    N1 = 15  # N1, class unknown (mass in running order unknown)
    N2 = 16  # N2, reference mass unknown
    N = 17  # N1, N2 or N3 (maximum mass unknown)


BASE_CLASSES: Final = tuple(VehicleClass(i) for i in range(1, 14))
N_CLASSES: Final = len(VehicleClass)
MEMBERS: Final[dict[VehicleClass, tuple[VehicleClass, ...]]] = {
    **{c: (c,) for c in BASE_CLASSES},
    VehicleClass.UNKNOWN: BASE_CLASSES,
    VehicleClass.M_BUS: (VehicleClass.M2, VehicleClass.M3),
    VehicleClass.N1: (VehicleClass.N1_I, VehicleClass.N1_II, VehicleClass.N1_III),
    VehicleClass.N2: (VehicleClass.N2_LIGHT, VehicleClass.N2_HEAVY),
    VehicleClass.N: (
        VehicleClass.N1_I,
        VehicleClass.N1_II,
        VehicleClass.N1_III,
        VehicleClass.N2_LIGHT,
        VehicleClass.N2_HEAVY,
        VehicleClass.N3,
    ),
}
"""Base classes each class stands for."""

_GROUP_CLASS: Final = {
    "M1": VehicleClass.M1,
    "M2": VehicleClass.M2,
    "M3": VehicleClass.M3,
    "N1": VehicleClass.N1,
    "N2": VehicleClass.N2,
    "N3": VehicleClass.N3,
    "T": VehicleClass.T,
    "OTHER": VehicleClass.OTHER,
}


def _category_class(name: str) -> VehicleClass:
    if name in _GROUP_CLASS:
        return _GROUP_CLASS[name]
    if name.startswith("L"):
        return VehicleClass.L
    if name.startswith("O"):
        return VehicleClass.O
    raise ValueError(f"category {name} has no vehicle class")


CATEGORY_CLASS: Final = np.zeros(codes.CATEGORY.size, dtype=np.uint8)
"""Vehicle class by category id, before refinement by reference mass (0 for UNKNOWN)."""
for _c in codes.CATEGORY.codes:
    CATEGORY_CLASS[_c.id] = _category_class(_c.name)


def _data_text(name: str) -> str:
    return (
        resources.files("lez")
        .joinpath("rules")
        .joinpath("data")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The numbers of `enrich.toml`."""

    m1_max_seats: int
    m2_max_mass: int
    n1_max_mass: int
    n2_max_mass: int
    o1_max_mass: int
    o2_max_mass: int
    o3_max_mass: int
    driver_kg: int
    added_kg: int
    n1_i_max: int
    n1_ii_max: int
    n2_light_max: int


def _load_thresholds() -> tuple[Thresholds, dict[str, str]]:
    data = tomllib.loads(_data_text("enrich.toml"))
    cat, ref, n1, n2 = data["category"], data["reference_mass"], data["n1_class"], data["n2_split"]
    th = Thresholds(
        m1_max_seats=cat["m1_max_seats"],
        m2_max_mass=cat["m2_max_mass_kg"],
        n1_max_mass=cat["n1_max_mass_kg"],
        n2_max_mass=cat["n2_max_mass_kg"],
        o1_max_mass=cat["o1_max_mass_kg"],
        o2_max_mass=cat["o2_max_mass_kg"],
        o3_max_mass=cat["o3_max_mass_kg"],
        driver_kg=ref["driver_kg"],
        added_kg=ref["added_kg"],
        n1_i_max=n1["class_i_max_kg"],
        n1_ii_max=n1["class_ii_max_kg"],
        n2_light_max=n2["light_max_reference_kg"],
    )
    return th, dict(data["euro_table"])


THRESHOLDS, _CLASS_TABLE_NAMES = _load_thresholds()


@dataclass(frozen=True, slots=True)
class EuroTable:
    """One date-to-euro table: rows apply from `starts[i]` until `starts[i + 1]`."""

    name: str
    starts: npt.NDArray[np.int32]
    euro: npt.NDArray[np.uint8]  # 0 where the source has a gap


def _load_euro_tables() -> dict[str, EuroTable]:
    text = _data_text("euro_by_date.csv")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    grouped: dict[str, list[tuple[int, int]]] = {}
    for row in rows:
        euro = codes.EURO.id_of(row["euro"]) if row["euro"].strip() else codes.UNKNOWN
        if row["euro"].strip() and euro == codes.UNKNOWN:
            raise ValueError(f"euro_by_date.csv: unknown euro code {row['euro']!r}")
        grouped.setdefault(row["table"], []).append((parse_day(row["from"]), euro))
    tables = {}
    for name, items in grouped.items():
        items.sort()
        tables[name] = EuroTable(
            name=name,
            starts=np.array([d for d, _ in items], dtype=np.int32),
            euro=np.array([e for _, e in items], dtype=np.uint8),
        )
    return tables


EURO_TABLES: Final = _load_euro_tables()
CLASS_TABLE: Final[dict[VehicleClass, EuroTable]] = {
    VehicleClass[name]: EURO_TABLES[table] for name, table in _CLASS_TABLE_NAMES.items()
}


def _table_name(vclass: VehicleClass) -> str:
    table = CLASS_TABLE.get(vclass)
    return table.name if table is not None else ""


_HINT_NAMES: Final = ("", "M1", "M_BUS", "N", "O", "L", "T")
KIND_HINT: Final = np.zeros(codes.KIND.size, dtype=np.uint8)
"""Index into `_HINT_NAMES` by kind id."""
for _k in codes.KIND.codes:
    KIND_HINT[_k.id] = _HINT_NAMES.index(_k.columns.get("category_hint", "").strip())

_CAT_ID: Final = {c.name: c.id for c in codes.CATEGORY.codes}


# -- vectorised path ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enriched:
    """Effective values of n records, aligned with them."""

    category: npt.NDArray[np.uint8]  # category id (derived where missing; 0 if not derivable)
    vclass: npt.NDArray[np.uint8]  # VehicleClass
    family: npt.NDArray[np.uint8]  # lez.codes.FuelFamily
    euro: npt.NDArray[np.uint8]  # euro id after correction and derivation (0: unknown)
    derived: npt.NDArray[np.uint8]  # Derived bits


def enrich(records: VehicleArray, euro_correction: npt.NDArray[np.uint8] | None = None) -> Enriched:
    """Effective category, class, fuel family and euro norm of each record.

    `euro_correction[i]` is a registered euro id that replaces DIV's (0: none). In the native
    core where it was built (`enrich_native`), else in NumPy (`enrich_numpy`): the same values.
    """
    offsets = _native_offsets(records)
    if offsets is not None:
        return _enrich_in_core(records, offsets, euro_correction)
    return enrich_numpy(records, euro_correction)


def enrich_numpy(
    records: VehicleArray, euro_correction: npt.NDArray[np.uint8] | None = None
) -> Enriched:
    """`enrich` in NumPy: the fallback, and the oracle of the native core's tests."""
    n = len(records)
    category = np.array(records["category"], dtype=np.uint8)
    vclass = CATEGORY_CLASS[category]
    derived = np.zeros(n, dtype=np.uint8)
    missing = np.flatnonzero(category == codes.UNKNOWN)
    if len(missing):
        # Field-wise gathers: indexing a structured array by rows is ~10x slower.
        cat_d, cls_d = _derive_category(
            records["kind"][missing], records["max_mass"][missing], records["seats"][missing]
        )
        category[missing] = cat_d
        vclass[missing] = cls_d
        derived[missing[cls_d != VehicleClass.UNKNOWN]] |= np.uint8(Derived.CATEGORY)
    refine = np.flatnonzero((vclass == VehicleClass.N1) | (vclass == VehicleClass.N2))
    if len(refine):
        vclass[refine] = _refine(vclass[refine], records["running_mass"][refine])
    euro = np.array(records["euro"], dtype=np.uint8)
    if euro_correction is not None:
        corrected = euro_correction != codes.UNKNOWN
        euro[corrected] = euro_correction[corrected]
        derived[corrected] |= np.uint8(Derived.EURO_CORRECTED)
    need = np.flatnonzero(euro == codes.UNKNOWN)
    if len(need):
        got = derive_euro(vclass[need], records["first_registration"][need])
        euro[need] = got
        derived[need[got != codes.UNKNOWN]] |= np.uint8(Derived.EURO)
    family = codes.FUEL_FAMILY[records["fuel"]]
    return Enriched(category=category, vclass=vclass, family=family, euro=euro, derived=derived)


def _derive_category(
    kind: npt.NDArray[np.uint8], max_mass: npt.NDArray[np.uint32], seats: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    th = THRESHOLDS
    hint = KIND_HINT[kind]
    mass_known = max_mass != U32_UNKNOWN
    cat = np.zeros(len(kind), dtype=np.uint8)
    cls = np.zeros(len(kind), dtype=np.uint8)
    many_seats = (seats != U8_UNKNOWN) & (seats > th.m1_max_seats)
    m1 = hint == _HINT_NAMES.index("M1")
    bus = (hint == _HINT_NAMES.index("M_BUS")) | (m1 & many_seats)
    m1 &= ~many_seats
    cat[m1], cls[m1] = _CAT_ID["M1"], VehicleClass.M1
    cls[bus] = VehicleClass.M_BUS
    m2 = bus & mass_known & (max_mass <= th.m2_max_mass)
    m3 = bus & mass_known & (max_mass > th.m2_max_mass)
    cat[m2], cls[m2] = _CAT_ID["M2"], VehicleClass.M2
    cat[m3], cls[m3] = _CAT_ID["M3"], VehicleClass.M3
    n = hint == _HINT_NAMES.index("N")
    cls[n] = VehicleClass.N
    n1 = n & mass_known & (max_mass <= th.n1_max_mass)
    n2 = n & mass_known & (max_mass > th.n1_max_mass) & (max_mass <= th.n2_max_mass)
    n3 = n & mass_known & (max_mass > th.n2_max_mass)
    cat[n1], cls[n1] = _CAT_ID["N1"], VehicleClass.N1
    cat[n2], cls[n2] = _CAT_ID["N2"], VehicleClass.N2
    cat[n3], cls[n3] = _CAT_ID["N3"], VehicleClass.N3
    o = hint == _HINT_NAMES.index("O")
    cls[o] = VehicleClass.O
    for name, lo, hi in (
        ("O1", -1, th.o1_max_mass),
        ("O2", th.o1_max_mass, th.o2_max_mass),
        ("O3", th.o2_max_mass, th.o3_max_mass),
        ("O4", th.o3_max_mass, U32_UNKNOWN - 1),
    ):
        sel = o & mass_known & (max_mass.astype(np.int64) > lo) & (max_mass <= hi)
        cat[sel] = _CAT_ID[name]
    cls[hint == _HINT_NAMES.index("L")] = VehicleClass.L
    t = hint == _HINT_NAMES.index("T")
    cat[t], cls[t] = _CAT_ID["T"], VehicleClass.T
    return cat, cls


def _refine(
    vclass: npt.NDArray[np.uint8], running_mass: npt.NDArray[np.uint32]
) -> npt.NDArray[np.uint8]:
    th = THRESHOLDS
    out = vclass.copy()
    known = running_mass != U32_UNKNOWN
    ref = running_mass.astype(np.int64) - th.driver_kg + th.added_kg
    n1 = known & (vclass == VehicleClass.N1)
    out[n1 & (ref <= th.n1_i_max)] = VehicleClass.N1_I
    out[n1 & (ref > th.n1_i_max) & (ref <= th.n1_ii_max)] = VehicleClass.N1_II
    out[n1 & (ref > th.n1_ii_max)] = VehicleClass.N1_III
    n2 = known & (vclass == VehicleClass.N2)
    out[n2 & (ref <= th.n2_light_max)] = VehicleClass.N2_LIGHT
    out[n2 & (ref > th.n2_light_max)] = VehicleClass.N2_HEAVY
    return out


def _from_table(table: EuroTable | None, first: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    if table is None:
        return np.zeros(len(first), dtype=np.uint8)
    pos = np.searchsorted(table.starts, first, side="right") - 1
    out = table.euro[np.maximum(pos, 0)]
    return np.where((pos >= 0) & (first != DAY_UNKNOWN), out, codes.UNKNOWN).astype(np.uint8)


def derive_euro(
    vclass: npt.NDArray[np.uint8], first_registration: npt.NDArray[np.int32]
) -> npt.NDArray[np.uint8]:
    """Euro id from the first-registration date; 0 where no table, a gap, or members disagree."""
    out = np.zeros(len(vclass), dtype=np.uint8)
    for value in np.unique(vclass):
        sel = np.flatnonzero(vclass == value)
        first = first_registration[sel]
        names = {_table_name(m) for m in MEMBERS[VehicleClass(int(value))]}
        results = [_from_table(EURO_TABLES.get(name), first) for name in sorted(names)]
        got = results[0]
        for other in results[1:]:
            got = np.where(got == other, got, codes.UNKNOWN).astype(np.uint8)
        out[sel] = got
    return out


# -- the native core ------------------------------------------------------------------------------

_NATIVE_FIELDS: Final = {
    "category": "u1", "kind": "u1", "max_mass": "<u4", "seats": "u1", "running_mass": "<u4",
    "euro": "u1", "first_registration": "<i4", "fuel": "u1",
}  # fmt: skip
"""The record fields the native core reads, in the order of its `Field` enum, with the type it
reads each as."""


def _native_params() -> npt.NDArray[np.int64]:
    """Thresholds, code ids and class numbers for the native core, in the order of its `Param`
    enum (lez/_enrich.c): the values of this module's data files and enums, never restated."""
    th = THRESHOLDS
    cls = VehicleClass
    values = [
        th.m1_max_seats, th.m2_max_mass, th.n1_max_mass, th.n2_max_mass, th.o1_max_mass,
        th.o2_max_mass, th.o3_max_mass, th.driver_kg, th.added_kg, th.n1_i_max, th.n1_ii_max,
        th.n2_light_max,
        *(_CAT_ID[name] for name in ("M1", "M2", "M3", "N1", "N2", "N3", "O1", "O2", "O3", "O4",
                                     "T")),
        *(_HINT_NAMES.index(name) for name in ("M1", "M_BUS", "N", "O", "L", "T")),
        cls.M1, cls.M2, cls.M3, cls.N1_I, cls.N1_II, cls.N1_III, cls.N2_LIGHT, cls.N2_HEAVY,
        cls.N3, cls.T, cls.L, cls.O, cls.M_BUS, cls.N1, cls.N2, cls.N,
        Derived.CATEGORY, Derived.EURO, Derived.EURO_CORRECTED,
        U8_UNKNOWN, U32_UNKNOWN, DAY_UNKNOWN,
    ]  # fmt: skip
    return np.array([int(v) for v in values], dtype=np.int64)


def _native_euro_tables() -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.uint8]
]:
    """For each vehicle class, the euro id from each start day on, combined over the classes it
    stands for: `derive_euro` itself evaluated at every start day of every table (between two
    of them no table changes, before the first none applies), rows where nothing changes
    dropped. Returns (index by class, starts, euro ids)."""
    days = np.unique(np.concatenate([t.starts for t in EURO_TABLES.values()]))
    index, starts, values = [0], [], []
    for vclass in range(N_CLASSES):
        euro = derive_euro(np.full(len(days), vclass, dtype=np.uint8), days)
        keep = np.ones(len(days), dtype=np.bool_)
        keep[1:] = euro[1:] != euro[:-1]
        keep[0] = euro[0] != codes.UNKNOWN
        starts.append(days[keep])
        values.append(euro[keep])
        index.append(index[-1] + int(keep.sum()))
    return (
        np.array(index, dtype=np.int64),
        np.concatenate(starts).astype(np.int32),
        np.concatenate(values).astype(np.uint8),
    )


_PARAMS: Final = _native_params()
_EURO_INDEX, _EURO_STARTS, _EURO_VALUES = _native_euro_tables()
_FUEL_FAMILY: Final = np.ascontiguousarray(codes.FUEL_FAMILY, dtype=np.uint8)


def enrich_native(
    records: VehicleArray, euro_correction: npt.NDArray[np.uint8] | None = None
) -> Enriched:
    """`enrich` in the native core (raises ImportError where it was not built)."""
    if _native is None:
        raise ImportError("lez._enrich was not built")
    offsets = _native_offsets(records)
    if offsets is None:
        raise ValueError("enrich_native needs contiguous records with the vehicle fields")
    return _enrich_in_core(records, offsets, euro_correction)


def _enrich_in_core(
    records: VehicleArray,
    offsets: npt.NDArray[np.int64],
    euro_correction: npt.NDArray[np.uint8] | None,
) -> Enriched:
    """The native call, on records `_native_offsets` accepted."""
    assert _native is not None
    n = len(records)
    out = np.empty((5, n), dtype=np.uint8)
    category, vclass, family, euro, derived = out
    correction = None
    if euro_correction is not None:
        correction = np.ascontiguousarray(euro_correction, dtype=np.uint8)
    _native.enrich(
        records,
        records.dtype.itemsize,
        offsets,
        correction,
        CATEGORY_CLASS,
        KIND_HINT,
        _FUEL_FAMILY,
        _PARAMS,
        _EURO_INDEX,
        _EURO_STARTS,
        _EURO_VALUES,
        category,
        vclass,
        family,
        euro,
        derived,
    )
    return Enriched(category=category, vclass=vclass, family=family, euro=euro, derived=derived)


def _native_offsets(records: VehicleArray) -> npt.NDArray[np.int64] | None:
    """The byte offsets of the fields the native core reads (the order of its `Field` enum), or
    None where it cannot read `records` as they are: not built, not contiguous, or a field
    missing or of another type."""
    if _native is None or not records.flags.c_contiguous:
        return None
    return _field_offsets(records.dtype)


@functools.lru_cache(maxsize=8)
def _field_offsets(dtype: np.dtype[np.void]) -> npt.NDArray[np.int64] | None:
    """`_native_offsets` for one record type, worked out once (every chunk has the same)."""
    fields = dtype.fields
    if fields is None or any(
        name not in fields or fields[name][0] != np.dtype(kind)
        for name, kind in _NATIVE_FIELDS.items()
    ):
        return None
    offsets = np.array([fields[name][1] for name in _NATIVE_FIELDS], dtype=np.int64)
    offsets.flags.writeable = False
    return offsets


def plug_in_hybrid(
    records: VehicleArray,
    max_co2: int,
    inclusive: bool,
    rows: npt.NDArray[np.intp] | None = None,
) -> npt.NDArray[np.bool_]:
    """Plug-in hybrid within a rule's CO2 limit: hybrid fuel, electric motor, known CO2.

    DIV has no "externally chargeable" field (docs/rules.md#plug-in-hybrids); the CO2 limit
    of the rule is what tells a plug-in from a plain hybrid here. `rows` limits the answer to
    those record indices (aligned with `rows`).
    """
    co2, fuel, flags = records["co2"], records["fuel"], records["flags"]
    if rows is not None:
        co2, fuel, flags = co2[rows], fuel[rows], flags[rows]
    out = (co2 <= max_co2) if inclusive else (co2 < max_co2)
    out &= co2 != U16_UNKNOWN
    out &= codes.FUEL_HYBRID[fuel]
    out &= (flags & Flag.ELECTRIC_MOTOR) != 0
    return np.asarray(out)


# -- one-item reference path ----------------------------------------------------------------------


class EnrichedOne(NamedTuple):
    category: int
    vclass: int
    family: int
    euro: int
    derived: int


def enrich_one(record: np.void, euro_correction: int = 0) -> EnrichedOne:
    """The plain one-record version of `enrich` (reference path)."""
    th = THRESHOLDS
    derived = 0
    category = int(record["category"])
    if category != codes.UNKNOWN:
        vclass = _category_class(codes.CATEGORY.by_id[category].name)
    else:
        category, vclass = _derive_category_one(
            int(record["kind"]), int(record["max_mass"]), int(record["seats"])
        )
        if vclass != VehicleClass.UNKNOWN:
            derived |= Derived.CATEGORY
    running = int(record["running_mass"])
    if vclass in (VehicleClass.N1, VehicleClass.N2) and running != U32_UNKNOWN:
        ref = running - th.driver_kg + th.added_kg
        if vclass == VehicleClass.N1:
            if ref <= th.n1_i_max:
                vclass = VehicleClass.N1_I
            elif ref <= th.n1_ii_max:
                vclass = VehicleClass.N1_II
            else:
                vclass = VehicleClass.N1_III
        else:
            vclass = VehicleClass.N2_LIGHT if ref <= th.n2_light_max else VehicleClass.N2_HEAVY
    euro = int(record["euro"])
    if euro_correction:
        euro = euro_correction
        derived |= Derived.EURO_CORRECTED
    if euro == codes.UNKNOWN:
        euro = derive_euro_one(vclass, int(record["first_registration"]))
        if euro != codes.UNKNOWN:
            derived |= Derived.EURO
    family = int(codes.FUEL_FAMILY[int(record["fuel"])])
    return EnrichedOne(int(category), int(vclass), family, euro, int(derived))


def _derive_category_one(kind: int, max_mass: int, seats: int) -> tuple[int, VehicleClass]:
    th = THRESHOLDS
    hint = _HINT_NAMES[int(KIND_HINT[kind])] if kind < len(KIND_HINT) else ""
    mass_known = max_mass != U32_UNKNOWN
    if hint == "M1" and seats != U8_UNKNOWN and seats > th.m1_max_seats:
        hint = "M_BUS"
    if hint == "M1":
        return _CAT_ID["M1"], VehicleClass.M1
    if hint == "M_BUS":
        if not mass_known:
            return 0, VehicleClass.M_BUS
        if max_mass <= th.m2_max_mass:
            return _CAT_ID["M2"], VehicleClass.M2
        return _CAT_ID["M3"], VehicleClass.M3
    if hint == "N":
        if not mass_known:
            return 0, VehicleClass.N
        if max_mass <= th.n1_max_mass:
            return _CAT_ID["N1"], VehicleClass.N1
        if max_mass <= th.n2_max_mass:
            return _CAT_ID["N2"], VehicleClass.N2
        return _CAT_ID["N3"], VehicleClass.N3
    if hint == "O":
        if not mass_known:
            return 0, VehicleClass.O
        if max_mass <= th.o1_max_mass:
            return _CAT_ID["O1"], VehicleClass.O
        if max_mass <= th.o2_max_mass:
            return _CAT_ID["O2"], VehicleClass.O
        if max_mass <= th.o3_max_mass:
            return _CAT_ID["O3"], VehicleClass.O
        return _CAT_ID["O4"], VehicleClass.O
    if hint == "L":
        return 0, VehicleClass.L
    if hint == "T":
        return _CAT_ID["T"], VehicleClass.T
    return 0, VehicleClass.UNKNOWN


def _from_table_one(table: EuroTable | None, first: int) -> int:
    if table is None or first == DAY_UNKNOWN:
        return codes.UNKNOWN
    pos = bisect.bisect_right(table.starts.tolist(), first) - 1
    return int(table.euro[pos]) if pos >= 0 else codes.UNKNOWN


def derive_euro_one(vclass: int, first_registration: int) -> int:
    """One-item `derive_euro`."""
    values = {
        _from_table_one(CLASS_TABLE.get(m), first_registration)
        for m in MEMBERS[VehicleClass(vclass)]
    }
    return values.pop() if len(values) == 1 else codes.UNKNOWN


def plug_in_hybrid_one(record: np.void, max_co2: int, inclusive: bool) -> bool:
    """One-item `plug_in_hybrid`."""
    co2 = int(record["co2"])
    if co2 == U16_UNKNOWN or not codes.FUEL_HYBRID[int(record["fuel"])]:
        return False
    if not int(record["flags"]) & Flag.ELECTRIC_MOTOR:
        return False
    return co2 <= max_co2 if inclusive else co2 < max_co2
