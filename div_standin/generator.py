"""The mutation generator: continues a register day by day as the DIV's change feed would.

`generate` reads a full extract once (`div_standin.register`), then writes one day file per day
(`div_standin.feed`) and a manifest. The register state is kept across days, so the sequence is
consistent: a plate is touched at most once a day; only a registered plate is transferred,
changed, unregistered, crossed out or has its vehicle destroyed; a plate that was closed (its
last version ended) only comes back through a new registration; a new plate does not exist yet.

The daily mix (shares of the day's volume; a modelling choice, not a DIV figure):

- `registrationsNew` 18 %: 3/4 new plates on new or used vehicles, 1/4 a closed plate (its last
  version ended) registered again;
- `registrationsTransferred` 20 %: the plate onto another vehicle of the same class (new details);
- `registrationsChangedDataLicense` 24 %: the holder moved (another NIS code);
- `registrationsChangedDataVehicle` 16 %: 70 % a change (masses or bodywork), 30 % a correction
  with `correctsFrom` (euro norm, else fuel, corrected since a day of the current vehicle);
- `registrationsUnregistered` 8 %, `registrationsCrossedOut` 10 %, `vehiclesDestroyed` 4 %.

The default volume is 50,000 transactions a day per 8,000,000 plates, at least `MIN_PER_DAY`.
New vehicles come from the synthetic register's models (`loader.synth`: classes, fuels, ages,
masses, euro norms, NIS codes, plate series): half of them new (first registration on the day),
half used. Planted bad transactions (`bad_per_day`) are added to the volume, in turn: a
malformed detail (`maxMass` "heavy", an error for the sync, not applied here), an unknown code
(`fuel` "99": the loader counts it as UNKNOWN, so it is applied), a plate that does not
normalise ("!!", refused, not applied). The manifest names them.

Deterministic: the same extract, seed, start, days and volumes give byte-identical files (each
day draws from `default_rng([seed, day])`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from div_standin import feed
from div_standin.feed import Item
from div_standin.register import (
    CLOSED,
    CROSSED,
    OPEN,
    Register,
    day_after,
    read_register,
    vehicle_id_text,
)
from lez.days import from_day, to_day
from lez.errors import StandinError
from lez.plates import PLATE_WIDTH
from loader import synth

I64 = npt.NDArray[np.int64]
Progress = Callable[[str, int, int], None]

MIX: Final = (
    (feed.NEW, 0.18),
    (feed.TRANSFERRED, 0.20),
    (feed.LICENCE, 0.24),
    (feed.VEHICLE, 0.16),
    (feed.UNREGISTERED, 0.08),
    (feed.CROSSED_OUT, 0.10),
    (feed.DESTROYED, 0.04),
)
REREGISTRATION_SHARE: Final = 0.25  # of registrationsNew
CORRECTION_SHARE: Final = 0.30  # of registrationsChangedDataVehicle
USED_VEHICLE_SHARE: Final = 0.5  # vehicles registered or transferred that are not new
NIS_KEPT_ON_TRANSFER: Final = 0.8
PER_PLATE_PER_DAY: Final = 50_000 / 8_000_000
MIN_PER_DAY: Final = 40
PLANTED_KINDS: Final = ("malformed_detail", "unknown_code", "bad_plate")
UNKNOWN_FUEL: Final = "99"
MALFORMED_MASS: Final = "heavy"
BAD_PLATE: Final = "!!"
_FUEL_CORRECTION: Final = {"01": "07", "07": "01", "02": "08", "08": "02", "04": "12", "12": "04"}
_ELECTRIC_FUELS: Final = frozenset({"04", "07", "08", "09", "12"})
_BODYWORK_CHANGES: Final = ("01", "02", "03", "04", "05", "06", "07")


def default_per_day(plates: int) -> int:
    """50,000 a day per 8,000,000 plates, at least `MIN_PER_DAY`."""
    return max(MIN_PER_DAY, round(plates * PER_PLATE_PER_DAY))


def split_volume(per_day: int) -> dict[str, int]:
    """Transactions of each type for a day of `per_day`; the rounding rest goes to licences."""
    counts = {kind: int(per_day * share) for kind, share in MIX}
    counts[feed.LICENCE] += per_day - sum(counts.values())
    return counts


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """What `generate` wrote and how long it took (timings are not in the manifest)."""

    feed_dir: Path
    manifest: Path
    plates: int
    per_day: int
    days: list[feed.DayEntry]
    read_seconds: float
    day_seconds: list[float] = field(default_factory=list)


def generate(
    extract: Path,
    out: Path,
    *,
    days: int,
    start: dt.date | None = None,
    seed: int = 0,
    per_day: int | None = None,
    bad_per_day: int = 0,
    progress: Progress | None = None,
) -> GenerationResult:
    """Read `extract` and write `days` day files and the manifest into `out` (replacing any
    earlier feed there). See the module docstring for the mix and the planted transactions."""
    if days < 1:
        raise StandinError(f"--days must be at least 1 (got {days})")
    if bad_per_day < 0 or (per_day is not None and per_day < 1) or seed < 0:
        raise StandinError("--per-day must be at least 1, --bad-per-day and --seed at least 0")
    started = time.perf_counter()
    register = read_register(extract)
    read_seconds = time.perf_counter() - started
    first = start or day_after(register)
    if to_day(first) <= register.last_day:
        raise StandinError(
            f"--start {first} is not after the extract's date (its newest valid_from) "
            f"{from_day(register.last_day)}; start on {day_after(register)} or later"
        )
    volume = per_day or default_per_day(register.size)
    plates = register.size
    _clear_days(out)
    maker = _DayMaker(register, _FreshPlates(register, seed), seed, volume, bad_per_day)
    entries: list[feed.DayEntry] = []
    timings: list[float] = []
    for i in range(days):
        t0 = time.perf_counter()
        date = first + dt.timedelta(days=i)
        items, planted = maker.day(date)
        entries.append(feed.write_day(out, date, items, planted))
        timings.append(time.perf_counter() - t0)
        if progress:
            progress("generate", i + 1, days)
    header = {
        "extract": extract.name,
        "seed": seed,
        "plates": plates,
        "perDay": volume,
        "badPerDay": bad_per_day,
        "start": first.isoformat(),
        "mix": dict(MIX),
    }
    manifest = feed.write_manifest(out, header, entries)
    return GenerationResult(out, manifest, plates, volume, entries, read_seconds, timings)


def _clear_days(out: Path) -> None:
    days_dir = out / feed.DAYS_DIR
    for old in days_dir.glob("*.jsonl") if days_dir.is_dir() else ():
        old.unlink()


# ---- new plates ------------------------------------------------------------------------------


class _FreshPlates:
    """Plates that do not exist yet, from the synthetic register's series for the issue day."""

    def __init__(self, register: Register, seed: int) -> None:
        self.register = register
        # a permutation of our own: the extract's plates came from another one
        self.perms = synth.plate_permutations(seed * 7919 + 0xD1F)
        self.offsets = np.zeros(len(synth.PLATE_TYPE_OF_SERIES), dtype=np.int64)

    def make(
        self, rng: np.random.Generator, cls: I64, day: int
    ) -> tuple[list[str], list[bytes], list[str]]:
        """Written plates, normalised plates and plate types for vehicles of classes `cls`."""
        n = len(cls)
        written, normalised, types = [""] * n, [b""] * n, [""] * n
        chosen: set[bytes] = set()
        pending = np.arange(n)
        while len(pending):
            issued = np.full(len(pending), day, np.int32)
            series = synth.choose_series(rng, cls[pending], issued, day)
            try:
                matrix = synth.written_plates(series, self.perms, self.offsets)
            except ValueError as exc:  # a plate series used up: too many new plates
                raise StandinError(f"{exc}; generate fewer days or a smaller volume") from None
            texts: list[bytes] = matrix.view(f"S{PLATE_WIDTH}").ravel().tolist()
            keys = [(feed.normalised_plate(t.decode()) or "").encode() for t in texts]
            taken = self.register.are_taken(keys)
            retry = []
            for at, text, key, s, used in zip(
                pending.tolist(), texts, keys, series.tolist(), taken.tolist(), strict=True
            ):
                if not key or used or key in chosen:
                    retry.append(at)
                    continue
                chosen.add(key)
                written[at], normalised[at] = text.decode(), key
                types[at] = synth.PLATE_TYPES[int(synth.PLATE_TYPE_OF_SERIES[s])]
            pending = np.array(retry, dtype=np.int64)
        return written, normalised, types


# ---- one day ---------------------------------------------------------------------------------


class _DayMaker:
    """Makes the transactions of one day and applies them to the register."""

    def __init__(
        self, register: Register, plates: _FreshPlates, seed: int, per_day: int, bad_per_day: int
    ) -> None:
        self.reg = register
        self.fresh = plates
        self.seed = seed
        self.per_day = per_day
        self.bad_per_day = bad_per_day

    def day(self, date: dt.date) -> tuple[list[Item], list[Item]]:
        """The day's items in sequence order, and the planted ones (`transactionId`, `kind`)."""
        self.date, self.iso, self.num = date, date.isoformat(), to_day(date)
        self.rng = np.random.default_rng([self.seed, self.num])
        counts = split_volume(self.per_day)
        kinds = [PLANTED_KINDS[i % len(PLANTED_KINDS)] for i in range(self.bad_per_day)]
        on_open = [k for k in kinds if k != "bad_plate"]
        picked = self._pick_open(counts, len(on_open))
        closed = np.flatnonzero(self.reg.state[: self.reg.size] != OPEN)
        again = min(round(counts[feed.NEW] * REREGISTRATION_SHARE), len(closed))
        rows_again = self.rng.choice(closed, again, replace=False) if again else closed[:0]

        pending: list[Item] = []
        pending += self._new_plates(counts[feed.NEW] - again)
        pending += self._registered_again(rows_again)
        bounds = np.cumsum([counts[t] for t, _ in MIX[1:]])
        groups = np.split(picked, bounds)
        pending += self._transfers(groups[0])
        pending += self._licence_changes(groups[1])
        pending += self._vehicle_changes(groups[2])
        pending += self._closings(groups[3], feed.UNREGISTERED, CLOSED)
        pending += self._closings(groups[4], feed.CROSSED_OUT, CROSSED)
        pending += self._closings(groups[5], feed.DESTROYED, CLOSED)
        planted = self._planted(kinds, groups[6])
        items = self._sequenced(pending + [item for _, item in planted])
        return items, [{"transactionId": i["transactionId"], "kind": k} for k, i in planted]

    def _pick_open(self, counts: dict[str, int], planted: int) -> I64:
        registered = np.flatnonzero(self.reg.state[: self.reg.size] == OPEN)
        need = sum(n for t, n in counts.items() if t != feed.NEW) + planted
        if need > len(registered):
            raise StandinError(
                f"a day of {self.per_day} transactions needs {need} registered plates and the "
                f"register has {len(registered)} on {self.iso}; lower --per-day"
            )
        return np.asarray(self.rng.choice(registered, need, replace=False), dtype=np.int64)

    def _sequenced(self, pending: list[Item]) -> list[Item]:
        """The day's items in a random order, numbered: `sequence` and `transactionId`."""
        order = self.rng.permutation(len(pending)).tolist()
        prefix = feed.transaction_id(self.date, 0)[:-6]
        items = [pending[at] for at in order]
        for sequence, item in enumerate(items, 1):
            item["transactionId"] = f"{prefix}{sequence:06d}"
            item["sequence"] = sequence
        return items

    def _items(self, kind: str, rows: I64, *, with_details: bool = True) -> list[Item]:
        """Items for `rows` as they are now, in the key order of docs/div-feed.md (the id and
        the sequence are set by `_sequenced`)."""
        plates = self.reg.plates(rows)
        ids = self.reg.vehicle_id[rows].tolist()
        details: list[Any] = self.reg.details(rows) if with_details else [None] * len(rows)
        return [
            {
                "transactionId": "",
                "transactionType": kind,
                "date": self.iso,
                "sequence": 0,
                "plate": p,
                "vehicleId": vehicle_id_text(v),
                "correctsFrom": None,
                "details": d,
            }
            for p, v, d in zip(plates, ids, details, strict=True)
        ]

    # ---- vehicles and holders ------------------------------------------------------------------

    def _vehicles(self, cls: I64) -> synth.Vehicles:
        n = len(cls)
        used = self.rng.random(n) < USED_VEHICLE_SHARE
        age = (self.rng.gamma(2.0, 2.0, n) * 365.25).astype(np.int64)
        first = self.num - np.where(used, age, 0)
        return synth.new_vehicles(self.rng, cls, np.full(n, self.num + 1, np.int64), first)

    def _nis(self, n: int) -> I64:
        pick = self.rng.choice(len(synth.NIS_CODES), size=n, p=synth.NIS_WEIGHTS)
        return np.asarray(synth.NIS_CODES[pick], dtype=np.int64)

    def _new_plates(self, n: int) -> list[Item]:
        p = synth.CLASS_SHARES / synth.CLASS_SHARES.sum()
        cls = self.rng.choice(len(p), size=n, p=p).astype(np.int64)
        cls[cls == synth.OLDTIMER] = synth.CAR  # an oldtimer is not newly registered here
        written, normalised, types = self.fresh.make(self.rng, cls, self.num)
        rows = self.reg.add_plates(written, normalised)
        plate_types = np.array([self.reg.code("plate_type", t) for t in types], np.int32)
        self.reg.set_vehicles(rows, self._vehicles(cls), self.num, self._nis(n), plate_types)
        return self._items(feed.NEW, rows)

    def _registered_again(self, rows: I64) -> list[Item]:
        nis = np.where(
            self.rng.random(len(rows)) < 0.5, self.reg.numbers["nis"][rows], self._nis(len(rows))
        )
        self.reg.set_vehicles(rows, self._vehicles(self.reg.vehicle_classes(rows)), self.num, nis)
        return self._items(feed.NEW, rows)

    def _transfers(self, rows: I64) -> list[Item]:
        keep = self.rng.random(len(rows)) < NIS_KEPT_ON_TRANSFER
        nis = np.where(keep, self.reg.numbers["nis"][rows], self._nis(len(rows)))
        self.reg.set_vehicles(rows, self._vehicles(self.reg.vehicle_classes(rows)), self.num, nis)
        return self._items(feed.TRANSFERRED, rows)

    def _licence_changes(self, rows: I64) -> list[Item]:
        old = self.reg.numbers["nis"][rows]
        new = self._nis(len(rows))
        self.reg.numbers["nis"][rows] = np.where(
            new == old, np.where(old == 11002, 44021, 11002), new
        )
        return self._items(feed.LICENCE, rows)

    def _vehicle_changes(self, rows: I64) -> list[Item]:
        fuel_known = self.reg.codes["fuel"][rows] != self.reg.code("fuel", "")
        can_correct = (self.reg.vehicle_from[rows] < self.num) & fuel_known  # not trailers
        wanted = round(len(rows) * CORRECTION_SHARE)
        corrected = rows[can_correct][:wanted]
        changed = np.setdiff1d(rows, corrected)
        self._change(changed)
        return self._items(feed.VEHICLE, changed) + self._corrections(corrected)

    def _change(self, rows: I64) -> None:
        """A technical change: masses (half of them, when known) or the bodywork."""
        mass = self.reg.numbers["max_mass"][rows]
        by_mass = (self.rng.random(len(rows)) < 0.5) & (mass > 0)
        m = rows[by_mass]
        factor = 1 + self.rng.choice((-1, 1), len(m)) * self.rng.uniform(0.03, 0.10, len(m))
        new_mass = np.maximum((self.reg.numbers["max_mass"][m] * factor).astype(np.int64), 1)
        self.reg.numbers["max_mass"][m] = new_mass
        running = self.reg.numbers["running_mass"][m]
        self.reg.numbers["running_mass"][m] = np.where(running > new_mass, new_mass, running)
        b = rows[~by_mass]
        choices = np.array([self.reg.code("bodywork", c) for c in _BODYWORK_CHANGES], np.int32)
        self.reg.codes["bodywork"][b] = choices[self.rng.integers(0, len(choices), len(b))]

    def _corrections(self, rows: I64) -> list[Item]:
        """Euro norm corrected to what the first registration gives, else the fuel corrected;
        `correctsFrom` a day of the current vehicle on the plate, before today."""
        reg = self.reg
        since = reg.vehicle_from[rows]
        corrects = since + (self.rng.random(len(rows)) * (self.num - since)).astype(np.int64)
        first = reg.days["first_registration"][rows]
        first = np.where(first < since - 36500, since, first)
        running = np.where(
            reg.numbers["running_mass"][rows] > 0, reg.numbers["running_mass"][rows], 1500
        )
        euro = synth.euro_norms(
            self.rng,
            reg.vehicle_classes(rows),
            reg.to_synth("category", reg.codes["category"][rows]),
            reg.to_synth("fuel", reg.codes["fuel"][rows]),
            first,
            running,
        )
        new_euro = reg.from_synth("euro", euro)
        by_euro = (euro >= 0) & (new_euro != reg.codes["euro"][rows])
        reg.codes["euro"][rows[by_euro]] = new_euro[by_euro]
        for row in rows[~by_euro].tolist():
            fuel = reg.vocab["fuel"][reg.codes["fuel"][row]]
            new = _FUEL_CORRECTION.get(fuel, "01" if fuel != "01" else "07")
            reg.codes["fuel"][row] = reg.code("fuel", new)
            reg.codes["electric"][row] = reg.code(
                "electric", "1" if new in _ELECTRIC_FUELS else "0"
            )
        items = self._items(feed.VEHICLE, rows)
        for item, day in zip(items, corrects.tolist(), strict=True):
            item["correctsFrom"] = from_day(day).isoformat()
        return items

    def _closings(self, rows: I64, kind: str, state: int) -> list[Item]:
        items = self._items(kind, rows, with_details=False)
        self.reg.state[rows] = state
        if state == CROSSED:
            self.reg.codes["status"][rows] = self.reg.code("status", "S")
        return items

    # ---- planted bad transactions --------------------------------------------------------------

    def _planted(self, kinds: list[str], rows: I64) -> list[tuple[str, Item]]:
        """The planted transactions; `rows` are registered plates, one per planted kind other
        than bad_plate (which comes third in turn, so it copies the details of the first)."""
        out: list[tuple[str, Item]] = []
        on_open = iter(rows.tolist())
        for kind in kinds:
            if kind == "bad_plate":
                item = self._items(feed.NEW, rows[:1])[0]
                item["plate"] = BAD_PLATE
                item["vehicleId"] = vehicle_id_text(int(self.reg.new_vehicle_ids(1)[0]))
                item["details"] = {**item["details"], "lastRegistration": self.iso, "status": "A"}
            else:
                row = np.array([next(on_open)], dtype=np.int64)
                if kind == "unknown_code":  # loads as UNKNOWN: the register takes it
                    self.reg.codes["fuel"][row] = self.reg.code("fuel", UNKNOWN_FUEL)
                item = self._items(feed.VEHICLE, row)[0]
                if kind == "malformed_detail":
                    item["details"]["maxMass"] = MALFORMED_MASS
            out.append((kind, item))
        return out
