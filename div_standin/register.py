"""The register state the mutation generator continues: one row per plate, its open version.

Read once from a full extract (docs/extract-format.md) with the loader's own parser
(`loader.extract.read_table`, `plate_columns`): for every plate the latest version is kept, with
whether it is open (registered), closed (unregistered, vehicle destroyed) or crossed out. The
generator then changes rows in place day by day, so a later day sees what earlier days did.

Columns are NumPy arrays (codes as indices into a per-column vocabulary, numbers and days with
-1 for blank) so a day's choices and updates are vectorised; only the few tens of thousands of
rows a day touches become Python objects, when their details are written.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from lez.days import DAY_UNKNOWN, from_day
from lez.errors import ExtractError
from lez.plates import PLATE_WIDTH, PlateRule
from loader import synth
from loader.build import extract_date
from loader.extract import plate_columns, read_table

I64 = npt.NDArray[np.int64]

OPEN: Final = 0
CLOSED: Final = 1  # unregistered or vehicle destroyed: the plate may be registered again
CROSSED: Final = 2  # crossed out: only a new registration may touch it again

CODE_COLUMNS: Final = (
    *("plate_type", "category", "kind", "bodywork", "fuel", "euro", "status", "electric"),
)
NUMBER_COLUMNS: Final = ("max_mass", "running_mass", "seats", "co2", "power_kw", "nis")
DATE_COLUMNS: Final = ("first_registration", "last_registration")
DETAIL_NAMES: Final = (
    ("plateType", "plate_type"),
    ("category", "category"),
    ("kind", "kind"),
    ("bodywork", "bodywork"),
    ("maxMass", "max_mass"),
    ("runningMass", "running_mass"),
    ("seats", "seats"),
    ("fuel", "fuel"),
    ("euro", "euro"),
    ("co2", "co2"),
    ("powerKw", "power_kw"),
    ("firstRegistration", "first_registration"),
    ("lastRegistration", "last_registration"),
    ("nis", "nis"),
    ("status", "status"),
    ("electric", "electric"),
)
"""`details` field of docs/div-feed.md -> extract column, in the order they are written."""

# vehicle class of a plate's current category, for the vehicle a transfer puts on it
_CLASS_OF_CATEGORY: Final = {
    **dict.fromkeys(("M1",), synth.CAR),
    **dict.fromkeys(("N1",), synth.VAN),
    "N2": synth.TRUCK_N2,
    "N3": synth.TRUCK_N3,
    **dict.fromkeys(("M2", "M3"), synth.BUS),
    "T": synth.AGRI_TRACTOR,
    **dict.fromkeys(("L2", "L3", "L4", "L5", "L6", "L7"), synth.MOTORCYCLE),
    "L1": synth.MOPED,
    **dict.fromkeys(("O1", "O2", "O3", "O4"), synth.TRAILER),
    "OTHER": synth.SPECIAL,
}
_SYNTH_VOCAB: Final = {
    "category": synth.CATEGORIES,
    "kind": synth.KINDS,
    "bodywork": synth.BODYWORKS,
    "fuel": synth.FUELS,
    "euro": synth.EUROS,
}


@dataclass
class Register:
    """Plates 0..size-1 and their current version. Arrays have room for `capacity` plates."""

    size: int
    extract_plates: pa.StringArray  # written plates of rows < len(extract_plates)
    added_plates: list[str]  # written plates of rows >= len(extract_plates)
    taken: npt.NDArray[np.bytes_]  # sorted normalised plates of the extract (S10)
    taken_added: set[bytes]  # normalised plates added since
    state: npt.NDArray[np.int8]
    codes: dict[str, npt.NDArray[np.int32]]
    vocab: dict[str, list[str]]
    numbers: dict[str, I64]
    days: dict[str, I64]  # DAY_UNKNOWN for blank
    vehicle_id: I64
    vehicle_from: I64  # day the current vehicle came on the plate
    last_day: int  # the extract's date as the loader takes it by default: its newest valid_from
    next_vehicle: int = 1
    _index: dict[str, dict[str, int]] = field(default_factory=dict)

    # ---- vocabularies ----------------------------------------------------------------------

    def code(self, column: str, value: str) -> int:
        """Index of `value` in the column's vocabulary, added when new ('' is blank)."""
        index = self._index.setdefault(column, {v: i for i, v in enumerate(self.vocab[column])})
        if value not in index:
            index[value] = len(self.vocab[column])
            self.vocab[column].append(value)
        return index[value]

    def from_synth(self, column: str, synth_codes: I64) -> npt.NDArray[np.int32]:
        """Synth vocabulary indices (-1 blank) as this register's codes."""
        table = np.array([self.code(column, c) for c in (*_SYNTH_VOCAB[column], "")], np.int32)
        return table[synth_codes]  # -1 picks the last entry, the blank

    def to_synth(self, column: str, codes: npt.NDArray[np.int32]) -> I64:
        """This register's codes as synth vocabulary indices (-1 for blank or not in synth)."""
        vocab = _SYNTH_VOCAB[column]
        table = np.array([vocab.index(v) if v in vocab else -1 for v in self.vocab[column]])
        return np.asarray(table[codes], dtype=np.int64)

    def vehicle_classes(self, rows: I64) -> I64:
        """Synth vehicle class of each row's current category (car when unknown)."""
        table = np.array(
            [_CLASS_OF_CATEGORY.get(v, synth.CAR) for v in self.vocab["category"]], np.int64
        )
        return np.asarray(table[self.codes["category"][rows]], dtype=np.int64)

    # ---- rows ------------------------------------------------------------------------------

    def reserve(self, rows: int) -> None:
        """Make room for `rows` more plates."""
        need = self.size + rows
        if need <= len(self.state):
            return
        grow = max(need, 2 * len(self.state)) - len(self.state)

        def more(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return np.concatenate([a, np.full(grow, -1, dtype=a.dtype)])

        self.state = more(self.state)
        self.codes = {k: more(v) for k, v in self.codes.items()}
        self.numbers = {k: more(v) for k, v in self.numbers.items()}
        self.days = {k: more(v) for k, v in self.days.items()}
        self.vehicle_id = more(self.vehicle_id)
        self.vehicle_from = more(self.vehicle_from)

    def are_taken(self, normalised: list[bytes]) -> npt.NDArray[np.bool_]:
        """Whether each normalised plate already exists in the register."""
        if not normalised:
            return np.zeros(0, dtype=np.bool_)
        wanted = np.array(normalised, dtype=f"S{PLATE_WIDTH}")
        at = np.minimum(np.searchsorted(self.taken, wanted), max(len(self.taken) - 1, 0))
        found = self.taken[at] == wanted if len(self.taken) else np.zeros(len(wanted), np.bool_)
        added = np.array([n in self.taken_added for n in normalised], dtype=np.bool_)
        return np.asarray(found | added, dtype=np.bool_)

    def add_plates(self, written: list[str], normalised: list[bytes]) -> I64:
        """Append new plates (no version yet); returns their rows."""
        self.reserve(len(written))
        rows = np.arange(self.size, self.size + len(written), dtype=np.int64)
        self.size += len(written)
        self.added_plates.extend(written)
        self.taken_added.update(normalised)
        return rows

    def new_vehicle_ids(self, n: int) -> I64:
        ids = np.arange(self.next_vehicle, self.next_vehicle + n, dtype=np.int64)
        self.next_vehicle += n
        return ids

    def plates(self, rows: I64) -> list[str]:
        """Written plates of rows."""
        first = len(self.extract_plates)
        old = rows < first
        out: list[str] = [""] * len(rows)
        old_at = np.flatnonzero(old)
        for at, plate in zip(
            old_at.tolist(), self.extract_plates.take(pa.array(rows[old])).to_pylist(), strict=True
        ):
            out[at] = plate
        for at in np.flatnonzero(~old).tolist():
            out[at] = self.added_plates[int(rows[at]) - first]
        return out

    def details(self, rows: I64) -> list[dict[str, Any]]:
        """The `details` object (docs/div-feed.md) of each row's current version."""
        columns: list[list[Any]] = []
        for _name, column in DETAIL_NAMES:
            if column in self.codes:
                vocab = self.vocab[column]
                columns.append([vocab[c] or None for c in self.codes[column][rows].tolist()])
            elif column == "nis":
                columns.append(
                    [f"{v:05d}" if v >= 0 else None for v in self.numbers[column][rows].tolist()]
                )
            elif column in self.numbers:
                columns.append([v if v >= 0 else None for v in self.numbers[column][rows].tolist()])
            else:
                columns.append([_iso(v) for v in self.days[column][rows].tolist()])
        names = [name for name, _ in DETAIL_NAMES]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]

    def set_vehicles(
        self,
        rows: I64,
        vehicles: synth.Vehicles,
        day: int,
        nis: I64,
        plate_type: npt.NDArray[np.int32] | None = None,
    ) -> None:
        """Put new vehicles on `rows` from `day`: registered, new vehicle ids."""
        for column in _SYNTH_VOCAB:
            self.codes[column][rows] = self.from_synth(column, getattr(vehicles, column))
        for column in ("max_mass", "running_mass", "seats", "co2", "power_kw"):
            self.numbers[column][rows] = getattr(vehicles, column)
        self.numbers["nis"][rows] = nis
        electric = np.array([self.code("electric", c) for c in ("0", "1", "")], np.int32)
        self.codes["electric"][rows] = electric[vehicles.electric]
        self.codes["status"][rows] = self.code("status", "A")
        if plate_type is not None:
            self.codes["plate_type"][rows] = plate_type
        self.days["first_registration"][rows] = vehicles.first
        self.days["last_registration"][rows] = day
        self.vehicle_from[rows] = day
        self.vehicle_id[rows] = self.new_vehicle_ids(len(rows))
        self.state[rows] = OPEN


@functools.lru_cache(maxsize=1 << 16)
def _iso(day: int) -> str | None:
    return from_day(day).isoformat() if day != DAY_UNKNOWN else None


def vehicle_id_text(number: int) -> str:
    """The stand-in's vehicle identifier (the DIV's is opaque to the LEZ)."""
    return f"V{number:011d}"


# ---- reading an extract ----------------------------------------------------------------------


def _ints(column: pa.ChunkedArray) -> I64:
    return np.asarray(pc.fill_null(pc.cast(column, pa.int64()), -1).to_numpy(), dtype=np.int64)


def _day_numbers(column: pa.ChunkedArray) -> I64:
    days = pc.fill_null(pc.cast(column, pa.int32()), DAY_UNKNOWN)
    return np.asarray(days.to_numpy(), dtype=np.int64)


def _encoded(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int32], list[str]]:
    text = pc.cast(column, pa.string()).combine_chunks()
    encoded = pc.dictionary_encode(text)
    indices = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int32)
    vocab = [str(v) for v in encoded.dictionary.to_pylist()]
    if (indices < 0).any():
        indices[indices < 0] = len(vocab)
        vocab.append("")
    return indices, vocab


def read_register(path: Path) -> Register:
    """The latest version of every plate of an extract, ready to be continued.

    Rows the loader would reject for their plate are left out. An extract whose dates or
    numbers do not all parse is refused: the stand-in continues a register the loader accepts.
    """
    table, _lines, _skipped = read_table(path)
    if table.column("valid_from").type != pa.date32():
        raise ExtractError(
            f"{path}: some dates or numbers do not parse; the stand-in needs an extract the "
            "loader reads whole (lez-loader build lists the rejected rows)"
        )
    normalised, rule, _keys = plate_columns(table.column("plate"), None, 1)
    valid_from = _day_numbers(table.column("valid_from"))
    valid_to = _day_numbers(table.column("valid_to"))
    good = np.flatnonzero((rule == PlateRule.OK) & (valid_from != DAY_UNKNOWN))
    if not len(good):
        raise ExtractError(f"{path}: no row with a valid plate; nothing to continue")
    head = np.ascontiguousarray(normalised[good, :8]).view(">u8").ravel()
    tail = np.ascontiguousarray(normalised[good, 8:PLATE_WIDTH]).view(">u2").ravel()
    order = good[np.lexsort((valid_from[good], tail, head))]  # plate bytes, then valid_from
    sorted_norm = np.ascontiguousarray(normalised[order]).view(f"S{PLATE_WIDTH}").ravel()
    last = np.append(sorted_norm[1:] != sorted_norm[:-1], True)
    latest = order[last]
    current = table.take(pa.array(latest))
    # Versions the extract already closes after its date are plates without a vehicle from that
    # day on, as the loader reads them.
    last_day = extract_date(valid_from[good])
    return _register(current, sorted_norm[last], valid_to[latest], last_day)


def _register(
    current: pa.Table, taken: npt.NDArray[np.bytes_], valid_to: I64, last_day: int
) -> Register:
    n = current.num_rows
    codes, vocab = {}, {}
    for column in CODE_COLUMNS:
        codes[column], vocab[column] = _encoded(current.column(column))
    numbers = {c: _ints(current.column(c)) for c in NUMBER_COLUMNS}
    days = {c: _day_numbers(current.column(c)) for c in DATE_COLUMNS}
    valid_from = _day_numbers(current.column("valid_from"))
    crossed = np.array([v == "S" for v in vocab["status"]] + [False])[codes["status"]]
    state = np.where(valid_to == DAY_UNKNOWN, OPEN, np.where(crossed, CROSSED, CLOSED)).astype(
        np.int8
    )
    since = days["last_registration"]
    return Register(
        size=n,
        extract_plates=current.column("plate").combine_chunks(),
        added_plates=[],
        taken=taken,
        taken_added=set(),
        state=state,
        codes=codes,
        vocab=vocab,
        numbers=numbers,
        days=days,
        vehicle_id=np.arange(1, n + 1, dtype=np.int64),
        vehicle_from=np.where(since != DAY_UNKNOWN, since, valid_from),
        last_day=int(last_day),
        next_vehicle=n + 1,
    )


def day_after(register: Register) -> dt.date:
    """The default first day to generate: the day after the extract's date (its newest
    valid_from, as the loader takes it by default), the first day a sync asks for."""
    return from_day(register.last_day + 1)
