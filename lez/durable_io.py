"""Two steps a file takes to be on disk: a write that is whole, and a directory entry that
survives a crash.

`write_all` loops `pwrite` until every byte is written (a short write is legal); `fsync_dir`
syncs a directory, which a new, renamed or removed name needs before it can be relied on. The
store's publication (`lez.store.writer`), the sync's checkpoints (`loader.checkpoint`) and the
audit's files (its log, key logs, checkpoints and key file) all use them.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of `data` at `offset` of `fd`."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def fsync_dir(directory: Path) -> None:
    """Make the entries of `directory` (new, renamed, removed names) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
