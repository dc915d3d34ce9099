"""Retention in the daily sync: purge plates crossed out longer ago than the retention period.

The register may hold a crossed-out plate's data until six months after the crossing-out (the
default `retention_days`, 183; docs/sync.md). The build applies this to a full extract with
`loader.build.crossed_out_before`; the sync applies the same function, in the same publication
as the day's changes, to the store's content with the day's changes laid over it, with the
cutoff `day - retention_days`. A purged plate loses its whole history (its key is removed); a
plate whose last version is open is never purged. Only counts leave this module.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from lez.days import DAY_OPEN
from lez.keys import KEY_BYTES
from lez.store.columns import KeyedRecords
from loader.build import crossed_out_before
from loader.mutations import with_removed

_NONE = np.zeros(0, dtype="V1")


def last_ends(table: KeyedRecords) -> npt.NDArray[np.int32]:
    """Per key: `valid_to` of its last (latest) version; DAY_OPEN for a key without rows."""
    offsets = table.offsets.astype(np.int64)
    has_rows = offsets[1:] > offsets[:-1]
    ends = np.full(table.size, DAY_OPEN, dtype=np.int32)
    if len(table.records):
        last = np.maximum(offsets[1:] - 1, 0)
        ends[has_rows] = table.records["valid_to"][last[has_rows]]
    return ends


def expired(
    key_hi: npt.NDArray[np.uint64],
    key_lo: npt.NDArray[np.uint64],
    ends: npt.NDArray[np.int32],
    cutoff: int,
) -> npt.NDArray[np.bool_]:
    """Per key (sorted, unique), with its last version's end: purge it? The build's rule,
    applied to one row per key (the last version is all `crossed_out_before` reads)."""
    return crossed_out_before(key_hi, key_lo, ends, cutoff)


def purge_changes(
    store_parts: Iterable[KeyedRecords], changes: KeyedRecords, cutoff: int
) -> tuple[KeyedRecords, int]:
    """The day's `changes` plus the removal of every expired plate; (changes, plates purged).

    `store_parts` is the published content (merged, in disjoint key-sorted parts, as
    `Snapshot.vehicles_in_parts` gives it); a key in `changes` is judged by its new versions.
    """
    gone_hi: list[npt.NDArray[np.uint64]] = []
    gone_lo: list[npt.NDArray[np.uint64]] = []
    for part in store_parts:
        gone = expired(part.key_hi, part.key_lo, last_ends(part), cutoff)
        if gone.any() and changes.size:
            gone &= ~_member(part.key_hi, part.key_lo, changes)
        gone_hi.append(part.key_hi[gone])
        gone_lo.append(part.key_lo[gone])
    changed_gone = expired(changes.key_hi, changes.key_lo, last_ends(changes), cutoff)
    gone_hi.append(changes.key_hi[changed_gone])
    gone_lo.append(changes.key_lo[changed_gone])
    removed_hi, removed_lo = np.concatenate(gone_hi), np.concatenate(gone_lo)
    if not len(removed_hi):
        return changes, 0
    keys = np.empty((len(removed_hi), 2), dtype=">u8")
    keys[:, 0], keys[:, 1] = removed_hi, removed_lo
    kept = _subset(changes, ~changed_gone)
    return with_removed(kept, keys.view(np.uint8).reshape(-1, KEY_BYTES)), len(removed_hi)


def _member(
    hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64], table: KeyedRecords
) -> npt.NDArray[np.bool_]:
    """Which of the sorted keys (hi, lo) are keys of `table` (the small side is searched)."""
    keys = np.empty((table.size, 2), dtype=">u8")
    keys[:, 0], keys[:, 1] = table.key_hi, table.key_lo
    index = KeyedRecords(key_hi=hi, key_lo=lo, offsets=np.zeros(0, np.uint64), records=_NONE)
    found = index.find(keys.view(np.uint8).reshape(-1, KEY_BYTES))
    member = np.zeros(len(hi), dtype=np.bool_)
    member[found[found >= 0]] = True
    return member


def _subset(table: KeyedRecords, keep: npt.NDArray[np.bool_]) -> KeyedRecords:
    offsets = table.offsets.astype(np.int64)
    counts = (offsets[1:] - offsets[:-1])[keep]
    starts = offsets[:-1][keep]
    before = np.cumsum(counts) - counts
    rows = np.repeat(starts - before, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    new_offsets = np.zeros(len(counts) + 1, dtype=np.uint64)
    new_offsets[1:] = np.cumsum(counts)
    return KeyedRecords(
        key_hi=table.key_hi[keep],
        key_lo=table.key_lo[keep],
        offsets=new_offsets,
        records=table.records[rows],
    )
