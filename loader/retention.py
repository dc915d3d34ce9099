"""Retention in the daily sync: purge plates crossed out longer ago than the retention period.

The register may hold a crossed-out plate's data until six months after the crossing-out (the
default `retention_days`, 183; docs/sync.md). The build applies this to a full extract with
`loader.build.crossed_out_before`; the sync applies the same function, in the same publication
as the day's changes, to the store's content with the day's changes laid over it, with the
cutoff `day - retention_days`. A purged plate loses its whole history (its key is removed); a
plate whose last version is open is never purged. Only counts leave this module.
"""

from __future__ import annotations

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
    store_keys: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]],
    store_ends: npt.NDArray[np.int32],
    changes: KeyedRecords,
    cutoff: int,
) -> tuple[KeyedRecords, int]:
    """The day's `changes` plus the removal of every expired plate; (changes, plates purged).

    `store_keys`/`store_ends` describe the published content (merged, one entry per key);
    a key in `changes` is judged by its new versions instead.
    """
    hi, lo = store_keys
    gone = expired(hi, lo, store_ends, cutoff)
    if changes.size:
        in_changes = _member(hi, lo, changes)
        gone &= ~in_changes  # judged below by the new versions
    changed_gone = expired(changes.key_hi, changes.key_lo, last_ends(changes), cutoff)
    purged = int(gone.sum() + changed_gone.sum())
    if not purged:
        return changes, 0
    keep = ~changed_gone
    kept = _subset(changes, keep)
    removed_hi = np.concatenate([hi[gone], changes.key_hi[changed_gone]])
    removed_lo = np.concatenate([lo[gone], changes.key_lo[changed_gone]])
    keys = np.empty((len(removed_hi), 2), dtype=">u8")
    keys[:, 0], keys[:, 1] = removed_hi, removed_lo
    return with_removed(kept, keys.view(np.uint8).reshape(-1, KEY_BYTES)), purged


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
