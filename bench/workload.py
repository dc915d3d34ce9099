"""Enforcement workload: a realistic day of camera reads, built from a DIV extract.

This module owns the batches the bench and the demo send: `make_batch` reads the plates of an
extract (pyarrow, the `plate` column only) and draws (plate, country, day) items the way a
city's ANPR cameras report them (Antwerp: 93 % Belgian and 4 % Dutch plates, gva.be 2018-01-30,
docs/sources.md#reference-data; about 5 % of Belgian vehicles unknown to the register is the
issue's figure).
`Batch.write_csv` writes the file `lez batch` reads: `plate,country,day` with ISO dates, or
`plate,country,timestamp` with ISO 8601 camera timestamps with offset as in the ANPR platform
tender of docs/sources.md#anpr-platform-tender (`2016-06-02T18:36:12.345+01:00`).

Modelling choices (not facts from a public source): the camera spelling shares (lower case,
spaces, no separators), the misread and invalid shares, the foreign plate formats and country
split, the repeat share and the time-of-day profile. Deterministic for a seed.

Run: `python -m bench.workload EXTRACT --pairs 500000 --seed 1 --from 2026-10-20
--to 2026-10-26 --out batch.csv [--timestamps]`.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from bench import cli_help
from lez import plates as lez_plates
from lez.days import from_day, to_day


class Item(enum.IntEnum):
    """What an item of a batch is, as generated (for tests and for checking decisions)."""

    KNOWN = 0  # a plate of the register (Belgian)
    UNKNOWN = 1  # a valid Belgian plate not in the register
    MISREAD = 2  # a register plate with one character read wrong (usually unknown)
    DUTCH = 3
    FOREIGN = 4  # other countries
    INVALID = 5  # unreadable: empty, '#', too long, bad country


@dataclass(frozen=True, slots=True, kw_only=True)
class Mix:
    """Shares of a batch. Defaults: gva.be 2018-01-30 (93 % Belgian, 4 % Dutch) and the issue's 5 %
    unknown; the rest are modelling choices."""

    belgian: float = 0.93
    dutch: float = 0.04
    other: float = 0.03
    unknown: float = 0.05  # of Belgian items: valid Belgian plates not in the register
    misread: float = 0.01  # of Belgian items: one character swapped
    invalid: float = 0.002  # of all items
    repeat: float = 0.03  # of all items: the same plate seen again (same or another day)
    lower: float = 0.15  # camera spelling: lower case
    spaces: float = 0.30  # dashes sent as spaces
    compact: float = 0.30  # separators dropped


DEFAULT_MIX: Final = Mix()


@dataclass(slots=True)
class Batch:
    """A batch of camera reads: aligned plates, countries, days (since 1970-01-01), kinds."""

    plates: list[str]
    countries: list[str]
    days: npt.NDArray[np.int32]
    kinds: npt.NDArray[np.uint8]
    seconds: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.plates)

    def write_csv(self, path: Path, timestamps: bool = False) -> None:
        """`plate,country,day` (ISO dates) or `plate,country,timestamp` (ISO 8601, local
        Brussels time with its offset, milliseconds as in the ANPR platform tender)."""
        third = _timestamps(self.days, self.seconds) if timestamps else _iso_days(self.days)
        table = pa.table(
            {
                "plate": pa.array(self.plates, pa.string()),
                "country": pa.array(self.countries, pa.string()),
                "t": third,
            }
        )
        with open(path, "wb") as out:
            out.write(b"plate,country," + (b"timestamp\n" if timestamps else b"day\n"))
            sink = pa.BufferOutputStream()
            options = pacsv.WriteOptions(include_header=False, quoting_style="none")
            pacsv.write_csv(table, sink, options)
            out.write(memoryview(sink.getvalue()))


def read_plates(extract_path: Path) -> pa.Array:
    """The `plate` column of an extract, one entry per version row (malformed rows skipped).

    Not made distinct (that costs seconds on 8M plates): a plate with several versions is drawn
    a little more often, which a day of camera reads does not mind.
    """
    table = pacsv.read_csv(
        extract_path,
        parse_options=pacsv.ParseOptions(invalid_row_handler=lambda _row: "skip"),
        convert_options=pacsv.ConvertOptions(
            include_columns=["plate"],
            column_types={"plate": pa.string()},
            strings_can_be_null=False,
        ),
    )
    return table.column("plate").combine_chunks()


def make_batch(
    extract_path: Path,
    n: int,
    seed: int,
    *,
    day_from: dt.date,
    day_to: dt.date,
    mix: Mix = DEFAULT_MIX,
) -> Batch:
    """`n` camera reads over the days `day_from`..`day_to` (inclusive) against an extract."""
    return batch_from_plates(
        read_plates(extract_path), n, seed, day_from=day_from, day_to=day_to, mix=mix
    )


def batch_from_plates(
    register: pa.Array,
    n: int,
    seed: int,
    *,
    day_from: dt.date,
    day_to: dt.date,
    mix: Mix = DEFAULT_MIX,
) -> Batch:
    """`make_batch` on plates already read (`read_plates`), e.g. to build several batches."""
    if day_to < day_from:
        raise ValueError("day_to is before day_from")
    rng = np.random.default_rng([seed, 0xBA7C4])
    u = rng.random(n)
    kinds = np.full(n, Item.FOREIGN, dtype=np.uint8)
    kinds[u < mix.belgian + mix.dutch] = Item.DUTCH
    be = u < mix.belgian
    v = rng.random(n)
    kinds[be] = Item.KNOWN
    kinds[be & (v < mix.unknown + mix.misread)] = Item.MISREAD
    kinds[be & (v < mix.unknown)] = Item.UNKNOWN
    kinds[rng.random(n) < mix.invalid] = Item.INVALID
    if len(register) == 0:
        kinds[kinds == Item.KNOWN] = Item.UNKNOWN
        kinds[kinds == Item.MISREAD] = Item.UNKNOWN

    plates = np.empty(n, dtype=object)
    countries = np.full(n, "BE", dtype=object)
    for kind in Item:
        rows = np.flatnonzero(kinds == kind)
        if not len(rows):
            continue
        if kind is Item.KNOWN:
            plates[rows] = _pick_valid(rng, register, len(rows))
        elif kind is Item.MISREAD:
            picks = _pick_valid(rng, register, len(rows))
            plates[rows] = [
                _misread(p, r) for p, r in zip(picks, rng.random(len(rows)), strict=True)
            ]
        elif kind is Item.UNKNOWN:
            plates[rows] = _unknown_belgian(rng, len(rows), register)
        elif kind is Item.DUTCH:
            plates[rows] = _dutch(rng, len(rows))
            countries[rows] = "NL"
        elif kind is Item.FOREIGN:
            got, cty = _foreign(rng, len(rows))
            plates[rows] = got
            countries[rows] = cty
        else:
            got, cty = _invalid(rng, len(rows))
            plates[rows] = got
            countries[rows] = cty

    # the same vehicle seen again: copy an earlier item's plate and country
    rep = np.flatnonzero(rng.random(n) < mix.repeat)
    rep = rep[rep > 0]
    src = (rng.random(len(rep)) * rep).astype(np.int64)
    plates[rep] = plates[src]
    countries[rep] = countries[src]
    kinds[rep] = kinds[src]

    readable = kinds != Item.INVALID
    plates[readable] = _camera_style(rng, plates[readable].tolist(), mix)
    first, last = to_day(day_from), to_day(day_to)
    days = rng.integers(first, last + 1, n).astype(np.int32)
    return Batch(
        plates=plates.tolist(),
        countries=countries.tolist(),
        days=days,
        kinds=kinds,
        seconds=_time_of_day(rng, n),
    )


# ---- plate shapes ---------------------------------------------------------------------------

_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_EURO_LETTERS: Final = "ABCDEFGHIJKLMNPQRSTUVWXYZ"  # no O in the Euro plate block (plate-formats)
_DUTCH_LETTERS: Final = "BDFGHJKLNPRSTVXZ"  # consonants only (modelling choice)
_DIGITS: Final = "0123456789"
_BE: Final = np.frombuffer(lez_plates.BELGIUM.encode(), dtype=np.uint8)


def _shape(rng: np.random.Generator, n: int, template: str) -> list[str]:
    """Plates from a template: L letter, E Euro-block letter, K Dutch letter, 9 digit."""
    alph = {"L": _LETTERS, "E": _EURO_LETTERS, "K": _DUTCH_LETTERS, "9": _DIGITS}
    cols: list[npt.NDArray[np.str_]] = []
    for ch in template:
        if ch in alph:
            a = np.array(list(alph[ch]))
            cols.append(a[rng.integers(0, len(a), n)])
        else:
            cols.append(np.full(n, ch))
    out = cols[0].astype(object)
    for c in cols[1:]:
        out = out + c.astype(object)
    return list(out)


def _mixed(rng: np.random.Generator, n: int, shapes: tuple[tuple[str, float], ...]) -> list[str]:
    p = np.array([w for _, w in shapes])
    which = rng.choice(len(shapes), size=n, p=p / p.sum())
    out = np.empty(n, dtype=object)
    for i, (template, _) in enumerate(shapes):
        rows = np.flatnonzero(which == i)
        if len(rows):
            out[rows] = _shape(rng, len(rows), template)
    return list(out)


def _check_belgian(
    values: pa.Array,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """`lez.plates.normalise_flat` over an Arrow string array, every plate taken as Belgian:
    the normalised plates (a NUL-padded matrix, zeros where refused) and the accepted mask."""
    values = values.cast(pa.large_string())  # int64 offsets, one layout whatever the input
    n = len(values)
    if values.null_count:
        values = pc.fill_null(values, "")
    _, offsets_buf, data_buf = values.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[values.offset : values.offset + n + 1]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    countries = np.broadcast_to(_BE, (n, 2))
    normalised, rule = lez_plates.normalise_flat(
        data, offsets[:-1].copy(), np.diff(offsets), countries
    )
    return normalised, rule == lez_plates.PlateRule.OK


def _normalised(values: pa.Array) -> pa.Array:
    """The normalised form of each plate (as `lez.plates` keys it; "" where refused)."""
    return pa.array(lez_plates.matrix_to_strings(_check_belgian(values)[0]), pa.string())


def _valid_be(values: pa.Array) -> pa.Array:
    """Mask of plates `lez.plates` accepts as Belgian."""
    return pa.array(_check_belgian(values)[1])


def _pick_valid(rng: np.random.Generator, register: pa.Array, n: int) -> list[str]:
    """`n` register plates drawn with replacement, skipping rows the loader would reject."""
    out: list[str] = []
    while len(out) < n:
        picks = register.take(pa.array(rng.integers(0, len(register), n - len(out) + 8)))
        out.extend(picks.filter(_valid_be(picks)).to_pylist())
    return out[:n]


def _unknown_belgian(rng: np.random.Generator, n: int, register: pa.Array) -> list[str]:
    """Valid Belgian plates not in the register (current and 1973 series,
    docs/rules.md#plate-formats).

    "Not in the register" is checked against the register's plates as written in the usual
    spellings (dashes, spaces, dots or none, either case): probing the register against the
    few candidates is far cheaper than normalising millions of register plates.
    """
    shapes = (("1-EEE-999", 0.45), ("2-EEE-999", 0.35), ("LLL-999", 0.15), ("999-EEE", 0.05))
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        cand = pa.array(_mixed(rng, 2 * (n - len(out)) + 8, shapes), pa.string())
        spellings = pa.concat_arrays(
            [
                cand,
                _normalised(cand),
                pc.replace_substring(cand, "-", " "),
                pc.replace_substring(cand, "-", "."),
            ]
        )
        spellings = pa.concat_arrays([spellings, pc.utf8_lower(spellings)])
        hits = register.filter(pc.is_in(register, value_set=spellings))
        taken = set(_normalised(hits).to_pylist())
        for p, k in zip(cand.to_pylist(), _normalised(cand).to_pylist(), strict=True):
            if k not in seen and k not in taken:
                seen.add(k)
                out.append(p)
    return out[:n]


def _misread(plate: str, r: float) -> str:
    """One character read wrong: a digit for another digit, a letter for another letter."""
    pos = [i for i, c in enumerate(plate) if c.isalnum()]
    if not pos:
        return plate
    i = pos[int(r * len(pos)) % len(pos)]
    c = plate[i]
    swap = {"0": "8", "8": "0", "1": "7", "7": "1", "5": "6", "6": "5", "2": "Z", "Z": "2"}
    alt = swap.get(c) or (_DIGITS[(_DIGITS.index(c) + 3) % 10] if c.isdigit() else None)
    if alt is None:
        alt = "B" if c == "E" else "F" if c == "B" else "E"
    return plate[:i] + alt + plate[i + 1 :]


def _dutch(rng: np.random.Generator, n: int) -> list[str]:
    """Dutch side codes (modelling choice of the common recent ones)."""
    shapes = (
        ("99-KKK-9", 0.3),
        ("KK-999-K", 0.25),
        ("9-KKK-99", 0.2),
        ("KKK-99-K", 0.15),
        ("K-999-KK", 0.1),
    )
    return _mixed(rng, n, shapes)


_FOREIGN: Final = (
    ("FR", 0.35, (("LL-999-LL", 1.0),)),
    ("DE", 0.30, (("L-LL 9999", 0.5), ("LL-L 999", 0.3), ("LLL-LL 99", 0.2))),
    ("LU", 0.10, (("LL 9999", 0.6), ("99999", 0.4))),
    ("PL", 0.06, (("LL 99999", 1.0),)),
    ("ES", 0.05, (("9999 LLL", 1.0),)),
    ("IT", 0.05, (("LL 999LL", 1.0),)),
    ("GB", 0.05, (("LL99 LLL", 1.0),)),
    ("RO", 0.04, (("L 99 LLL", 1.0),)),
)


def _foreign(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    p = np.array([w for _, w, _ in _FOREIGN])
    which = rng.choice(len(_FOREIGN), size=n, p=p / p.sum())
    plates = np.empty(n, dtype=object)
    countries = np.empty(n, dtype=object)
    for i, (cty, _, shapes) in enumerate(_FOREIGN):
        rows = np.flatnonzero(which == i)
        if len(rows):
            plates[rows] = _mixed(rng, len(rows), shapes)
            countries[rows] = cty
    return list(plates), list(countries)


_INVALID: Final = (
    ("", "BE"),
    ("#", "BE"),
    ("1-ABCD-123456", "BE"),
    ("1-AB?-123", "BE"),
    ("---", "BE"),
    ("1-ABC-123", "B1"),
    ("AB-123-C", ""),
)


def _invalid(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    which = rng.integers(0, len(_INVALID), n)
    return [_INVALID[i][0] for i in which], [_INVALID[i][1] for i in which]


def _camera_style(rng: np.random.Generator, plates: list[str], mix: Mix) -> list[str]:
    arr = pa.array(plates, pa.string())
    u = rng.random(len(plates))
    spaced = pc.replace_substring(arr, "-", " ")
    compact = pc.replace_substring_regex(arr, r"[- ]", "")
    styled = pc.if_else(
        pa.array(u < mix.spaces),
        spaced,
        pc.if_else(pa.array(u < mix.spaces + mix.compact), compact, arr),
    )
    lower = pa.array(rng.random(len(plates)) < mix.lower)
    out: list[str] = pc.if_else(lower, pc.utf8_lower(styled), styled).to_pylist()
    return out


# ---- days and timestamps --------------------------------------------------------------------


def _time_of_day(rng: np.random.Generator, n: int) -> npt.NDArray[np.int32]:
    """Seconds after local midnight: busy 7-19 h, quieter evening, little at night."""
    hour_weight = np.array(
        [1, 1, 1, 1, 2, 4, 8, 12, 12, 9, 8, 8, 8, 8, 8, 9, 11, 12, 10, 7, 5, 4, 3, 2], float
    )
    hours = rng.choice(24, size=n, p=hour_weight / hour_weight.sum())
    return (hours * 3600 + rng.integers(0, 3600, n)).astype(np.int32)


def _iso_days(days: npt.NDArray[np.int32]) -> pa.Array:
    return pa.array(days, type=pa.date32())


BRUSSELS: Final = ZoneInfo("Europe/Brussels")
"""The cameras' clock (timestamps in the CSV are local time with its offset)."""


def _day_offsets(day: int) -> tuple[int, int, int]:
    """Brussels UTC offsets of a local day, in seconds: (offset at midnight, wall-clock second
    from which the offset after the day's transition holds, that offset). A day without a
    transition gives (offset, 86400, offset).

    Wall-clock times are read with fold=0 (PEP 495): a time in a spring-forward gap takes the
    offset before the switch, the repeated hour of an autumn switch its first (summer) pass.
    """
    midnight = dt.datetime.combine(from_day(day), dt.time())

    def offset(second: int) -> int:
        wall = (midnight + dt.timedelta(seconds=second)).replace(tzinfo=BRUSSELS)
        got = wall.utcoffset()
        assert got is not None
        return int(got.total_seconds())

    first, last = offset(0), offset(86_399)
    if first == last:
        return first, 86_400, first
    lo, hi = 0, 86_399  # offset(lo) == first, offset(hi) == last: find the first `last`
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if offset(mid) == first:
            lo = mid
        else:
            hi = mid
    return first, hi, last


def _timestamps(days: npt.NDArray[np.int32], seconds: npt.NDArray[np.int32]) -> pa.Array:
    """Local Brussels time with its UTC offset (`zoneinfo` Europe/Brussels). A wall-clock time
    that does not exist (the hour skipped in spring) is moved on by the skipped amount."""
    n = len(days)
    if len(seconds) != n:
        seconds = np.full(n, 12 * 3600, dtype=np.int32)
    secs = seconds.astype(np.int64).copy()
    offsets = np.zeros(n, dtype=np.int64)
    for day in np.unique(days).tolist():
        rows = days == day
        before, switch, after = _day_offsets(int(day))
        if after > before:  # spring: [switch - skipped, switch) is not on any clock
            gap = rows & (secs >= switch - (after - before)) & (secs < switch)
            secs[gap] += after - before
        offsets[rows] = np.where(secs[rows] >= switch, after, before)
    date_txt = pc.cast(pa.array(days, type=pa.date32()), pa.string())
    hh, rest = np.divmod(secs, 3600)
    mm, ss = np.divmod(rest, 60)
    ms = (secs * 7919) % 1000  # deterministic milliseconds
    clock = [
        f"T{h:02d}:{m:02d}:{s:02d}.{f:03d}{'-' if z < 0 else '+'}{abs(z) // 3600:02d}:"
        f"{abs(z) % 3600 // 60:02d}"
        for h, m, s, f, z in zip(
            hh.tolist(), mm.tolist(), ss.tolist(), ms.tolist(), offsets.tolist(), strict=True
        )
    ]
    return pc.binary_join_element_wise(date_txt, pa.array(clock, pa.string()), "")


# ---- command line ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = cli_help.parser("python -m bench.workload", __doc__)
    parser.add_argument("extract", type=Path)
    parser.add_argument("--pairs", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--from", dest="day_from", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--to", dest="day_to", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timestamps", action="store_true")
    args = parser.parse_args(argv)
    batch = make_batch(
        args.extract, args.pairs, args.seed, day_from=args.day_from, day_to=args.day_to
    )
    batch.write_csv(args.out, timestamps=args.timestamps)
    counts = np.bincount(batch.kinds, minlength=len(Item))
    print(" ".join(f"{k.name.lower()}={int(counts[k])}" for k in Item))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
