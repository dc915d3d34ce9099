"""The append-only, hash-chained audit log of every consultation (seed 002 section 9, seed 004).

One JSON line per call: who (certificate identity, organisation, roles), when, which call, zone,
rule revision, snapshot, number of pairs, outcome counts, the status, and the pseudonymised keys
consulted: inline as hex for small calls, otherwise in a sidecar file of raw 16-byte keys whose
SHA-256 the record holds. Never a plate. Each record carries the hash of the previous one and
its own hash over its canonical JSON, so editing, removing or reordering a record (or a sidecar)
breaks the chain; `verify` finds the first break. A record is written and fsynced before the
call's answer completes: one write per call, never one per pair. (`sync_window_s` > 0 trades
that for speed: the record is still written before the answer, so a killed process loses
nothing, and synced within the window.)

Each worker process appends to its own file (`audit-w<N>.jsonl`), so no lock is shared between
processes; a restarted worker continues its file's chain.

The file is grown ahead of its records in zero-filled chunks (`preallocate_bytes`, fsynced once
each), so it ends in a run of NUL bytes after the last record: a record then overwrites zeros
without changing the file's size, and its fdatasync flushes data only, no metadata (on ext4
about 0.1 ms instead of 0.15-0.2 ms after an append; PostgreSQL pre-zeroes WAL segments for the
same reason). Readers stop at the padding (`read_records`). On opening, bytes after the last
complete line are a torn record whose call was never answered: they are zeroed (with a warning)
and writing resumes there.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from lez.keys import KEY_BYTES

log = logging.getLogger("lez.server")

GENESIS: Final = "0" * 64
_TAIL_BLOCK: Final = 1 << 16
_ZEROS: Final = bytes(1 << 20)  # written in pieces of at most this much
PREALLOCATE_BYTES: Final = 8 << 20


_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _canonical(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, ASCII only: the bytes a record's hash covers."""
    return _CANONICAL.encode(record).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of a record's canonical JSON without its own `hash` field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(_canonical(body)).hexdigest()


@dataclass(slots=True)
class KeyBatch:
    """The keys one call consulted, gathered chunk by chunk (no per-pair work)."""

    parts: list[bytes] = field(default_factory=list)
    count: int = 0

    def add(self, keys: bytes) -> None:
        if keys:
            self.parts.append(keys)
            self.count += len(keys) // KEY_BYTES


def _tail(fd: int, size: int) -> tuple[int, int]:
    """(end of the last complete line, end of the data before the NUL padding) of a file."""
    data_end = 0
    while size > 0:  # skip the padding backwards
        start = max(0, size - _TAIL_BLOCK)
        kept = len(os.pread(fd, size - start, start).rstrip(b"\0"))
        if kept:
            data_end = start + kept
            break
        size = start
    return _line_start(fd, data_end), data_end


def _line_start(fd: int, end: int) -> int:
    """Offset just after the last newline before `end` (0 if none)."""
    while end > 0:
        start = max(0, end - _TAIL_BLOCK)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _zero(fd: int, start: int, end: int) -> None:
    while start < end:
        piece = min(end - start, len(_ZEROS))
        _write_all(fd, memoryview(_ZEROS)[:piece], start)
        start += piece


class AuditLog:
    """Appends hash-chained records to one file; thread-safe within a process."""

    def __init__(
        self,
        directory: Path,
        *,
        worker: int = 0,
        inline_keys: int = 64,
        sync_window_s: float = 0.0,
        preallocate_bytes: int = PREALLOCATE_BYTES,
    ) -> None:
        if preallocate_bytes <= 0:
            raise ValueError("preallocate_bytes must be positive")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"audit-w{worker}.jsonl"
        self.keys_dir = directory / f"audit-w{worker}-keys"
        self.inline_keys = inline_keys
        self.preallocate_bytes = preallocate_bytes
        self._lock = threading.Lock()
        self._prev = GENESIS
        self._seq = 0
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._size = os.fstat(self._fd).st_size  # allocated: records, then zeros
            self._offset = self._open_tail()  # where the next record goes
            if self._size - self._offset < self.preallocate_bytes // 2:
                # grow now rather than inside the first call that would not fit
                self._extend(self._offset + self.preallocate_bytes // 2)
        except BaseException:
            os.close(self._fd)
            raise
        # 0: sync each record before returning. > 0: a background thread syncs written records
        # within the window; `close` syncs whatever is left.
        self.sync_window_s = sync_window_s
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._syncer: threading.Thread | None = None
        if sync_window_s > 0:
            self._syncer = threading.Thread(target=self._sync_loop, name="audit-sync", daemon=True)
            self._syncer.start()

    def _open_tail(self) -> int:
        """Find the end of the records, drop a torn one, load the chain; returns the offset."""
        end, data_end = _tail(self._fd, self._size)
        last = b""
        while end > 0:  # a last line holding NULs was only partly written (never answered)
            start = _line_start(self._fd, end - 1)
            last = os.pread(self._fd, end - start, start)
            if b"\0" not in last:
                break
            end, last = start, b""
        if data_end > end:
            _zero(self._fd, end, data_end)
            os.fdatasync(self._fd)
            log.warning(
                "audit log %s: dropped %d bytes of a torn, unanswered record at offset %d",
                self.path.name,
                data_end - end,
                end,
            )
        if last.strip():
            rec = json.loads(last)
            self._prev, self._seq = str(rec["hash"]), int(rec["seq"])
        return end

    def _extend(self, needed: int) -> None:
        """Grow the file by zero-filled chunks to hold `needed` bytes; fsync the new size."""
        chunks = -(-(needed - self._size) // self.preallocate_bytes)
        size = self._size + chunks * self.preallocate_bytes
        _zero(self._fd, self._size, size)
        os.fsync(self._fd)
        self._size = size

    def _sync_loop(self) -> None:
        while not self._closing.is_set():
            self._dirty.wait()
            self._closing.wait(self.sync_window_s)  # gather the window's records
            self._dirty.clear()
            os.fdatasync(self._fd)

    def close(self) -> None:
        if self._syncer is not None:
            self._closing.set()
            self._dirty.set()
            self._syncer.join()
        os.fdatasync(self._fd)
        os.close(self._fd)

    def record(
        self,
        *,
        rpc: str,
        identity: str,
        organisation: str,
        roles: Iterable[str],
        zone: str,
        ruleset_revision: str,
        snapshot_id: str,
        pairs: int,
        outcomes: Mapping[str, int],
        keys: KeyBatch,
        status: str = "OK",
        now: dt.datetime | None = None,
    ) -> str:
        """Append and fsync one record; returns its hash (the audit id)."""
        when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds")
        blob = b"".join(keys.parts)
        with self._lock:
            seq = self._seq + 1
            rec: dict[str, Any] = {
                "seq": seq,
                "ts": when,
                "prev": self._prev,
                "rpc": rpc,
                "identity": identity,
                "organisation": organisation,
                "roles": sorted(roles),
                "zone": zone,
                "ruleset_revision": ruleset_revision,
                "snapshot_id": snapshot_id,
                "pairs": pairs,
                "outcomes": dict(sorted(outcomes.items())),
                "status": status,
                "keys_count": keys.count,
                "keys_sha256": hashlib.sha256(blob).hexdigest(),
            }
            if keys.count <= self.inline_keys:
                rec["keys"] = [
                    blob[i : i + KEY_BYTES].hex() for i in range(0, len(blob), KEY_BYTES)
                ]
            else:
                rec["keys_file"] = self._write_sidecar(seq, blob)
            body = _canonical(rec)  # what the hash covers (see `record_hash`)
            digest = hashlib.sha256(body).hexdigest()
            # the line is the hashed body with the hash appended: one JSON encoding per call
            line = body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
            if self._offset + len(line) > self._size:
                self._extend(self._offset + len(line))
            _write_all(self._fd, line, self._offset)  # over zeros: the size does not change
            if self._syncer is None:
                os.fdatasync(self._fd)
            else:
                self._dirty.set()
            self._offset += len(line)
            self._prev, self._seq = digest, seq
            return digest

    def _write_sidecar(self, seq: int, blob: bytes) -> str:
        self.keys_dir.mkdir(exist_ok=True)
        name = f"{seq:012d}.bin"
        fd = os.open(self.keys_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, blob, 0)
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return f"{self.keys_dir.name}/{name}"


def _is_padding(raw: bytes) -> bool:
    return raw[:1] == b"\0" and not raw.strip(b"\0\n")


def _data_after(fh: IO[bytes]) -> bool:
    return any(block.strip(b"\0\n") for block in iter(lambda: fh.read(_TAIL_BLOCK), b""))


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of each record of an audit file, stopping at the zero padding.

    Raises ValueError at a line that is not a JSON object; `verify` checks a file thoroughly."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if _is_padding(raw):
                return
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError(f"{path.name}:{lineno}: not an audit record")
            yield lineno, rec


def verify(path: Path) -> list[str]:
    """Check one audit file's chain and sidecars; returns the problems found (empty = intact)."""
    problems: list[str] = []
    prev, seq = GENESIS, 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path.name}:{lineno}"
            if _is_padding(raw):  # the zeros ahead of the next record: nothing may follow
                if _data_after(fh):
                    problems.append(f"{where}: data after the zero padding (edited)")
                break
            try:
                rec = json.loads(raw)  # a NUL anywhere in a record fails here
            except ValueError:
                problems.append(f"{where}: not a JSON record (truncated or edited)")
                break
            if not isinstance(rec, dict) or "hash" not in rec:
                problems.append(f"{where}: not an audit record")
                break
            if rec.get("prev") != prev:
                problems.append(f"{where}: chain broken (previous hash does not match)")
            if rec.get("seq") != seq + 1:
                problems.append(f"{where}: sequence {rec.get('seq')} after {seq}")
            if record_hash(rec) != rec["hash"]:
                problems.append(f"{where}: record content does not match its hash")
            problems.extend(_verify_keys(path.parent, rec, where))
            prev, seq = rec["hash"], int(rec.get("seq", seq + 1))
    return problems


def _verify_keys(base: Path, rec: Mapping[str, Any], where: str) -> list[str]:
    if "keys_file" in rec:
        try:
            blob = (base / str(rec["keys_file"])).read_bytes()
        except OSError:
            return [f"{where}: keys file {rec['keys_file']} is missing"]
    else:
        blob = b"".join(bytes.fromhex(k) for k in rec.get("keys", []))
    if hashlib.sha256(blob).hexdigest() != rec.get("keys_sha256"):
        return [f"{where}: the consulted keys do not match their digest"]
    return []
