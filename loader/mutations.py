"""History semantics of the DIV change feed: keyed transactions in, new version arrays out.

Pure functions over NumPy arrays (no store, no network): `apply_day` takes one day's keyed
transactions and the current versions of the plates they touch, and returns the new version
arrays of the plates that changed. docs/sync.md states the rules; in short, for a transaction
on day D (days since 1970-01-01, `lez.days`), applied per plate in `sequence` order:

- **Opening kinds** (`registrationsNew`, `registrationsChangedDataLicense`,
  `registrationsChangedDataVehicle` without `correctsFrom`, `registrationsTransferred`):
  `open_version`. The open version closes on D (`valid_to = D`) and a new version `[D, open)`
  carries the transaction's details; a second change on the same day replaces the version
  opened that day. A plate whose last version is closed (or that has none) starts a new
  version on D, after the gap.
- **Closing kinds** (`registrationsUnregistered`, `registrationsCrossedOut`,
  `vehiclesDestroyed`): `close_version`. The open version closes on D. A crossing-out also sets
  the closed version's status to `S`, which is how a full extract shows a crossed-out plate
  (docs/extract-format.md) and what retention counts from. A version opened on D and closed on
  D again was never valid for a day and is dropped.
- **Correction** (`registrationsChangedDataVehicle` with `correctsFrom` C <= D):
  `correct_vehicle`. The vehicle fields (`VEHICLE_FIELDS`) of every version from day C on take
  the corrected values; the version containing C is split at C. Decisions for days >= C
  change, decisions before C do not. No version starts on D.

A transaction that cannot be applied (a close with no open version, a plate whose history
already reaches past D, a correction with nothing from C on) raises `TransactionRefused`:
`apply_day` records its id and reason and the rest of the day applies.

The functions above, one transaction on one plate, are the reference semantics. A day of the
feed (50,000 transactions) is nearly all plates with one opening or closing transaction:
`apply_day` does those for all plates at once with whole-array operations and sends only the
rest (several transactions on a plate, corrections) through `apply_one`; a property test holds
it to the same outcome as `apply_day_per_transaction`, which sends every plate through
`apply_one`. Details are converted
by the extract's own rules (`loader.extract.validate_table`) before they get here, and
enrichment (derived category and euro norm) happens at decision time, so new versions carry
exactly the register's values, like rows of a full extract.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from lez import codes
from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.errors import TransactionRefused
from lez.keys import KEY_BYTES, keys_to_u64
from lez.store.columns import (
    KeyedRecords,
    group_by_key,
    group_starts,
    scatter_rows,
    take_rows,
)
from lez.store.overlay import overlay
from lez.vehicle import VEHICLE_DTYPE, Flag, VehicleArray


class TransactionKind(enum.IntEnum):
    """The feed's transaction types that change the LEZ subset (docs/div-feed.md)."""

    NEW = 1
    CHANGED_LICENSE = 2
    CHANGED_VEHICLE = 3
    TRANSFERRED = 4
    UNREGISTERED = 5
    CROSSED_OUT = 6
    DESTROYED = 7


FEED_TYPES: Final[dict[str, TransactionKind]] = {
    "registrationsNew": TransactionKind.NEW,
    "registrationsChangedDataLicense": TransactionKind.CHANGED_LICENSE,
    "registrationsChangedDataVehicle": TransactionKind.CHANGED_VEHICLE,
    "registrationsTransferred": TransactionKind.TRANSFERRED,
    "registrationsUnregistered": TransactionKind.UNREGISTERED,
    "registrationsCrossedOut": TransactionKind.CROSSED_OUT,
    "vehiclesDestroyed": TransactionKind.DESTROYED,
}
"""Feed `transactionType` -> kind."""
FEED_NAMES: Final = {kind: name for name, kind in FEED_TYPES.items()}

CLOSING_KINDS: Final = frozenset(
    {TransactionKind.UNREGISTERED, TransactionKind.CROSSED_OUT, TransactionKind.DESTROYED}
)
"""Kinds whose details are null: they only close the open version."""

VEHICLE_FIELDS: Final = (
    "first_registration",
    "max_mass",
    "running_mass",
    "co2",
    "power_kw",
    "seats",
    "category",
    "kind",
    "bodywork",
    "fuel",
    "euro",
    "flags",
)
"""The vehicle's own data, which a correction rewrites; the holder's data (NIS code, last
registration, plate type, status) are not touched by a correction."""

CROSSED_OUT_STATUS: Final = codes.STATUS.id_of("S")


@dataclass(frozen=True, slots=True)
class DayTransactions:
    """One day's transactions, keyed (never a plate), aligned arrays in feed order.

    `records[i]` holds the converted details of opening kinds and corrections (validity fields
    unused); for closing kinds it is ignored. `corrects_from` is DAY_UNKNOWN when absent.
    """

    day: int
    ids: list[str]
    keys: npt.NDArray[np.uint8]  # (n, 16)
    kinds: npt.NDArray[np.uint8]  # TransactionKind
    sequence: npt.NDArray[np.int64]
    corrects_from: npt.NDArray[np.int32]
    records: VehicleArray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class DayOutcome:
    """What applying a day did: the changed plates' new versions and the refused ids."""

    changes: KeyedRecords  # every changed key with all its versions (zero rows: key removed)
    applied: Counter[str] = field(default_factory=Counter)  # feed type -> applied count
    refused: list[tuple[str, str]] = field(default_factory=list)  # (transaction id, reason)


NO_OPEN_VERSION: Final = "no open version to close"
PAST_THE_DAY: Final = "the plate's history already reaches past the transaction day"

_WORDS: Final = VEHICLE_DTYPE.itemsize // 4
"""A version seen as int32 words: `valid_from` and `valid_to` are its first two."""
assert VEHICLE_DTYPE.fields is not None
assert (VEHICLE_DTYPE.fields["valid_from"][1], VEHICLE_DTYPE.fields["valid_to"][1]) == (0, 4)
_VEHICLE_BYTES: Final = np.concatenate(
    [
        np.arange(offset, offset + dtype.itemsize)
        for dtype, offset, *_ in (VEHICLE_DTYPE.fields[name] for name in VEHICLE_FIELDS)
    ]
)
"""Byte positions of `VEHICLE_FIELDS` in a record: a correction copies exactly these."""
_FLAGS_BYTE: Final = VEHICLE_DTYPE.fields["flags"][1]
_HOLDER_FLAGS: Final = np.uint8(Flag.OLDTIMER_PLATE)
"""Bits of `flags` that belong to the plate (its type), not to the vehicle: a correction keeps
them."""
_CLOSING_VALUES: Final = np.array(sorted(int(kind) for kind in CLOSING_KINDS), dtype=np.uint8)
_KIND_VALUES: Final = np.array([int(kind) for kind in TransactionKind], dtype=np.uint8)


# -- one transaction on one plate: the reference semantics ----------------------------------


def open_version(versions: VehicleArray, day: int, details: np.void) -> VehicleArray:
    """A new version `[day, open)` with `details`, closing the open one on `day`."""
    _refuse_past(versions, day)
    keep = len(versions)
    close_last = False
    if keep:
        first, end = _last_span(versions)
        if end == DAY_OPEN:
            if first == day:  # a second change on one day replaces the first
                keep -= 1
            else:
                close_last = True
    # filled by assignment: np.concatenate promotes structured dtypes field by field (slow)
    result = np.empty(keep + 1, dtype=VEHICLE_DTYPE)
    result[:keep] = versions[:keep]
    result[keep] = details
    spans = _words(result)
    if close_last:
        spans[keep - 1, 1] = day
    spans[keep, 0], spans[keep, 1] = day, DAY_OPEN
    return result


def close_version(versions: VehicleArray, day: int, *, crossed_out: bool) -> VehicleArray:
    """The open version ends on `day`; a crossing-out marks it status S."""
    if not len(versions) or _last_span(versions)[1] != DAY_OPEN:
        raise TransactionRefused(NO_OPEN_VERSION)
    _refuse_past(versions, day)
    if _last_span(versions)[0] == day:  # opened today, closed today: never valid for a day
        out = versions[:-1].copy()
        if not (len(out) and _last_span(out)[1] == day):
            return out
    else:
        out = versions.copy()
        _words(out)[-1, 1] = day
    if crossed_out:
        out["status"][-1] = CROSSED_OUT_STATUS
    return out


def correct_vehicle(
    versions: VehicleArray, day: int, corrects_from: int, details: np.void
) -> VehicleArray:
    """Vehicle fields of every version from `corrects_from` on take the values of `details`."""
    if corrects_from > day:
        raise TransactionRefused("correctsFrom is after the transaction day")
    if not len(versions) or _last_span(versions)[1] <= corrects_from:
        raise TransactionRefused("no version on or after correctsFrom to correct")
    _refuse_past(versions, day)
    # on the records as plain bytes: small structured-array operations cost microseconds each
    raw = np.ascontiguousarray(versions).view(np.uint8).reshape(-1, VEHICLE_DTYPE.itemsize)
    spans = raw.view(np.int32)[:, :2].tolist()
    inside = [i for i, (first, end) in enumerate(spans) if first < corrects_from < end]
    if inside:  # split the version containing the first corrected day
        i = inside[0]
        out = np.concatenate((raw[: i + 1], raw[i:]))
        spans[i : i + 1] = [[spans[i][0], corrects_from], [corrects_from, spans[i][1]]]
        out[i : i + 2].view(np.int32)[:, :2] = spans[i : i + 2]
    else:
        out = raw.copy()
    corrected = _record_bytes(details)[_VEHICLE_BYTES]
    for i, (first, _end) in enumerate(spans):
        if first >= corrects_from:
            holder = out[i, _FLAGS_BYTE] & _HOLDER_FLAGS
            out[i, _VEHICLE_BYTES] = corrected
            out[i, _FLAGS_BYTE] = (out[i, _FLAGS_BYTE] & ~_HOLDER_FLAGS) | holder
    return out.view(VEHICLE_DTYPE).reshape(len(out))


def apply_one(
    versions: VehicleArray, day: int, kind: int, corrects_from: int, details: np.void
) -> VehicleArray:
    """The new version array of one plate after one transaction (raises TransactionRefused)."""
    match TransactionKind(kind):
        case TransactionKind.CHANGED_VEHICLE if corrects_from != DAY_UNKNOWN:
            return correct_vehicle(versions, day, corrects_from, details)
        case TransactionKind.UNREGISTERED | TransactionKind.DESTROYED:
            return close_version(versions, day, crossed_out=False)
        case TransactionKind.CROSSED_OUT:
            return close_version(versions, day, crossed_out=True)
        case _:
            return open_version(versions, day, details)


def _refuse_past(versions: VehicleArray, day: int) -> None:
    """Refuse a history that already reaches past `day`."""
    if len(versions):
        first, end = _last_span(versions)
        if first > day or (end != DAY_OPEN and end > day):
            raise TransactionRefused(PAST_THE_DAY)


def _last_span(versions: VehicleArray) -> tuple[int, int]:
    """(valid_from, valid_to) of the last version, as Python ints (no field views)."""
    words = versions[-1:].view(np.int32)
    return int(words[0]), int(words[1])


def _words(versions: VehicleArray) -> npt.NDArray[np.int32]:
    """A contiguous version array as an (n, 10) int32 view: column 0 `valid_from`, 1
    `valid_to` (writing it writes the records)."""
    return versions.view(np.int32).reshape(-1, _WORDS)


def _record_bytes(details: np.void) -> npt.NDArray[np.uint8]:
    if details.dtype != VEHICLE_DTYPE:
        raise ValueError(f"details of dtype {details.dtype}, expected lez.vehicle.VEHICLE_DTYPE")
    return np.asarray(details).reshape(1).view(np.uint8)


# -- a whole day ----------------------------------------------------------------------------


def apply_day(txs: DayTransactions, current: KeyedRecords) -> DayOutcome:
    """Apply a day's transactions, per plate in `sequence` order, to the current versions.

    `current` holds (at least) the versions of every key the transactions touch; a key absent
    from it has no versions yet. Only plates whose versions changed are in the outcome.

    The common case, a plate with exactly one opening or closing transaction that day, is done
    for all such plates at once with whole-array operations (`_single_transactions`); the rest
    (several transactions on a plate, corrections) goes through `apply_one` transaction by
    transaction. The outcome is identical to `apply_day_per_transaction` (a property test).
    """
    return _apply(txs, current, vectorised=True)


def apply_day_per_transaction(txs: DayTransactions, current: KeyedRecords) -> DayOutcome:
    """`apply_day` with every plate through `apply_one`, one transaction at a time: the
    reference the vectorised path is tested against (about 6x slower on a day of the feed)."""
    return _apply(txs, current, vectorised=False)


@dataclass(frozen=True, slots=True)
class _Changed:
    """New versions of some changed plates: plate numbers (positions in the day's key-sorted
    plates), rows per plate (0: the key is removed) and the rows, plate after plate."""

    plates: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    rows: VehicleArray


def _apply(txs: DayTransactions, current: KeyedRecords, *, vectorised: bool) -> DayOutcome:
    outcome = DayOutcome(changes=_no_changes())
    if not len(txs):
        return outcome
    if txs.records.dtype != VEHICLE_DTYPE:
        raise ValueError(f"records of dtype {txs.records.dtype}, expected VEHICLE_DTYPE")
    hi, lo = keys_to_u64(txs.keys)
    order = np.lexsort((txs.sequence, lo, hi))
    starts = group_starts(hi[order], lo[order])  # one plate each, in key order
    ends = np.append(starts[1:], len(order))
    first_tx = order[starts]
    plate_keys = txs.keys[first_tx]
    at = current.find(plate_keys) if current.size else np.full(len(starts), -1, np.int64)
    kinds = txs.kinds[first_tx]
    correction = (kinds == TransactionKind.CHANGED_VEHICLE) & (
        txs.corrects_from[first_tx] != DAY_UNKNOWN
    )
    single = (ends - starts == 1) & np.isin(kinds, _KIND_VALUES) & ~correction
    fast = np.flatnonzero(single) if vectorised else np.zeros(0, dtype=np.int64)
    slow = np.flatnonzero(~single) if vectorised else np.arange(len(starts))
    parts = [
        _single_transactions(txs, first_tx[fast], fast, current, at[fast], outcome),
        _in_sequence(
            txs,
            [order[starts[p] : ends[p]] for p in slow.tolist()],
            slow,
            current,
            at[slow],
            outcome,
        ),
    ]
    outcome.changes = _changes(plate_keys, parts)
    outcome.refused.sort()
    return outcome


def _in_sequence(
    txs: DayTransactions,
    plate_txs: list[npt.NDArray[np.int64]],
    plates: npt.NDArray[np.int64],
    current: KeyedRecords,
    at: npt.NDArray[np.int64],
    outcome: DayOutcome,
) -> _Changed:
    """Each plate's transactions (`plate_txs`, in sequence order) through `apply_one`."""
    changed: list[int] = []
    counts: list[int] = []
    blobs: list[bytes] = []
    for plate, transactions, row_group in zip(plates.tolist(), plate_txs, at.tolist(), strict=True):
        before = current.rows_of(row_group) if row_group >= 0 else _empty()  # read, never written
        versions = before
        for t in transactions.tolist():
            kind = int(txs.kinds[t])
            try:
                versions = apply_one(
                    versions, txs.day, kind, int(txs.corrects_from[t]), txs.records[t]
                )
            except TransactionRefused as refused:
                outcome.refused.append((txs.ids[t], refused.message))
                continue
            outcome.applied[FEED_NAMES[TransactionKind(kind)]] += 1
        blob = versions.tobytes()
        if blob != before.tobytes():  # structured array_equal is ~20x slower
            changed.append(plate)
            counts.append(len(versions))
            blobs.append(blob)
    return _Changed(
        plates=np.array(changed, dtype=np.int64),
        counts=np.array(counts, dtype=np.int64),
        rows=np.frombuffer(b"".join(blobs), dtype=VEHICLE_DTYPE),
    )


def _single_transactions(
    txs: DayTransactions,
    transactions: npt.NDArray[np.int64],
    plates: npt.NDArray[np.int64],
    current: KeyedRecords,
    at: npt.NDArray[np.int64],
    outcome: DayOutcome,
) -> _Changed:
    """Plates with one opening or closing transaction each (`transactions[i]` on plate
    `plates[i]`, whose versions are row group `at[i]` of `current`, -1: none), all at once:
    `open_version` and `close_version` as whole-array operations, with their refusals."""
    day = txs.day
    kinds = txs.kinds[transactions]
    start = np.zeros(len(plates), dtype=np.int64)
    count = np.zeros(len(plates), dtype=np.int64)
    known = np.flatnonzero(at >= 0)
    start[known] = current.offsets[at[known]].astype(np.int64)
    count[known] = current.offsets[at[known] + 1].astype(np.int64) - start[known]
    # the last version of each plate (and the one before it), as int64 spans
    has = np.flatnonzero(count > 0)
    last_words = np.zeros((len(plates), _WORDS), dtype=np.int32)
    last_words[has] = _words(take_rows(current.records, start[has] + count[has] - 1))
    last_from = np.where(count > 0, last_words[:, 0], 0).astype(np.int64)
    last_to = np.where(count > 0, last_words[:, 1], DAY_OPEN).astype(np.int64)
    two = np.flatnonzero(count > 1)
    previous_to = np.zeros(len(plates), dtype=np.int64)
    previous_to[two] = _words(take_rows(current.records, start[two] + count[two] - 2))[:, 1]

    is_open = (count > 0) & (last_to == DAY_OPEN)
    past = (count > 0) & ((last_from > day) | ((last_to != DAY_OPEN) & (last_to > day)))
    closing = np.isin(kinds, _CLOSING_VALUES)
    no_open = closing & ~is_open
    too_late = ~no_open & past
    ok = ~(no_open | too_late)
    same_day = is_open & (last_from == day)  # the open version was opened today
    keep = count - same_day  # rows of the current versions kept
    opening = ~closing
    close_last = is_open & ~same_day  # row keep-1 ends today
    mark = (kinds == TransactionKind.CROSSED_OUT) & (
        ~same_day | ((keep > 0) & (previous_to == day))
    )
    new_rows = txs.records[transactions]
    _words(new_rows)[:, 0], _words(new_rows)[:, 1] = day, DAY_OPEN
    # a same-day replacement by identical details leaves the plate as it was
    identical = np.zeros(len(plates), dtype=np.bool_)
    identical[has] = (_words(new_rows[has]) == last_words[has]).all(axis=1)
    changed = np.flatnonzero(ok & (closing | ~same_day | ~identical))

    for reason, refused in ((NO_OPEN_VERSION, no_open), (PAST_THE_DAY, too_late)):
        outcome.refused.extend((txs.ids[t], reason) for t in transactions[refused].tolist())
    applied = np.bincount(kinds[ok], minlength=max(_KIND_VALUES) + 1)
    for kind in TransactionKind:
        if applied[kind]:
            outcome.applied[FEED_NAMES[kind]] += int(applied[kind])

    kept, adds = keep[changed], opening[changed].astype(np.int64)
    counts = kept + adds
    out_start = np.cumsum(counts) - counts
    rows = np.empty(int(counts.sum()), dtype=VEHICLE_DTYPE)
    within = np.arange(int(kept.sum()), dtype=np.int64) - np.repeat(np.cumsum(kept) - kept, kept)
    scatter_rows(
        rows,
        np.repeat(out_start, kept) + within,
        take_rows(current.records, np.repeat(start[changed], kept) + within),
    )
    added = np.flatnonzero(adds)
    scatter_rows(rows, out_start[added] + kept[added], new_rows[changed[added]])
    last_kept = out_start + kept - 1
    _words(rows)[last_kept[close_last[changed]], 1] = day
    rows["status"][last_kept[mark[changed]]] = CROSSED_OUT_STATUS
    return _Changed(plates=plates[changed], counts=counts, rows=rows)


def _changes(plate_keys: npt.NDArray[np.uint8], parts: list[_Changed]) -> KeyedRecords:
    """The changed plates of all `parts` as one table (their keys from `plate_keys`), built
    from the rows in plate order exactly as one plate-by-plate pass would give them."""
    plates = np.concatenate([part.plates for part in parts])
    counts = np.concatenate([part.counts for part in parts])
    rows = np.concatenate([part.rows for part in parts])
    order = np.argsort(plates, kind="stable")
    first_row = (np.cumsum(counts) - counts)[order]
    counts = counts[order]
    before = np.cumsum(counts) - counts
    rows = take_rows(
        rows,
        np.repeat(first_row - before, counts) + np.arange(int(counts.sum()), dtype=np.int64),
    )
    keys = plate_keys[plates[order]]
    return with_removed(group_by_key(np.repeat(keys, counts, axis=0), rows), keys[counts == 0])


def with_removed(table: KeyedRecords, removed: npt.NDArray[np.uint8]) -> KeyedRecords:
    """`table` with every key of `removed` as a change that deletes the key: an entry without
    rows, replacing the key's rows where `table` had some (`lez.store.overlay.overlay`)."""
    if not len(removed):
        return table
    hi, lo = keys_to_u64(removed)
    order = np.lexsort((lo, hi))
    hi, lo = hi[order], lo[order]
    distinct = np.ones(len(hi), dtype=np.bool_)
    distinct[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    removals = KeyedRecords(
        key_hi=hi[distinct],
        key_lo=lo[distinct],
        offsets=np.zeros(int(distinct.sum()) + 1, dtype=np.uint64),
        records=table.records[:0],
    )
    return overlay(table, removals, keep_empty=True)


def _empty() -> VehicleArray:
    return np.zeros(0, dtype=VEHICLE_DTYPE)


def _no_changes() -> KeyedRecords:
    return group_by_key(np.zeros((0, KEY_BYTES), np.uint8), _empty())
