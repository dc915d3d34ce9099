"""Sorted key columns and the vectorised batch lookup shared by every reader.

A table (vehicles or registrations) is held as four columns: `key_hi` and `key_lo` (the two
big-endian halves of each 16-byte key as native uint64, sorted in memcmp order), `offsets`
(uint64, one more than the keys) and `records` (all rows, grouped by key). Row group `i` is
`records[offsets[i]:offsets[i + 1]]`. A batch of query keys is located with one
search over the sorted `key_hi` (inside each query's bucket of its top bits, about 4 keys a
bucket whatever the table's size: `bucket_bits_for`), never one call per plate.

The batch lookup (`find_halves`, `fill_versions`) runs in the native core `lez._lookup` where
it was built, and in NumPy otherwise; both give the same answers (property tests hold them
equal). The native core takes each query in one pass with the cache misses of dozens of queries
overlapped; NumPy needs about ten whole-array passes. On the 8,000,000-plate store, in chunks of
25,000 queries on one core: the key search 55 ns a query native against 183 ns in NumPy, the
version on the day 52 ns against 330 ns (`python -m bench.lookup_bench --store
var/bench/store-8000000-1`, bench/results/lookup.json). The native figures are nearly the same
at 1,000,000 and 16,000,000 plates (50 + 47 and 53 + 60 ns): a bucket index of 2**20 buckets
for every size and the earlier core (queries in blocks of 32), before, cost 53 + 54 ns at 1M
and 106 + 71 ns at 16M.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from lez.keys import KEY_BYTES, keys_to_u64
from lez.threads import each_threaded
from lez.vehicle import VEHICLE_DTYPE, VehicleArray, empty, version_on

try:
    from lez import _lookup as _native
except ImportError:  # built without a compiler: the NumPy search below
    _native = None  # type: ignore[assignment]

try:
    from lez import _sort as _native_sort
except ImportError:  # built without a compiler: NumPy's sort
    _native_sort = None  # type: ignore[assignment]

NATIVE: Final = _native is not None
"""Whether batch lookups run in the native core."""
NATIVE_SORT: Final = _native_sort is not None
"""Whether `sort_u64` runs in the native radix sort."""


@dataclass(frozen=True, slots=True)
class KeyedRecords:
    """One table as sorted columns. Arrays may be zero-copy views into an LMDB map."""

    key_hi: npt.NDArray[np.uint64]
    key_lo: npt.NDArray[np.uint64]
    offsets: npt.NDArray[np.uint64]
    records: npt.NDArray[np.void]
    bucket_starts: npt.NDArray[np.uint32] | None = None  # 2**bits + 1 entries: see `indexed`
    _native: tuple[Any, Any, Any, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )  # `_native_table`, made on first use (a table's arrays never change)
    _native_rows: tuple[Any, ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )  # `_native_row_layout`, the same way (empty: the native core cannot read the rows)

    @property
    def size(self) -> int:
        return len(self.key_hi)

    @property
    def bucket_bits(self) -> int:
        """The top bits of the high half that pick a bucket (0 without an index)."""
        if self.bucket_starts is None:
            return 0
        return (len(self.bucket_starts) - 1).bit_length() - 1

    def copy(self) -> KeyedRecords:
        """A copy that owns its arrays (outlives the snapshot it was read from)."""
        return KeyedRecords(
            key_hi=self.key_hi.copy(),
            key_lo=self.key_lo.copy(),
            offsets=self.offsets.copy(),
            records=self.records.copy(),
        )

    def part(self, first: int, end: int) -> KeyedRecords:
        """Keys `first` to `end` (exclusive) with their rows: views, offsets rebased to 0."""
        offsets = self.offsets[first : end + 1].astype(np.uint64)
        start, stop = int(offsets[0]), int(offsets[-1])
        return KeyedRecords(
            key_hi=self.key_hi[first:end],
            key_lo=self.key_lo[first:end],
            offsets=offsets - np.uint64(start),
            records=self.records[start:stop],
        )

    def key_matrix(self) -> npt.NDArray[np.uint8]:
        """The keys as an (n, 16) uint8 matrix (a copy)."""
        halves = np.empty((self.size, 2), dtype=">u8")
        halves[:, 0] = self.key_hi
        halves[:, 1] = self.key_lo
        return halves.view(np.uint8).reshape(-1, KEY_BYTES)

    def key_bytes(self, i: int) -> bytes:
        return int(self.key_hi[i]).to_bytes(8, "big") + int(self.key_lo[i]).to_bytes(8, "big")

    def rows_of(self, i: int) -> npt.NDArray[np.void]:
        return self.records[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def counts(self) -> npt.NDArray[np.int64]:
        """Rows of each key (0 only in a layer, where it means the key was removed)."""
        offsets = self.offsets.astype(np.int64)
        return offsets[1:] - offsets[:-1]

    def find(self, keys: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
        """Index of each query key in the table, -1 where absent."""
        if len(keys) == 0 or self.size == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        hi, lo = keys_to_u64(keys)
        return self.find_halves(hi, lo)

    def find_halves(
        self, hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.int64]:
        """`find` for keys given as their two big-endian halves (see `keys_to_u64`)."""
        if len(hi) == 0 or self.size == 0:
            return np.full(len(hi), -1, dtype=np.int64)
        if _native is not None:
            return self.find_halves_native(hi, lo)
        return self.find_halves_numpy(hi, lo)

    def find_halves_native(
        self, hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.int64]:
        """`find_halves` in the native core (raises ImportError where it was not built)."""
        if _native is None:
            raise ImportError("lez._lookup was not built")
        out = np.empty(len(hi), dtype=np.int64)
        _native.find(
            *self._native_table(), _contiguous(hi, np.uint64), _contiguous(lo, np.uint64), out
        )
        return out

    def _native_table(self) -> tuple[Any, Any, Any, int]:
        """The table as the native lookups take it: key halves, bucket index (or None), bits;
        made once per table (a single check looks up two tables; making it for each took 1.0%
        of a worker's samples under one sequential caller, the whole row lookup 4.0%, py-spy)."""
        if self._native is None:
            buckets = self.bucket_starts
            table = (
                _contiguous(self.key_hi, np.uint64),
                _contiguous(self.key_lo, np.uint64),
                None if buckets is None else _contiguous(buckets, np.uint32),
                self.bucket_bits,
            )
            object.__setattr__(self, "_native", table)  # frozen: set once, the same each time
            return table
        return self._native

    def _native_row_layout(self) -> tuple[Any, ...]:
        """The rows as `_lookup.version_one` takes them (offsets, records, record size and the
        byte offsets of the validity bounds), or () where it cannot read them as they are."""
        if self._native_rows is None:
            rows: tuple[Any, ...] = ()
            fields = self.records.dtype.fields
            if fields is not None and _native_readable(self.records):
                rows = (
                    _contiguous(self.offsets, np.uint64),
                    self.records,
                    self.records.dtype.itemsize,
                    int(fields["valid_from"][1]),
                    int(fields["valid_to"][1]),
                )
            object.__setattr__(self, "_native_rows", rows)  # frozen: set once, as `_native`
            return rows
        return self._native_rows

    def version_one(self, key: bytes, day: int) -> tuple[bool, int] | None:
        """For a single check: None when the table does not hold `key`; else whether the key
        has rows (a layer's removal has none) and the row of its version valid on `day` in
        `records` (-1 when none is). The native core does it in one call (a property test holds
        it equal to `version_one_numpy`)."""
        if len(key) != KEY_BYTES or self.size == 0:
            return None
        rows = self._native_row_layout() if _native is not None else ()
        if not rows:
            return self.version_one_numpy(key, day)
        offsets, records, record_size, from_at, to_at = rows
        group, row, count = _native.version_one(
            *self._native_table(), offsets, records, record_size, from_at, to_at, key, day
        )
        return None if group < 0 else (count > 0, row)

    def version_one_numpy(self, key: bytes, day: int) -> tuple[bool, int] | None:
        """`version_one` from `find_one_numpy` and `version_on` (the fallback and the oracle)."""
        group = self.find_one_numpy(key)
        if group < 0:
            return None
        rows = self.rows_of(group)
        at = version_on(rows, day)
        return len(rows) > 0, -1 if at is None else int(self.offsets[group]) + at

    def find_halves_numpy(
        self, hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.int64]:
        """`find_halves` in NumPy: the fallback, and the oracle of the native core's tests."""
        n = len(hi)
        if n == 0 or self.size == 0:
            return np.full(n, -1, dtype=np.int64)
        lower, upper = self._bucket_bounds(hi)
        # Vectorised binary search inside each query's bucket: a handful of rounds, each one
        # gather, instead of ~23 cache-missing steps per key over the whole column.
        while True:
            open_ = lower < upper
            if not open_.any():
                break
            mid = (lower + upper) >> 1
            go_right = open_ & (self.key_hi[np.minimum(mid, self.size - 1)] < hi)
            lower = np.where(go_right, mid + 1, lower)
            upper = np.where(open_ & ~go_right, mid, upper)
        pos = lower
        result = np.full(n, -1, dtype=np.int64)
        # Walk forward over equal high halves (a 64-bit prefix collision is rare but legal).
        pending = np.arange(n)
        while len(pending):
            p = pos[pending]
            inside = p < self.size
            pending, p = pending[inside], p[inside]
            same_hi = self.key_hi[p] == hi[pending]
            pending, p = pending[same_hi], p[same_hi]
            hit = self.key_lo[p] == lo[pending]
            result[pending[hit]] = p[hit]
            pending = pending[~hit]
            pos[pending] += 1
        return result

    def find_one(self, key: bytes) -> int:
        """Index of one 16-byte key in the table, -1 where absent (single checks: a few
        scalar reads inside the key's bucket, no array set-up)."""
        if len(key) != KEY_BYTES or self.size == 0:
            return -1
        if _native is not None:  # one call, no NumPy indexing (a property test: same rows)
            return _native.find_one(*self._native_table(), key)
        return self.find_one_numpy(key)

    def find_one_numpy(self, key: bytes) -> int:
        """`find_one` with NumPy and `bisect` (the fallback, and the native core's oracle)."""
        if len(key) != KEY_BYTES or self.size == 0:
            return -1
        hi = int.from_bytes(key[:8], "big")
        lo = int.from_bytes(key[8:], "big")
        if self.bucket_starts is None:  # no index (a merged or small table): search it whole
            first = int(np.searchsorted(self.key_hi, np.uint64(hi), side="left"))
            end = int(np.searchsorted(self.key_hi, np.uint64(hi), side="right"))
        else:
            bucket = hi >> (64 - self.bucket_bits)
            first, end = int(self.bucket_starts[bucket]), int(self.bucket_starts[bucket + 1])
        # a bucket holds a few keys: bisect its high halves as Python ints, then walk
        # the equal ones (a 64-bit prefix collision is rare but legal; equal high halves never
        # straddle a bucket)
        highs = self.key_hi[first:end].tolist()
        at = bisect.bisect_left(highs, hi)
        while at < len(highs) and highs[at] == hi:
            if int(self.key_lo[first + at]) == lo:
                return first + at
            at += 1
        return -1

    def _bucket_bounds(
        self, hi: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Search range [lower, upper) in `key_hi` for each query, from the bucket index (a
        table without one, merged or small, is searched whole: no index to build first)."""
        if self.bucket_starts is None:
            return np.zeros(len(hi), dtype=np.int64), np.full(len(hi), self.size, dtype=np.int64)
        bucket = (hi >> np.uint64(64 - self.bucket_bits)).astype(np.int64)
        starts = self.bucket_starts
        return starts[bucket].astype(np.int64), starts[bucket + 1].astype(np.int64)

    def buckets(self, bits: int) -> npt.NDArray[np.uint32]:
        """First row of each of the 2**bits buckets of the high key half, and the size."""
        edges = np.arange(2**bits, dtype=np.uint64) << np.uint64(64 - bits)
        starts = np.empty(2**bits + 1, dtype=np.uint32)
        starts[:-1] = np.searchsorted(self.key_hi, edges)
        starts[-1] = self.size
        return starts

    def indexed(self) -> KeyedRecords:
        """The same table with its bucket index computed once (readers do this at open).

        The number of buckets follows the table's size (`bucket_bits_for`), so a bucket holds
        about as many keys in a small table as in a big one and a lookup reads as many cache
        lines: the per-pair cost stays flat as the register grows."""
        if self.size >= 2**32:  # beyond the index's uint32 rows: searched whole
            return self
        bits = bucket_bits_for(self.size)
        return replace(self, bucket_starts=self.buckets(bits))


KEYS_PER_BUCKET_BITS: Final = 2
"""About 2**2 = 4 keys a bucket: their high halves (32 bytes) fit one or two cache lines."""
MIN_BUCKET_BITS: Final = 8
MAX_BUCKET_BITS: Final = 28
"""Bounds of the index: 2**28 + 1 uint32 starts are 1 GiB, for a billion keys."""


def bucket_bits_for(size: int) -> int:
    """Bits of the bucket index of a table of `size` keys: about 4 keys a bucket (at 8M
    keys 2**21 buckets, an 8 MiB index in each reader)."""
    return max(MIN_BUCKET_BITS, min(MAX_BUCKET_BITS, size.bit_length() - KEYS_PER_BUCKET_BITS))


@dataclass(frozen=True, slots=True)
class VehicleLookup:
    """Result of a batch lookup, aligned with the query.

    `records[i]` is the version valid on the query's day where `found[i]`; elsewhere it holds
    unknown sentinels. `known[i]` says the plate exists in the register at all (on some day).
    """

    records: VehicleArray
    found: npt.NDArray[np.bool_]
    known: npt.NDArray[np.bool_]

    @classmethod
    def empty(cls, n: int) -> VehicleLookup:
        """n queries not looked up yet: unknown records, nothing found or known."""
        return cls(
            records=empty(n), found=np.zeros(n, dtype=np.bool_), known=np.zeros(n, dtype=np.bool_)
        )


class ColumnQueries:
    """Batch queries shared by every snapshot: needs `vehicles` and `registrations` tables."""

    vehicles: KeyedRecords
    registrations: KeyedRecords

    def vehicles_on(
        self, keys: npt.NDArray[np.uint8], days: npt.NDArray[np.int32]
    ) -> VehicleLookup:
        return versions_on(self.vehicles, keys, days)

    def vehicle_rows(
        self, keys: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]:
        """Every version of each query key, flattened: (query index per row, rows), a copy."""
        q, rows = rows_for(self.vehicles, keys)
        return q, rows.copy()

    def vehicles_in_parts(self, parts: int = 64) -> Iterator[KeyedRecords]:
        """The whole vehicles table in key order, as `parts` consecutive key ranges (readers of
        every plate that need not hold one merged copy of a layered store)."""
        yield from key_range_parts(self.vehicles, parts)

    def registrations_of(
        self, keys: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]:
        q, rows = rows_for(self.registrations, keys)
        return q, rows.copy()

    def versions_of(self, key: bytes) -> VehicleArray:
        """Every version of one key, oldest first (a copy, or an empty view when absent)."""
        return rows_of_key(self.vehicles, key)

    def vehicle_on(self, key: bytes, day: int) -> tuple[bool, np.void | None]:
        """A single check's vehicle: whether the key has versions, and a copy of the one valid
        on `day` (None when none is)."""
        return vehicle_from(self.vehicles, self.vehicles.version_one(key, day))

    def registrations_for(self, key: bytes) -> npt.NDArray[np.void]:
        """Every registration row of one key (a copy, or an empty view when there is none)."""
        return rows_of_key(self.registrations, key)


def vehicle_from(
    table: KeyedRecords, found: tuple[bool, int] | None
) -> tuple[bool, np.void | None]:
    """`vehicle_on`'s answer from `version_one`'s in `table`: (known, the version's row as a
    copy that outlives the snapshot, or None)."""
    if found is None:
        return False, None
    known, row = found
    if row < 0:
        return known, None
    # a copy of its own bytes: 0.8 us, where `records[row].copy()` took 4 us (the 8M store)
    return known, np.frombuffer(table.records[row].tobytes(), dtype=table.records.dtype)[0]


def rows_of_key(table: KeyedRecords, key: bytes) -> npt.NDArray[np.void]:
    i = table.find_one(key)
    return table.records[:0] if i < 0 else table.rows_of(i).copy()


def versions_on(
    table: KeyedRecords, keys: npt.NDArray[np.uint8], days: npt.NDArray[np.int32]
) -> VehicleLookup:
    """For each (key, day): the vehicle version valid that day."""
    lookup = VehicleLookup.empty(len(keys))
    fill_versions(lookup, table, table.find(keys), days)
    return lookup


def fill_versions(
    lookup: VehicleLookup,
    table: KeyedRecords,
    idx: npt.NDArray[np.int64],
    days: npt.NDArray[np.int32],
) -> None:
    """Write into `lookup` the version valid on `days[i]` of row group `idx[i]` of `table`, for
    every query with `idx[i] >= 0`; other queries are left as they are. A key with no rows (a
    removal in a layer) is not known."""
    if _native is not None and _native_layout(table.records, lookup.records):
        fill_versions_native(lookup, table, idx, days)
    else:
        fill_versions_numpy(lookup, table, idx, days)


def fill_versions_native(
    lookup: VehicleLookup,
    table: KeyedRecords,
    idx: npt.NDArray[np.int64],
    days: npt.NDArray[np.int32],
) -> None:
    """`fill_versions` in the native core (raises ImportError where it was not built)."""
    if _native is None:
        raise ImportError("lez._lookup was not built")
    if not _native_layout(table.records, lookup.records):
        raise ValueError("fill_versions_native needs contiguous records of one dtype")
    fields = table.records.dtype.fields
    assert fields is not None
    _native.fill_versions(
        table.records,
        table.records.dtype.itemsize,
        fields["valid_from"][1],
        fields["valid_to"][1],
        _contiguous(table.offsets, np.uint64),
        _contiguous(idx, np.int64),
        _contiguous(days, np.int32),
        lookup.records,
        lookup.found,
        lookup.known,
    )


def _native_layout(records: npt.NDArray[np.void], out: npt.NDArray[np.void]) -> bool:
    """Whether the native core can read `records` and write `out` as they are: contiguous,
    one dtype, int32 validity bounds."""
    return (
        _native_readable(records)
        and records.dtype == out.dtype
        and out.flags.c_contiguous
        and out.flags.writeable
    )


def _native_readable(records: npt.NDArray[np.void]) -> bool:
    """Whether the native core can read `records` as they are: contiguous, int32 validity
    bounds."""
    fields = records.dtype.fields
    return (
        records.flags.c_contiguous
        and fields is not None
        and fields.get("valid_from", (None,))[0] == np.dtype("<i4")
        and fields.get("valid_to", (None,))[0] == np.dtype("<i4")
    )


def _contiguous(values: npt.NDArray[Any], dtype: type[Any]) -> npt.NDArray[Any]:
    return np.ascontiguousarray(values, dtype=dtype)


def fill_versions_numpy(
    lookup: VehicleLookup,
    table: KeyedRecords,
    idx: npt.NDArray[np.int64],
    days: npt.NDArray[np.int32],
) -> None:
    """`fill_versions` in NumPy: the fallback, and the oracle of the native core's tests."""
    out, found = lookup.records, lookup.found
    q = np.flatnonzero(idx >= 0)
    if len(q):
        start = table.offsets[idx[q]].astype(np.int64)
        stop = table.offsets[idx[q] + 1].astype(np.int64)
        lookup.known[q] = stop > start
        d = days[q]
        j = 0
        while len(q):
            cand = start + j
            alive = cand < stop
            q, start, stop, d, cand = q[alive], start[alive], stop[alive], d[alive], cand[alive]
            probe = take_rows(table.records, cand)
            hit = (probe["valid_from"] <= d) & (d < probe["valid_to"])
            scatter_rows(out, q[hit], probe[hit])
            found[q[hit]] = True
            miss = ~hit
            q, start, stop, d = q[miss], start[miss], stop[miss], d[miss]
            j += 1


def take_rows(records: npt.NDArray[np.void], rows: npt.NDArray[np.int64]) -> npt.NDArray[np.void]:
    """records[rows], copied as whole 8-byte words: one cache line per record, and much faster
    than NumPy's structured fancy indexing."""
    size = records.dtype.itemsize
    if size % 8 or not records.flags.c_contiguous:
        return records[rows]
    words = records.view(np.uint64).reshape(-1, size // 8)
    return words[rows].view(records.dtype).reshape(len(rows))


def scatter_rows(
    out: npt.NDArray[np.void], rows: npt.NDArray[np.int64], values: npt.NDArray[np.void]
) -> None:
    """out[rows] = values, as whole 8-byte words (see `take_rows`)."""
    size = out.dtype.itemsize
    if size % 8 or not (out.flags.c_contiguous and values.flags.c_contiguous):
        out[rows] = values
        return
    words = size // 8
    out.view(np.uint64).reshape(-1, words)[rows] = values.view(np.uint64).reshape(-1, words)


def rows_for(
    table: KeyedRecords, keys: npt.NDArray[np.uint8]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]:
    """All rows of each query key, flattened: (query index per row, rows)."""
    return rows_at(table, table.find(keys))


def rows_at(
    table: KeyedRecords, idx: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]:
    """All rows of row groups `idx` (-1: none), flattened: (position in `idx` per row, rows)."""
    q = np.flatnonzero(idx >= 0)
    if len(q) == 0:
        return np.zeros(0, dtype=np.int64), table.records[:0]
    start = table.offsets[idx[q]].astype(np.int64)
    count = table.offsets[idx[q] + 1].astype(np.int64) - start
    query_of_row = np.repeat(q, count)
    first = np.repeat(start - np.cumsum(count) + count, count)
    row = first + np.arange(int(count.sum()), dtype=np.int64)
    return query_of_row, table.records[row]


def group_by_key(
    keys: npt.NDArray[np.uint8], records: npt.NDArray[np.void], order_field: str = "valid_from"
) -> KeyedRecords:
    """Sort rows by (key, `order_field`) and group them into columns.

    `keys` is an (m, 16) matrix, one key per row of `records`.
    """
    if keys.ndim != 2 or keys.shape[1] != KEY_BYTES or len(keys) != len(records):
        raise ValueError("keys must be an (m, 16) uint8 matrix aligned with records")
    hi, lo = keys_to_u64(keys)
    order = sort_by_key(hi, lo, records[order_field])
    return group_sorted(hi[order], lo[order], records[order])


def sort_by_key(
    hi: npt.NDArray[np.uint64],
    lo: npt.NDArray[np.uint64],
    then: npt.NDArray[np.int32],
    workers: int = 1,
) -> npt.NDArray[np.int64]:
    """The permutation that sorts rows by (hi, lo, then); rows equal in all three keep their
    input order (the sort is stable).

    Keys are HMAC outputs, so high halves are nearly unique. The row index is packed into the
    low bits of each high half and that one uint64 column is sorted by value (`sort_u64`,
    several times faster than an argsort): that orders rows by the top bits of `hi`, then by
    row. Only the rows sharing those top bits (the versions of one plate, or a rare prefix
    collision) are put in (hi, lo, then) order afterwards, block by block on `workers` threads.
    """
    n = len(hi)
    if n < 2:
        return np.arange(n, dtype=np.int64)
    bits = (n - 1).bit_length()
    row_mask = np.uint64((1 << bits) - 1)
    packed = np.bitwise_and(hi, ~row_mask, dtype=np.uint64)  # hi may be a big-endian view
    for first in range(0, n, _BLOCK):  # a block at a time: no temporary the size of the table
        end = min(n, first + _BLOCK)
        packed[first:end] |= np.arange(first, end, dtype=np.uint64)
    sort_u64(packed, workers)
    same = np.empty(n - 1, dtype=np.bool_)  # row i + 1 has the prefix of row i
    for first in range(0, n - 1, _BLOCK):
        end = min(n - 1, first + _BLOCK)
        same[first:end] = (packed[first + 1 : end + 1] ^ packed[first:end]) <= row_mask
    packed &= row_mask
    order: npt.NDArray[np.int64] = packed.view(np.int64)
    blocks = []  # blocks that do not cut a run of ties: temporaries the size of a block
    first = 0
    while first < n:
        end = min(n, first + _BLOCK)
        while end < n and same[end - 1]:
            end += 1
        blocks.append((first, end))
        first = end

    def order_block(block: tuple[int, int]) -> None:
        first, end = block
        _order_ties(order[first:end], same[first : end - 1], hi, lo, then)

    each_threaded(order_block, blocks, workers)  # NumPy releases the GIL in their sorts
    return order


def sort_u64(values: npt.NDArray[np.uint64], workers: int = 1) -> None:
    """Sort `values` (a contiguous uint64 array) in place, on `workers` threads.

    In the native radix sort where it was built (`lez._sort`: one pass groups the values by
    their top 11 bits, then each group, a few thousand values for uniform keys, is sorted inside
    the cache; the groups are shared among the threads by size), else NumPy's sort. Both give
    the same array (tests/lez/test_sort_native.py). For 11,312,621 packed keys of the
    8,000,000-plate bench register: 0.70 s in NumPy 2.4 on the bench machine of 2026-12-05 (AMD
    EPYC, where NumPy does not use its AVX-512 sort), 0.15-0.17 s native on 2 threads."""
    if values.dtype != np.uint64 or not values.flags.c_contiguous:
        raise ValueError("sort_u64 sorts a contiguous uint64 array")
    if _native_sort is None or len(values) < 2:
        values.sort()
        return
    scratch = np.empty_like(values)
    starts = np.empty(_native_sort.BUCKETS + 1, dtype=np.uint64)
    _native_sort.partition(values, scratch, starts)
    cuts = [0]  # bucket ranges of about equal numbers of values, one a thread
    for part in range(1, max(1, workers)):
        cuts.append(int(np.searchsorted(starts, part * len(values) // workers)))
    cuts.append(_native_sort.BUCKETS)

    def sort_range(bounds: tuple[int, int]) -> None:
        _native_sort.sort_buckets(scratch, values, starts, bounds[0], bounds[1])

    ranges = [(first, end) for first, end in itertools.pairwise(cuts) if first < end]
    each_threaded(sort_range, ranges, workers)


def _order_ties(
    order: npt.NDArray[np.int64],
    same: npt.NDArray[np.bool_],
    hi: npt.NDArray[np.uint64],
    lo: npt.NDArray[np.uint64],
    then: npt.NDArray[np.int32],
) -> None:
    """Put the runs of `order` (rows sorted by a prefix of `hi`, then by row) whose rows share
    the prefix (`same[i]`: row i + 1 shares row i's) in (hi, lo, then) order, in place."""
    if not same.any():
        return
    tie = np.zeros(len(order), dtype=np.bool_)
    tie[1:] |= same
    tie[:-1] |= same
    pos = np.flatnonzero(tie)
    rows = order[pos]
    new_run = np.empty(len(pos), dtype=np.bool_)  # pos[k] starts a run of ties
    new_run[0] = True
    np.logical_not(same[pos[1:] - 1], out=new_run[1:])  # (not a pass over all the rows)
    run = np.cumsum(new_run)  # increasing per run of ties
    # Within a run the full keys are nearly always equal (one plate's versions): order by
    # (run, then) with one stable sort of a combined int64 key (runs arrive in order, so this
    # is a merge of short runs)...
    combined = (run.astype(np.int64) << 32) | (then[rows].astype(np.int64) + 2**31)
    rows = rows[np.argsort(combined, kind="stable")]
    # ...and redo the rare runs that mix keys (a prefix collision) fully.
    run_hi, run_lo = hi[rows], lo[rows]  # one gather each: the rows are scattered
    differ = (run_hi[1:] != run_hi[:-1]) | (run_lo[1:] != run_lo[:-1])
    mixed_runs = np.unique(run[1:][(run[1:] == run[:-1]) & differ])
    if len(mixed_runs):
        redo = np.flatnonzero(np.isin(run, mixed_runs))
        sub = rows[redo]
        rows[redo] = sub[np.lexsort((sub, then[sub], lo[sub], hi[sub]))]
    order[pos] = rows


_BLOCK: Final = 1 << 20
"""Rows per block of the element-wise passes of `sort_by_key`."""


def group_sorted(
    hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64], records: npt.NDArray[np.void]
) -> KeyedRecords:
    """Group rows already sorted by key into columns."""
    starts = group_starts(hi, lo)
    offsets = np.empty(len(starts) + 1, dtype=np.uint64)
    offsets[:-1] = starts
    offsets[-1] = len(hi)
    return KeyedRecords(
        key_hi=np.ascontiguousarray(hi[starts]),
        key_lo=np.ascontiguousarray(lo[starts]),
        offsets=offsets,
        records=np.ascontiguousarray(records),
    )


def group_starts(hi: npt.NDArray[np.uint64], lo: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Positions where a new key starts in key-sorted halves."""
    if len(hi) == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(len(hi), dtype=np.bool_)
    new[0] = True
    new[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    return np.flatnonzero(new)


def key_range_parts(table: KeyedRecords, parts: int) -> Iterator[KeyedRecords]:
    """`table` cut into `parts` consecutive ranges of the key space (equal ranges of the high
    key half, so two tables cut alike hold the same keys' parts side by side)."""
    for first, end in zip(*range_bounds(table, parts), strict=True):
        yield table.part(int(first), int(end))


def range_bounds(
    table: KeyedRecords, parts: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(first, end) key index of each of `parts` equal ranges of the high key half."""
    if not 1 <= parts <= 2**MIN_BUCKET_BITS or parts & (parts - 1):
        raise ValueError(
            f"parts must be a power of two from 1 to {2**MIN_BUCKET_BITS}, got {parts}"
        )
    if table.bucket_starts is not None:
        starts = table.bucket_starts[:: 2**table.bucket_bits // parts].astype(np.int64)
    else:
        edges = np.zeros(0, dtype=np.uint64)
        if parts > 1:
            shift = np.uint64(64 - (parts.bit_length() - 1))
            edges = np.arange(1, parts, dtype=np.uint64) << shift
        inner = np.searchsorted(table.key_hi, edges).astype(np.int64)
        starts = np.concatenate([[0], inner, [table.size]]).astype(np.int64)
    return starts[:-1], starts[1:]


def strictly_increasing(table: KeyedRecords) -> bool:
    """True when the keys are sorted in memcmp order without repeats and the offsets are
    consistent (what every reader assumes of a table)."""
    offsets = table.offsets.astype(np.int64)
    if len(offsets) != table.size + 1 or len(table.key_lo) != table.size:
        return False
    if offsets[0] != 0 or offsets[-1] != len(table.records) or np.any(np.diff(offsets) < 0):
        return False
    hi, lo = table.key_hi, table.key_lo
    up = (hi[1:] > hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] > lo[:-1]))
    return bool(up.all())


def empty_table(dtype: np.dtype[np.void] = VEHICLE_DTYPE) -> KeyedRecords:
    return KeyedRecords(
        key_hi=np.zeros(0, dtype=np.uint64),
        key_lo=np.zeros(0, dtype=np.uint64),
        offsets=np.zeros(1, dtype=np.uint64),
        records=np.zeros(0, dtype=dtype),
    )
