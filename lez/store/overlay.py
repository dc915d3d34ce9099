"""A layer over a base: one sorted table laid over another, merged at lookup or on demand.

A layer build holds, for the vehicles table, only the keys changed since its base, each with its
complete new version array; a key with no rows there was removed. `Overlay` answers lookups as
if the two had been merged into one table: the query keys are looked up in the layer first
(behind `KeyFilter`, a bitmap over the layer's high key bits, so most queries never search it)
and only the rest in the base. `overlay` computes the merged table itself (compaction, whole-
table readers), and is also how the daily changes are folded into the previous layer (a sorted
merge of two small tables).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from lez.keys import keys_to_u64
from lez.store.columns import (
    KeyedRecords,
    VehicleLookup,
    fill_versions,
    range_bounds,
    rows_at,
    scatter_rows,
    take_rows,
    vehicle_from,
)
from lez.vehicle import VehicleArray

FILTER_BITS_PER_KEY: Final = 32
"""Bitmap size per layer key: about 3% of the queries absent from the layer search it anyway."""
FILTER_MIN_BITS, FILTER_MAX_BITS = 16, 27
"""The bitmap spans 2**16 to 2**27 bits (8 KiB to 16 MiB)."""


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which values of the top `bits` bits of the high key half occur in a table: a query whose
    bits are not set is certainly absent (a one-hash Bloom filter, exact for the empty table)."""

    bits: int
    bitmap: npt.NDArray[np.uint8]
    empty: bool

    @classmethod
    def of(cls, key_hi: npt.NDArray[np.uint64]) -> KeyFilter:
        wanted = max(1, len(key_hi)) * FILTER_BITS_PER_KEY
        bits = min(FILTER_MAX_BITS, max(FILTER_MIN_BITS, (wanted - 1).bit_length()))
        slots = np.asarray(key_hi, dtype=np.uint64) >> np.uint64(64 - bits)
        present = np.zeros(2**bits, dtype=np.bool_)
        present[slots.astype(np.int64)] = True
        return cls(bits=bits, bitmap=np.packbits(present, bitorder="little"), empty=not len(key_hi))

    def may_contain(self, hi: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        if self.empty:
            return np.zeros(len(hi), dtype=np.bool_)
        slot = (hi >> np.uint64(64 - self.bits)).astype(np.int64)
        bit: npt.NDArray[np.uint8] = (self.bitmap[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1
        return bit.astype(np.bool_)


@dataclass(frozen=True, slots=True)
class OverlayCounts:
    """Sizes of the merged table, and where the layer's keys stand in the base."""

    plates: int  # keys with at least one row after merging
    versions: int  # rows after merging
    in_base: npt.NDArray[np.int64]  # per layer key: its index in the base, or -1


class Overlay:
    """A base table with a layer laid over it, answering like the merged table."""

    def __init__(self, base: KeyedRecords, layer: KeyedRecords) -> None:
        self.base = base
        self.layer = layer
        self.filter = KeyFilter.of(layer.key_hi)

    def locate(
        self, hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(index in the layer or -1, index in the base or -1) of each query key. A key the
        layer holds (even with no rows) is never searched in the base."""
        n = len(hi)
        candidates = np.flatnonzero(self.filter.may_contain(hi))
        if len(candidates) == 0:
            return np.full(n, -1, dtype=np.int64), self.base.find_halves(hi, lo)
        in_layer = np.full(n, -1, dtype=np.int64)
        in_layer[candidates] = self.layer.find_halves(hi[candidates], lo[candidates])
        rest = np.flatnonzero(in_layer < 0)
        in_base = np.full(n, -1, dtype=np.int64)
        in_base[rest] = self.base.find_halves(hi[rest], lo[rest])
        return in_layer, in_base

    def versions_on(
        self, keys: npt.NDArray[np.uint8], days: npt.NDArray[np.int32]
    ) -> VehicleLookup:
        n = len(keys)
        lookup = VehicleLookup.empty(n)
        if n == 0:
            return lookup
        in_layer, in_base = self.locate(*keys_to_u64(keys))
        fill_versions(lookup, self.layer, in_layer, days)
        fill_versions(lookup, self.base, in_base, days)
        return lookup

    def rows_for(
        self, keys: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]:
        """Every row of each query key, flattened: (query index per row, rows), a copy, in the
        order `columns.rows_for` gives on the merged table."""
        if len(keys) == 0:
            return np.zeros(0, dtype=np.int64), self.base.records[:0].copy()
        in_layer, in_base = self.locate(*keys_to_u64(keys))
        q_layer, rows_layer = rows_at(self.layer, in_layer)
        q_base, rows_base = rows_at(self.base, in_base)
        q = np.concatenate([q_layer, q_base])
        order = np.argsort(q, kind="stable")
        return q[order], np.concatenate([rows_layer, rows_base])[order]

    def vehicle_on(self, key: bytes, day: int) -> tuple[bool, np.void | None]:
        """`ColumnQueries.vehicle_on` on the merged table: the layer's rows of a key it holds
        (none: removed), else the base's."""
        found = self.layer.version_one(key, day)
        if found is not None:
            return vehicle_from(self.layer, found)
        return vehicle_from(self.base, self.base.version_one(key, day))

    def rows_of_key(self, key: bytes) -> VehicleArray:
        """Every row of one key (a copy; empty when absent or removed)."""
        i = self.layer.find_one(key)
        if i >= 0:
            return self.layer.rows_of(i).copy()
        j = self.base.find_one(key)
        return self.base.records[:0].copy() if j < 0 else self.base.rows_of(j).copy()

    def in_layer(self, key: bytes) -> bool:
        return self.layer.find_one(key) >= 0

    def counts(self) -> OverlayCounts:
        in_base = self.base.find_halves(self.layer.key_hi, self.layer.key_lo)
        replaced = in_base[in_base >= 0]
        # rows of the replaced base keys only: the base's own counts would be a pass over it
        starts = self.base.offsets[replaced].astype(np.int64)
        stops = self.base.offsets[replaced + 1].astype(np.int64)
        replaced_rows = int((stops - starts).sum())
        layer_counts = self.layer.counts()
        return OverlayCounts(
            plates=self.base.size - len(replaced) + int((layer_counts > 0).sum()),
            versions=len(self.base.records) - replaced_rows + len(self.layer.records),
            in_base=in_base,
        )

    def merged(self) -> KeyedRecords:
        """The merged table as one new table (memory: the size of the base)."""
        return overlay(self.base, self.layer, keep_empty=False)

    def merged_parts(self, parts: int) -> Iterator[KeyedRecords]:
        """The merged table in `parts` consecutive key ranges (bounded memory)."""
        base_first, base_end = range_bounds(self.base, parts)
        layer_first, layer_end = range_bounds(self.layer, parts)
        for bf, be, lf, le in zip(base_first, base_end, layer_first, layer_end, strict=True):
            yield overlay(
                self.base.part(int(bf), int(be)),
                self.layer.part(int(lf), int(le)),
                keep_empty=False,
            )


def overlay(under: KeyedRecords, over: KeyedRecords, *, keep_empty: bool) -> KeyedRecords:
    """`under` with the rows of every key of `over` replacing its own, keys of `over` that
    `under` lacks added. A key with no rows in `over` is removed, or kept as an empty entry when
    `keep_empty` (a layer keeps its removals). Both tables must be strictly sorted; the result
    is a new strictly sorted table."""
    in_under = under.find_halves(over.key_hi, over.key_lo)
    keep_under = np.ones(under.size, dtype=np.bool_)
    keep_under[in_under[in_under >= 0]] = False
    over_counts = over.counts()
    under_keys = np.flatnonzero(keep_under)
    over_keys = np.arange(over.size) if keep_empty else np.flatnonzero(over_counts > 0)
    u_hi, u_lo = under.key_hi[under_keys], under.key_lo[under_keys]
    o_hi, o_lo = over.key_hi[over_keys], over.key_lo[over_keys]
    total = len(under_keys) + len(over_keys)
    # the two key sets are disjoint: an `over` key lands after its own rank plus the number of
    # kept `under` keys smaller than it; the `under` keys fill the other places in order
    at_over = np.arange(len(over_keys)) + _count_smaller(u_hi, u_lo, o_hi, o_lo)
    is_over = np.zeros(total, dtype=np.bool_)
    is_over[at_over] = True
    at_under = np.flatnonzero(~is_over)
    key_hi = np.empty(total, dtype=np.uint64)
    key_lo = np.empty(total, dtype=np.uint64)
    counts = np.empty(total, dtype=np.int64)
    key_hi[at_under], key_lo[at_under] = u_hi, u_lo
    key_hi[at_over], key_lo[at_over] = o_hi, o_lo
    counts[at_under] = under.counts()[under_keys]
    counts[at_over] = over_counts[over_keys]
    offsets = np.zeros(total + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum(counts)
    records = np.empty(int(offsets[-1]), dtype=under.records.dtype)
    _move_rows(records, offsets, at_under, under, under_keys)
    _move_rows(records, offsets, at_over, over, over_keys)
    return KeyedRecords(key_hi=key_hi, key_lo=key_lo, offsets=offsets, records=records)


def _count_smaller(
    hi: npt.NDArray[np.uint64],
    lo: npt.NDArray[np.uint64],
    q_hi: npt.NDArray[np.uint64],
    q_lo: npt.NDArray[np.uint64],
) -> npt.NDArray[np.int64]:
    """For each query key: how many keys of the sorted (hi, lo) are smaller."""
    below = np.searchsorted(hi, q_hi, side="left").astype(np.int64)
    # keys sharing the query's high half (a 64-bit prefix collision: rare) are compared on lo
    pending = np.arange(len(q_hi))
    at = below.copy()
    while len(pending):
        p = at[pending]
        inside = p < len(hi)
        pending, p = pending[inside], p[inside]
        smaller = (hi[p] == q_hi[pending]) & (lo[p] < q_lo[pending])
        pending, p = pending[smaller], p[smaller]
        below[pending] += 1
        at[pending] = p + 1
    return below


def _move_rows(
    out: npt.NDArray[np.void],
    out_offsets: npt.NDArray[np.uint64],
    out_keys: npt.NDArray[np.int64],
    source: KeyedRecords,
    source_keys: npt.NDArray[np.int64],
) -> None:
    """Copy the rows of `source_keys` of `source` to the row groups `out_keys` of `out`."""
    count = source.counts()[source_keys]
    rows = int(count.sum())
    if rows == 0:
        return
    source_start = source.offsets[source_keys].astype(np.int64)
    out_start = out_offsets[out_keys].astype(np.int64)
    within = np.arange(rows, dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    src = np.repeat(source_start, count) + within
    dst = np.repeat(out_start, count) + within
    scatter_rows(out, dst, take_rows(source.records, src))
