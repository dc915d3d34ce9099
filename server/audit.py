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
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

GENESIS: Final = "0" * 64
KEY_BYTES: Final = 16
_TAIL_BLOCK: Final = 1 << 16


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


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


def _last_line(path: Path) -> bytes | None:
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        if end == 0:
            return None
        block = min(end, _TAIL_BLOCK)
        while True:
            fh.seek(end - block)
            data = fh.read(block).rstrip(b"\n")
            cut = data.rfind(b"\n")
            if cut >= 0 or block == end:
                return data[cut + 1 :]
            block = min(end, block * 2)


class AuditLog:
    """Appends hash-chained records to one file; thread-safe within a process."""

    def __init__(
        self,
        directory: Path,
        *,
        worker: int = 0,
        inline_keys: int = 64,
        sync_window_s: float = 0.0,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"audit-w{worker}.jsonl"
        self.keys_dir = directory / f"audit-w{worker}-keys"
        self.inline_keys = inline_keys
        self._lock = threading.Lock()
        self._prev = GENESIS
        self._seq = 0
        if self.path.exists():
            last = _last_line(self.path)
            if last:
                rec = json.loads(last)
                self._prev, self._seq = str(rec["hash"]), int(rec["seq"])
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # 0: sync each record before returning. > 0: a background thread syncs written records
        # within the window; `close` syncs whatever is left.
        self.sync_window_s = sync_window_s
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._syncer: threading.Thread | None = None
        if sync_window_s > 0:
            self._syncer = threading.Thread(target=self._sync_loop, name="audit-sync", daemon=True)
            self._syncer.start()

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
            rec["hash"] = digest
            # the line is the hashed body with the hash appended: one JSON encoding per call
            os.write(self._fd, body[:-1] + b',"hash":"' + digest.encode() + b'"}\n')
            if self._syncer is None:
                os.fdatasync(self._fd)
            else:
                self._dirty.set()
            self._prev, self._seq = rec["hash"], seq
            return str(rec["hash"])

    def _write_sidecar(self, seq: int, blob: bytes) -> str:
        self.keys_dir.mkdir(exist_ok=True)
        name = f"{seq:012d}.bin"
        fd = os.open(self.keys_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return f"{self.keys_dir.name}/{name}"


def verify(path: Path) -> list[str]:
    """Check one audit file's chain and sidecars; returns the problems found (empty = intact)."""
    problems: list[str] = []
    prev, seq = GENESIS, 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path.name}:{lineno}"
            try:
                rec = json.loads(raw)
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
