"""Each worker's event loop and gRPC threads on a core of their own; its compute and audit
threads on any core.

A call's path through a worker hops between threads: gRPC's threads read the request and hand
it to the event loop, the loop runs the handler, gRPC's threads send the answer and report its
completion back to the loop. When those threads sit on different cores, each hop wakes a core
that has gone idle, and on a virtual machine a core that has been idle for more than a few
hundred microseconds costs far more to wake (its host has descheduled it; the bench machine's
guest does not poll before it halts). A single check's handler runs for about 0.45 ms (its
work and the audit flush), long enough for the other core to go to sleep, so each of its calls
paid that twice. Measured on the bench machine, one sequential caller, 2 workers, timestamps
taken in the worker:

| step | workers free | each pinned | `Check` that answers at once |
|---|---:|---:|---:|
| gRPC accepts the call -> the request is decoded | 131 us | 43 us | 41-49 us |
| the answer is serialised -> the call is done | 357-368 us | 166 us | 100-112 us |
| calls per second | 908 | 1,069-1,087 | |

A handler that only spun the processor for 300 us slowed the same two steps as much as the
real work did (127 and 397 us), and one that spun 100 us did not: it is the wake-up, not the
work's effect on the caches.

So a worker pins its main thread to one core before its event loop and gRPC server exist (the
threads gRPC starts inherit it: worker i on the i-th core the process may use, modulo their
number), and the threads that do a stream's heavy work (`run_anywhere`: the compute thread, the
audit threads) may run on every core again, so one worker's stream still uses the whole machine.
`pin_workers` (config) turns it off; a single-process server is never pinned.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("lez.server")

_ANYWHERE: frozenset[int] | None = None
"""The cores the process could use before its main thread was pinned (None: not pinned)."""


def pin_worker(index: int) -> int | None:
    """Pin the calling thread (a worker's main thread, before it starts its event loop and gRPC
    server: threads started later inherit it) to one of the cores the process may use; returns
    that core, or None when there is only one (nothing to pin)."""
    global _ANYWHERE
    allowed = frozenset(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    core = sorted(allowed)[index % len(allowed)]
    os.sched_setaffinity(0, {core})
    _ANYWHERE = allowed
    log.info("worker %d: event loop and gRPC threads pinned to core %d", index, core)
    return core


def run_anywhere() -> None:
    """Thread initializer (`ThreadPoolExecutor(initializer=...)`): the calling thread may run on
    every core its pinned worker could use before pinning. Nothing to do in a process that was
    not pinned."""
    if _ANYWHERE is not None:
        os.sched_setaffinity(0, _ANYWHERE)
