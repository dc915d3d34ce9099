"""A build's memory map is advised for huge pages before it is read, and the loader lets a new
build's written pages go, so its first reader reads it back in huge pages (lez.store.pages)."""

from __future__ import annotations

import ctypes
import mmap
import sys
from pathlib import Path

import numpy as np
import pytest

from lez.keys import KEY_BYTES
from lez.store import open_store, pages
from lez.store.reader import read_meta
from tests.lez.test_store_layers import _build, _registrations, _versions

LINUX = sys.platform.startswith("linux")
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled").exists()


def _vm_flags(path: Path) -> list[list[str]]:
    """The VmFlags of each of this process's mappings of `path` (/proc/self/smaps)."""
    target = str(path.resolve())
    flags: list[list[str]] = []
    current = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            current = len(fields) == 6 and fields[5] == target
        elif current and line.startswith("VmFlags:"):
            flags.append(line.split()[1:])
    return flags


def _resident_pages(path: Path) -> int:
    """Pages of the file at `path` in the page cache: mincore over a fresh mapping (mapping
    reads nothing)."""
    size = path.stat().st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_COPY) as mapped:
        start = ctypes.addressof(ctypes.c_char.from_buffer(mapped))
        vec = ctypes.create_string_buffer((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE)
        code = libc.mincore(start, size, vec)
        del start
        if code != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        return sum(b & 1 for b in vec.raw)


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding `path` (the longest mount point above it)."""
    best, kind = "", ""
    target = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point, fstype = line.split()[1:3]
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(
            best
        ):
            best, kind = point, fstype
    return kind


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A published build of 3,000 keys with 1-3 versions each (about 1 MiB)."""
    rng = np.random.default_rng(5)
    keys = [bytes(k) for k in rng.integers(0, 256, size=(3_000, KEY_BYTES), dtype=np.uint8)]
    content = {k: _versions(rng, int(rng.integers(1, 4))) for k in keys}
    _build(tmp_path, content, _registrations(rng, keys), "s1")
    return tmp_path


@pytest.mark.skipif(not (LINUX and THP), reason="needs Linux with transparent huge pages")
def test_a_reader_advises_its_map_for_huge_pages(store: Path) -> None:
    reader = open_store(store)
    try:
        data = reader.path / "data.mdb"
        flags = _vm_flags(data)
        assert flags, "the build's data file is not mapped"
        assert all("hg" in f for f in flags), flags  # MADV_HUGEPAGE: VmFlags "hg"
    finally:
        reader.close()


@pytest.mark.skipif(not LINUX, reason="mincore and posix_fadvise are Linux calls here")
def test_a_new_build_leaves_no_pages_in_the_page_cache(store: Path) -> None:
    if _filesystem(store) in ("tmpfs", "ramfs"):
        pytest.skip("a file in memory has no page cache to leave")
    build = (store / "current").resolve()
    assert _resident_pages(build / "data.mdb") == 0
    reader = open_store(store)  # a reader reads it back
    try:
        reader.warm()
        assert _resident_pages(build / "data.mdb") > 0
    finally:
        reader.close()


def test_advice_on_a_file_not_mapped_is_nothing(tmp_path: Path) -> None:
    path = tmp_path / "plain.bin"
    path.write_bytes(b"x" * 4096)
    assert pages.advise_huge_pages(path) == 0
    assert pages.mappings_of(path) == []


@pytest.mark.skipif(not LINUX, reason="mincore and posix_fadvise are Linux calls here")
def test_reading_a_build_s_meta_leaves_its_pages_out_of_the_cache(store: Path) -> None:
    """`lez-loader compact` and `build` read the new build's meta after publishing it: that
    must not bring the build back into the page cache in small pages."""
    if _filesystem(store) in ("tmpfs", "ramfs"):
        pytest.skip("a file in memory has no page cache to leave")
    build = (store / "current").resolve()
    data = build / "data.mdb"
    assert _resident_pages(data) == 0
    read_meta(build)
    assert _resident_pages(data) <= 32, f"{_resident_pages(data)} of {data.stat().st_size // 4096}"
