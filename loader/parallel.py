"""Run CPU-bound NumPy/hashlib work in forked processes and collect bytes results.

Forked children inherit the parent's arrays (nothing is pickled) and send one bytes result
back through a pipe. The first task runs in the parent, so `n` tasks use `n` cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence


class WorkerFailed(RuntimeError):
    """A forked worker exited without delivering its result."""


def run_forked(tasks: Sequence[Callable[[], bytes]]) -> list[bytes]:
    """Run `tasks[1:]` in forked children and `tasks[0]` here; results in task order."""
    children: list[tuple[int, int]] = []
    for task in tasks[1:]:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: compute, send, leave without running any parent cleanup
            code = 1
            try:
                os.close(read_fd)
                blob = task()
                with os.fdopen(write_fd, "wb") as out:
                    out.write(len(blob).to_bytes(8, "little"))
                    out.write(blob)
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        children.append((pid, read_fd))
    results = [tasks[0]()] if tasks else []
    failed = False
    for pid, read_fd in children:
        with os.fdopen(read_fd, "rb") as inp:
            header = inp.read(8)
            blob = inp.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or len(header) != 8 or int.from_bytes(header, "little") != len(blob):
            failed = True
        results.append(blob)
    if failed:
        raise WorkerFailed("a worker process failed; rerun with --workers 1 to see the error")
    return results
