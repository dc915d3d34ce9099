"""Spread CPU-bound NumPy and native work over the cores with threads.

The loader's heavy steps (the native HMAC batch, NumPy sorts, gathers and element-wise
passes over large arrays) release the GIL, so plain threads keep every core busy while they
share the process's arrays: nothing is pickled, piped or copied back, and no process is forked
with a multi-gigabyte heap (each of the former forked workers copied its result three times and
faulted in memory the parent then copied again). `workers=1` runs everything in the caller's
thread, in order, which is also the reference the parallel result must equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt

T = TypeVar("T")


def run_threaded(tasks: Sequence[Callable[[], T]], workers: int) -> list[T]:
    """Run `tasks` on up to `workers` threads; their results in task order.

    The first exception of a task is raised here once every task has finished.
    """
    if workers <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(min(workers, len(tasks)), thread_name_prefix="loader") as pool:
        futures = [pool.submit(task) for task in tasks]
        return [f.result() for f in futures]


def each_threaded(function: Callable[[T], object], items: Iterable[T], workers: int) -> None:
    """Call `function(item)` for every item, on up to `workers` threads (for side effects)."""
    run_threaded([partial(function, item) for item in items], workers)


def gather_rows(array: npt.NDArray[Any], rows: npt.NDArray[np.int64], workers: int) -> Any:
    """`array[rows]` along the first axis, the rows split over `workers` threads.

    A gather by a random permutation is bound by memory latency, not by the copy, so two threads
    fetch nearly twice as fast as one. Records (a structured dtype) are copied as whole opaque
    items, much faster than NumPy's field-by-field structured indexing.
    """
    flat = array
    if array.dtype.names is not None:  # opaque items of the record's size
        flat = np.ascontiguousarray(array).view(np.dtype((np.void, array.dtype.itemsize)))
    out = np.empty((len(rows), *flat.shape[1:]), dtype=flat.dtype)
    bounds = np.linspace(0, len(rows), max(1, workers) * _PARTS_PER_WORKER + 1).astype(np.int64)

    def part(i: int) -> None:
        first, end = int(bounds[i]), int(bounds[i + 1])
        np.take(flat, rows[first:end], axis=0, out=out[first:end])

    each_threaded(part, range(len(bounds) - 1), workers)
    return out.view(array.dtype) if flat is not array else out


_PARTS_PER_WORKER: Final = 4
"""Parts per thread of a split gather: a thread slowed by other work does not hold the rest."""
