"""Synthetic DIV register: a realistic, deterministic Belgian DIV extract of any size.

This module owns `lez-loader synth`: it writes `extract.csv` (or `.csv.gz`) in the extract format
of `docs/extract-format.md` (one row per plate version) and `synth.json` (a summary). Everything
is generated with vectorised NumPy in chunks of `CHUNK_PLATES` plates and written with pyarrow, so
8,000,000 plates take well under a minute and memory stays bounded by one chunk.

Where the figures come from (docs/sources.md#reference-data, docs/rules.md):
- fleet composition and the car fuel mix: Statbel's vehicle fleet (2022 split by vehicle type,
  2024 car fuel mix), ~10 years average car age (GIPA study, auto55.be 2024-12), 173,133
  oldtimers (auto55.be 2023-03);
- euro norm from the first-registration date: the tables of
  docs/rules.md#euro-norm-from-first-registration (M1, N1 class I; M2/N1 class II-III: Walloon
  Euro 1-2 and EU Euro 5-6 dates; heavy vehicles: the Dutch milieuzone table, chosen because it
  is the only one covering Euro I to VI);
- DIV code spellings: docs/rules.md#codes through `lez.codes`; plate formats and prefixes:
  docs/rules.md#plate-formats; NIS codes: Statbel's five-digit codes.

Figures no public source gave are modelling choices, marked "modelling choice" where used:
the age distribution by year, the split of goods vehicles into N1/N2/N3, the trailer share,
history rates, masses, power, CO2 and the tractor engine-stage dates. They make the data look
plausible; no rule or test should treat them as facts.

Plates are unique after normalisation across the whole register: each plate series draws
distinct indices from its own combination space through an affine permutation, and the series'
normalised shapes are pairwise disjoint (see `_SERIES`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from lez.days import DAY_OPEN, to_day
from lez.plates import PLATE_WIDTH
from lez.store.writer import Progress, no_progress
from loader.config import DEFAULT_RETENTION_DAYS
from loader.extract import COLUMNS  # the one definition of the extract layout

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]


CHUNK_PLATES: Final = 500_000
"""Plates generated per chunk. Part of the output definition: changing it changes the data."""

DEFAULT_SOURCE_DATE: Final = dt.date(2026, 11, 1)

_NONE: Final = -1  # blank code / number in the generation arrays


def _d(y: int, m: int = 1, day: int = 1) -> int:
    return to_day(dt.date(y, m, day))


_YEAR: Final = 365.25
_FIRST_DAY: Final = _d(1970)  # first registrations are spread from 1970 on
_EURO_PLATE: Final = _d(2010, 11, 16)  # docs/rules.md#plate-formats: Euro plate since 16 Nov 2010
_SERIES_2: Final = _d(2021)  # docs/rules.md#plate-formats: plates issued from 2021 start with 2

# ---- code vocabularies (DIV spellings, lez.codes) --------------------------------------------
# Each column is generated as indices into its vocabulary; -1 is blank. The last entry of each
# vocabulary is a deliberately unknown code (fuel 14 is NOT FOUND, docs/rules.md#codes).

_CAT_V: Final = ("M1", "M2", "M3", "N1", "N2", "N3", "L1", "L3", "L4", "L5", "L6", "L7")
_CAT_V2: Final = ("O1", "O2", "O3", "O4", "T", "OTHER", "M4")
CATEGORIES: Final = _CAT_V + _CAT_V2
KINDS: Final = (
    *("AA", "AB", "AC", "AD", "AE", "AF", "AR", "AZ", "BC", "BF", "BP", "BR", "CL", "CO", "CR"),
    *("CT", "XL", "XS", "XM", "XB", "XT", "XR", "XC", "ZZ"),
)
BODYWORKS: Final = ("01", "02", "03", "04", "05", "06", "07", "99", "98")
FUELS: Final = (
    *("01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "15"),
    "14",
)
EUROS: Final = (
    *("0", "1", "2", "3", "4", "5", "5A", "5B", "6", "6A", "6B", "6C", "6D-TEMP", "6D"),
    *("I", "II", "III", "IV", "V", "VI", "EEV", "P1", "P2", "P3A", "P3B", "P4", "7"),
)
STATUSES: Final = ("A", "S", "O")
PLATE_TYPES: Final = ("N", "P", "O", "C", "D", "T")
UNKNOWN_CODES: Final = {
    "category": "M4",
    "kind": "ZZ",
    "bodywork": "98",
    "fuel": "14",
    "euro": "7",
}


def _ix(vocab: tuple[str, ...], code: str) -> int:
    return vocab.index(code)


CATEGORY_IX = {c: _ix(CATEGORIES, c) for c in CATEGORIES}
KIND_IX = {c: _ix(KINDS, c) for c in KINDS}
BODYWORK_IX = {c: _ix(BODYWORKS, c) for c in BODYWORKS}
FUEL_IX = {c: _ix(FUELS, c) for c in FUELS}
EURO_IX = {c: _ix(EUROS, c) for c in EUROS}
ST_A, ST_S, ST_O = 0, 1, 2

# ---- vehicle classes (Statbel fleet, docs/sources.md#reference-data) -------------------------
# Statbel 1 Aug 2022: cars 5,947,479; goods vehicles 958,553; buses 16,557; road
# tractors 55,075; agricultural tractors 203,472; special 82,634; motorcycles 533,107.
# Oldtimers: 173,133 of 6,030,700 cars in 2023 (2.87 %). Trailers and mopeds are outside the
# Statbel motorised fleet; their shares (7 % and 1 % of plates) are a modelling choice, as is
# the N1/N2/N3 split of goods vehicles (80/6/14).
(
    CAR,
    OLDTIMER,
    VAN,
    TRUCK_N2,
    TRUCK_N3,
    BUS,
    ROAD_TRACTOR,
    AGRI_TRACTOR,
    SPECIAL,
    MOTORCYCLE,
    MOPED,
    TRAILER,
) = range(12)
CLASS_NAMES: Final = (
    *("car", "oldtimer", "van", "truck_n2", "truck_n3", "bus", "road_tractor"),
    *("agricultural_tractor", "special", "motorcycle", "moped", "trailer"),
)
_OLDTIMER_SHARE_OF_CARS: Final = 173_133 / 6_030_700
_MOTORISED: Final = np.array(
    [
        5_947_479 * (1 - _OLDTIMER_SHARE_OF_CARS),
        5_947_479 * _OLDTIMER_SHARE_OF_CARS,
        958_553 * 0.80,
        958_553 * 0.06,
        958_553 * 0.14,
        16_557,
        55_075,
        203_472,
        82_634,
        533_107,
        0,
        0,
    ]
)
CLASS_SHARES: Final = np.concatenate(
    [_MOTORISED[:10] / _MOTORISED.sum() * 0.92, np.array([0.01, 0.07])]
)

# Car fuel mix 2024 (Statbel): petrol 3,132,607; diesel 1,934,307; hybrid 710,687 (petrol vs
# diesel hybrids 81,107 : 5,905 as in 2018); electric 254,240; gas 22,786; other 34,937. The
# split of gas (LPG/CNG/petrol+CNG) and "other" over DIV codes is a modelling choice.
_CAR_FUEL: Final = (
    ("01", 3_132_607),
    ("02", 1_934_307),
    ("07", 710_687 * 81_107 / 87_012),
    ("08", 710_687 * 5_905 / 87_012),
    ("04", 254_240),
    ("03", 22_786 * 0.6),
    ("06", 22_786 * 0.3),
    ("15", 22_786 * 0.1),
    ("05", 34_937 * 0.5),
    ("13", 34_937 * 0.2),
    ("11", 34_937 * 0.2),
    ("09", 34_937 * 0.05),
    ("12", 34_937 * 0.05),
)
# Mean age in years at the extract date by car fuel: a modelling choice giving the ~10 years
# average (auto55.be 2024-12; electric and hybrid cars are young, diesels a little older).
_CAR_AGE: Final = {
    "01": 10.5,
    "02": 11.5,
    "07": 3.5,
    "08": 4.0,
    "04": 2.3,
    "03": 11.0,
    "06": 9.0,
    "15": 9.0,
    "05": 9.0,
    "13": 12.0,
    "11": 12.0,
    "09": 3.0,
    "12": 6.0,
}
# Other classes: fuel mix and mean age (years) are modelling choices.
_CLASS_FUEL: Final[dict[int, tuple[tuple[str, float], ...]]] = {
    OLDTIMER: (("01", 0.9), ("02", 0.1)),
    VAN: (("02", 0.88), ("01", 0.07), ("04", 0.03), ("06", 0.01), ("07", 0.01)),
    TRUCK_N2: (("02", 0.965), ("06", 0.015), ("04", 0.01), ("05", 0.01)),
    TRUCK_N3: (("02", 0.975), ("06", 0.015), ("04", 0.005), ("11", 0.005)),
    BUS: (("02", 0.85), ("08", 0.07), ("04", 0.05), ("06", 0.03)),
    ROAD_TRACTOR: (("02", 0.98), ("06", 0.01), ("11", 0.01)),
    AGRI_TRACTOR: (("02", 0.99), ("01", 0.01)),
    SPECIAL: (("02", 0.8), ("01", 0.18), ("05", 0.02)),
    MOTORCYCLE: (("01", 0.97), ("04", 0.03)),
    MOPED: (("01", 0.70), ("10", 0.15), ("04", 0.15)),
}
_CLASS_AGE: Final = {
    VAN: 8.0,
    TRUCK_N2: 9.0,
    TRUCK_N3: 7.0,
    BUS: 8.0,
    ROAD_TRACTOR: 5.5,
    AGRI_TRACTOR: 18.0,
    SPECIAL: 12.0,
    MOTORCYCLE: 13.0,
    MOPED: 7.0,
    TRAILER: 14.0,
}

# ---- euro norm by first registration (docs/rules.md#euro-norm-from-first-registration) ------
# (boundaries, codes): codes[i] applies from boundaries[i-1]; codes[0] before the first one.
_EURO_M1: Final = (
    [_d(1992, 7), _d(1997), _d(2001), _d(2006), _d(2011), _d(2015, 9), _d(2019, 9), _d(2021)],
    ["0", "1", "2", "3", "4", "5", "6", "6D-TEMP", "6D"],
)  # docs/rules.md#euro-norm-from-first-registration, table M1
_EURO_N1_I: Final = (
    [_d(1994, 10), _d(1998), _d(2001), _d(2006), _d(2011), _d(2015, 9), _d(2019, 9), _d(2021)],
    ["0", "1", "2", "3", "4", "5", "6", "6D-TEMP", "6D"],
)  # docs/rules.md#euro-norm-from-first-registration, table N1_I
# Section 3.2: M2 / N1 class II-III: Euro 1-2 Walloon annex, Euro 5-6 EU dates. Euro 3, 4,
# 6d-TEMP and 6d dates are NOT FOUND: the dates below are a modelling choice.
_EURO_N1_II: Final = (
    [_d(1994, 10), _d(1998), _d(2002), _d(2007), _d(2012), _d(2016, 9), _d(2020, 9), _d(2022)],
    ["0", "1", "2", "3", "4", "5", "6", "6D-TEMP", "6D"],
)
_EURO_HEAVY: Final = (
    [_d(1992, 7), _d(1995, 10), _d(2000, 10), _d(2005, 10), _d(2008, 10), _d(2013)],
    ["0", "I", "II", "III", "IV", "V", "VI"],
)  # Dutch milieuzone table, evofenedex.nl (chosen over the Walloon one: it covers I-VI)
# Tractor engine stages by date are NOT FOUND (docs/rules.md#not-found): modelling choice;
# "" = blank.
_STAGE_T: Final = (
    [_d(1999), _d(2002), _d(2006), _d(2011), _d(2014)],
    ["", "P1", "P2", "P3A", "P3B", "P4"],
)
(SCHEME_NONE, SCHEME_M1, SCHEME_N1_I, SCHEME_N1_II, SCHEME_HEAVY, SCHEME_T) = range(6)
_SCHEMES: Final = {
    SCHEME_M1: _EURO_M1,
    SCHEME_N1_I: _EURO_N1_I,
    SCHEME_N1_II: _EURO_N1_II,
    SCHEME_HEAVY: _EURO_HEAVY,
    SCHEME_T: _STAGE_T,
}

# ---- NIS codes (Statbel) ---------------------------------------------------------------------
# Named municipalities with a modelling-choice weight (share of plates, in %), Brussels split
# roughly by size. The remaining share goes to synthetic codes that follow the NIS
# structure (province digit, arrondissement, municipality); they are NOT the official list.
_NIS_NAMED: Final = (
    (11002, 4.6),  # Antwerpen
    (44021, 2.3),  # Gent
    (12025, 0.8),  # Mechelen
    (24062, 0.9),  # Leuven
    (31005, 1.0),  # Brugge
    (71022, 0.7),  # Hasselt
    *((21000 + i, w) for i, w in enumerate((0.9, 0.3, 0.2, 1.3, 0.4, 0.3, 0.4, 0.2, 0.6), 1)),
    *((21009 + i, w) for i, w in enumerate((0.4, 0.2, 0.7, 0.4, 0.2, 0.8, 0.8, 0.3, 0.5, 0.4), 1)),
)
_ARRONDISSEMENTS: Final = (
    *(11, 12, 13, 23, 24, 25, 31, 32, 33, 34, 35, 36, 37, 38, 41, 42, 43, 44, 45, 46),
    *(51, 52, 53, 55, 56, 57, 58, 61, 62, 63, 64, 71, 72, 73, 81, 82, 83, 84, 85, 91, 92, 93),
)


def _nis_table() -> tuple[I32, F64]:
    named = {code for code, _ in _NIS_NAMED}
    codes = [code for code, _ in _NIS_NAMED]
    weights = [w / 100 for _, w in _NIS_NAMED]
    synthetic = [
        arr * 1000 + m
        for arr in _ARRONDISSEMENTS
        for m in range(1, 12 + (arr * 7) % 19)
        if arr * 1000 + m not in named
    ]
    rest = 1 - sum(weights)
    codes += synthetic
    weights += [rest / len(synthetic)] * len(synthetic)
    return np.array(codes, dtype=np.int32), np.array(weights)


_NIS_CODES, _NIS_WEIGHTS = _nis_table()

# ---- plate series (docs/rules.md#plate-formats) ----------------------------------------------
_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS: Final = "0123456789"


def _minus(chars: str, drop: str) -> str:
    return "".join(c for c in chars if c not in drop)


_L_EURO = _minus(_LETTERS, "O")  # docs/rules.md#plate-formats: no O in the Euro plate letters
_L_EURO_FIRST = _minus(_LETTERS, "OMQTZ")  # 1- series: M, O, Q, TX, Z first letters reserved
_L_1973 = _minus(_LETTERS, "IMOQW")  # 1973-2008 series without I, M, O, Q, W
_L_PERS_FIRST = _minus(_LETTERS, "CWXYZ")  # no CD, W, X, Y, Z personalised series


@dataclass(frozen=True, slots=True)
class _Series:
    """A plate series: a template of literal text and alphabets (one character each)."""

    name: str
    plate_type: str
    template: tuple[str, ...]  # "=text" is literal text, anything else an alphabet

    @property
    def alphabets(self) -> list[str]:
        return [p for p in self.template if not p.startswith("=")]

    @property
    def capacity(self) -> int:
        return math.prod(len(a) for a in self.alphabets)

    @property
    def width(self) -> int:
        return sum(len(p) - 1 if p.startswith("=") else 1 for p in self.template)


def _s(name: str, plate_type: str, *parts: str) -> _Series:
    return _Series(name, plate_type, parts)


D = _DIGITS
# Normalised shapes (L letter, D digit) are pairwise disjoint, which makes plates unique:
# 1/2 + LLL + DDD (the first letter tells cars, M, O, Q apart); X + LLL + DDD with distinct X;
# LLL+DDD (no C first, so never CD...); DDD+LLL; LL+DDD (no C first); CD+L+DDD; UA26+LLL;
# personalised: 5 letters, 6 letters, 4 letters + 2 digits (first letter not C, W, X, Y, Z).
_SERIES: Final = (
    _s("cur1", "N", "=1-", _L_EURO_FIRST, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("cur2", "N", "=2-", _L_EURO_FIRST, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("cur1_m", "N", "=1-M", _L_EURO, _L_EURO, "=-", D, D, D),
    _s("cur2_m", "N", "=2-M", _L_EURO, _L_EURO, "=-", D, D, D),
    _s("cur1_o", "O", "=1-O", _L_EURO, _L_EURO, "=-", D, D, D),
    _s("cur1_q", "N", "=1-Q", _L_EURO, _L_EURO, "=-", D, D, D),
    _s("cur2_q", "N", "=2-Q", _L_EURO, _L_EURO, "=-", D, D, D),
    _s("let_g", "N", "=G-", _L_EURO, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("let_m", "N", "=M-", _L_EURO, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("let_w", "N", "=W-", _L_EURO, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("let_o", "O", "=O-", _L_EURO, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("let_q", "N", "=Q-", _L_EURO, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("let_s", "N", "=S-", _L_EURO, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("let_t", "N", "=T-", _L_EURO, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("let_z", "C", "=Z-", _L_EURO, _L_EURO, _L_EURO, "=-", D, D, D),
    _s("old1973", "N", _minus(_L_1973, "C"), _L_1973, _L_1973, "=-", D, D, D),
    _s("old2008", "N", D, D, D, "=-", _L_EURO, _L_EURO, _L_EURO),
    _s("old1962", "N", _minus(_L_1973, "C"), _L_1973, "=-", D, D, D),
    _s("cd", "D", "=CD-", _L_EURO, "=-", D, D, D),
    _s("temp", "T", "=UA-26-", _LETTERS, _LETTERS, _LETTERS),
    _s("pers5", "P", _L_PERS_FIRST, _LETTERS, _LETTERS, _LETTERS, _LETTERS),
    _s("pers6", "P", _L_PERS_FIRST, _LETTERS, _LETTERS, _LETTERS, _LETTERS, _LETTERS),
    _s("pers42", "P", _L_PERS_FIRST, _LETTERS, _LETTERS, _LETTERS, "=-", D, D),
)
S = {s.name: i for i, s in enumerate(_SERIES)}
assert all(s.capacity**2 < 2**63 for s in _SERIES)
assert all(s.width <= PLATE_WIDTH for s in _SERIES)  # written plates, dashes included, fit
_PLATE_TYPE_OF_SERIES: Final = np.array([PLATE_TYPES.index(s.plate_type) for s in _SERIES])


# ---- public API ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SynthSummary:
    """What `generate` wrote. Counts by class/category/fuel/status/plate type are over current
    versions (the newest version of each plate) as generated, before the deliberate unknown
    codes are injected; blank codes count under ""."""

    extract: Path
    seed: int
    plates: int
    rows: int
    source_date: dt.date
    by_class: dict[str, int]
    by_category: dict[str, int]
    by_fuel: dict[str, int]
    by_status: dict[str, int]
    by_plate_type: dict[str, int]
    versions_per_plate: dict[int, int]
    crossed_out_past_retention: int
    unknown_codes: int
    unknown_code_share: float
    bad_rows: list[int] = field(default_factory=list)
    mean_car_age_years: float = 0.0
    seconds: float = 0.0

    @property
    def path(self) -> Path:
        """The extract written (same as `extract`)."""
        return self.extract

    def to_json(self) -> dict[str, Any]:
        return {
            "extract": self.extract.name,
            "seed": self.seed,
            "plates": self.plates,
            "rows": self.rows,
            "source_date": self.source_date.isoformat(),
            "by_class": self.by_class,
            "by_category": self.by_category,
            "by_fuel": self.by_fuel,
            "by_status": self.by_status,
            "by_plate_type": self.by_plate_type,
            "versions_per_plate": {str(k): v for k, v in self.versions_per_plate.items()},
            "crossed_out_past_retention": self.crossed_out_past_retention,
            "unknown_codes": self.unknown_codes,
            "unknown_code_share": self.unknown_code_share,
            "bad_rows": self.bad_rows,
            "mean_car_age_years": round(self.mean_car_age_years, 2),
            "seconds": round(self.seconds, 2),
        }


def generate(
    plates: int,
    seed: int,
    out_dir: Path,
    *,
    source_date: dt.date = DEFAULT_SOURCE_DATE,
    compress: bool = False,
    progress: Progress = no_progress,
    unknown_code_share: float = 1e-4,
    bad_rows: int = 0,
) -> SynthSummary:
    """Write `out_dir/extract.csv` (`.csv.gz` with `compress`) and `out_dir/synth.json`.

    Deterministic for (`plates`, `seed`, `source_date`, `unknown_code_share`, `bad_rows`).
    `unknown_code_share` is the share of rows given one deliberately unknown code (fuel 14,
    euro 7, category M4, kind ZZ or bodywork 98). `bad_rows` malformed rows (bad plate, bad
    date, wrong column count, in turn) are injected; their 1-based line numbers (the header is
    line 1) are in `SynthSummary.bad_rows`.
    """
    if plates < 1:
        raise ValueError("plates must be at least 1")
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("extract.csv.gz" if compress else "extract.csv")
    tmp = path.with_name(path.name + ".part")
    source = to_day(source_date)
    perms = _permutations(seed)
    offsets = np.zeros(len(_SERIES), dtype=np.int64)
    bad_after = _bad_positions(seed, plates, bad_rows)  # inject after this many good rows
    acc = _Totals()
    written = 0
    bad_lines: list[int] = []
    with _open_out(tmp, compress) as out:
        out.write((",".join(COLUMNS) + "\n").encode())
        progress("synth", 0, plates)  # the stage starts here: its time and rate count from now
        for chunk, start in enumerate(range(0, plates, CHUNK_PLATES)):
            n = min(CHUNK_PLATES, plates - start)
            rng = np.random.default_rng([seed, chunk])
            table, stats = _chunk(rng, n, source, perms, offsets, unknown_code_share)
            acc.add(stats)
            written = _write_table(out, table, written, bad_after, bad_lines)
            progress("synth", start + n, plates)
        for _ in range(len(bad_after) - len(bad_lines)):  # positions past the last row
            bad_lines.append(written + len(bad_lines) + 2)
            out.write(_bad_row(len(bad_lines) - 1))
    tmp.replace(path)
    summary = acc.summary(
        extract=path,
        seed=seed,
        plates=plates,
        source_date=source_date,
        unknown_code_share=unknown_code_share,
        bad_rows=bad_lines,
        seconds=time.perf_counter() - started,
    )
    (out_dir / "synth.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


# ---- output ----------------------------------------------------------------------------------


class _Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...


@contextlib.contextmanager
def _open_out(path: Path, compress: bool) -> Iterator[_Sink]:
    with open(path, "wb", buffering=1 << 22) as raw:
        if not compress:
            yield raw
            return
        # mtime=0 and no file name keep the gzip bytes deterministic; level 1 because the time
        # to write a multi-gigabyte extract matters more here than its size.
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
            yield gz


_WRITE_OPTIONS: Final = pacsv.WriteOptions(include_header=False, quoting_style="none")


def _write_table(
    out: _Sink, table: pa.Table, written: int, bad_after: list[int], bad_lines: list[int]
) -> int:
    """Write `table`, injecting the bad rows whose position falls inside it; rows written."""
    pos = 0
    while len(bad_lines) < len(bad_after) and bad_after[len(bad_lines)] < written + table.num_rows:
        cut = bad_after[len(bad_lines)] - written
        _write_csv(out, table.slice(pos, cut - pos))
        pos = cut
        bad_lines.append(bad_after[len(bad_lines)] + len(bad_lines) + 2)
        out.write(_bad_row(len(bad_lines) - 1))
    _write_csv(out, table.slice(pos))
    return written + int(table.num_rows)


def _write_csv(out: _Sink, table: pa.Table) -> None:
    if table.num_rows:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(table, sink, _WRITE_OPTIONS)
        out.write(memoryview(sink.getvalue()))


def _bad_positions(seed: int, plates: int, count: int) -> list[int]:
    if count <= 0:
        return []
    rng = np.random.default_rng([seed, 0xBAD])
    return sorted(rng.choice(max(plates, count), size=count, replace=False).tolist())


_GOOD_TAIL: Final = "M1,AA,01,1800,1300,5,01,6,120,85,2019-05-01,2019-05-01,11002,A,0,2019-05-01,"


def _bad_row(i: int) -> bytes:
    """Malformed row number `i`: bad plate, bad date, wrong column count, in turn."""
    kind = i % 3
    tag = _LETTERS[(i // 3) % 26]
    if kind == 0:
        plate = ("1-AB#-123", "", "ABCDEFGHJKLM")[(i // 3) % 3]
        return f"{plate},N,{_GOOD_TAIL}\n".encode()
    if kind == 1:
        tail = _GOOD_TAIL.replace("2019-05-01,2019-05-01,11002", "2019-02-30,2019-05-01,11002")
        return f"BADROW{tag},P,{tail}\n".encode()
    return f"BADROW{tag},P,M1,AA,01,1800,1300,5,01\n".encode()


# ---- plates ----------------------------------------------------------------------------------


def _permutations(seed: int) -> list[tuple[int, int]]:
    """Per series an affine permutation (a, b) of its combination space, fixed for the seed."""
    rng = np.random.default_rng([seed, 0x5E41E5])
    out = []
    for series in _SERIES:
        cap = series.capacity
        a = int(rng.integers(cap // 3, cap)) | 1
        while math.gcd(a, cap) != 1:
            a += 2
        out.append((a % cap, int(rng.integers(0, cap))))
    return out


def _plates(series: I64, perms: list[tuple[int, int]], offsets: I64) -> U8:
    """Written plates (n, PLATE_WIDTH) NUL padded; advances `offsets` (per-series counters)."""
    n = len(series)
    mat = np.zeros((n, PLATE_WIDTH), dtype=np.uint8)
    for s_idx, spec in enumerate(_SERIES):
        rows = np.flatnonzero(series == s_idx)
        if not len(rows):
            continue
        cap = spec.capacity
        k = offsets[s_idx] + np.arange(len(rows), dtype=np.int64)
        if int(k[-1]) >= cap:
            raise ValueError(f"plate series {spec.name} exhausted ({cap} plates): too many plates")
        offsets[s_idx] += len(rows)
        a, b = perms[s_idx]
        idx = (k * a + b) % cap  # a < cap and k < cap: no overflow (asserted on _SERIES)
        cols: list[U8] = []
        for part in reversed(spec.template):
            if part.startswith("="):
                lit = np.frombuffer(part[1:].encode(), dtype=np.uint8)
                cols.extend(np.full(len(rows), c, dtype=np.uint8) for c in lit[::-1])
            else:
                base = len(part)
                alpha = np.frombuffer(part.encode(), dtype=np.uint8)
                cols.append(alpha[idx % base])
                idx = idx // base
        mat[rows, : spec.width] = np.stack(cols[::-1], axis=1)
    return mat


def _choose_series(rng: np.random.Generator, cls: I64, issued: I32, source: int) -> I64:
    """Series of each plate from the vehicle class and the plate's issue date (plate-formats)."""
    n = len(cls)
    u = rng.random(n)
    euro2 = issued >= _SERIES_2
    euro1 = (issued >= _EURO_PLATE) & ~euro2
    pre = issued < _EURO_PLATE
    out = np.where(euro2, S["cur2"], S["cur1"]).astype(np.int64)
    out[pre & (issued >= _d(2008))] = S["old2008"]
    out[pre & (issued < _d(2008))] = S["old1973"]
    out[pre & (issued < _d(1973))] = S["old1962"]
    taxi = (cls == CAR) & (u < 0.002)
    out[taxi] = S["let_t"]
    # modelling choice: personalised plates (bd.nl 2022-06: 11,021 in 2021 alone) on ~0.8 % of
    # cars and motorcycles issued since 2000; a few CD, dealer and temporary plates.
    personal = np.isin(cls, (CAR, MOTORCYCLE)) & (u >= 0.002) & (u < 0.010) & (issued >= _d(2000))
    which = rng.integers(0, 3, n)
    out[personal] = np.array([S["pers5"], S["pers6"], S["pers42"]])[which[personal]]
    out[(cls == CAR) & (u >= 0.010) & (u < 0.0104)] = S["cd"]
    out[(cls == CAR) & (u >= 0.0104) & (u < 0.0107)] = S["let_z"]
    out[(cls == CAR) & (u >= 0.0107) & (u < 0.0127) & (issued >= source - 365)] = S["temp"]
    moto = cls == MOTORCYCLE
    mp = moto & ~personal
    out[mp] = np.where(euro2[mp], S["cur2_m"], S["cur1_m"])
    out[mp & pre] = np.where(u[mp & pre] < 0.3, S["let_w"], S["let_m"])
    old = cls == OLDTIMER
    out[old] = np.where(issued[old] >= _EURO_PLATE, S["cur1_o"], S["let_o"])
    trl = cls == TRAILER
    out[trl] = np.where(euro2[trl], S["cur2_q"], S["cur1_q"])
    # modelling choice: half the 2010-2020 trailer plates are Q- to spread the small 1-Q space
    out[trl & (pre | (euro1 & (u < 0.5)))] = S["let_q"]
    out[cls == AGRI_TRACTOR] = S["let_g"]
    out[cls == MOPED] = S["let_s"]
    return out


def _arrow_plates(mat: U8) -> pa.Array:
    lengths = (mat != 0).sum(axis=1)
    offsets = np.zeros(len(mat) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = mat[mat != 0]
    return pa.StringArray.from_buffers(len(mat), pa.py_buffer(offsets), pa.py_buffer(data))


# ---- vehicles --------------------------------------------------------------------------------


def _pick(rng: np.random.Generator, n: int, choices: tuple[tuple[str, float], ...]) -> I64:
    p = np.array([w for _, w in choices], dtype=np.float64)
    vocab = np.array([FUEL_IX[c] for c, _ in choices])
    return np.asarray(vocab[rng.choice(len(p), size=n, p=p / p.sum())], dtype=np.int64)


def _gamma_age(rng: np.random.Generator, mean: F64, shape: float = 2.2) -> F64:
    return rng.gamma(shape, mean / shape)


@dataclass(slots=True)
class _Veh:
    """Attributes of n vehicles as vocabulary indices (-1 blank) and numbers (-1 blank)."""

    category: I64
    kind: I64
    bodywork: I64
    fuel: I64
    euro: I64
    max_mass: I64
    running_mass: I64
    seats: I64
    co2: I64
    power_kw: I64
    first: I64
    electric: I64

    def take(self, idx: I64) -> _Veh:
        return _Veh(*(getattr(self, f)[idx] for f in _VEH_FIELDS))

    def copy(self) -> _Veh:
        return _Veh(*(getattr(self, f).copy() for f in _VEH_FIELDS))


_VEH_FIELDS: Final = (
    *("category", "kind", "bodywork", "fuel", "euro", "max_mass", "running_mass", "seats"),
    *("co2", "power_kw", "first", "electric"),
)


def _fuels(rng: np.random.Generator, cls: I64) -> I64:
    fuel = np.full(len(cls), _NONE, dtype=np.int64)
    cars = np.flatnonzero(cls == CAR)
    fuel[cars] = _pick(rng, len(cars), _CAR_FUEL)
    for c, mix in _CLASS_FUEL.items():
        rows = np.flatnonzero(cls == c)
        fuel[rows] = _pick(rng, len(rows), mix)
    return fuel


def _vehicles(rng: np.random.Generator, cls: I64, end: I64, first: I64 | None) -> _Veh:
    """Vehicles of the given classes. With `first` None the first registration is drawn from
    the age model (current vehicles); otherwise fuels are made consistent with `first`.

    The steps below run in a fixed order and each draws from `rng` in turn: the order is part
    of the output definition (same seed, same register)."""
    fuel = _fuels(rng, cls)
    if first is None:
        first = _drawn_first_registration(rng, cls, fuel, end)
    first = np.minimum(first, end - 1)
    # young technologies: no electric car before 2011, no hybrid before 2000 (modelling choice)
    ev = (fuel == FUEL_IX["04"]) | (fuel == FUEL_IX["09"])
    hyb = np.isin(fuel, (FUEL_IX["07"], FUEL_IX["08"], FUEL_IX["12"]))
    fuel[ev & (first < _d(2011))] = FUEL_IX["01"]
    fuel[hyb & (first < _d(2000))] = FUEL_IX["01"]
    d = _Draft.start(rng, cls, fuel)
    _passenger_cars(d)
    _vans(d)
    _trucks(d)
    _buses(d)
    _tractors_and_machinery(d)
    _two_wheelers(d)
    _trailers(d)
    return _finished(d, first)


@dataclass(slots=True)
class _Draft:
    """A batch of vehicles being filled in class by class (vocabulary indices, -1 blank)."""

    rng: np.random.Generator
    cls: I64
    fuel: I64
    cat: I64
    kind: I64
    body: I64
    max_mass: I64
    seats: I64
    power: I64
    run_ratio: F64
    u: F64  # one uniform draw per vehicle, shared by the class steps
    norm: F64

    @classmethod
    def start(cls, rng: np.random.Generator, classes: I64, fuel: I64) -> _Draft:
        n = len(classes)
        return cls(
            rng=rng,
            cls=classes,
            fuel=fuel,
            cat=np.full(n, _NONE, dtype=np.int64),
            kind=np.full(n, _NONE, dtype=np.int64),
            body=np.full(n, BODYWORK_IX["01"], dtype=np.int64),
            max_mass=np.zeros(n, dtype=np.int64),
            seats=np.full(n, _NONE, dtype=np.int64),
            power=np.zeros(n, dtype=np.int64),
            run_ratio=np.full(n, 0.72),
            u=rng.random(n),
            norm=rng.standard_normal(n),
        )

    @property
    def m1(self) -> Bool:
        m1 = np.isin(self.cls, (CAR, OLDTIMER)) | ((self.cls == SPECIAL) & (self.u < 0.55))
        return np.asarray(m1, dtype=np.bool_)

    @property
    def van(self) -> Bool:
        van = (self.cls == VAN) | ((self.cls == SPECIAL) & (self.u >= 0.55) & (self.u < 0.62))
        return np.asarray(van, dtype=np.bool_)

    @property
    def m2(self) -> Bool:
        return np.asarray((self.cls == BUS) & (self.u < 0.2), dtype=np.bool_)

    def kinds(self, mask: Bool, choices: tuple[tuple[str, float], ...]) -> None:
        p = np.array([w for _, w in choices])
        vocab = np.array([KIND_IX[c] for c, _ in choices])
        self.kind[mask] = vocab[self.rng.choice(len(p), size=int(mask.sum()), p=p / p.sum())]

    def bodies(self, mask: Bool, choices: tuple[tuple[str, float], ...]) -> None:
        p = np.array([w for _, w in choices])
        vocab = np.array([BODYWORK_IX[c] for c, _ in choices])
        self.body[mask] = vocab[self.rng.choice(len(p), size=int(mask.sum()), p=p / p.sum())]

    def ints(self, mask: Bool, lo: float, hi: float, arr: I64) -> None:
        arr[mask] = (lo + self.rng.random(int(mask.sum())) * (hi - lo)).astype(np.int64)


def _drawn_first_registration(rng: np.random.Generator, cls: I64, fuel: I64, end: I64) -> I64:
    """First registration from the age model (modelling choice: gamma ages by class/fuel)."""
    n = len(cls)
    mean = np.zeros(n)
    for code, age in _CAR_AGE.items():
        mean[(cls == CAR) & (fuel == FUEL_IX[code])] = age
    for c, age in _CLASS_AGE.items():
        mean[cls == c] = age
    years = _gamma_age(rng, mean)
    old = cls == OLDTIMER
    # oldtimers: older than 30 years (modelling choice), spread back to 1970
    oldest = (end[old] - _FIRST_DAY) / _YEAR - 0.1
    years[old] = 30.2 + rng.random(int(old.sum())) * np.maximum(oldest - 30.2, 0)
    first = end - (years * _YEAR).astype(np.int64) - 1
    too_old = first < _FIRST_DAY
    first[too_old] = _FIRST_DAY + (rng.random(int(too_old.sum())) * 15 * _YEAR).astype(np.int64)
    return first


def _passenger_cars(d: _Draft) -> None:
    """M1: cars, oldtimers and the car-like special vehicles."""
    rng, cls, norm = d.rng, d.cls, d.norm
    cat, max_mass, seats, power = d.cat, d.max_mass, d.seats, d.power
    kinds, bodies = d.kinds, d.bodies
    m1 = d.m1
    # Masses (kg), seats (incl. driver), power (kW): plausible ranges, a modelling choice.
    cat[m1] = CATEGORY_IX["M1"]
    kinds(
        m1 & (cls != SPECIAL),
        (("AA", 35), ("AB", 25), ("AC", 20), ("AD", 4), ("AE", 2), ("AF", 14)),
    )
    kinds(m1 & (cls == SPECIAL), (("XC", 0.92), ("CL", 0.04), ("AF", 0.04)))
    max_mass[m1] = np.clip(1950 + 380 * norm[m1], 1100, 3500).astype(np.int64)
    seats[m1] = np.array([5, 4, 2, 7, 9])[
        rng.choice(5, int(m1.sum()), p=[0.8, 0.07, 0.04, 0.08, 0.01])
    ]
    power[m1] = np.clip(rng.lognormal(np.log(85), 0.38, int(m1.sum())), 30, 450).astype(np.int64)
    bodies(m1, (("01", 0.97), ("02", 0.025), ("07", 0.005)))


def _vans(d: _Draft) -> None:
    """N1: vans and the van-like special vehicles."""
    rng, cls, u = d.rng, d.cls, d.u
    cat, max_mass, seats, power, run_ratio = d.cat, d.max_mass, d.seats, d.power, d.run_ratio
    kinds, bodies, ints = d.kinds, d.bodies, d.ints
    van = d.van
    cat[van] = CATEGORY_IX["N1"]
    kinds(van & (cls == VAN), (("CT", 0.97), ("XC", 0.02), ("AZ", 0.01)))
    kinds(van & (cls == SPECIAL), (("AZ", 1.0),))
    max_mass[van] = np.where(u[van] < 0.5, 3500, 2000 + (u[van] * 3000).astype(np.int64))
    seats[van] = np.array([2, 3, 6])[rng.choice(3, int(van.sum()), p=[0.4, 0.5, 0.1])]
    run_ratio[van] = 0.62
    ints(van, 60, 140, power)
    bodies(van, (("01", 0.5), ("03", 0.4), ("02", 0.1)))


def _trucks(d: _Draft) -> None:
    """N2 and N3: trucks, road tractors and heavy special vehicles."""
    cls, u = d.cls, d.u
    cat, kind, body, max_mass, seats, power, run_ratio = (
        d.cat,
        d.kind,
        d.body,
        d.max_mass,
        d.seats,
        d.power,
        d.run_ratio,
    )
    bodies, ints = d.bodies, d.ints
    n2 = cls == TRUCK_N2
    cat[n2] = CATEGORY_IX["N2"]
    kind[n2] = KIND_IX["XL"]
    ints(n2, 3501, 12000, max_mass)
    ints(n2, 110, 220, power)
    n3 = (cls == TRUCK_N3) | (cls == ROAD_TRACTOR) | ((cls == SPECIAL) & (u >= 0.62) & (u < 0.7))
    cat[n3] = CATEGORY_IX["N3"]
    kind[n3] = np.where(
        cls[n3] == ROAD_TRACTOR,
        KIND_IX["XR"],
        np.where(cls[n3] == SPECIAL, KIND_IX["BF"], KIND_IX["XL"]),
    )
    ints(n3, 12001, 44000, max_mass)
    ints(n3, 180, 450, power)
    heavy_goods = n2 | n3
    seats[heavy_goods] = 2 + (u[heavy_goods] < 0.3)
    run_ratio[heavy_goods] = 0.45
    bodies(heavy_goods, (("03", 0.4), ("02", 0.25), ("05", 0.15), ("04", 0.1), ("99", 0.1)))
    body[cls == ROAD_TRACTOR] = BODYWORK_IX["99"]


def _buses(d: _Draft) -> None:
    """M2 and M3."""
    cls = d.cls
    cat, kind, max_mass, seats, power, run_ratio = (
        d.cat,
        d.kind,
        d.max_mass,
        d.seats,
        d.power,
        d.run_ratio,
    )
    bodies, ints = d.bodies, d.ints
    m2 = d.m2
    bus = cls == BUS
    m3 = bus & ~m2
    cat[m2] = CATEGORY_IX["M2"]
    cat[m3] = CATEGORY_IX["M3"]
    kind[bus] = KIND_IX["BC"]
    ints(m2, 3500, 5000, max_mass)
    ints(m3, 12000, 19500, max_mass)
    ints(m2, 10, 23, seats)
    ints(m3, 25, 80, seats)
    ints(bus, 100, 300, power)
    bodies(bus, (("06", 0.95), ("07", 0.05)))
    run_ratio[bus] = 0.6


def _tractors_and_machinery(d: _Draft) -> None:
    """Agricultural tractors (T) and other machinery (OTHER)."""
    rng, cls, u = d.rng, d.cls, d.u
    cat, kind, body, max_mass, seats, power, run_ratio = (
        d.cat,
        d.kind,
        d.body,
        d.max_mass,
        d.seats,
        d.power,
        d.run_ratio,
    )
    ints = d.ints
    tr = cls == AGRI_TRACTOR
    cat[tr] = CATEGORY_IX["T"]
    kind[tr] = KIND_IX["XT"]
    ints(tr, 2000, 14000, max_mass)
    seats[tr] = 1 + (u[tr] < 0.3)
    power[tr] = np.clip(rng.lognormal(np.log(95), 0.55, int(tr.sum())), 20, 330).astype(np.int64)
    body[tr] = BODYWORK_IX["99"]
    run_ratio[tr] = 0.7

    other = (cls == SPECIAL) & (u >= 0.7)
    cat[other] = CATEGORY_IX["OTHER"]
    kind[other] = KIND_IX["XL"]
    ints(other, 3500, 32000, max_mass)
    ints(other, 100, 400, power)
    seats[other] = 2
    body[other] = BODYWORK_IX["99"]
    run_ratio[other] = 0.8


def _two_wheelers(d: _Draft) -> None:
    """Motorcycles (L3-L7, old ones among the oldtimers) and mopeds (L1)."""
    rng, cls, u, fuel = d.rng, d.cls, d.u, d.fuel
    cat, kind, body, max_mass, seats, power, run_ratio = (
        d.cat,
        d.kind,
        d.body,
        d.max_mass,
        d.seats,
        d.power,
        d.run_ratio,
    )
    ints = d.ints
    moto = cls == MOTORCYCLE
    old_moto = (cls == OLDTIMER) & (u < 0.08)
    moto_all = moto | old_moto
    cat[moto_all] = np.array(
        [
            CATEGORY_IX["L3"],
            CATEGORY_IX["L4"],
            CATEGORY_IX["L5"],
            CATEGORY_IX["L6"],
            CATEGORY_IX["L7"],
        ]
    )[rng.choice(5, int(moto_all.sum()), p=[0.9, 0.02, 0.03, 0.02, 0.03])]
    kind[moto_all] = KIND_IX["XM"]
    fuel[old_moto] = FUEL_IX["01"]
    ints(moto_all, 250, 550, max_mass)
    seats[moto_all] = 2
    power[moto_all] = np.clip(rng.lognormal(np.log(50), 0.6, int(moto_all.sum())), 4, 160).astype(
        np.int64
    )
    body[moto_all] = BODYWORK_IX["99"]
    run_ratio[moto_all] = 0.55
    mop = cls == MOPED
    cat[mop] = CATEGORY_IX["L1"]
    kind[mop] = KIND_IX["XB"]
    ints(mop, 150, 250, max_mass)
    seats[mop] = 1 + (u[mop] < 0.5)
    ints(mop, 1, 5, power)
    body[mop] = BODYWORK_IX["99"]
    run_ratio[mop] = 0.5


def _trailers(d: _Draft) -> None:
    """Trailers (O1-O4)."""
    rng, cls = d.rng, d.cls
    cat, kind, max_mass, power, run_ratio = d.cat, d.kind, d.max_mass, d.power, d.run_ratio
    kinds, bodies = d.kinds, d.bodies
    n = len(cls)
    trl = cls == TRAILER
    o = rng.choice(4, n, p=[0.15, 0.62, 0.08, 0.15])
    cat[trl] = np.array(
        [CATEGORY_IX["O1"], CATEGORY_IX["O2"], CATEGORY_IX["O3"], CATEGORY_IX["O4"]]
    )[o[trl]]
    lo = np.array([300, 751, 3501, 10001])[o]
    hi = np.array([750, 3500, 10000, 39000])[o]
    max_mass[trl] = (lo + rng.random(n) * (hi - lo)).astype(np.int64)[trl]
    kinds(trl & (o < 3), (("AR", 0.7), ("BR", 0.07), ("CR", 0.2), ("CO", 0.03)))
    kind[trl & (o == 3)] = KIND_IX["XS"]
    bodies(trl, (("02", 0.5), ("03", 0.3), ("99", 0.2)))
    power[trl] = _NONE
    run_ratio[trl] = 0.3


def _finished(d: _Draft, first: I64) -> _Veh:
    """Running mass, CO2, euro norm and the deliberate gaps; the finished vehicles."""
    rng, cls, fuel = d.rng, d.cls, d.fuel
    cat, kind, body, max_mass, seats, power, run_ratio = (
        d.cat,
        d.kind,
        d.body,
        d.max_mass,
        d.seats,
        d.power,
        d.run_ratio,
    )
    m1 = d.m1
    n = len(cls)
    running = (max_mass * run_ratio * (1 + 0.05 * rng.standard_normal(n))).astype(np.int64)
    bev = fuel == FUEL_IX["04"]
    max_mass[m1 & bev] = np.minimum(max_mass[m1 & bev] + 300, 3500)
    power[bev & m1] = np.clip(power[bev & m1] * 1.6, 60, 500).astype(np.int64)
    co2 = _co2(d, first)

    euro = _euro(rng, cls, cat, fuel, first, running)
    electric = np.where(
        np.isin(fuel, (FUEL_IX["04"], FUEL_IX["07"], FUEL_IX["08"], FUEL_IX["12"])), 1, 0
    )
    electric[fuel == _NONE] = _NONE
    max_mass = np.maximum(max_mass, 1)
    # Missing values (modelling choice): category blank for 4 % of vehicles registered before
    # 2000 and 1.5 % after (derivable from kind and masses, docs/rules.md#category-derivation);
    # kind blank for 0.1 %, bodywork for 3 %.
    gap = rng.random(n)
    cat[gap < np.where(first < _d(2000), 0.04, 0.015)] = _NONE
    kind[(gap >= 0.5) & (gap < 0.501)] = _NONE
    body[gap >= 0.97] = _NONE
    return _Veh(
        category=cat,
        kind=kind,
        bodywork=body,
        fuel=fuel,
        euro=euro,
        max_mass=max_mass,
        running_mass=np.clip(running, 1, max_mass),
        seats=seats,
        co2=co2,
        power_kw=power,
        first=first,
        electric=electric.astype(np.int64),
    )


def _co2(d: _Draft, first: I64) -> I64:
    """CO2 (g/km) for light vehicles registered since 2001; blank before (modelling choice)."""
    rng, fuel, n = d.rng, d.fuel, len(d.cls)
    m1, van, m2 = d.m1, d.van, d.m2
    year = 1970 + (first - _FIRST_DAY) / _YEAR
    light = m1 | van | m2
    co2 = np.full(n, _NONE, dtype=np.int64)
    base = np.full(n, 150.0)
    base[fuel == FUEL_IX["02"]] = 140
    base[np.isin(fuel, (FUEL_IX["06"], FUEL_IX["15"]))] = 125
    phev = np.isin(fuel, (FUEL_IX["07"], FUEL_IX["08"])) & (
        rng.random(n) < 0.45
    )  # modelling choice
    base[np.isin(fuel, (FUEL_IX["07"], FUEL_IX["08"], FUEL_IX["12"]))] = 110
    base[phev] = 40
    base[van] += 40
    trend = np.clip(year - 2001, 0, None) * 2.2
    value = np.clip(base - trend * (base > 60) + 18 * rng.standard_normal(n), 60, 400)
    value[phev] = np.clip(40 + 10 * rng.standard_normal(int(phev.sum())), 18, 75)
    has_co2 = light & (first >= _d(2001))
    co2[has_co2] = value[has_co2].astype(np.int64)
    co2[light & np.isin(fuel, (FUEL_IX["04"], FUEL_IX["09"]))] = 0
    return co2


def _euro(rng: np.random.Generator, cls: I64, cat: I64, fuel: I64, first: I64, running: I64) -> I64:
    """Euro code from the first registration (docs/rules.md#enrichment), with gaps and variants."""
    n = len(cls)
    scheme = np.full(n, SCHEME_NONE)
    scheme[cat == CATEGORY_IX["M1"]] = SCHEME_M1
    # N1 class by reference mass = running mass - 75 + 100, class limits 1,305 / 1,760 kg
    # (docs/rules.md#reference-mass-and-vehicle-classes).
    ref = running + 25
    n1 = cat == CATEGORY_IX["N1"]
    scheme[n1 & (ref <= 1305)] = SCHEME_N1_I
    scheme[(n1 & (ref > 1305)) | (cat == CATEGORY_IX["M2"])] = SCHEME_N1_II
    scheme[
        np.isin(
            cat, (CATEGORY_IX["M3"], CATEGORY_IX["N2"], CATEGORY_IX["N3"], CATEGORY_IX["OTHER"])
        )
    ] = SCHEME_HEAVY
    scheme[cat == CATEGORY_IX["T"]] = SCHEME_T
    euro = np.full(n, _NONE, dtype=np.int64)
    u = rng.random(n)
    for sid, (bounds, codes) in _SCHEMES.items():
        rows = np.flatnonzero(scheme == sid)
        b = np.array(bounds)
        level = np.searchsorted(b, first[rows], side="right")
        # early adopters: a vehicle within 18 months of the next norm meets it already
        nxt = np.minimum(level, len(b) - 1)
        early = (level < len(b)) & (b[nxt] - first[rows] < 540) & (u[rows] < 0.2)
        level = level + early
        vocab = np.array([EURO_IX[c] if c else _NONE for c in codes])
        euro[rows] = vocab[level]
    # DIV spelling variants inside a level (docs/rules.md#codes: 5a, 5b, 6a, 6b; 6c UNCONFIRMED)
    v = rng.random(n)
    euro[(euro == EURO_IX["5"]) & (v < 0.1)] = EURO_IX["5A"]
    euro[(euro == EURO_IX["5"]) & (v >= 0.9)] = EURO_IX["5B"]
    euro[(euro == EURO_IX["6"]) & (v < 0.1)] = EURO_IX["6A"]
    euro[(euro == EURO_IX["6"]) & (v >= 0.1) & (v < 0.2)] = EURO_IX["6B"]
    euro[(euro == EURO_IX["6"]) & (v >= 0.2) & (v < 0.3) & (first >= _d(2017, 9))] = EURO_IX["6C"]
    euro[(euro == EURO_IX["V"]) & (cat == CATEGORY_IX["M3"]) & (v < 0.15)] = EURO_IX["EEV"]
    # Missing euro norm (modelling choice): old vehicles mostly, electric always (no
    # combustion engine), special machinery often; L and O categories carry none.
    w = rng.random(n)
    missing = (first < _d(1992, 7)) & (w < 0.7)
    missing |= (first >= _d(1992, 7)) & (first < _d(2001)) & (w < 0.2)
    missing |= (first >= _d(2001)) & (w < 0.02)
    missing |= np.isin(fuel, (FUEL_IX["04"], FUEL_IX["09"]))
    missing |= (cat == CATEGORY_IX["OTHER"]) & (w < 0.5)
    euro[missing] = _NONE
    return euro


# ---- one chunk -------------------------------------------------------------------------------


@dataclass(slots=True)
class _ChunkStats:
    by_class: I64
    by_category: dict[str, int]
    by_fuel: dict[str, int]
    by_status: dict[str, int]
    by_plate_type: dict[str, int]
    versions: I64
    past_retention: int
    unknown: int
    car_age_sum: float
    car_count: int
    rows: int


def _counts(idx: I64, vocab: tuple[str, ...]) -> dict[str, int]:
    c = np.bincount(idx + 1, minlength=len(vocab) + 1)
    out = {"": int(c[0])} if c[0] else {}
    out.update({vocab[i]: int(c[i + 1]) for i in range(len(vocab)) if c[i + 1]})
    return out


def _chunk(
    rng: np.random.Generator,
    n: int,
    source: int,
    perms: list[tuple[int, int]],
    offsets: I64,
    unknown_share: float,
) -> tuple[pa.Table, _ChunkStats]:
    cls = rng.choice(len(CLASS_SHARES), size=n, p=CLASS_SHARES / CLASS_SHARES.sum()).astype(
        np.int64
    )
    # Plate status (modelling choice): ~3.5 % crossed out within the last ~2.5 years (so most
    # are past the 6-month retention of docs/sources.md: DIV-VMM protocol section X), 0.3 %
    # suspended.
    u = rng.random(n)
    status = np.where(u < 0.035, ST_S, np.where(u < 0.038, ST_O, ST_A)).astype(np.int64)
    crossed = status == ST_S
    end = np.full(n, source, dtype=np.int64)
    end[crossed] = source - 1 - (rng.random(int(crossed.sum())) * 900).astype(np.int64)
    # History (modelling choice): vehicles carried by the plate 1/2/3 with 80/15/5 %, and
    # 0/1/2 data-correction or holder-move versions of the current vehicle with 86/11/3 %.
    nveh = 1 + np.searchsorted([0.80, 0.95], rng.random(n), side="right").astype(np.int64)
    nveh[cls == OLDTIMER] = 1  # an oldtimer plate stays on its vehicle (modelling choice)
    ncorr = np.searchsorted([0.86, 0.97], rng.random(n), side="right").astype(np.int64)

    cur = _vehicles(rng, cls, end, None)
    # registration on this plate: new with the holder (55 %) or bought used later.
    used = rng.random(n) >= 0.55
    span = end - cur.first
    reg = cur.first + (used * rng.random(n) ** 1.5 * span * 0.9).astype(np.int64)
    reg = np.minimum(reg, end - 1)
    ncorr[end - reg < 4 * (ncorr + 1)] = 0
    nis = _NIS_CODES[rng.choice(len(_NIS_CODES), size=n, p=_NIS_WEIGHTS)].astype(np.int64)

    blocks: list[dict[str, Any]] = []
    # correction boundaries inside [reg, end): sorted uniform cut points
    c1 = reg + 1 + (rng.random(n) * (end - reg - 3)).astype(np.int64)  # in [reg+1, end-3]
    c2 = c1 + 1 + (rng.random(n) * (end - c1 - 2)).astype(np.int64)  # in [c1+1, end-2]
    last_from = np.where(ncorr == 0, reg, np.where(ncorr == 1, c1, c2))
    valid_to = np.where(crossed, end, DAY_OPEN)
    blocks.append(_block(np.arange(n), cur, last_from, valid_to, reg, nis, status))
    kinds = rng.integers(0, 3, n)
    for j in range(2):  # correction pieces [reg, c1) and [c1, c2)
        rows = np.flatnonzero(ncorr > j)
        frm = (reg if j == 0 else c1)[rows]
        to = (c1 if j == 0 else c2)[rows]
        veh, pnis = _corrected(rng, cur.take(rows), nis[rows], (kinds[rows] + j) % 3)
        blocks.append(_block(rows, veh, frm, to, reg[rows], pnis, np.full(len(rows), ST_A)))
    issued = reg.copy()
    nxt_from = reg.copy()
    for m in range(1, 3):  # previous vehicles, newest first
        hold = 200 + (rng.exponential(5 * _YEAR, n)).astype(np.int64)
        frm = nxt_from - hold
        ok = (nveh > m) & (frm >= _d(1975))
        nveh[(nveh > m) & ~ok] = m
        rows = np.flatnonzero(ok)
        if not len(rows):
            break
        age_at_reg = np.where(
            rng.random(len(rows)) < 0.5, 0, rng.gamma(2.0, 2.0, len(rows)) * _YEAR
        )
        first = np.maximum(frm[rows] - age_at_reg.astype(np.int64), _FIRST_DAY)
        veh = _vehicles(rng, cls[rows], frm[rows] + 1, first)
        pnis = np.where(
            rng.random(len(rows)) < 0.2, _NIS_CODES[rng.integers(0, 40, len(rows))], nis[rows]
        )
        blocks.append(
            _block(rows, veh, frm[rows], nxt_from[rows], frm[rows], pnis, np.full(len(rows), ST_A))
        )
        issued[rows] = frm[rows]
        nxt_from = np.where(ok, frm, nxt_from)

    series = _choose_series(rng, cls, np.asarray(issued, dtype=np.int32), source)
    mat = _plates(series, perms, offsets)

    cols = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    order = rng.permutation(len(cols["plate"]))  # rows of a plate anywhere in the chunk
    cols = {k: v[order] for k, v in cols.items()}
    unknown = _inject_unknown(rng, cols, unknown_share)

    pidx = cols["plate"]
    table = pa.table(
        {
            "plate": _arrow_plates(mat).take(pa.array(pidx)),
            "plate_type": pa.array(PLATE_TYPES).take(pa.array(_PLATE_TYPE_OF_SERIES[series][pidx])),
            "category": _codes(cols["category"], CATEGORIES),
            "kind": _codes(cols["kind"], KINDS),
            "bodywork": _codes(cols["bodywork"], BODYWORKS),
            "max_mass": _ints(cols["max_mass"]),
            "running_mass": _ints(cols["running_mass"]),
            "seats": _ints(cols["seats"]),
            "fuel": _codes(cols["fuel"], FUELS),
            "euro": _codes(cols["euro"], EUROS),
            "co2": _ints(cols["co2"]),
            "power_kw": _ints(cols["power_kw"]),
            "first_registration": _dates(cols["first"]),
            "last_registration": _dates(cols["last"]),
            "nis": _ints(cols["nis"]),
            "status": pa.array(STATUSES).take(pa.array(cols["status"])),
            "electric": _ints(cols["electric"]),
            "valid_from": _dates(cols["valid_from"]),
            "valid_to": _dates(
                np.where(cols["valid_to"] == DAY_OPEN, _NONE, cols["valid_to"]), blank=_NONE
            ),
        }
    )
    car = cls == CAR
    pt = _PLATE_TYPE_OF_SERIES[series]
    stats = _ChunkStats(
        by_class=np.bincount(cls, minlength=len(CLASS_NAMES)),
        by_category=_counts(cur.category, CATEGORIES),
        by_fuel=_counts(cur.fuel, FUELS),
        by_status=_counts(status, STATUSES),
        by_plate_type=_counts(pt, PLATE_TYPES),
        versions=np.bincount(nveh + ncorr, minlength=6),
        past_retention=int((crossed & (end + DEFAULT_RETENTION_DAYS < source)).sum()),
        unknown=unknown,
        car_age_sum=float(((source - cur.first[car]) / _YEAR).sum()),
        car_count=int(car.sum()),
        rows=len(pidx),
    )
    return table, stats


def _block(
    plate: I64, veh: _Veh, frm: I64, to: I64, last: I64, nis: I64, status: I64
) -> dict[str, Any]:
    out: dict[str, Any] = {f: getattr(veh, f) for f in _VEH_FIELDS}
    out.update(plate=plate, valid_from=frm, valid_to=to, last=last, nis=nis, status=status)
    return out


def _corrected(rng: np.random.Generator, veh: _Veh, nis: I64, how: I64) -> tuple[_Veh, I64]:
    """Values before a correction: 0 holder moved (NIS), 1 euro norm added, 2 masses/CO2."""
    before = veh.copy()
    nis = nis.copy()
    moved = how == 0
    other = _NIS_CODES[rng.choice(len(_NIS_CODES), size=len(nis), p=_NIS_WEIGHTS)]
    other = np.where(other == nis, np.where(nis == 11002, 44021, 11002), other)
    nis[moved] = other[moved]
    e = (how == 1) & (veh.euro != _NONE)  # the euro norm was filled in later
    before.euro[e] = _NONE
    m = (how == 2) | ((how == 1) & ~e)
    factor = 1 + np.where(rng.random(len(nis)) < 0.5, -0.07, 0.07)
    before.max_mass[m] = np.maximum((veh.max_mass[m] * factor[m]).astype(np.int64), 1)
    before.running_mass[m] = np.minimum(veh.running_mass[m], before.max_mass[m])
    before.co2[m] = np.where(veh.co2[m] > 0, veh.co2[m] + 7, veh.co2[m])
    return before, nis


def _inject_unknown(rng: np.random.Generator, cols: dict[str, Any], share: float) -> int:
    """Give `share` of the rows one deliberately unknown code; returns how many."""
    if share <= 0:
        return 0
    rows = np.flatnonzero(rng.random(len(cols["plate"])) < share)
    which = rng.integers(0, 5, len(rows))
    for i, (name, vocab) in enumerate(
        (
            ("category", CATEGORIES),
            ("kind", KINDS),
            ("bodywork", BODYWORKS),
            ("fuel", FUELS),
            ("euro", EUROS),
        )
    ):
        cols[name][rows[which == i]] = vocab.index(UNKNOWN_CODES[name])
    return len(rows)


def _codes(idx: I64, vocab: tuple[str, ...]) -> pa.Array:
    return pa.array(vocab).take(pa.array(idx, mask=idx < 0))


def _ints(values: I64) -> pa.Array:
    return pa.array(values.astype(np.int32), mask=values < 0)


def _dates(days: I64, blank: int | None = None) -> pa.Array:
    mask = None if blank is None else days == blank
    return pa.array(days.astype(np.int32), type=pa.date32(), mask=mask)


class _Totals:
    def __init__(self) -> None:
        self.parts: list[_ChunkStats] = []

    def add(self, stats: _ChunkStats) -> None:
        self.parts.append(stats)

    def summary(self, **kw: Any) -> SynthSummary:
        def merged(name: str) -> dict[str, int]:
            out: dict[str, int] = {}
            for p in self.parts:
                for k, v in getattr(p, name).items():
                    out[k] = out.get(k, 0) + v
            return dict(sorted(out.items()))

        by_class = sum((p.by_class for p in self.parts), np.zeros(len(CLASS_NAMES), np.int64))
        versions = sum((p.versions for p in self.parts), np.zeros(6, np.int64))
        cars = sum(p.car_count for p in self.parts)
        return SynthSummary(
            rows=sum(p.rows for p in self.parts),
            by_class={CLASS_NAMES[i]: int(v) for i, v in enumerate(by_class)},
            by_category=merged("by_category"),
            by_fuel=merged("by_fuel"),
            by_status=merged("by_status"),
            by_plate_type=merged("by_plate_type"),
            versions_per_plate={i: int(v) for i, v in enumerate(versions) if v},
            crossed_out_past_retention=sum(p.past_retention for p in self.parts),
            unknown_codes=sum(p.unknown for p in self.parts),
            mean_car_age_years=sum(p.car_age_sum for p in self.parts) / max(cars, 1),
            **kw,
        )


# ---- exports for the DIV stand-in's mutation generator (div_standin.generator) -----------------
# It continues a register day by day with the same vehicle, plate and NIS models.
BLANK: Final = _NONE
NIS_CODES: Final = _NIS_CODES
NIS_WEIGHTS: Final = _NIS_WEIGHTS
VEHICLE_FIELDS: Final = _VEH_FIELDS
Vehicles = _Veh
new_vehicles = _vehicles
euro_norms = _euro
plate_permutations = _permutations
choose_series = _choose_series
written_plates = _plates
PLATE_TYPE_OF_SERIES: Final = _PLATE_TYPE_OF_SERIES
