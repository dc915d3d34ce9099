"""Camera reads for the demo (`make run`): a week of (plate, country, timestamp) rows drawn from
a register extract the way a city's ANPR cameras report them, written as the CSV `lez batch`
reads (`plate,country,timestamp`, docs in `clients.batchfile`).

Most reads are plates of the extract, in camera spellings (dashes read as spaces, lower case);
the rest are valid Belgian plates that the extract does not hold, misreads (one digit read
wrong), Dutch and other foreign plates, and unreadable rows (empty, '#', too long, a bad
country), so that a batch meets every outcome. Timestamps are ISO 8601 local Brussels time with
its offset and milliseconds (`2026-10-25T02:30:00.123+01:00`), spread evenly over the days
asked, so a week around the end of October crosses the DST change.

The shares are the demo's modelling choices (`ReadMix`), not measured figures. Deterministic
for a seed. No plate is printed: `counts_by_kind` counts the reads by kind.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clients.day_input import brussels_offsets_s
from lez.days import BRUSSELS
from lez.plates import BELGIUM

MS_PER_SECOND: Final = 1000
SEPARATORS: Final = r"[-. ]"
"""What the register and cameras put between a plate's parts (removed to compare plates)."""
READABLE_PLATE: Final = r"^[A-Z0-9]{1,8}$"
"""A register plate worth drawing, once its separators are removed (malformed rows are not)."""


class ReadKind(enum.IntEnum):
    """What a camera read is, as drawn."""

    REGISTERED = 0  # a plate of the extract
    UNREGISTERED = 1  # a valid Belgian plate the extract does not hold
    MISREAD = 2  # a plate of the extract with one digit read wrong
    DUTCH = 3
    FOREIGN = 4  # other countries
    UNREADABLE = 5  # empty, '#', too long, a bad country


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadMix:
    """Shares of the reads (of all reads; REGISTERED takes what is left)."""

    unregistered: float = 0.05
    misread: float = 0.01
    dutch: float = 0.04
    foreign: float = 0.03
    unreadable: float = 0.002
    lower_case: float = 0.15
    spaced: float = 0.30  # dashes read as spaces

    def kind_shares(self) -> npt.NDArray[np.float64]:
        """The share of each ReadKind, in ReadKind order (they sum to 1)."""
        others = [self.unregistered, self.misread, self.dutch, self.foreign, self.unreadable]
        if min(others) < 0 or sum(others) > 1:
            raise ValueError("the shares of a ReadMix must be at least 0 and sum to at most 1")
        return np.array([1.0 - sum(others), *others])


DEFAULT_MIX: Final = ReadMix()

LETTERS: Final = "ABCDEFGHIJKLMNPQRSTUVWXYZ"  # the Euro plate letter block has no O
DIGITS: Final = "0123456789"
DUTCH_LETTERS: Final = "BDFGHJKLNPRSTVXZ"
BELGIAN_SHAPES: Final = ("1-LLL-999", "2-LLL-999")
DUTCH_SHAPES: Final = ("99-LLL-9", "LL-999-L", "9-LLL-99")
FOREIGN_SHAPES: Final = (("FR", "LL-999-LL"), ("DE", "L-LL 9999"), ("LU", "LL 9999"))
UNREADABLE_READS: Final = (("", BELGIUM), ("#", BELGIUM), ("1-ABCD-123456", BELGIUM))
BAD_COUNTRY_READ: Final = ("1-ABC-123", "B1")


def register_plates(extract: Path) -> pa.Array:
    """The readable plates of an extract's `plate` column (one per version row; malformed rows
    and plates are skipped)."""
    table = pacsv.read_csv(
        extract,
        parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _row: "skip"),
        convert_options=pacsv.ConvertOptions(
            include_columns=["plate"],
            column_types={"plate": pa.string()},
            strings_can_be_null=False,
        ),
    )
    plates = table.column("plate").combine_chunks()
    return plates.filter(pc.match_substring_regex(_compact(plates), READABLE_PLATE))


def sample_reads(
    register: pa.Array,
    count: int,
    seed: int,
    *,
    first_day: dt.date,
    last_day: dt.date,
    mix: ReadMix = DEFAULT_MIX,
) -> pa.Table:
    """`count` reads (`plate`, `country`, `timestamp`, `kind`) over `first_day`..`last_day`."""
    if last_day < first_day:
        raise ValueError("the last day of the reads is before the first")
    if len(register) == 0:
        raise ValueError("the extract holds no readable plate to draw reads from")
    rng = np.random.default_rng([seed, count])
    kinds = rng.choice(len(ReadKind), size=count, p=mix.kind_shares()).astype(np.uint8)
    plates = np.empty(count, dtype=object)
    countries = np.full(count, BELGIUM, dtype=object)
    for kind in ReadKind:
        rows = np.flatnonzero(kinds == kind)
        drawn, drawn_countries = _draw(kind, rng, register, len(rows))
        plates[rows] = drawn
        countries[rows] = drawn_countries
    readable = kinds != ReadKind.UNREADABLE
    plates[readable] = _camera_spelling(rng, plates[readable].tolist(), mix)
    return pa.table(
        {
            "plate": pa.array(plates.tolist(), pa.string()),
            "country": pa.array(countries.tolist(), pa.string()),
            "timestamp": _timestamps(rng, count, first_day, last_day),
            "kind": pa.array(kinds),
        }
    )


def write_reads(reads: pa.Table, path: Path) -> None:
    """The CSV `lez batch` reads: `plate,country,timestamp`."""
    columns = ["plate", "country", "timestamp"]
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with open(path, "wb") as out:
        out.write((",".join(columns) + "\n").encode())
        pacsv.write_csv(reads.select(columns), out, options)


def counts_by_kind(reads: pa.Table) -> str:
    """How many reads of each kind (no plate)."""
    counts = np.bincount(reads.column("kind").to_numpy(), minlength=len(ReadKind))
    return " ".join(f"{kind.name.lower()}={int(counts[kind])}" for kind in ReadKind)


def _draw(
    kind: ReadKind, rng: np.random.Generator, register: pa.Array, n: int
) -> tuple[list[str], list[str] | str]:
    """`n` plates of one kind and their countries (one country for all, or one each)."""
    if kind is ReadKind.REGISTERED:
        return _registered(rng, register, n), BELGIUM
    if kind is ReadKind.MISREAD:
        return [_misread(p) for p in _registered(rng, register, n)], BELGIUM
    if kind is ReadKind.UNREGISTERED:
        return _unregistered(rng, register, n), BELGIUM
    if kind is ReadKind.DUTCH:
        return _shaped(rng, n, DUTCH_SHAPES, DUTCH_LETTERS), "NL"
    if kind is ReadKind.FOREIGN:
        which = rng.integers(0, len(FOREIGN_SHAPES), n)
        shapes = [FOREIGN_SHAPES[i][1] for i in which]
        return [_shape(rng, s, LETTERS) for s in shapes], [FOREIGN_SHAPES[i][0] for i in which]
    unreadable = (*UNREADABLE_READS, BAD_COUNTRY_READ)
    picked = [unreadable[i] for i in rng.integers(0, len(unreadable), n)]
    return [p for p, _ in picked], [c for _, c in picked]


def _registered(rng: np.random.Generator, register: pa.Array, n: int) -> list[str]:
    taken: list[str] = register.take(pa.array(rng.integers(0, len(register), n))).to_pylist()
    return taken


def _misread(plate: str) -> str:
    """The plate with its last digit read as another digit (usually not a registered plate)."""
    for i in range(len(plate) - 1, -1, -1):
        if plate[i].isdigit():
            return plate[:i] + DIGITS[(int(plate[i]) + 3) % 10] + plate[i + 1 :]
    return plate


def _unregistered(rng: np.random.Generator, register: pa.Array, n: int) -> list[str]:
    """Valid Belgian plates whose compact form no register plate has."""
    known = pc.unique(_compact(register))
    found: list[str] = []
    while len(found) < n:
        candidates = pa.array(_shaped(rng, 2 * (n - len(found)) + 8, BELGIAN_SHAPES, LETTERS))
        fresh = pc.invert(pc.is_in(_compact(candidates), value_set=known))
        found.extend(candidates.filter(fresh).to_pylist())
    return found[:n]


def _shaped(rng: np.random.Generator, n: int, shapes: Sequence[str], letters: str) -> list[str]:
    return [_shape(rng, shapes[i], letters) for i in rng.integers(0, len(shapes), n)]


def _shape(rng: np.random.Generator, shape: str, letters: str) -> str:
    """A plate of a shape: L a letter, 9 a digit, anything else as written."""
    drawn = {"L": letters, "9": DIGITS}
    return "".join(
        drawn[c][int(rng.integers(0, len(drawn[c])))] if c in drawn else c for c in shape
    )


def _compact(plates: pa.Array) -> pa.Array:
    return pc.utf8_upper(pc.replace_substring_regex(plates, SEPARATORS, ""))


def _camera_spelling(rng: np.random.Generator, plates: list[str], mix: ReadMix) -> list[str]:
    written = pa.array(plates, pa.string())
    spaced = pc.if_else(
        pa.array(rng.random(len(plates)) < mix.spaced),
        pc.replace_substring(written, "-", " "),
        written,
    )
    lower = pa.array(rng.random(len(plates)) < mix.lower_case)
    spelled: list[str] = pc.if_else(lower, pc.utf8_lower(spaced), spaced).to_pylist()
    return spelled


def _timestamps(
    rng: np.random.Generator, n: int, first_day: dt.date, last_day: dt.date
) -> pa.Array:
    """Instants spread evenly over the Brussels days asked, as local time with its offset."""
    start = _brussels_midnight_utc_ms(first_day)
    end = _brussels_midnight_utc_ms(last_day + dt.timedelta(days=1))
    utc_ms = rng.integers(start, end, n, dtype=np.int64)
    offsets_s = brussels_offsets_s(np.floor_divide(utc_ms, MS_PER_SECOND))
    local = pa.array(utc_ms + offsets_s * MS_PER_SECOND, pa.timestamp("ms"))
    wall_clock = pc.strftime(local, format="%Y-%m-%dT%H:%M:%S")
    distinct, inverse = np.unique(offsets_s, return_inverse=True)
    offset_texts = [_offset_text(int(s)) for s in distinct.tolist()]
    offsets = pa.array(offset_texts, pa.string()).take(pa.array(inverse.reshape(-1)))
    return pc.binary_join_element_wise(wall_clock, offsets, "")


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    hours, minutes = divmod(abs(seconds) // 60, 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def _brussels_midnight_utc_ms(day: dt.date) -> int:
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=BRUSSELS)
    return int(midnight.timestamp()) * MS_PER_SECOND
