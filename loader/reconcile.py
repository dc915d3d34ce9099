"""`lez-loader reconcile`: compare a fresh full DIV extract with the store, read-only.

The extract is parsed and selected exactly as `lez-loader build` does (`load_extract`,
`select_versions`: the same rejects, overlap refusals and retention purge), with the source
date defaulting to the store's last synced day, so an extract made after the same changes as
the store finds no difference. It is then compared, plate key by plate key, with the store's
merged content, and every difference is classed:

- **missing**: a key in the extract, not in the store;
- **extra**: a key in the store, not in the extract;
- **history**: a key in both whose versions have other intervals (or another count);
- **field**: a key in both with the same intervals but other values, counted per field.

The report gives counts and pseudonymised keys (hex), never plates. `ReconcileReport.equal`
decides the exit status (0 equal, 1 different).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from lez.days import to_day
from lez.keys import KEY_BYTES, PlateKeyer
from lez.store.columns import KeyedRecords, group_sorted
from lez.store.reader import open_store
from lez.vehicle import VEHICLE_DTYPE
from loader.build import select_versions
from loader.extract import load_extract

COMPARED_FIELDS: Final = tuple(
    n for n in VEHICLE_DTYPE.names or () if n not in ("valid_from", "valid_to")
)
SHOWN_KEYS: Final = 10
"""Keys listed per kind in the printed summary (the JSON report lists them all)."""


@dataclass(slots=True)
class ReconcileReport:
    """Differences between an extract and the store, by kind; keys as hex, never plates."""

    extract: str
    snapshot_id: str
    source_date: dt.date
    rows_read: int = 0
    rows_rejected: int = 0
    plates_in_extract: int = 0
    plates_in_store: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    field_counts: dict[str, int] = field(default_factory=dict)  # field -> keys differing

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.history or self.fields)

    def to_json(self) -> str:
        data = asdict(self)
        data["source_date"] = self.source_date.isoformat()
        data["equal"] = self.equal
        return json.dumps(data, indent=2)

    def lines(self) -> list[str]:
        out = [
            f"reconcile {self.extract} against snapshot {self.snapshot_id} "
            f"(source date {self.source_date}): " + ("equal" if self.equal else "DIFFERENT"),
            f"  extract: {self.rows_read} rows, {self.rows_rejected} rejected, "
            f"{self.plates_in_extract} plates; store: {self.plates_in_store} plates",
        ]
        for name, keys in (
            ("missing from the store", self.missing),
            ("extra in the store", self.extra),
            ("history differs", self.history),
            ("fields differ", self.fields),
        ):
            if keys:
                shown = ", ".join(keys[:SHOWN_KEYS]) + (" ..." if len(keys) > SHOWN_KEYS else "")
                out.append(f"  {name}: {len(keys)} keys ({shown})")
        if self.field_counts:
            out.append(f"  keys per differing field: {self.field_counts}")
        return out


def reconcile(
    store_root: Path,
    extract_path: Path,
    keyer: PlateKeyer,
    *,
    source_date: dt.date | None = None,
    retention_days: int,
    workers: int = 1,
) -> ReconcileReport:
    """Compare `extract_path` with the published store; nothing is written."""
    reader = open_store(store_root, expected_key_id=keyer.key_id)
    try:
        meta = reader.meta
        if source_date is None:
            source_date = dt.date.fromisoformat(meta.mutation_watermark or meta.source_date)
        ext = load_extract(extract_path, keyer, workers)
        chosen = select_versions(ext, to_day(source_date) - retention_days, workers)
        expected = group_sorted(chosen.hi, chosen.lo, chosen.records)
        report = ReconcileReport(
            extract=str(extract_path),
            snapshot_id=meta.snapshot_id,
            source_date=source_date,
            rows_read=ext.rows_read,
            rows_rejected=len(ext.rejects) + len(chosen.overlap_rejects),
            plates_in_extract=expected.size,
        )
        with reader.snapshot() as snap:
            stored = snap.vehicles
            compare(expected, stored, report)
    finally:
        reader.close()
    return report


def compare(expected: KeyedRecords, stored: KeyedRecords, report: ReconcileReport) -> None:
    """Fill `report` with the differences between two tables (vectorised over keys)."""
    present = _present(stored)
    report.plates_in_store = int(present.sum())
    at = stored.find(_key_matrix(expected))
    at = np.where((at >= 0) & present[np.maximum(at, 0)], at, -1)
    report.missing = _hex(expected, np.flatnonzero(at < 0))
    back = expected.find(_key_matrix(stored))
    report.extra = _hex(stored, np.flatnonzero((back < 0) & present))
    both = np.flatnonzero(at >= 0)
    exp_off, sto_off = expected.offsets.astype(np.int64), stored.offsets.astype(np.int64)
    e_start, e_count = exp_off[both], exp_off[both + 1] - exp_off[both]
    s_idx = at[both]
    s_start, s_count = sto_off[s_idx], sto_off[s_idx + 1] - sto_off[s_idx]
    same_count = e_count == s_count
    e_rows = _expand(e_start[same_count], e_count[same_count])
    s_rows = _expand(s_start[same_count], s_count[same_count])
    owner = np.repeat(np.arange(int(same_count.sum())), e_count[same_count])
    e_rec, s_rec = expected.records[e_rows], stored.records[s_rows]
    span_differs = (e_rec["valid_from"] != s_rec["valid_from"]) | (
        e_rec["valid_to"] != s_rec["valid_to"]
    )
    history = ~same_count
    history[np.flatnonzero(same_count)[np.unique(owner[span_differs])]] = True
    report.history = _hex(expected, both[history])
    fields_differ = np.zeros(len(both), dtype=np.bool_)
    same_spans = ~history
    for name in COMPARED_FIELDS:
        differs_row = e_rec[name] != s_rec[name]
        per_key = np.zeros(len(both), dtype=np.bool_)
        per_key[np.flatnonzero(same_count)[np.unique(owner[differs_row])]] = True
        per_key &= same_spans
        if per_key.any():
            report.field_counts[name] = int(per_key.sum())
            fields_differ |= per_key
    report.fields = _hex(expected, both[fields_differ])


def _present(table: KeyedRecords) -> npt.NDArray[np.bool_]:
    """Keys that hold at least one version (a merged table may keep removed keys empty)."""
    offsets = table.offsets.astype(np.int64)
    return offsets[1:] > offsets[:-1]


def _expand(starts: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    before = np.cumsum(counts) - counts
    return np.repeat(starts - before, counts) + np.arange(int(counts.sum()), dtype=np.int64)


def _key_matrix(table: KeyedRecords) -> npt.NDArray[np.uint8]:
    keys = np.empty((table.size, 2), dtype=">u8")
    keys[:, 0], keys[:, 1] = table.key_hi, table.key_lo
    return keys.view(np.uint8).reshape(-1, KEY_BYTES)


def _hex(table: KeyedRecords, rows: npt.NDArray[np.int64]) -> list[str]:
    return [table.key_bytes(int(i)).hex() for i in rows]
