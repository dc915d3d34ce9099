""" "Who consulted this plate": the audit records whose consulted keys hold one plate's key.

The plate is normalised and keyed with the plate HMAC key exactly as the server keys it
(`lez.plates.normalise`, `PlateKeyer.key`), and only its 16-byte key is searched for; the plate
itself is never printed, logged or written. An audit record holds its consulted keys either
inline (`keys`: hex strings, small calls such as a unary `Check`) or in a key log of raw
16-byte keys (`keys_file` from `keys_offset`, big calls such as `CheckStream`;
`server.audit_key_log`). So a search is two scans, both without parsing every record:

- each key file of a series (`audit-w<N>-keys/`) is read as one NumPy array of little-endian
  uint64 halves and compared with the key's two halves (vectorised: one pass over the key
  column), keeping the positions where it occurs;
- each audit file of the series (rotated ones included) is memory-mapped and searched, up to
  its zero padding, for the key's hex text (a byte search), then, if some key files held the
  key, for the records' `keys_file` fields naming them: only those lines are parsed, and a
  record is kept when the positions found fall in its range of the file.

The plate's own outcome in each call comes from the record's `pair_outcomes` at the key's
positions. For a `CheckStream` chunk, the stream's closing record (found by the stream's id)
says how the stream ended (`ended`; "no closing record" when its worker was killed mid-stream).

A year at 1.5 M pairs a day is about 8.8 GB of logged keys; `bench/audit_find_bench.py`
measures the scan. Filters (zone, from/to day) apply to the records found. Records written
before per-pair outcomes were recorded give the outcome of a one-pair call and, for bigger
calls, only the call's counts.
"""

from __future__ import annotations

import datetime as dt
import json
import mmap
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lez.decision import Outcome
from lez.keys import KEY_BYTES, PlateKeyer
from lez.plates import normalise
from server.audit import decode_pair_outcomes, keys_dir_of, series_files, series_of
from server.audit_key_log import KEY_FILE_SUFFIX, key_range
from server.audit_verify import AUDIT_GLOB

_READ_BLOCK: Final = 1 << 24  # key files are read in pieces of at most this many bytes
_KEYS_FILE: Final = b'"keys_file":"'
_CLOSING: Final = b'"part":"end"'
_PAGE: Final = 4096


@dataclass(frozen=True, slots=True)
class Consultation:
    """One call that consulted the plate, as its audit record tells it (no plate, no key)."""

    ts: str
    organisation: str
    identity: str
    roles: str
    purpose: str
    rpc: str
    zone: str
    outcome: str
    status: str
    pairs: int
    times: int
    """How many of the call's pairs were this plate."""
    audit_id: str
    where: str
    """Audit file and record number (`audit-w0.jsonl#12`)."""
    ended: str = ""
    """For a `CheckStream` chunk: how the stream ended (its closing record's status)."""
    request_id: str = ""
    """The call's request id (its log line has the same, docs/observability.md)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plate_key(keyer: PlateKeyer, plate: str, country: str = "BE") -> bytes:
    """The key the server records for a plate (raises InvalidPlate, never echoing it)."""
    normalised = normalise(plate, country)
    return bytes(keyer.key(normalised.country, normalised.plate))


def find_consultations(
    audit_dir: Path,
    key: bytes,
    *,
    zone: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> list[Consultation]:
    """Every recorded call that consulted `key`, oldest first, filtered by zone (name, any
    case) and by the UTC day of the record (`since` and `until` inclusive)."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"a plate key is {KEY_BYTES} bytes")
    found: list[Consultation] = []
    every_series = {series_of(p.name) for p in audit_dir.glob(AUDIT_GLOB)}
    for series in sorted(s for s in every_series if s is not None):
        files = series_files(audit_dir, series)
        in_key_files = _key_files_with_key(audit_dir, series, key)
        streams: list[tuple[Consultation, str]] = []
        seen_in: dict[str, int] = {}  # stream id -> the last file its chunks were found in
        for index, path in enumerate(files):
            for rec, positions in _records_with_key(path, key, in_key_files):
                if zone is not None and str(rec.get("zone", "")).casefold() != zone.casefold():
                    continue
                day = _day_of(rec)
                if (since is not None and (day is None or day < since)) or (
                    until is not None and (day is None or day > until)
                ):
                    continue
                consultation = _consultation(path, rec, positions)
                if "stream" in rec:
                    streams.append((consultation, str(rec["stream"])))
                    seen_in[str(rec["stream"])] = index
                else:
                    found.append(consultation)
        if streams:
            endings = _stream_endings(files, seen_in)
            for consultation, stream in streams:
                ended = endings.get(stream, "no closing record (its worker stopped mid-stream)")
                found.append(replace(consultation, ended=ended))
    found.sort(key=lambda c: c.ts)
    return found


def _key_files_with_key(audit_dir: Path, series: str, key: bytes) -> dict[str, list[int]]:
    """`keys_file` of a record -> the positions of `key` among the file's keys, for the key
    files of a series that hold it."""
    keys_dir = keys_dir_of(audit_dir, series)
    found: dict[str, list[int]] = {}
    if keys_dir.is_dir():
        for key_file in sorted(keys_dir.glob(f"*{KEY_FILE_SUFFIX}")):
            positions = key_positions(key_file, key)
            if len(positions):
                found[f"{keys_dir.name}/{key_file.name}"] = positions.tolist()
    return found


def _records_with_key(
    path: Path, key: bytes, in_key_files: Mapping[str, list[int]]
) -> Iterator[tuple[dict[str, Any], list[int]]]:
    """(record, positions of the key among its keys) of the records of one audit file holding
    `key`."""
    with path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            end = records_end(data)
            hex_key = key.hex()
            for rec in _lines_containing(data, f'"{hex_key}"'.encode(), end):
                positions = [i for i, k in enumerate(rec.get("keys", ())) if k == hex_key]
                if positions:
                    yield rec, positions
            if in_key_files:  # one more pass, over the records naming those key files
                for rec in _lines_containing(data, _KEYS_FILE, end, in_key_files):
                    first, stop = key_range(rec)
                    found = in_key_files[str(rec["keys_file"])]
                    positions = [p - first for p in found if first <= p < stop]
                    if positions:
                        yield rec, positions


def _stream_endings(files: list[Path], seen_in: Mapping[str, int]) -> dict[str, str]:
    """Stream id -> the status of its closing record, for the streams that have one.

    A closing record follows its stream's chunks: it is looked for in the file where the
    stream's last chunk found was, then in the files after it until found (a stream rarely
    spans a rotation), one byte search per file for closing records, whatever the number of
    streams."""
    endings: dict[str, str] = {}
    wanted = set(seen_in)
    for index, path in enumerate(files):
        looking = {s for s in wanted if seen_in[s] <= index}
        if not looking:
            continue
        with path.open("rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                continue
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                for rec in _lines_containing(data, _CLOSING, records_end(data)):
                    stream = str(rec.get("stream", ""))
                    if stream in looking:
                        endings[stream] = str(rec.get("status", ""))
                        wanted.discard(stream)
        if not wanted:
            break
    return endings


def records_end(data: mmap.mmap) -> int:
    """Where the records end and the zero padding begins, by a binary search over pages.

    Records hold no NUL byte and the padding is all NULs, so the all-zero pages are exactly the
    pages after the records: the first one is found in a few reads, not by reading the padding
    (tens of MiB per file)."""
    pages = -(-len(data) // _PAGE)
    low, high = 0, pages  # the first all-zero page is in [low, high]
    while low < high:
        mid = (low + high) // 2
        if data[mid * _PAGE : (mid + 1) * _PAGE].strip(b"\0"):
            low = mid + 1
        else:
            high = mid
    if low == 0:
        return 0
    return (low - 1) * _PAGE + len(data[(low - 1) * _PAGE : low * _PAGE].rstrip(b"\0"))


def key_positions(key_file: Path, key: bytes) -> npt.NDArray[np.int64]:
    """Where `key` occurs among the 16-byte keys of a key file (vectorised)."""
    hi, lo = np.frombuffer(key, dtype="<u8")
    found: list[npt.NDArray[np.int64]] = []
    first = 0  # index of the block's first key
    with key_file.open("rb") as fh:
        while True:
            block = fh.read(_READ_BLOCK)
            if not block:
                break
            usable = len(block) - len(block) % KEY_BYTES  # a cut file: whole keys only
            halves = np.frombuffer(block, dtype="<u8", count=usable // 8).reshape(-1, 2)
            candidates = np.flatnonzero(halves[:, 0] == hi)
            if len(candidates):
                found.append(first + candidates[halves[candidates, 1] == lo])
            first += len(halves)
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


def count_key(key_file: Path, key: bytes) -> int:
    """How many times `key` occurs among the 16-byte keys of a key file."""
    return len(key_positions(key_file, key))


def _lines_containing(
    data: mmap.mmap, needle: bytes, end: int, names: Mapping[str, object] | None = None
) -> Iterator[dict[str, Any]]:
    """The JSON records of the lines of `data[:end]` that contain `needle` (each line once).

    With `names`, `needle` starts a JSON string and only lines where that string is one of
    `names` are parsed."""
    at = data.find(needle, 0, end)
    while at >= 0:
        line_end = data.find(b"\n", at, end)
        line_end = end if line_end < 0 else line_end
        if names is not None:
            value_at = at + len(needle)
            value = data[value_at : data.find(b'"', value_at, line_end)].decode(errors="replace")
            if value not in names:
                at = data.find(needle, line_end, end)
                continue
        start = data.rfind(b"\n", 0, at) + 1
        try:
            rec = json.loads(data[start:line_end])
        except ValueError:  # a torn or edited line: `verify-audit` reports it
            rec = None
        if isinstance(rec, dict):
            yield rec
        at = data.find(needle, line_end, end)


def _day_of(rec: Mapping[str, Any]) -> dt.date | None:
    try:
        return dt.datetime.fromisoformat(str(rec["ts"])).astimezone(dt.UTC).date()
    except (KeyError, ValueError):
        return None


def _outcome(rec: Mapping[str, Any], positions: list[int]) -> str:
    """The plate's outcome in the call: from each pair's recorded outcome at the key's
    positions; from the call's counts for records that predate per-pair outcomes."""
    packed = rec.get("pair_outcomes")
    if isinstance(packed, str):
        try:
            column = decode_pair_outcomes(packed)
            names = [_outcome_name(column[i]) for i in positions]
        except (ValueError, IndexError):
            names = []
        if names:
            counts = {name: names.count(name) for name in dict.fromkeys(names)}
            if len(counts) == 1:
                return names[0]
            return ", ".join(f"{name} {n}" for name, n in counts.items())
    counts_of_call = rec.get("outcomes") or {}
    if not isinstance(counts_of_call, dict):
        return ""
    if rec.get("pairs") == 1 and len(counts_of_call) == 1:
        return str(next(iter(counts_of_call)))
    listed = ", ".join(f"{name} {n}" for name, n in counts_of_call.items())
    return f"not recorded per pair (call: {listed or 'none'})"


def _outcome_name(value: int) -> str:
    try:
        return Outcome(value).name
    except ValueError:
        return str(value)


def _consultation(path: Path, rec: Mapping[str, Any], positions: list[int]) -> Consultation:
    roles = rec.get("roles") or []
    return Consultation(
        ts=str(rec.get("ts", "")),
        organisation=str(rec.get("organisation", "")),
        identity=str(rec.get("identity", "")),
        roles=",".join(str(r) for r in roles) if isinstance(roles, list) else str(roles),
        purpose=str(rec.get("purpose", "")),
        rpc=str(rec.get("rpc", "")),
        zone=str(rec.get("zone", "")),
        outcome=_outcome(rec, positions),
        status=str(rec.get("status", "")),
        pairs=int(rec.get("pairs", 0) or 0),
        times=len(positions),
        audit_id=str(rec.get("hash", "")),
        where=f"{path.name}#{rec.get('seq', '?')}",
        request_id=str(rec.get("request_id", "")),
    )


def format_table(found: list[Consultation]) -> str:
    """The consultations as an aligned text table (header first)."""
    columns: tuple[str, ...] = ("ts", "organisation", "identity", "roles", "purpose", "rpc")
    columns += ("zone", "outcome", "status", "ended", "pairs", "times", "where")
    rows = [list(columns)] + [[str(getattr(c, name)) or "-" for name in columns] for c in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def format_json_lines(found: list[Consultation]) -> str:
    return "\n".join(json.dumps(c.as_dict(), sort_keys=True) for c in found)
