"""How a build's memory map is backed by the page cache: huge pages for readers, and a new
build's written pages let go, so the first reader brings them back in huge pages.

A lookup in a big store is a handful of random reads spread over hundreds of MiB of columns;
with 4 KiB pages nearly every one of them also misses the TLB. Linux (6.x, on filesystems with
large folios such as ext4) backs a file mapping with 2 MiB pages when the mapping is advised
`MADV_HUGEPAGE` *before* its pages are read: the reads then bring whole 2 MiB folios into the
page cache and map them with one entry each. On the 8,000,000-plate bench store, the batch lookup
took 130 ns a query against 146 ns with 4 KiB pages (`bench/lookup_bench.py`, run alternately
after dropping the page cache, with the lookup core of that time, before its pipeline), and the
500,000-pair stream 4-10% less time (two A/B runs of 11 and 15 alternated rounds on copies of
one store).

Pages already in the page cache keep their size. A build's pages are first cached by the loader
that writes it, in small pieces, so the writer lets them go once the build is verified and
published (`drop_cached`); the server's first reader (its warm-up) reads them back, advised.

Both are advice: where the kernel, the filesystem or the platform does not support them nothing
changes and nothing fails (`advise_huge_pages` returns 0 then).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final, cast

log = logging.getLogger("lez.store")

MADV_HUGEPAGE: Final = 14
"""Linux `<asm-generic/mman-common.h>`: back this range with huge pages where possible."""
MAPS: Final = Path("/proc/self/maps")


def _libc_madvise() -> Callable[[int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return cast("Callable[[int, int, int], int]", madvise)


_MADVISE: Final = _libc_madvise()


def mappings_of(path: Path) -> list[tuple[int, int]]:
    """The (start, end) addresses of this process's mappings of the file at `path`."""
    target = os.path.realpath(path)
    found: list[tuple[int, int]] = []
    try:
        with MAPS.open() as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].rstrip("\n") == target:
                    start, end = fields[0].split("-")
                    found.append((int(start, 16), int(end, 16)))
    except OSError:
        return []
    return found


def advise_huge_pages(path: Path) -> int:
    """Advise this process's mappings of `path` (a build's `data.mdb`, just mapped and not yet
    read) to be backed by huge pages; returns the bytes advised (0 where unsupported)."""
    if _MADVISE is None:
        return 0
    advised = 0
    for start, end in mappings_of(path):
        if _MADVISE(start, end - start, MADV_HUGEPAGE) == 0:
            advised += end - start
        else:
            log.debug("madvise(MADV_HUGEPAGE) of %s: errno %d", path.name, ctypes.get_errno())
    return advised


def drop_cached(path: Path) -> None:
    """Let the page cache drop the (synced, clean) pages of the file at `path`, so its next
    reader reads it afresh, in huge pages where advised. Pages another process maps stay."""
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
