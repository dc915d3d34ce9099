"""The append-only, keyed hash-chained audit log of every consultation (docs/audit.md).

One JSON line per call, or per answered chunk of a `CheckStream` plus one closing line saying
how the stream ended: who (certificate identity, organisation, roles), when, which call, zone,
rule revision, snapshot, number of pairs, outcome counts, each pair's outcome (`pair_outcomes`,
packed), the status, and the pseudonymised keys consulted: inline as hex for small calls,
otherwise in the series' key log of raw 16-byte keys (`server.audit_key_log`: file, offset,
count), whose SHA-256 the record holds. Never a plate.
Each record carries the hash of the previous one (`prev`) and its own `hash`: an HMAC-SHA256
of its canonical JSON under the audit chain key (`server.audit_keys`; the record's `chain` field
names the key), so editing, removing or reordering a record (or its keys) breaks the chain, and
an editor without the audit secret cannot recompute it. Signed checkpoints of the chain head
(`server.audit_checkpoints`), written by a background thread after a series' first record, then
every `checkpoint_every_records` records or `checkpoint_every_s` seconds, at rotation, and when
the log is opened and closed, catch what a chain alone cannot: records cut off the end, an
emptied file. `server.audit_verify` checks both. Records written before the chain was keyed (no
`chain` field, a plain SHA-256 `hash`) are continued by keyed records, which anchor them.

**Durability.** `append` writes a record (one `pwrite`, never one per pair; a big call's keys
go to the key log first); `sync_through` makes every record up to a sequence number durable
with one flush (group commit: the key logs written since the last flush, then the records file;
calls whose records were written while a flush was running share the next one). A call's answer is
sent only after its record is durable (`durable` in the servicer's event loop, `sync_through`
on an audit thread for a stream chunk); `record` does both for synchronous callers. (`sync_window_s`
> 0 trades that for speed: the record is still written before the answer, so a killed process
loses nothing, and synced within the window.) A failed write or sync stops the log
(`AuditFailed`): no call of this process is answered after it.

**Series and rotation.** Each worker process appends to its own series (`audit-w<N>`), so no
lock is shared between processes; a restarted worker continues its series' chain. The active
file is `audit-w<N>.jsonl`; when it would pass `rotate_bytes`, or a record of a new UTC day
arrives (`rotate_daily`), it is synced, cut to its records and renamed `audit-w<N>.<first
seq>.jsonl`, and the chain goes on in a new active file (`seq` and `prev` carry across).
Retention (`retention_days`) removes the oldest rotated files whose last record is older than
that, never the active one and never a gap: before removing, it appends an `AuditRetention`
record naming them and the last sequence number removed, so `verify-audit` can tell retention
from a deleted file.

The file is grown ahead of its records in zero-filled chunks (`preallocate_bytes`, fsynced once
each), so it ends in a run of NUL bytes after the last record: a record then overwrites zeros
without changing the file's size, and its fdatasync flushes data only, no metadata (on ext4
about 0.1 ms instead of 0.15-0.2 ms after an append; PostgreSQL pre-zeroes WAL segments for the
same reason). Readers stop at the padding (`read_records`). On opening, bytes after the last
complete line are a torn record whose call was never answered: they are zeroed (with a warning)
and writing resumes there.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
from blake3 import blake3

from lez.durable_io import fsync_dir, write_all
from lez.errors import AuditClosed, AuditFailed, AuditKeyError
from lez.keys import KEY_BYTES
from server.audit_checkpoints import Checkpoint, CheckpointFile, last_checkpoint, sign_checkpoint
from server.audit_key_log import KeyLog
from server.audit_keys import AuditKeys
from server.record_template import RecordTemplate, encode_text

log = logging.getLogger("lez.server")

GENESIS: Final = "0" * 64
_TAIL_BLOCK: Final = 1 << 16
_ZEROS: Final = bytes(1 << 20)  # written in pieces of at most this much
PREALLOCATE_BYTES: Final = 8 << 20
CHECKPOINT_EVERY_RECORDS: Final = 1000
CHECKPOINT_EVERY_S: Final = 60.0
CHECKPOINTS_DIR: Final = "checkpoints"
"""Default checkpoint directory, inside the audit directory."""
RETENTION_RPC: Final = "AuditRetention"
"""The `rpc` of the record that states which rotated files retention removed."""
PAIR_OUTCOMES_PREFIX: Final = "nib+b64:"
ZLIB_PAIR_OUTCOMES_PREFIX: Final = "zlib+b64:"
"""The packing of `pair_outcomes` in records written before the nibble packing."""
_NIBBLE_PAD: Final = 15
_ROTATED: Final = re.compile(r"^(audit-w\d+)\.(\d+)\.jsonl$")
_ACTIVE: Final = re.compile(r"^(audit-w\d+)\.jsonl$")
_RECORD_FIELDS: Final = frozenset(
    {"seq", "ts", "prev", "rpc", "identity", "organisation", "roles", "zone", "chain", "hash"}
    | {"ruleset_revision", "snapshot_id", "pairs", "outcomes", "status", "keys_count"}
    | {"keys_blake3", "keys_sha256", "keys", "keys_file", "keys_offset", "pair_outcomes"}
)


_VARYING: Final = ("ts", "pairs", "outcomes", "keys_count", "keys_blake3", "keys", "seq", "prev")
"""The fields in which records written through one template differ (`AuditLog._template`);
`request_id` too when the records have one."""
_TEMPLATES_KEPT: Final = 256


_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """`_CANONICAL`'s C encoder, made once (`JSONEncoder.encode` makes a new one for every
    record: about 1 us of a single check's 4 us of encoding); None without the C accelerator."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    options = (":", ",", True, False, True)  # separators, sort_keys, skipkeys, allow_nan
    encoder: Callable[[Any, int], Any] = make(
        None, _CANONICAL.default, json.encoder.encode_basestring_ascii, None, *options
    )
    return encoder


_C_ENCODER: Final = _c_encoder()


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, ASCII only: the bytes a record's hash covers."""
    if _C_ENCODER is not None and type(record) is dict:
        return "".join(_C_ENCODER(record, 0)).encode()
    return _CANONICAL.encode(record).encode()


def record_body(record: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a record without its own `hash` field: what the hash covers."""
    return canonical_json({k: v for k, v in record.items() if k != "hash"})


def record_hash(record: Mapping[str, Any]) -> str:
    """Unkeyed SHA-256 of a record's body: the `hash` of records written before keyed chains."""
    return hashlib.sha256(record_body(record)).hexdigest()


def _key_hexes(blob: bytes) -> list[str]:
    """A record's inline `keys`: each 16-byte key of `blob` in hex."""
    return [blob[i : i + KEY_BYTES].hex() for i in range(0, len(blob), KEY_BYTES)]


def _keys_text(blob: bytes) -> str:
    """A record's inline `keys` as the record encoder writes them."""
    return "[" + ",".join(f'"{key}"' for key in _key_hexes(blob)) + "]"


@functools.lru_cache(maxsize=_TEMPLATES_KEPT)
def _outcomes_text(outcomes: tuple[tuple[str, int], ...]) -> str:
    """A record's `outcomes` (as items) as the record encoder writes them (kept: a worker's
    records hold a few distinct values)."""
    return canonical_json(dict(outcomes)).decode("ascii")


def keys_digest(blob: bytes) -> str:
    """The `keys_blake3` of a record: BLAKE3-256 of its keys, concatenated, in hex (binds the
    keys, inline or in the key log, to the chained record). BLAKE3 rather than SHA-256 for its
    cost: a 50,000-pair chunk's 800 KB of fresh keys took 0.15 ms against 0.71 ms (median of 35
    chunks, one thread's processor time, the bench machine: SHA-256 with the processor's SHA
    instructions), which saves about 5.6 ms of processor time in each audited 500,000-pair
    stream (10 chunks).
    Records written before it hold `keys_sha256` instead (`server.audit_verify` checks both)."""
    return blake3(blob).hexdigest()


def encode_pair_outcomes(outcomes: bytes) -> str:
    """Each pair's outcome (one byte each, in the call's order) as the record holds it: two
    outcomes a byte (high nibble first; an odd count ends in the nibble 15), in base64. About
    0.05 ms for a 50,000-pair chunk, where zlib took 0.43 ms for a text 40% shorter."""
    column = np.frombuffer(outcomes, dtype=np.uint8)
    if len(column) and int(column.max()) >= _NIBBLE_PAD:
        raise ValueError(f"an outcome does not fit a nibble: {int(column.max())}")
    if len(column) % 2:
        column = np.append(column, np.uint8(_NIBBLE_PAD))
    packed = (column[0::2] << 4) | column[1::2]
    return PAIR_OUTCOMES_PREFIX + base64.b64encode(packed.tobytes()).decode()


def decode_pair_outcomes(text: str) -> bytes:
    """The outcome bytes of a record's `pair_outcomes` (ValueError when it is not one); reads
    the zlib packing of records written before the nibble packing too."""
    try:
        if text.startswith(PAIR_OUTCOMES_PREFIX):
            packed = np.frombuffer(
                base64.b64decode(text[len(PAIR_OUTCOMES_PREFIX) :], validate=True), np.uint8
            )
            column = np.empty(2 * len(packed), dtype=np.uint8)
            column[0::2], column[1::2] = packed >> 4, packed & 0x0F
            if len(column) and column[-1] == _NIBBLE_PAD:
                column = column[:-1]
            return column.tobytes()
        if text.startswith(ZLIB_PAIR_OUTCOMES_PREFIX):
            data = base64.b64decode(text[len(ZLIB_PAIR_OUTCOMES_PREFIX) :], validate=True)
            return zlib.decompress(data)
    except (zlib.error, ValueError) as exc:
        raise ValueError(f"not a packed outcome column: {exc}") from None
    raise ValueError("not a packed outcome column")


# ---- series of files ------------------------------------------------------------------------


def series_name(worker: int) -> str:
    """The name of worker `worker`'s series of audit files."""
    return f"audit-w{worker}"


def rotated_name(series: str, first_seq: int) -> str:
    """The name of a rotated file of `series` whose first record is `first_seq`."""
    return f"{series}.{first_seq:012d}.jsonl"


def series_of(name: str) -> str | None:
    """The series an audit file name belongs to (None: not an audit file name)."""
    found = _ACTIVE.match(name) or _ROTATED.match(name)
    return found.group(1) if found else None


def series_files(directory: Path, series: str) -> list[Path]:
    """The files of a series, oldest first: the rotated ones by first sequence number, then the
    active one (when it exists)."""
    rotated = []
    for path in directory.glob(f"{series}.*.jsonl"):
        found = _ROTATED.match(path.name)
        if found and found.group(1) == series:
            rotated.append((int(found.group(2)), path))
    files = [p for _, p in sorted(rotated)]
    active = directory / f"{series}.jsonl"
    if active.exists():
        files.append(active)
    return files


def keys_dir_of(directory: Path, series: str) -> Path:
    """The directory of a series' key logs."""
    return directory / f"{series}-keys"


@dataclass(slots=True)
class KeyBatch:
    """The keys one call consulted, gathered chunk by chunk (no per-pair work)."""

    parts: list[bytes] = field(default_factory=list)
    count: int = 0

    def add(self, keys: bytes) -> None:
        if keys:
            self.parts.append(keys)
            self.count += len(keys) // KEY_BYTES


@dataclass(frozen=True, slots=True)
class Appended:
    """A record written to the file (durable once `AuditLog.sync_through(seq)` returned)."""

    seq: int
    audit_id: str


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


def _first_line(fd: int, end: int) -> bytes:
    """The first line of a file's first `end` bytes (without its newline)."""
    out = b""
    offset = 0
    while offset < end:
        block = os.pread(fd, min(_TAIL_BLOCK, end - offset), offset)
        cut = block.find(b"\n")
        if cut >= 0:
            return out + block[:cut]
        out, offset = out + block, offset + len(block)
    return out


def last_record(path: Path) -> dict[str, Any] | None:
    """The last complete record of an audit file (None when it holds none)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        end, _ = _tail(fd, os.fstat(fd).st_size)
        while end > 0:
            start = _line_start(fd, end - 1)
            line = os.pread(fd, end - start, start)
            if line.strip() and b"\0" not in line:
                rec = json.loads(line)
                return rec if isinstance(rec, dict) else None
            end = start
        return None
    finally:
        os.close(fd)


def _zero(fd: int, start: int, end: int) -> None:
    while start < end:
        piece = min(end - start, len(_ZEROS))
        write_all(fd, memoryview(_ZEROS)[:piece], start)
        start += piece


def _day_of(ts: str) -> dt.date | None:
    try:
        return dt.datetime.fromisoformat(ts).astimezone(dt.UTC).date()
    except ValueError:
        return None


class RecordClock:
    """The time of each record: its `ts` text, as `datetime.now(UTC).isoformat(timespec=
    "microseconds")` writes it, and its UTC day (for daily rotation). The date and time of day
    are formatted once a second; each record adds its microseconds. (Taking a `datetime` and
    formatting it cost about 9 us of a single check's 44 us record under one sequential caller,
    py-spy on a worker of the bench's 8M store.) Thread-safe: a second's text and day are
    replaced together."""

    def __init__(self) -> None:
        self._second: tuple[int, str, dt.date] = (-1, "", dt.date.min)

    def stamp(self, micros: int | None = None) -> tuple[str, dt.date]:
        """(`ts`, UTC day) of now, or of `micros` microseconds since the epoch."""
        if micros is None:
            micros = time.time_ns() // 1000
        second, micro = divmod(micros, 1_000_000)
        held = self._second
        if held[0] != second:
            moment = dt.datetime.fromtimestamp(second, dt.UTC)
            held = (second, moment.strftime("%Y-%m-%dT%H:%M:%S."), moment.date())
            self._second = held
        return f"{held[1]}{micro:06d}+00:00", held[2]


class AuditLog:
    """Appends keyed, hash-chained records to one worker's series of files and checkpoints its
    head; thread-safe within a process."""

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
        rotate_bytes: int = 0,
        rotate_daily: bool = False,
        retention_days: int = 0,
    ) -> None:
        if preallocate_bytes <= 0:
            raise ValueError("preallocate_bytes must be positive")
        if checkpoint_every_records <= 0 or checkpoint_every_s <= 0:
            raise ValueError("checkpoint_every_records and checkpoint_every_s must be positive")
        if rotate_bytes < 0 or retention_days < 0:
            raise ValueError("rotate_bytes and retention_days must not be negative")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.series = series_name(worker)
        self.path = directory / f"{self.series}.jsonl"
        self.keys_dir = keys_dir_of(directory, self.series)
        self.keys = keys
        self.inline_keys = inline_keys
        self.preallocate_bytes = preallocate_bytes
        self.checkpoint_every_records = checkpoint_every_records
        self.checkpoint_every_s = checkpoint_every_s
        self.rotate_bytes = rotate_bytes
        self.rotate_daily = rotate_daily
        self.retention_days = retention_days
        self._chain = keys.chain
        self.on_write: Callable[[float], None] | None = None
        """Told how long each flush took to make records durable, in seconds (the metrics)."""
        self._lock = threading.Lock()  # the file's tail: offset, seq, prev
        self._clock = RecordClock()
        self._sync_lock = threading.Lock()  # one flush at a time
        self._prev = GENESIS
        self._templates: dict[tuple[Any, ...], RecordTemplate] = {}
        self._seq = 0
        self._synced = 0  # every record up to this seq is on disk
        self._failed: BaseException | None = None
        self._retired: list[int] = []  # descriptors of rotated files, closed by the next flush
        self._key_log: KeyLog | None = None  # named by the first big call of each audit file
        self._retired_key_logs: list[KeyLog] = []  # synced and closed by the next flush
        self._file_first_seq: int | None = None  # seq of the active file's first record
        self._file_day: dt.date | None = None  # UTC day of the active file's first record
        self._last_chain: str | None = None  # `chain` of the last record on opening
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._size = os.fstat(self._fd).st_size  # allocated: records, then zeros
            self._offset = self._open_tail()  # where the next record goes
            self._synced = self._seq
            self._next_checkpoint_at = self._seq + 1  # the first record: checkpointed at once
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
        # 0: every record is synced before its answer. > 0: a background thread syncs written
        # records within the window; `close` syncs whatever is left.
        self.sync_window_s = sync_window_s
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._closed = False  # set under `_lock` by `close`
        self._syncer: threading.Thread | None = None
        # `durable`'s flushes when other calls are in progress: one thread, so that a flush
        # queued behind a running one finds its record covered and returns at once
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="audit-flush")
        if sync_window_s > 0:
            self._syncer = threading.Thread(target=self._sync_loop, name="audit-sync", daemon=True)
            self._syncer.start()
        # Checkpoints: one now (the head as found), then by the checkpoint thread, never inline.
        self._checkpoint_lock = threading.Lock()
        self._checkpointed = 0  # the records the last checkpoint covers
        self._checkpoint_due = threading.Event()
        self._retention_due = retention_days > 0
        self._retention_lock = threading.Lock()
        self._compare_with_last_checkpoint()
        self.checkpoint()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="audit-checkpoint", daemon=True
        )
        self._checkpointer.start()
        if self._retention_due:
            self._checkpoint_due.set()  # retention of what expired while the server was down

    # -- opening --

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
            first = json.loads(_first_line(self._fd, end))
            self._file_first_seq = int(first["seq"])
            self._file_day = _day_of(str(first.get("ts", "")))
        else:  # an empty active file: the chain goes on from the last rotated file, if any
            rotated = [p for p in series_files(self.directory, self.series) if p != self.path]
            found = last_record(rotated[-1]) if rotated else None
            rec = found if found is not None else {}
        if rec:
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
        """Log loudly when the series no longer matches its last signed checkpoint (it was cut
        or rewritten while the server was down); `verify-audit` says exactly how."""
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

    # -- background threads --

    def _sync_loop(self) -> None:
        while not self._closing.is_set():
            self._dirty.wait()
            self._closing.wait(self.sync_window_s)  # gather the window's records
            self._dirty.clear()
            try:
                self.sync_through(self._seq)
            except AuditClosed:
                return

    def _checkpoint_loop(self) -> None:
        while not self._closing.is_set():
            self._checkpoint_due.wait(self.checkpoint_every_s)
            self._checkpoint_due.clear()
            if self._closing.is_set():
                return
            try:
                self.checkpoint()
                if self._retention_due:
                    self._retention_due = False
                    self.apply_retention()
            except AuditClosed:
                return
            except OSError:
                log.exception("audit log %s: checkpoint or retention failed", self.path.name)

    def checkpoint(self) -> Checkpoint | None:
        """Sign and write a checkpoint of the head now, if records were added since the last
        one; returns it (None when there was nothing new)."""
        with self._checkpoint_lock:
            with self._lock:
                records, head = self._seq, self._prev
                if records <= self._checkpointed:  # nothing new: the next record still counts
                    return None
                if records >= self._next_checkpoint_at - 1:  # a checkpoint by time
                    self._next_checkpoint_at = records + self.checkpoint_every_records
            self.sync_through(records)  # never sign records that are not on disk yet
            cp = sign_checkpoint(self.keys, file=self.path.name, records=records, head=head)
            self.checkpoints.append(cp)
            self._checkpointed = records
            return cp

    def close(self) -> None:
        self._closing.set()
        self._checkpoint_due.set()
        self._dirty.set()
        self._flusher.shutdown(wait=True)  # queued flushes run (a record written is flushed)
        self._checkpointer.join()
        if self._syncer is not None:
            self._syncer.join()
        if self._failed is None:
            with self._lock:
                self._retire_key_log()
            self.sync_through(self._seq)
            self.checkpoint()
        with self._sync_lock, self._lock:  # a call finishing after this is refused
            self._closed = True
            open_logs = [*self._retired_key_logs, self._key_log]  # active: after a failure
            key_logs = [k.fd for k in open_logs if k is not None and k.fd >= 0]
            for fd in [*self._retired, *key_logs, self._fd]:
                os.close(fd)
            self._retired, self._retired_key_logs, self._key_log = [], [], None
        self.checkpoints.close()

    # -- durability --

    def _fail(self, exc: OSError, what: str) -> AuditFailed:
        self._failed = exc
        log.error("audit log %s: %s failed (%s): no further call is answered", self.path, what, exc)
        return AuditFailed(
            f"the audit record could not be made durable ({what} failed): the call is not "
            "answered; retry on another worker or replica"
        )

    def _check_usable(self) -> None:
        """Under `_lock`: raise when the log may no longer be written."""
        if self._closed:  # its descriptor may already belong to another file or socket
            raise AuditClosed("the server is stopping: its audit log is closed")
        if self._failed is not None:
            raise AuditFailed(
                "the audit log failed earlier in this process: no call is answered without a "
                "durable record; retry on another worker or replica"
            )

    def sync_through(self, seq: int, *, report_soon: bool = False) -> None:
        """Return once every record up to `seq` is on disk: one fdatasync covers every record
        written before it started (group commit). Raises AuditFailed when the disk refuses.
        The flush's time goes to `on_write`: at once, or with `report_soon` (in an event loop)
        at the loop's next turn, so that the answer waiting on the flush does not wait for the
        metric too."""
        if self._synced >= seq:
            return
        with self._sync_lock:
            if self._synced >= seq:
                return
            with self._lock:
                self._check_usable()
                target, fd = self._seq, self._fd
                retired, self._retired = self._retired, []
                done_logs, self._retired_key_logs = self._retired_key_logs, []
                key_logs = [k for k in [*done_logs, self._key_log] if k is not None and k.dirty]
                for key_log in key_logs:
                    key_log.dirty = False
            started = time.perf_counter()
            try:
                for key_log in key_logs:  # the keys before the records that name them
                    os.fdatasync(key_log.fd)
                os.fdatasync(fd)
            except OSError as exc:
                raise self._fail(exc, "fdatasync") from None
            finally:
                for old in [*retired, *(k.fd for k in done_logs)]:  # synced at rotation
                    os.close(old)
            self._synced = max(self._synced, target)
            if self.on_write is None:
                return
            seconds = time.perf_counter() - started
            if report_soon:
                asyncio.get_running_loop().call_soon(self.on_write, seconds)
            else:
                self.on_write(seconds)

    async def durable(self, seq: int, *, alone: Callable[[], bool] | None = None) -> None:
        """In an event loop: return once record `seq` is on disk (group commit).

        When `alone` says no other call is in progress in this process and no record was
        written after this one, no one is there to share the flush with: it runs here, without
        a hand-off to a thread and back (about 0.14 ms a call for a sequential caller on the
        bench machine). Otherwise calls that are ready to run write their records first (one
        turn of the loop), and the flush runs on the flusher thread: the loop goes on serving
        the other calls meanwhile, and records written during the flush ride on the next one
        (one flush for every call waiting on it). A flush run here reports its time to
        `on_write` at the loop's next turn, after the answer."""
        if self.sync_window_s > 0 or self._synced >= seq:
            return
        if alone is not None and self._seq == seq and alone():
            self.sync_through(seq, report_soon=True)
            return
        await asyncio.sleep(0)
        if self._synced >= seq:
            return
        await asyncio.get_running_loop().run_in_executor(self._flusher, self.sync_through, seq)

    # -- writing --

    def record(self, **fields: Any) -> str:
        """Append one record and make it durable (unless a sync window is set); returns its
        hash (the audit id). Takes the arguments of `append`."""
        appended = self.append(**fields)
        if self.sync_window_s <= 0:
            self.sync_through(appended.seq)
        return appended.audit_id

    def append(
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
        pair_outcomes: bytes | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Appended:
        """Write one record (not yet synced: see `sync_through`); returns its seq and hash.

        `pair_outcomes`: each consulted pair's outcome, one byte each in the keys' order.
        `extra`: more fields (a stream's id and part), never one of the record's own.
        `purpose` (why the register was consulted, `server.auth.Purpose`) and `request_id` (the
        call's, `server.calls`) are recorded when given."""
        if now is None:
            ts, day = self._clock.stamp()
        else:
            ts, day = now.isoformat(timespec="microseconds"), now.astimezone(dt.UTC).date()
        blob = b"".join(keys.parts)
        logged = keys.count > self.inline_keys  # the keys go to the key log
        template = (
            self._template(
                rpc, identity, organisation, roles, zone, ruleset_revision, snapshot_id, status,
                purpose, bool(request_id),
            )
            if extra is None and pair_outcomes is None and not logged and type(pairs) is int
            else None
        )  # fmt: skip
        if template is not None:
            encoded = {
                "ts": encode_text(ts),
                "pairs": str(pairs),
                "outcomes": _outcomes_text(tuple(outcomes.items())),
                "keys_count": str(keys.count),
                "keys_blake3": encode_text(keys_digest(blob)),
                "keys": _keys_text(blob),
            }
            if request_id:
                encoded["request_id"] = encode_text(request_id)
        else:
            fields = self._fields(
                ts, rpc, identity, organisation, roles, zone, ruleset_revision, snapshot_id,
                pairs, outcomes, keys, blob, status, purpose, request_id, pair_outcomes, extra,
                logged,
            )  # fmt: skip
        with self._lock:
            self._check_usable()
            seq = self._seq + 1
            try:
                if template is not None:
                    encoded["seq"], encoded["prev"] = str(seq), encode_text(self._prev)
                    line, digest = self._signed(template.line(encoded))
                    key_log = None
                    if self._rotation_due(day, len(line)):
                        self._rotate()  # the chain carries across: the line stays as it is
                else:
                    fields["seq"], fields["prev"] = seq, self._prev
                    key_log = self._name_keys(fields) if logged else None
                    line, digest = self._line(fields)
                    if self._rotation_due(day, len(line)):
                        self._rotate()  # a new audit file: a new key log
                        if logged:
                            key_log = self._name_keys(fields)
                            line, digest = self._line(fields)
                if key_log is not None:  # before the record; synced by the flush before it
                    key_log.append(blob)
                if self._offset + len(line) > self._size:
                    self._extend(self._offset + len(line))
                write_all(self._fd, line, self._offset)  # over zeros: the size does not change
            except OSError as exc:
                raise self._fail(exc, "write") from None
            self._offset += len(line)
            self._prev, self._seq = digest, seq
            if self._file_first_seq is None:
                self._file_first_seq, self._file_day = seq, day
            if seq >= self._next_checkpoint_at:  # the first record, then every N
                self._next_checkpoint_at = seq + self.checkpoint_every_records
                self._checkpoint_due.set()  # the checkpoint thread signs it, off this path
        if self._syncer is not None:
            self._dirty.set()
        return Appended(seq, digest)

    def _fields(
        self, ts: str, rpc: str, identity: str, organisation: str, roles: Iterable[str],
        zone: str, ruleset_revision: str, snapshot_id: str, pairs: int,
        outcomes: Mapping[str, int], keys: KeyBatch, blob: bytes, status: str, purpose: str,
        request_id: str, pair_outcomes: bytes | None, extra: Mapping[str, Any] | None,
        logged: bool,
    ) -> dict[str, Any]:  # fmt: skip
        """A record's fields but `seq` and `prev` (and the key log's place when `logged`)."""
        fields: dict[str, Any] = {
            "ts": ts,
            "rpc": rpc,
            "identity": identity,
            "organisation": organisation,
            "roles": sorted(roles),
            "zone": zone,
            "chain": self._chain,
            "ruleset_revision": ruleset_revision,
            "snapshot_id": snapshot_id,
            "pairs": pairs,
            "outcomes": dict(outcomes),  # sorted by the canonical encoding
            "status": status,
            "keys_count": keys.count,
            "keys_blake3": keys_digest(blob),
        }
        if purpose:
            fields["purpose"] = purpose
        if request_id:
            fields["request_id"] = request_id
        if pair_outcomes is not None:
            fields["pair_outcomes"] = encode_pair_outcomes(pair_outcomes)
        if extra:
            clash = _RECORD_FIELDS.intersection(extra)
            if clash:
                raise ValueError(f"extra audit fields may not replace {sorted(clash)}")
            fields.update(extra)
        if not logged:
            fields["keys"] = _key_hexes(blob)
        return fields

    def _line(self, fields: Mapping[str, Any]) -> tuple[bytes, str]:
        """A record's line and its hash: the hashed body (see `record_body`) with the hash
        appended, one JSON encoding per record."""
        return self._signed(canonical_json(fields))

    def _signed(self, body: bytes) -> tuple[bytes, str]:
        """The line of a record whose hashed body (its canonical JSON) is `body`, and its hash."""
        digest = self.keys.mac(body)
        return body[:-1] + b',"hash":"' + digest.encode() + b'"}\n', digest

    def _template(
        self, rpc: str, identity: str, organisation: str, roles: Iterable[str], zone: str,
        ruleset_revision: str, snapshot_id: str, status: str, purpose: str, request_id: bool,
    ) -> RecordTemplate:  # fmt: skip
        """The template of the records with these shared fields (made once, then kept)."""
        sorted_roles = tuple(sorted(roles))
        shape = (rpc, identity, organisation, sorted_roles, zone, ruleset_revision, snapshot_id,
                 status, purpose, request_id, self._chain)  # fmt: skip
        template = self._templates.get(shape)
        if template is None:
            if len(self._templates) >= _TEMPLATES_KEPT:
                self._templates.clear()  # callers, zones and snapshots that came and went
            shared: dict[str, Any] = {
                "rpc": rpc, "identity": identity, "organisation": organisation,
                "roles": list(sorted_roles), "zone": zone, "chain": self._chain,
                "ruleset_revision": ruleset_revision, "snapshot_id": snapshot_id,
                "status": status,
            }  # fmt: skip
            if purpose:
                shared["purpose"] = purpose
            varying = _VARYING + (("request_id",) if request_id else ())
            template = self._templates[shape] = RecordTemplate(shared, varying, canonical_json)
        return template

    def _name_keys(self, fields: dict[str, Any]) -> KeyLog:
        """Under `_lock`: name in `fields` where the record's keys will go in the key log (a new
        one, named now and created by its first write, when the audit file has none yet);
        returns that key log."""
        if self._key_log is None:
            self._key_log = KeyLog(self.keys_dir)
        offset = self._key_log.offset_for(int(fields["keys_count"]) * KEY_BYTES)
        fields["keys_file"], fields["keys_offset"] = self._key_log.name, offset
        return self._key_log

    def _retire_key_log(self) -> None:
        """Under `_lock`: cut the key log to its keys and make them durable; the next flush
        closes it. The next big record starts a new one."""
        key_log, self._key_log = self._key_log, None
        if key_log is None or key_log.fd < 0:  # none, or named for a record of the next file
            return
        key_log.cut()
        os.fdatasync(key_log.fd)
        key_log.dirty = False
        self._retired_key_logs.append(key_log)

    # -- rotation and retention --

    def _rotation_due(self, day: dt.date, line_bytes: int) -> bool:
        """Whether a record of `line_bytes` written on UTC `day` starts a new file."""
        if self._file_first_seq is None:  # an empty file is never rotated
            return False
        if self.rotate_bytes and self._offset + line_bytes > self.rotate_bytes:
            return True
        return self.rotate_daily and day != self._file_day

    def _rotate(self) -> None:
        """Under `_lock`: close the active file (synced, cut to its records) under its rotated
        name and go on in a new active file; the chain carries across."""
        assert self._file_first_seq is not None
        self._retire_key_log()  # the keys of the file's records first
        os.fdatasync(self._fd)  # every record of the file is on disk before it is renamed
        os.ftruncate(self._fd, self._offset)  # a rotated file holds its records only
        os.fsync(self._fd)
        rotated = self.directory / rotated_name(self.series, self._file_first_seq)
        os.rename(self.path, rotated)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._retired.append(self._fd)
        self._fd, self._size, self._offset = fd, 0, 0
        self._extend(self.preallocate_bytes)
        fsync_dir(self.directory)
        self._synced = max(self._synced, self._seq)
        self._file_first_seq = self._file_day = None
        self._retention_due = self.retention_days > 0
        self._checkpoint_due.set()  # a checkpoint at each rotation
        log.info("audit log %s: rotated to %s", self.path.name, rotated.name)

    def apply_retention(self, now: dt.datetime | None = None) -> list[str]:
        """Remove the oldest rotated files whose last record is more than `retention_days`
        old (with the key logs their records name), after recording which; returns their names."""
        if self.retention_days <= 0:
            return []
        with self._retention_lock:  # the checkpoint thread and a caller: one at a time
            return self._apply_retention(now)

    def _apply_retention(self, now: dt.datetime | None) -> list[str]:
        cutoff = (now or dt.datetime.now(dt.UTC)).date() - dt.timedelta(days=self.retention_days)
        expired: list[tuple[Path, int]] = []
        for path in series_files(self.directory, self.series):
            if path == self.path:
                break
            last = last_record(path)
            day = _day_of(str(last.get("ts", ""))) if last else None
            if last is None or day is None or day >= cutoff:
                break
            expired.append((path, int(last["seq"])))
        if not expired:
            return []
        names = [p.name for p, _ in expired]
        self.record(
            rpc=RETENTION_RPC,
            identity="(server)",
            organisation="",
            roles=(),
            zone="",
            ruleset_revision="",
            snapshot_id="",
            pairs=0,
            outcomes={},
            keys=KeyBatch(),
            now=now,
            extra={
                "removed_files": names,
                "removed_through_seq": expired[-1][1],
                "retention_days": self.retention_days,
            },
        )
        for path, _ in expired:
            named = {str(rec.get("keys_file", "")) for _, rec in read_records(path)}
            for name in named - {""}:  # its key logs, each named by many of its records
                (self.directory / name).unlink(missing_ok=True)
            path.unlink()
        fsync_dir(self.directory)
        log.info("audit log %s: retention removed %s", self.path.name, ", ".join(names))
        return names


class NoAudit:
    """Stands in for `AuditLog` when the audit is off (`--audit-off`: development and benchmarks
    on loopback only, refused with TLS): records nothing, answers at once."""

    sync_window_s: Final = 0.0

    def __init__(self) -> None:
        self.on_write: Callable[[float], None] | None = None  # never called: nothing is flushed

    def append(self, **fields: Any) -> Appended:
        return Appended(0, "")

    def record(self, **fields: Any) -> str:
        return ""

    def sync_through(self, seq: int) -> None:
        return None

    async def durable(self, seq: int, *, alone: Callable[[], bool] | None = None) -> None:
        return None

    def checkpoint(self) -> Checkpoint | None:
        return None

    def close(self) -> None:
        return None


AuditWriter = AuditLog | NoAudit
"""What the servicer writes its records to."""


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


def read_series(directory: Path, series: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, record) of every record of a series, oldest first, across rotated files."""
    for path in series_files(directory, series):
        for _, rec in read_records(path):
            yield path, rec
