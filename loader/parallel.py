"""Split gathers of the loader's large arrays over threads (`lez.threads` runs them).

A gather by a random permutation is bound by memory latency, not by the copy, so the loader
splits it into parts that threads fetch side by side.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lez.threads import each_threaded, part_bounds


def gather_rows(array: npt.NDArray[Any], rows: npt.NDArray[np.int64], workers: int) -> Any:
    """`array[rows]` along the first axis, the rows split over `workers` threads.

    A gather by a random permutation is bound by memory latency, not by the copy, so two threads
    fetch nearly twice as fast as one. Records (a structured dtype) are copied as whole opaque
    items, much faster than NumPy's field-by-field structured indexing.
    """
    flat = as_items(np.ascontiguousarray(array))
    out = np.empty((len(rows), *flat.shape[1:]), dtype=flat.dtype)

    def part(bounds: tuple[int, int]) -> None:
        first, end = bounds
        np.take(flat, rows[first:end], axis=0, out=out[first:end])

    each_threaded(part, part_bounds(len(rows), max(1, workers) * _PARTS_PER_WORKER), workers)
    return out.view(array.dtype) if flat is not array else out


def as_items(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A contiguous array of records (a structured dtype) viewed as opaque items of the record's
    size, which NumPy gathers and masks as whole items, much faster than field by field; any
    other array as it is."""
    if array.dtype.names is None:
        return array
    return array.view(np.dtype((np.void, array.dtype.itemsize)))


_PARTS_PER_WORKER: Final = 4
"""Parts per thread of a split gather: a thread slowed by other work does not hold the rest."""
