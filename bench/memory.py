"""Memory of the server's processes while it works: each worker's own memory apart from the
shared store map, sampled from `/proc/<pid>/smaps_rollup` (Linux).

A worker's resident memory mixes two things: the store's LMDB map (file-backed pages, shared by
every worker and counted once by the kernel's page cache) and the worker's own anonymous memory
(Python objects, NumPy arrays of the chunks in flight, gRPC buffers). `Anonymous` is the second;
it counts pages a forked worker still shares copy-on-write with its supervisor too, so it is an
upper bound of what each worker adds. `Rss - Anonymous` is what the worker maps from files: the
store map and the shared libraries.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
KIB = 1024


def rollup_kib(pid: int) -> dict[str, int]:
    """The `smaps_rollup` fields of a process, in KiB ({} when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    out: dict[str, int] = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name.strip()] = int(parts[0])
    return out


def children(pid: int) -> list[int]:
    """Direct child processes of `pid`."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return sorted(set(found))


@dataclass
class MemoryPeaks:
    """Peak own (anonymous) and file-mapped memory per process over a sampled interval."""

    own_kib: dict[int, int] = field(default_factory=dict)
    mapped_kib: dict[int, int] = field(default_factory=dict)
    samples: int = 0

    def observe(self, pid: int, rollup: dict[str, int]) -> None:
        if not rollup:
            return
        own = rollup.get("Anonymous", 0)
        mapped = rollup.get("Rss", 0) - own
        self.own_kib[pid] = max(self.own_kib.get(pid, 0), own)
        self.mapped_kib[pid] = max(self.mapped_kib.get(pid, 0), mapped)


def sample_while(
    pids: Callable[[], list[int]], work: Callable[[], T], every_s: float = 0.01
) -> tuple[T, MemoryPeaks]:
    """Run `work` while a thread samples the memory of `pids()` (re-read at each sample)."""
    peaks = MemoryPeaks()
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            for pid in pids():
                peaks.observe(pid, rollup_kib(pid))
            peaks.samples += 1
            time.sleep(every_s)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    try:
        result = work()
    finally:
        stop.set()
        thread.join()
    for pid in pids():  # one last look after the work
        peaks.observe(pid, rollup_kib(pid))
    return result, peaks


def worker_report(peaks: MemoryPeaks, limit_mib: float) -> dict[str, Any]:
    """Per worker: peak own memory and file-mapped memory (MiB), and whether own is in limit."""
    workers = [
        {
            "own_mib": round(peaks.own_kib[pid] / KIB, 1),
            "mapped_mib": round(peaks.mapped_kib.get(pid, 0) / KIB, 1),
        }
        for pid in sorted(peaks.own_kib)
    ]
    worst = max((w["own_mib"] for w in workers), default=0.0)
    return {
        "workers": workers,
        "max_own_mib": worst,
        "limit_own_mib": limit_mib,
        "within_limit": bool(workers) and worst <= limit_mib,
        "samples": peaks.samples,
        "note": "own = Anonymous of /proc/<pid>/smaps_rollup (includes pages still shared "
        "copy-on-write with the supervisor: an upper bound); mapped = Rss - Anonymous (the "
        "store's LMDB map and shared libraries, shared by all workers)",
    }
