"""CPU time used by a server process and its worker processes, read from `/proc` (Linux).

The unary ladder reports the servers' CPU per call beside their calls per second: on this
shared machine a flush's latency drifts from run to run (0.1 to 0.5 ms), which moves calls per
second and the share of the ceiling, while the CPU a call costs each server stays put. It says
how much of a call is our own work, apart from the disk."""

from __future__ import annotations

import os
from pathlib import Path

from bench.memory import children

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of `pid` and its direct children, every thread (0 for a
    process that is gone)."""
    total = 0
    for process in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: the threads included
    return total / _TICKS_PER_S
