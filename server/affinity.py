"""Each worker's event loop and gRPC threads on one core; its streams' compute and audit
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

| step | workers free | each pinned | the same server answering at once (no work, no flush) |
|---|---:|---:|---:|
| gRPC accepts the call -> the request is decoded | 131 us | 43 us | 41-49 us |
| the answer is serialised -> the call is done | 357-368 us | 166 us | 100-112 us |

One sequential caller made 917 calls/s with the workers free and 1,007 pinned (5 alternated
rounds). A handler that only spun the processor for 300 us slowed the same two steps as much
as the real work did (127 and 397 us), and one that spun 100 us did not: it is the wake-up,
not the work's effect on the caches.

So a worker pins its main thread to one core before it starts any thread (the threads gRPC
starts inherit it): worker i on the i-th core the process may use, wrapping round when there
are more workers than cores. The threads that do a stream's heavy work go back to every core
(`run_anywhere`: the stream compute thread and the stream audit threads), so one worker's
stream still uses the whole machine. The rest stays on the worker's core: the flusher of
concurrent single checks' records, the audit checkpoint thread, store reloads, the parent
watch. The cost: clients or other work sharing the server's cores cannot move a pinned event
loop off a busy core (32 callers from 2 client processes on the same 2 cores: 1,421 calls/s
pinned against 1,609 free, p99 13.5 against 16.7 ms). `pin_workers` (config) turns it off; a
single-process server is never pinned.
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
    that core, or None when there is only one (nothing to pin) or the system refuses."""
    global _ANYWHERE
    allowed = frozenset(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None
    core = sorted(allowed)[index % len(allowed)]
    try:
        os.sched_setaffinity(0, {core})
    except OSError as exc:  # refused (a sandbox, cores taken away meanwhile): serve unpinned
        log.warning("worker %d: not pinned to core %d (%s); serving unpinned", index, core, exc)
        return None
    _ANYWHERE = allowed
    log.info("worker %d: event loop and gRPC threads pinned to core %d", index, core)
    return core


def run_anywhere() -> None:
    """Thread initializer (`ThreadPoolExecutor(initializer=...)`): the calling thread may run on
    every core its pinned worker could use before pinning. Nothing to do in a process that was
    not pinned."""
    if _ANYWHERE is not None:
        os.sched_setaffinity(0, _ANYWHERE)
