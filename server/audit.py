"""The append-only, keyed hash-chained audit log of every consultation (docs/audit.md).

One JSON line per call: who (certificate identity, organisation, roles), when, which call, zone,
rule revision, snapshot, number of pairs, outcome counts, the status, and the pseudonymised keys
consulted: inline as hex for small calls, otherwise in a sidecar file of raw 16-byte keys whose
SHA-256 the record holds. Never a plate. Each record carries the hash of the previous one
(`prev`) and its own `hash`: an HMAC-SHA256 of its canonical JSON under the audit chain key
(`server.audit_keys`; the record's `chain` field names the key), so editing, removing or
reordering a record (or a sidecar) breaks the chain, and an editor without the audit secret
cannot recompute it. Signed checkpoints of the chain head (`server.audit_checkpoints`), written
by a background thread after a file's first record, then every `checkpoint_every_records`
records or `checkpoint_every_s` seconds, and when the file is opened and closed, catch what a
chain alone cannot: records cut off the end, an emptied file. `server.audit_verify` checks
both. Records written before the chain was keyed (no `chain` field, a plain SHA-256 `hash`) are
continued by keyed records, which anchor them.

A record is written and fsynced before the call's answer completes: one write per call, never
one per pair, and no other sync on that path (checkpoints are synced by their own thread).
(`sync_window_s` > 0 trades that for speed: the record is still written before the answer, so
a killed process loses nothing, and synced within the window.)

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
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from lez.errors import AuditClosed, AuditKeyError
from lez.keys import KEY_BYTES
from server.audit_checkpoints import Checkpoint, CheckpointFile, last_checkpoint, sign_checkpoint
from server.audit_keys import AuditKeys

log = logging.getLogger("lez.server")

GENESIS: Final = "0" * 64
_TAIL_BLOCK: Final = 1 << 16
_ZEROS: Final = bytes(1 << 20)  # written in pieces of at most this much
PREALLOCATE_BYTES: Final = 8 << 20
CHECKPOINT_EVERY_RECORDS: Final = 1000
CHECKPOINT_EVERY_S: Final = 60.0
CHECKPOINTS_DIR: Final = "checkpoints"
"""Default checkpoint directory, inside the audit directory."""


_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, ASCII only: the bytes a record's hash covers."""
    return _CANONICAL.encode(record).encode()


def record_body(record: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a record without its own `hash` field: what the hash covers."""
    return canonical_json({k: v for k, v in record.items() if k != "hash"})


def record_hash(record: Mapping[str, Any]) -> str:
    """Unkeyed SHA-256 of a record's body: the `hash` of records written before keyed chains."""
    return hashlib.sha256(record_body(record)).hexdigest()


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
    """Appends keyed, hash-chained records to one file and checkpoints its head; thread-safe
    within a process."""

    def __init__(
        self,
        directory: Path,
        *,
        keys: AuditKeys,
        worker: int = 0,
        inline_keys: int = 64,
        sync_window_s: float = 0.0,
        preallocate_bytes: int = PREALLOCATE_BYTES,
        checkpoint_dir: Path | None = None,
        checkpoint_every_records: int = CHECKPOINT_EVERY_RECORDS,
        checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    ) -> None:
        if preallocate_bytes <= 0:
            raise ValueError("preallocate_bytes must be positive")
        if checkpoint_every_records <= 0 or checkpoint_every_s <= 0:
            raise ValueError("checkpoint_every_records and checkpoint_every_s must be positive")
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"audit-w{worker}.jsonl"
        self.keys_dir = directory / f"audit-w{worker}-keys"
        self.keys = keys
        self.inline_keys = inline_keys
        self.preallocate_bytes = preallocate_bytes
        self.checkpoint_every_records = checkpoint_every_records
        self.checkpoint_every_s = checkpoint_every_s
        self._chain = keys.chain
        self.on_write: Callable[[float], None] | None = None
        """Told how long each record took to write durably, in seconds (the metrics)."""
        self._lock = threading.Lock()
        self._prev = GENESIS
        self._seq = 0
        self._last_chain: str | None = None  # `chain` of the last record on opening
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._size = os.fstat(self._fd).st_size  # allocated: records, then zeros
            self._offset = self._open_tail()  # where the next record goes
            self._check_chain_key()
            if self._size - self._offset < self.preallocate_bytes // 2:
                # grow now rather than inside the first call that would not fit
                self._extend(self._offset + self.preallocate_bytes // 2)
            self.checkpoints = CheckpointFile(
                checkpoint_dir or directory / CHECKPOINTS_DIR, self.path.name
            )
        except BaseException:
            os.close(self._fd)
            raise
        # 0: sync each record before returning. > 0: a background thread syncs written records
        # within the window; `close` syncs whatever is left.
        self.sync_window_s = sync_window_s
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._closed = False  # set under `_lock` by `close`
        self._syncer: threading.Thread | None = None
        if sync_window_s > 0:
            self._syncer = threading.Thread(target=self._sync_loop, name="audit-sync", daemon=True)
            self._syncer.start()
        # Checkpoints: one now (the head as found), then by the checkpoint thread, never inline.
        self._checkpoint_lock = threading.Lock()
        self._checkpointed = 0  # the records the last checkpoint covers
        self._checkpoint_due = threading.Event()
        self._compare_with_last_checkpoint()
        self.checkpoint()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="audit-checkpoint", daemon=True
        )
        self._checkpointer.start()

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
            self._last_chain = str(rec["chain"]) if "chain" in rec else None
        return end

    def _check_chain_key(self) -> None:
        """Refuse a file chained with another audit key; note a legacy (unkeyed) one."""
        if self._seq == 0 or self._last_chain == self._chain:
            return
        if self._last_chain is None:
            log.warning(
                "audit log %s: its %d records were chained without a key (written before keyed "
                "audit chains); continuing it with keyed records, which anchor them from now on",
                self.path.name,
                self._seq,
            )
            return
        raise AuditKeyError(
            f"audit log {self.path} is chained with audit key {self._last_chain.split(':')[-1]}, "
            f"the audit key file gives {self.keys.key_id}; start the server with the audit key "
            "the log was written with (--audit-key-file), or move this audit directory aside"
        )

    def _compare_with_last_checkpoint(self) -> None:
        """Log loudly when the file no longer matches its last signed checkpoint (it was cut or
        rewritten while the server was down); `verify-audit` says exactly how."""
        last = last_checkpoint(self.checkpoints.path)
        if last is None:
            return
        self._checkpointed = min(last.records, self._seq)
        if last.records > self._seq:
            log.error(
                "audit log %s holds %d records but its checkpoint signed at %s covers %d: "
                "records were removed; run `lez-server verify-audit`",
                self.path.name,
                self._seq,
                last.ts,
                last.records,
            )
        elif last.records == self._seq and last.head != self._prev:
            log.error(
                "audit log %s: its last record is not the one signed at %s: the file was "
                "rewritten; run `lez-server verify-audit`",
                self.path.name,
                last.ts,
            )

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

    def _checkpoint_loop(self) -> None:
        while not self._closing.is_set():
            self._checkpoint_due.wait(self.checkpoint_every_s)
            self._checkpoint_due.clear()
            if not self._closing.is_set():
                self.checkpoint()

    def checkpoint(self) -> Checkpoint | None:
        """Sign and write a checkpoint of the head now, if records were added since the last
        one; returns it (None when there was nothing new)."""
        with self._checkpoint_lock:
            with self._lock:
                records, head = self._seq, self._prev
            if records <= self._checkpointed:
                return None
            if self._syncer is not None:
                os.fdatasync(self._fd)  # never sign records that are not on disk yet
            cp = sign_checkpoint(self.keys, file=self.path.name, records=records, head=head)
            self.checkpoints.append(cp)
            self._checkpointed = records
            return cp

    def close(self) -> None:
        self._closing.set()
        self._checkpoint_due.set()
        self._checkpointer.join()
        if self._syncer is not None:
            self._dirty.set()
            self._syncer.join()
        os.fdatasync(self._fd)
        self.checkpoint()
        with self._lock:  # a call finishing after this is refused, never written to a stale fd
            self._closed = True
        self.checkpoints.close()
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
        purpose: str = "",
        request_id: str = "",
        now: dt.datetime | None = None,
    ) -> str:
        """Append and fsync one record; returns its hash (the audit id). `purpose` (why the
        register was consulted, `server.auth.Purpose`) and `request_id` (the call's,
        `server.calls`) are recorded when given."""
        when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="microseconds")
        blob = b"".join(keys.parts)
        with self._lock:
            if self._closed:  # its descriptor may already belong to another file or socket
                raise AuditClosed("the server is stopping: its audit log is closed")
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
                "chain": self._chain,
                "ruleset_revision": ruleset_revision,
                "snapshot_id": snapshot_id,
                "pairs": pairs,
                "outcomes": dict(sorted(outcomes.items())),
                "status": status,
                "keys_count": keys.count,
                "keys_sha256": hashlib.sha256(blob).hexdigest(),
            }
            if purpose:
                rec["purpose"] = purpose
            if request_id:
                rec["request_id"] = request_id
            if keys.count <= self.inline_keys:
                rec["keys"] = [
                    blob[i : i + KEY_BYTES].hex() for i in range(0, len(blob), KEY_BYTES)
                ]
            else:
                rec["keys_file"] = self._write_sidecar(seq, blob)
            body = canonical_json(rec)  # what the hash covers (see `record_body`)
            digest = self.keys.mac(body)
            # the line is the hashed body with the hash appended: one JSON encoding per call
            line = body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
            started = time.perf_counter()
            if self._offset + len(line) > self._size:
                self._extend(self._offset + len(line))
            _write_all(self._fd, line, self._offset)  # over zeros: the size does not change
            if self._syncer is None:
                os.fdatasync(self._fd)
            else:
                self._dirty.set()
            if self.on_write is not None:
                self.on_write(time.perf_counter() - started)
            self._offset += len(line)
            self._prev, self._seq = digest, seq
            if seq - self._checkpointed >= self.checkpoint_every_records or not self._checkpointed:
                self._checkpoint_due.set()  # the checkpoint thread signs it, off this path
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


def is_padding(raw: bytes) -> bool:
    """Whether a line read from an audit file is the zero padding after the records."""
    return raw[:1] == b"\0" and not raw.strip(b"\0\n")


def data_after(fh: IO[bytes]) -> bool:
    """Whether anything but NULs and newlines follows in `fh` (data after the padding)."""
    return any(block.strip(b"\0\n") for block in iter(lambda: fh.read(_TAIL_BLOCK), b""))


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of each record of an audit file, stopping at the zero padding.

    Raises ValueError at a line that is not a JSON object; `server.audit_verify` checks a file
    thoroughly."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if is_padding(raw):
                return
            rec = json.loads(raw)
            if not isinstance(rec, dict):
                raise ValueError(f"{path.name}:{lineno}: not an audit record")
            yield lineno, rec
