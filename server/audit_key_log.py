"""The key log: where the consulted keys of a big call (a `CheckStream` chunk, a campaign) go,
outside its audit record.

A record with more keys than `audit_inline_keys` names them by `keys_file` (relative to the
audit directory), `keys_offset` (bytes from the file's start) and `keys_count`: the raw 16-byte
keys, `keys_count * 16` bytes, whose BLAKE3 is the record's `keys_blake3` (so the chain covers
them). Records written before key logs existed have a file of their own and no `keys_offset`
(the whole file); `named_keys` reads both.

**Why one log per audit file rather than a file per record.** With a new file per record, a
50,000-pair chunk's record took 4-7 ms to write in a loaded server against about 1.5 ms
isolated: a file's creation waits for the journal commits that the concurrent flushes (and the
directory fsync every new file needs) keep starting. Appending to one file grown ahead by
`posix_fallocate` creates nothing. With the outcomes' cheaper packing (`server.audit`), the
audited 500,000-pair stream became 5-6% faster: 0.184 s against 0.196 s and 0.171 s against
0.180 s, the two servers alternated over 15 rounds, in two runs.

Each `AuditLog` writes one key log at a time, under its own lock, so records and their keys are
in the same order. A key log serves one audit file: when that file rotates, the key log is cut
to its keys and retired, and the next big record starts a new one (retention removes an audit
file with the key logs its records name). A restarted worker starts a new key log too; one killed
may leave its last key log with zeros after its last keys (never a record's range: harmless).

Durability: `AuditLog.sync_through` fdatasyncs the key logs written since the last flush before
the records file, so no record is on disk before the keys it names.

**Big blobs bypass the page cache** (`O_DIRECT`, where the file system takes it). A 50,000-pair
chunk's keys are 800 KB; written through the page cache, each chunk took fresh page-cache pages
and a kernel copy into them, and on the bench's virtual machine that copy was 8% of the
servers' processor time in a 500,000-pair stream: the audited stream took 1.13x the time of the
same stream without the audit, 1.03x with the key writes left out (2 workers, alternated, 11
rounds). A blob of at least `DIRECT_MIN_BYTES` is copied into a buffer reused from write to
write and written from there to the disk directly, at an offset aligned to `DIRECT_ALIGN` and
padded with zeros to a multiple of it: the zeros between two records' keys are in no record's
range (16-byte slots like the keys, so positions in the file stay key positions for `audit
find`). Smaller blobs, and file systems that refuse `O_DIRECT` (tmpfs), are written as before.
"""

from __future__ import annotations

import errno
import mmap
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from lez.durable_io import fsync_dir, write_all
from lez.keys import KEY_BYTES

KEY_FILE_SUFFIX: Final = ".bin"
"""Key logs and the older one-record key files alike (`audit find` scans both)."""
GROW_BYTES: Final = 64 << 20
"""A key log is grown by this much at a time (about 80 chunks of 50,000 pairs)."""
DIRECT_ALIGN: Final = 4096
"""Offset, length and buffer alignment of a direct write (the largest logical block size of
common disks; a multiple of the 16-byte key)."""
DIRECT_MIN_BYTES: Final = 64 << 10
"""Key blobs from this size on are written directly (4,096 keys: a padding of at most 4 KiB is
then at most 6% of the blob, 0.5% for a 50,000-pair chunk)."""


def new_key_file_name() -> str:
    """A fresh, unique name for a key file (time-ordered)."""
    return f"{time.time_ns():020d}-{secrets.token_hex(4)}{KEY_FILE_SUFFIX}"


class KeyLog:
    """One key log being appended to: its descriptor, how much is used and how much allocated.
    Not thread-safe: its `AuditLog` calls it under its lock."""

    def __init__(
        self,
        directory: Path,
        *,
        grow_bytes: int = GROW_BYTES,
        direct_min_bytes: int | None = None,
    ) -> None:
        """A new key log in `directory`, named now and created by its first `append` (a log
        named for a record that then goes to the next audit file is never made)."""
        self.directory = directory
        self.name = f"{directory.name}/{new_key_file_name()}"
        self.path = directory.parent / self.name
        self.grow_bytes = grow_bytes
        self.direct_min_bytes = DIRECT_MIN_BYTES if direct_min_bytes is None else direct_min_bytes
        self.fd = -1  # not created yet
        self.used = 0
        self.allocated = 0
        self.dirty = False  # written since the last flush took it
        self.direct = hasattr(os, "O_DIRECT")  # until the file system refuses it
        self.direct_writes = 0
        self._buffer: mmap.mmap | None = None  # page-aligned, reused: see the module docstring

    def _create(self) -> None:
        """Create the file (and `directory` if missing); its entry is made durable at once (the
        only metadata flush a key log needs besides its size, which fdatasync covers)."""
        self.directory.mkdir(exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fsync_dir(self.directory)

    def _goes_direct(self, size: int) -> bool:
        return self.direct and size >= self.direct_min_bytes

    def offset_for(self, size: int) -> int:
        """Where the next `append` of `size` bytes will write them."""
        return _aligned(self.used) if self._goes_direct(size) else self.used

    def append(self, blob: bytes) -> int:
        """Write `blob` after the keys already there (at `offset_for(len(blob))`); returns its
        offset."""
        if self.fd < 0:
            self._create()
        offset = self.offset_for(len(blob))
        direct = self._goes_direct(len(blob))
        end = _aligned(offset + len(blob)) if direct else offset + len(blob)
        if end > self.allocated:
            grown = max(end - self.allocated, self.grow_bytes)
            os.posix_fallocate(self.fd, self.allocated, grown)
            self.allocated += grown
        if not (direct and self._write_direct(blob, offset)):
            write_all(self.fd, blob, offset)
        self.used = end
        self.dirty = True
        return offset

    def _write_direct(self, blob: bytes, offset: int) -> bool:
        """Write `blob` and its zero padding at `offset` past the page cache; False (and no
        more tries) when the file system refuses, so the caller writes it as usual."""
        size = _aligned(len(blob))
        if self._buffer is None or len(self._buffer) < size:
            had = 0
            if self._buffer is not None:
                had = len(self._buffer)
                self._buffer.close()
            self._buffer = mmap.mmap(-1, max(size, 2 * had))
        buffer = self._buffer
        buffer[: len(blob)] = blob
        buffer[len(blob) : size] = bytes(size - len(blob))
        fd = -1
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_DIRECT)
            write_all(fd, memoryview(buffer)[:size], offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: refused by the file system, nothing else
                raise
            self.direct = False
            return False
        finally:
            if fd >= 0:
                os.close(fd)
        self.direct_writes += 1
        return True

    def cut(self) -> None:
        """Cut the allocated room after the last keys (on rotation and close)."""
        os.ftruncate(self.fd, self.used)
        self.dirty = True


def _aligned(offset: int) -> int:
    return -(-offset // DIRECT_ALIGN) * DIRECT_ALIGN


def named_keys(directory: Path, rec: Mapping[str, Any]) -> bytes:
    """The keys a record names in a key file (`keys_file`, from `keys_offset`, `keys_count`
    keys; a whole older key file without `keys_offset`). Raises OSError when the file cannot
    be read; a cut file gives fewer bytes (the digest check then fails)."""
    path = directory / str(rec["keys_file"])
    if "keys_offset" not in rec:
        return path.read_bytes()
    offset = int(rec["keys_offset"])
    length = int(rec.get("keys_count", 0)) * KEY_BYTES
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def key_range(rec: Mapping[str, Any]) -> tuple[int, int]:
    """(first, end) key indices of a record's keys within its key file."""
    first = int(rec.get("keys_offset", 0)) // KEY_BYTES
    return first, first + int(rec.get("keys_count", 0))
