"""Retention in the daily sync: purge plates crossed out longer ago than the retention period.

The register may hold a crossed-out plate's data until six months after the crossing-out (the
default `retention_days`, 183; docs/sync.md). The build applies this to a full extract with
`loader.build.crossed_out_before`; the sync applies the same function, in the same publication
as the day's changes, to the store's content with the day's changes laid over it, with the
cutoff `day - retention_days`. A purged plate loses its whole history (its key is removed); a
plate whose last version is open is never purged. Only counts leave this module.

The store is read as its tables laid over each other (the base, then its layer), never merged:
one vectorised pass over each table's last versions gives the few keys that may be purged (a
few hundred a day), and only those are looked up in the tables above, which may replace or
remove them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from lez.days import DAY_OPEN
from lez.keys import KEY_BYTES
from lez.store.columns import KeyedRecords
from loader.build import crossed_out_before
from loader.mutations import with_removed


def last_ends(table: KeyedRecords) -> npt.NDArray[np.int32]:
    """Per key: `valid_to` of its last (latest) version; DAY_OPEN for a key without rows."""
    if not len(table.records):
        return np.full(table.size, DAY_OPEN, dtype=np.int32)
    offsets = table.offsets
    offsets = offsets.view(np.int64) if offsets.dtype == np.uint64 else offsets.astype(np.int64)
    stops = offsets[1:]  # offsets are far below 2**63: the int64 view reads them as they are
    has_rows = stops > offsets[:-1]
    valid_to = table.records["valid_to"]
    if has_rows.all():  # a base: every key has rows
        return np.asarray(valid_to[stops - 1], dtype=np.int32)
    ends = np.full(table.size, DAY_OPEN, dtype=np.int32)
    ends[has_rows] = valid_to[stops[has_rows] - 1]
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


def expired_keys(table: KeyedRecords, cutoff: int) -> npt.NDArray[np.int64]:
    """Indices of the keys of `table` that `expired` purges (judged by this table alone)."""
    ends = last_ends(table)
    maybe = np.flatnonzero(ends <= cutoff)  # the rule needs an end on or before the cutoff
    return maybe[expired(table.key_hi[maybe], table.key_lo[maybe], ends[maybe], cutoff)]


def purge_changes(
    store_tables: Sequence[KeyedRecords], changes: KeyedRecords, cutoff: int
) -> tuple[KeyedRecords, int]:
    """The day's `changes` plus the removal of every expired plate; (changes, plates purged).

    `store_tables` is the published content as tables laid over each other, the lowest first
    (a base and its layer, where a key without rows is removed; disjoint key-sorted parts work
    as well): a key is judged by the highest table holding it, and `changes` lies above them
    all, so a key in `changes` is judged by its new versions.
    """
    tables = [*store_tables, changes]
    gone: list[npt.NDArray[np.int64]] = []
    for depth, table in enumerate(tables):
        candidates = expired_keys(table, cutoff)
        for above in tables[depth + 1 :]:
            if not len(candidates):
                break
            found = above.find_halves(table.key_hi[candidates], table.key_lo[candidates])
            candidates = candidates[found < 0]
        gone.append(candidates)
    purged = sum(len(g) for g in gone)
    if not purged:
        return changes, 0
    keys = np.empty((purged, 2), dtype=">u8")
    keys[:, 0] = np.concatenate([t.key_hi[g] for t, g in zip(tables, gone, strict=True)])
    keys[:, 1] = np.concatenate([t.key_lo[g] for t, g in zip(tables, gone, strict=True)])
    return with_removed(changes, keys.view(np.uint8).reshape(-1, KEY_BYTES)), purged
