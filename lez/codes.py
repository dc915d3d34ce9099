"""DIV reference code lists mapped to compact integer enums.

The lists are data (`lez/codes/*.csv`, each with its sources in a comment header). Id 0 is
UNKNOWN in every list: a blank field and an unrecognised code both become 0; the loader counts
them apart in its build report and never fails on them. Lookup tables indexed by id
(`EURO_LEVEL`, `CATEGORY_GROUP`, `FUEL_FAMILY`, ...) serve the vectorised rules engine.
"""

from __future__ import annotations

import csv
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

UNKNOWN: Final = 0
_CODES_DIR: Final = Path(__file__).with_name("codes")


@dataclass(frozen=True, slots=True, kw_only=True)
class Code:
    """One code of a list: DIV spelling, compact id, symbolic name, labels and extra columns."""

    code: str
    id: int
    name: str
    columns: dict[str, str] = field(default_factory=dict)

    def label(self, language: str = "en") -> str:
        return self.columns.get(f"label_{language}") or self.columns.get("label_en") or self.name


@dataclass(frozen=True, slots=True)
class CodeList:
    """A DIV code list: lookups by DIV code, by id and by name."""

    name: str
    codes: tuple[Code, ...]
    by_code: dict[str, Code]
    by_id: dict[int, Code]
    by_name: dict[str, Code]

    @property
    def size(self) -> int:
        """One past the largest id (length of id-indexed lookup tables)."""
        return max(self.by_id) + 1

    def id_of(self, code: str) -> int:
        """Compact id of a DIV code; UNKNOWN (0) for blank or unrecognised."""
        found = self.by_code.get(canonical(code))
        return found.id if found else UNKNOWN

    def is_known(self, code: str) -> bool:
        return canonical(code) in self.by_code

    def encode_many(self, values: list[str]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
        """Ids of many DIV codes and a mask of the non-blank codes that were not recognised."""
        ids = np.zeros(len(values), dtype=np.uint8)
        unrecognised = np.zeros(len(values), dtype=np.bool_)
        cache: dict[str, int] = {}
        for i, raw in enumerate(values):
            got = cache.get(raw)
            if got is None:
                key = canonical(raw)
                got = self.by_code[key].id if key in self.by_code else (-1 if key else 0)
                cache[raw] = got
            if got < 0:
                unrecognised[i] = True
            else:
                ids[i] = got
        return ids, unrecognised

    def column(
        self, name: str, dtype: type[np.generic], default: int = 0
    ) -> npt.NDArray[np.generic]:
        """An id-indexed lookup array built from an integer column."""
        out = np.full(self.size, default, dtype=dtype)
        for c in self.codes:
            out[c.id] = int(c.columns[name])
        return out


def canonical(code: str) -> str:
    """DIV codes are space padded and case varies (`5a`, `5A `): strip and upper-case."""
    return code.strip().upper()


def load(name: str) -> CodeList:
    """Read `lez/codes/<name>.csv` (comment lines start with '#')."""
    text = (_CODES_DIR / f"{name}.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    codes = []
    for row in rows:
        extra = {k: v for k, v in row.items() if k not in ("code", "id", "name")}
        codes.append(
            Code(code=canonical(row["code"]), id=int(row["id"]), name=row["name"], columns=extra)
        )
    if any(c.id == UNKNOWN or c.id > 255 for c in codes):
        raise ValueError(f"{name}.csv: ids must be 1..255 (0 is UNKNOWN)")
    return CodeList(
        name=name,
        codes=tuple(codes),
        by_code={c.code: c for c in codes},
        by_id={c.id: c for c in codes},
        by_name={c.name: c for c in codes},
    )


FUEL: Final = load("fuel")
EURO: Final = load("euro")
CATEGORY: Final = load("category")
KIND: Final = load("kind")
BODYWORK: Final = load("bodywork")
STATUS: Final = load("status")


class EuroScale(enum.IntEnum):
    """How a euro code is compared: Euro norms (light and heavy share levels) or engine stages."""

    NONE = 0
    EURO = 1
    STAGE = 2


class FuelFamily(enum.IntEnum):
    """How the criteria read a fuel."""

    UNKNOWN = 0
    PETROL = 1  # petrol, LPG, natural gas
    DIESEL = 2
    ELECTRIC = 3
    HYDROGEN = 4
    OTHER = 5


class CategoryGroup(enum.IntEnum):
    """The category groups the criteria distinguish."""

    UNKNOWN = 0
    M = 1
    N = 2
    T = 3
    L = 4
    O = 5  # noqa: E741 - the legal name of trailers
    OTHER = 6


def _names_to_ids(
    lst: CodeList, column: str, enum_type: type[enum.IntEnum]
) -> npt.NDArray[np.uint8]:
    out = np.zeros(lst.size, dtype=np.uint8)
    for c in lst.codes:
        out[c.id] = enum_type[c.columns[column].upper()]
    return out


EURO_LEVEL: Final = EURO.column("level", np.uint8)
"""Comparison level by euro id (0 for UNKNOWN; compare only where EURO_SCALE matches)."""
EURO_SCALE: Final = _names_to_ids(EURO, "scale", EuroScale)
FUEL_FAMILY: Final = _names_to_ids(FUEL, "family", FuelFamily)
FUEL_HYBRID: Final = FUEL.column("hybrid", np.uint8).astype(np.bool_)
CATEGORY_GROUP: Final = _names_to_ids(CATEGORY, "group", CategoryGroup)
