"""Spread CPU-bound NumPy and native work over the cores with threads.

Heavy NumPy steps (sorts, gathers, element-wise passes over large arrays) and the native cores
release the GIL, so plain threads keep every core busy while they share the process's arrays:
nothing is pickled, piped or copied back, and no process is forked with a multi-gigabyte heap.
`workers=1` runs everything in the caller's thread, in order, which is also the reference a
parallel result must equal. Used by the store's key sort (`lez.store.columns`) and the loader.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")


def run_threaded(tasks: Sequence[Callable[[], T]], workers: int) -> list[T]:
    """Run `tasks` on up to `workers` threads; their results in task order.

    The first exception of a task is raised here once every task has finished.
    """
    if workers <= 1 or len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(min(workers, len(tasks)), thread_name_prefix="lez") as pool:
        futures = [pool.submit(task) for task in tasks]
        return [f.result() for f in futures]


def each_threaded(function: Callable[[T], object], items: Iterable[T], workers: int) -> None:
    """Call `function(item)` for every item, on up to `workers` threads (for side effects)."""
    run_threaded([partial(function, item) for item in items], workers)


def part_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """[first, end) of `parts` consecutive, nearly equal parts of n items (at least one part)."""
    parts = max(1, parts)
    edges = [n * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(edges))
