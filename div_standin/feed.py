"""The stand-in's feed directory: day files and their manifest, written by the generator and
served by the server.

A feed directory holds `manifest.json` and `days/YYYY-MM-DD.jsonl`. A day file has one
transaction per line, in `sequence` order, each line exactly a `rowDetails` item of
docs/div-feed.md (`transactionId`, `transactionType`, `date`, `sequence`, `plate`, `vehicleId`,
`correctsFrom`, `details`), compact JSON, UTF-8, `\\n` after every line. The manifest lists the
generated days (with each file's SHA-256 and counts by type) and the transactions planted as bad
on purpose (`planted`: id and kind), so tests know what the sync must refuse or count. Only the
days in the manifest exist for the server; any other day is DAY_NOT_AVAILABLE.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from lez.errors import InvalidPlate, StandinError
from lez.plates import normalise

FORMAT: Final = "lez-div-feed/1"
MANIFEST: Final = "manifest.json"
DAYS_DIR: Final = "days"

NEW: Final = "registrationsNew"
LICENCE: Final = "registrationsChangedDataLicense"
VEHICLE: Final = "registrationsChangedDataVehicle"
TRANSFERRED: Final = "registrationsTransferred"
UNREGISTERED: Final = "registrationsUnregistered"
CROSSED_OUT: Final = "registrationsCrossedOut"
DESTROYED: Final = "vehiclesDestroyed"
ALL: Final = "transactions"
TRANSACTION_TYPES: Final = (
    NEW,
    LICENCE,
    VEHICLE,
    TRANSFERRED,
    UNREGISTERED,
    CROSSED_OUT,
    DESTROYED,
)
"""The per-type services of docs/div-feed.md; `ALL` lists every type."""
CLOSING_TYPES: Final = frozenset({UNREGISTERED, CROSSED_OUT, DESTROYED})
"""Types whose `details` are null: they only close the open version."""

Item = dict[str, Any]


def day_file(feed_dir: Path, date: dt.date) -> Path:
    """Where the day file of `date` lives."""
    return feed_dir / DAYS_DIR / f"{date.isoformat()}.jsonl"


def transaction_id(date: dt.date, sequence: int) -> str:
    """`YYYYMMDD-NNNNNN` (at least six digits of sequence)."""
    return f"{date.year:04d}{date.month:02d}{date.day:02d}-{sequence:06d}"


def encode_day(items: Sequence[Item]) -> bytes:
    """The bytes of a day file: one compact JSON object a line."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    return "".join(dumps(item) + "\n" for item in items).encode()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class DayEntry:
    """One generated day as the manifest lists it."""

    date: dt.date
    transactions: int
    sha256: str
    by_type: Mapping[str, int]
    planted: Sequence[Mapping[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "file": f"{DAYS_DIR}/{self.date.isoformat()}.jsonl",
            "transactions": self.transactions,
            "sha256": self.sha256,
            "byType": dict(self.by_type),
            "planted": [dict(p) for p in self.planted],
        }


def write_day(
    feed_dir: Path, date: dt.date, items: Sequence[Item], planted: Sequence[Item]
) -> DayEntry:
    """Write one day file; returns its manifest entry."""
    data = encode_day(items)
    write_atomically(day_file(feed_dir, date), data)
    by_type = {t: 0 for t in TRANSACTION_TYPES}
    for item in items:
        by_type[item["transactionType"]] += 1
    return DayEntry(
        date=date,
        transactions=len(items),
        sha256=hashlib.sha256(data).hexdigest(),
        by_type=by_type,
        planted=[{"transactionId": p["transactionId"], "kind": p["kind"]} for p in planted],
    )


def write_manifest(feed_dir: Path, header: Mapping[str, Any], days: Sequence[DayEntry]) -> Path:
    """Write `manifest.json`: the generation's inputs (`header`) and the days."""
    body = {"format": FORMAT, **header, "days": [d.to_json() for d in days]}
    path = feed_dir / MANIFEST
    write_atomically(path, (json.dumps(body, indent=2) + "\n").encode())
    return path


def read_manifest(feed_dir: Path) -> dict[str, Any]:
    """The manifest of a feed directory; a clear `StandinError` when it is not one."""
    path = feed_dir / MANIFEST
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StandinError(
            f"{feed_dir} is not a feed directory (no {MANIFEST}); write one with lez-div generate"
        ) from None
    except (OSError, ValueError) as exc:
        raise StandinError(f"{path}: cannot be read as JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise StandinError(f"{path}: not a {FORMAT} manifest; regenerate with lez-div generate")
    return body


def manifest_days(manifest: Mapping[str, Any]) -> list[dt.date]:
    """The generated days of a manifest, in order."""
    return [dt.date.fromisoformat(d["date"]) for d in manifest["days"]]


def read_day(feed_dir: Path, date: dt.date) -> list[Item]:
    """The transactions of one generated day, in sequence order."""
    path = day_file(feed_dir, date)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise StandinError(
            f"{path}: the manifest lists this day but it cannot be read ({exc.strerror})"
        ) from None
    try:
        return [json.loads(line) for line in lines if line]
    except ValueError:
        raise StandinError(f"{path}: not one JSON object a line; regenerate the feed") from None


def normalised_plate(plate: str) -> str | None:
    """The normalised Belgian plate, or None when `lez.plates` refuses it."""
    try:
        return str(normalise(plate).plate)
    except InvalidPlate:
        return None
