"""CPU time used by a server process and its worker processes (Linux).

The unary ladder reports the servers' CPU per call beside their calls per second: on this
shared machine a flush's latency drifts from run to run (0.1 to 0.5 ms), which moves calls per
second and the share of the ceiling, while the CPU a call costs each server stays put. It says
how much of a call is our own work, apart from the disk. The audit bench reports the processor
time of each 500,000-pair batch (servers and client): on 2 cores the batch is bound by it.

A process's time is read from its CPU-time clock (`clock_gettime` on the clock id that
`clock_getcpuclockid` would give, which Python does not wrap): nanoseconds, every thread,
those that have ended too. `/proc/<pid>/stat` counts in clock ticks of 10 ms, coarser than a
0.15 s batch can use; it is the fallback where the clock cannot be read."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.memory import children

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_CPUCLOCK_SCHED = 2
"""The kernel's process CPU-clock kind that counts all scheduled time (user and system)."""


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its direct children, every thread (0 for a process that is
    gone)."""
    return sum(_process_cpu_seconds(process) for process in [pid, *children(pid)])


def process_clock_id(pid: int) -> int:
    """The clock id of `pid`'s CPU-time clock (the kernel's encoding: the pid's bitwise
    complement shifted left by 3, with the clock kind in the low bits, as glibc's
    `clock_getcpuclockid` makes it)."""
    return ((~pid) << 3) | _CPUCLOCK_SCHED


def _process_cpu_seconds(pid: int) -> float:
    try:
        return time.clock_gettime(process_clock_id(pid))
    except OSError:  # gone, or no access to its clock: the coarse counters, if any
        pass
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime: the threads'
