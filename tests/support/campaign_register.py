"""A small register for warning-campaign tests: Brussels residents around the 2028 step.

The Brussels rules of `rules/` (docs/rules.md#brussels-criteria) let diesel M1 cars of Euro 6 in
until 2027-12-31 and ask Euro 6d from 2028-01-01. Each plate below is one golden case of a
campaign for zone Brussels, reference day `REFERENCE` and date `STEP` (or `LATER`); `LISTED`
says which plates the list must hold, with their first day lost. Plates appear only here.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lez import codes
from lez.days import DAY_OPEN, to_day
from lez.keys import PlateKeyer
from lez.plates import as_matrix, normalise_many
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.store import StoreBuilder, StoreMeta, group_by_key
from lez.vehicle import FORMAT_VERSION, empty

REPO = Path(__file__).resolve().parents[2]
ZONE = "Brussels"
BRUSSELS_NIS = (21004, 21009)  # Bruxelles, Ixelles: the municipalities asked about
OUTSIDE_NIS = 44021  # Gent
REFERENCE = dt.date(2027, 6, 1)
STEP = dt.date(2028, 1, 1)  # the Brussels step that asks diesel Euro 6d
LATER = dt.date(2028, 6, 1)
MOVE_DAY = dt.date(2027, 1, 1)  # plates that move change municipality on this day
_SEQ = itertools.count(1)


@dataclass(frozen=True)
class Version:
    valid_from: dt.date
    nis: int
    fuel: str = "02"  # diesel
    euro: str = "6"
    category: str = "M1"


@dataclass(frozen=True)
class Registration:
    kind: RegistrationKind
    valid_from: dt.date
    valid_to: dt.date  # exclusive


@dataclass(frozen=True)
class Case:
    plate: str
    versions: tuple[Version, ...]
    registrations: tuple[Registration, ...] = ()


def _disabled(start: dt.date, end: dt.date) -> tuple[Registration, ...]:
    return (Registration(RegistrationKind.DISABLED_PERSON, start, end),)


CASES = (
    # allowed today, refused on the step's date: listed, lost on the step's first day
    Case("1LOS001", (Version(dt.date(2019, 1, 1), 21004),)),
    Case("1LOS002", (Version(dt.date(2019, 1, 1), 21009),)),
    # an exemption that covers the date: not listed
    Case(
        "1EXE001",
        (Version(dt.date(2019, 1, 1), 21004),),
        _disabled(dt.date(2027, 1, 1), dt.date(2029, 1, 1)),
    ),
    # already refused today (diesel Euro 4): not losing access, not listed
    Case("1REF001", (Version(dt.date(2019, 1, 1), 21004, euro="4"),)),
    # allowed on both days (petrol Euro 6): not listed
    Case("1PET001", (Version(dt.date(2019, 1, 1), 21004, fuel="01"),)),
    # outside the municipalities: never listed
    Case("1OUT001", (Version(dt.date(2019, 1, 1), OUTSIDE_NIS),)),
    # lived in Bruxelles, moved to Gent before the reference day: not listed
    Case("1MOV001", (Version(dt.date(2019, 1, 1), 21004), Version(MOVE_DAY, OUTSIDE_NIS))),
    # moved into Ixelles before the reference day: listed
    Case("1MOV002", (Version(dt.date(2019, 1, 1), OUTSIDE_NIS), Version(MOVE_DAY, 21009))),
    # refused today by the criteria but exempt until 2027-08-31: lost on 2027-09-01
    Case(
        "1END001",
        (Version(dt.date(2019, 1, 1), 21004, euro="4"),),
        _disabled(dt.date(2027, 1, 1), dt.date(2027, 9, 1)),
    ),
    # exempt from the step's start until 2028-02-29 only: lost on 2028-03-01 (asked for LATER)
    Case("1GAP001", (Version(dt.date(2019, 1, 1), 21009),), _disabled(STEP, dt.date(2028, 3, 1))),
)
LISTED_ON_STEP = {
    "1LOS001": STEP,
    "1LOS002": STEP,
    "1MOV002": STEP,
    "1END001": dt.date(2027, 9, 1),
}
"""The list for date STEP: plate -> first day lost."""
LISTED_LATER = LISTED_ON_STEP | {"1GAP001": dt.date(2028, 3, 1)}
"""The list for date LATER."""
OUTSIDE_PLATES = ("1OUT001", "1MOV001")
"""Plates whose holder is outside the municipalities on the reference day."""


def plate_keys(keyer: PlateKeyer, plates: list[str]) -> np.ndarray:
    countries = np.full((len(plates), 2), list(b"BE"), dtype=np.uint8)
    norm, _ = normalise_many(as_matrix(plates), countries)
    return keyer.key_matrix(countries, norm)


def key_of(keyer: PlateKeyer, plate: str) -> bytes:
    return bytes(plate_keys(keyer, [plate])[0].tobytes())


def build_campaign_store(root: Path, keyer: PlateKeyer, *, filler: int = 0) -> Path:
    """Build and publish the campaign register under `root` (plus `filler` Euro 6 diesel cars
    of Bruxelles, all listed on the step, for the chunking tests); returns the build."""
    plates: list[str] = []
    rows = []
    for case in CASES:
        for i, v in enumerate(case.versions):
            end = case.versions[i + 1].valid_from if i + 1 < len(case.versions) else None
            plates.append(case.plate)
            rows.append((v, end))
    rec = empty(len(rows) + filler)
    for i, (v, end) in enumerate(rows):
        rec[i]["valid_from"] = to_day(v.valid_from)
        rec[i]["valid_to"] = DAY_OPEN if end is None else to_day(end)
        rec[i]["first_registration"] = to_day(dt.date(2018, 6, 1))
        rec[i]["category"] = codes.CATEGORY.id_of(v.category)
        rec[i]["fuel"] = codes.FUEL.id_of(v.fuel)
        rec[i]["euro"] = codes.EURO.id_of(v.euro)
        rec[i]["max_mass"] = 1500
        rec[i]["nis"] = v.nis
        rec[i]["status"] = codes.STATUS.id_of("A")
    if filler:
        base = len(rows)
        plates += [f"2F{i:05d}" for i in range(filler)]
        rec["valid_from"][base:] = to_day(dt.date(2019, 1, 1))
        rec["valid_to"][base:] = DAY_OPEN
        rec["first_registration"][base:] = to_day(dt.date(2018, 6, 1))
        rec["category"][base:] = codes.CATEGORY.id_of("M1")
        rec["fuel"][base:] = codes.FUEL.id_of("02")
        rec["euro"][base:] = codes.EURO.id_of("6")
        rec["max_mass"][base:] = 1500
        rec["nis"][base:] = 21004
        rec["status"][base:] = codes.STATUS.id_of("A")
    keys = plate_keys(keyer, plates)
    reg_keys, regs = [], []
    for case in CASES:
        for r in case.registrations:
            row = np.zeros(1, dtype=REGISTRATION_DTYPE)
            row["valid_from"] = to_day(r.valid_from)
            row["valid_to"] = to_day(r.valid_to)
            row["zone"] = 0
            row["region"] = Region.BRUSSELS
            row["kind"] = r.kind
            regs.append(row)
            reg_keys.append(key_of(keyer, case.plate))
    reg_key_matrix = np.frombuffer(b"".join(reg_keys), dtype=np.uint8).reshape(-1, 16)
    texts = {p.stem: p.read_text(encoding="utf-8") for p in sorted((REPO / "rules").glob("*.toml"))}
    seq = next(_SEQ)
    meta = StoreMeta(
        format_version=FORMAT_VERSION,
        key_id=keyer.key_id,
        snapshot_id=f"campaign-{seq:04d}",
        snapshot_seq=seq,
        source_date="2027-05-31",
        built_at="2027-05-31T00:00:00+00:00",
        plates=len(set(plates)),
        versions=len(plates),
        registrations=len(regs),
        mutation_watermark=f"m{seq}",
    )
    return StoreBuilder(root).build(
        meta=meta,
        vehicles=group_by_key(keys, rec),
        registrations=group_by_key(reg_key_matrix, np.concatenate(regs)),
        rulesets=texts,
    )
