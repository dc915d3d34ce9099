"""Data quality of a store: what the register left unknown and what enrichment derives.

A store's meta carries one `DataQuality` (`lez.store.layout.StoreMeta.data_quality`, as JSON
with the field names of the wire message `lez.api.v1.DataQuality`), computed by the loader:

- `records`, `missing_category`, `missing_euro`, `missing_fuel`, `derived`: over every vehicle
  version the published store holds (base and layer together). A code is *missing* when the
  stored value is UNKNOWN (blank in DIV, or a code not in the code lists). `derived` counts the
  versions whose value the enrichment derives (`lez.enrich`), by method: `category` (from kind,
  masses and seats), `euro` (from the first-registration date), and `plug_in_hybrid` (hybrid
  fuel with the electric-motor indicator and a known CO2: DIV has no "externally chargeable"
  field, so plug-in status is derived against each rule's CO2 limit).
- `unknown_codes` (codes not in the code lists, by field) and `rejected` (extract rows refused
  by the build, transactions refused by the syncs): what the loader met since the last full
  build, the build's figures plus every synced day's.
- `source`: the publication the figures are up to date with, `build` or `sync YYYY-MM-DD`.

A sync updates the figures without reading the whole register: it subtracts the counts of the
changed plates' previous versions and adds those of their new versions (`minus`, `plus`), so
the figures stay equal to a full count (`count_versions` over the merged store; a test holds
them to it). Counting is vectorised: versions with a known category and euro norm never go
through the enrichment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np

from lez import codes
from lez.decision import Derived
from lez.enrich import enrich
from lez.store.columns import take_rows
from lez.vehicle import U16_UNKNOWN, Flag, VehicleArray

DERIVED_METHODS: Final = ("category", "euro", "plug_in_hybrid")
"""The keys of `derived`, always present (0 when none)."""

SOURCE_BUILD: Final = "build"


def sync_source(day: str) -> str:
    """The `source` of figures updated by the sync of `day` (ISO date)."""
    return f"sync {day}"


@dataclass(frozen=True, slots=True)
class DataQuality:
    """The figures of one store; `to_json` gives the wire message's field names."""

    records: int = 0
    missing_category: int = 0
    missing_euro: int = 0
    missing_fuel: int = 0
    derived: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DERIVED_METHODS, 0))
    unknown_codes: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "missing_category": self.missing_category,
            "missing_euro": self.missing_euro,
            "missing_fuel": self.missing_fuel,
            "derived": dict(sorted(self.derived.items())),
            "unknown_codes": dict(sorted(self.unknown_codes.items())),
            "rejected": self.rejected,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DataQuality:
        return cls(
            records=int(value["records"]),
            missing_category=int(value["missing_category"]),
            missing_euro=int(value["missing_euro"]),
            missing_fuel=int(value["missing_fuel"]),
            derived={str(k): int(v) for k, v in value["derived"].items()},
            unknown_codes={str(k): int(v) for k, v in value["unknown_codes"].items()},
            rejected=int(value["rejected"]),
            source=str(value["source"]),
        )

    def plus(self, other: DataQuality) -> DataQuality:
        """Version counts added, unknown codes and rejects added; `source` kept."""
        return replace(
            self,
            records=self.records + other.records,
            missing_category=self.missing_category + other.missing_category,
            missing_euro=self.missing_euro + other.missing_euro,
            missing_fuel=self.missing_fuel + other.missing_fuel,
            derived=_add(self.derived, other.derived, 1),
            unknown_codes=_add(self.unknown_codes, other.unknown_codes, 1),
            rejected=self.rejected + other.rejected,
        )

    def minus_versions(self, other: DataQuality) -> DataQuality:
        """Version counts of `other` taken away (versions replaced or removed); its unknown
        codes and rejects are history and stay counted."""
        return replace(
            self,
            records=self.records - other.records,
            missing_category=self.missing_category - other.missing_category,
            missing_euro=self.missing_euro - other.missing_euro,
            missing_fuel=self.missing_fuel - other.missing_fuel,
            derived=_add(self.derived, other.derived, -1),
        )


def _add(a: dict[str, int], b: dict[str, int], sign: int) -> dict[str, int]:
    return {k: a.get(k, 0) + sign * b.get(k, 0) for k in sorted(a.keys() | b.keys())}


def count_versions(records: VehicleArray) -> DataQuality:
    """Missing and derived counts over `records` (vehicle versions); no codes, no rejects."""
    category, euro, fuel = records["category"], records["euro"], records["fuel"]
    no_category = category == codes.UNKNOWN
    no_euro = euro == codes.UNKNOWN
    # Only versions missing a category or a euro norm can have one derived; enrichment is
    # row by row, so enriching just those gives the flags the whole array would.
    needs = np.flatnonzero(no_category | no_euro)
    flags = enrich(take_rows(records, needs)).derived if len(needs) else np.zeros(0, np.uint8)
    plug_in = (
        codes.FUEL_HYBRID[fuel]
        & ((records["flags"] & np.uint8(Flag.ELECTRIC_MOTOR)) != 0)
        & (records["co2"] != U16_UNKNOWN)
    )
    return DataQuality(
        records=len(records),
        missing_category=int(np.count_nonzero(no_category)),
        missing_euro=int(np.count_nonzero(no_euro)),
        missing_fuel=int(np.count_nonzero(fuel == codes.UNKNOWN)),
        derived={
            "category": int(np.count_nonzero(flags & np.uint8(Derived.CATEGORY))),
            "euro": int(np.count_nonzero(flags & np.uint8(Derived.EURO))),
            "plug_in_hybrid": int(np.count_nonzero(plug_in)),
        },
    )


def of_build(
    counted: DataQuality, *, unknown_codes: Mapping[str, int], rejected: int
) -> DataQuality:
    """The figures of a fresh build: its versions (`count_versions`, of the whole table or the
    `plus` of its parts), the extract's unknown codes and rejects."""
    return replace(
        counted,
        unknown_codes=dict(sorted(unknown_codes.items())),
        rejected=rejected,
        source=SOURCE_BUILD,
    )


def summary(value: Mapping[str, Any]) -> str:
    """One line for people: shares missing and counts derived (`value` as in the meta)."""
    q = DataQuality.from_json(value)
    n = max(1, q.records)
    derived = ", ".join(f"{k} {v:,}" for k, v in sorted(q.derived.items()))
    return (
        f"data quality ({q.source}): {q.records:,} versions; missing category "
        f"{q.missing_category / n:.1%}, euro {q.missing_euro / n:.1%}, fuel "
        f"{q.missing_fuel / n:.1%}; derived {derived}; rejected {q.rejected:,}"
    )
