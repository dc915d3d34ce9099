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
`apply_day` records its id and reason and the rest of the day applies. Details are converted
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
from lez.store.columns import KeyedRecords, group_by_key
from lez.vehicle import VEHICLE_DTYPE, VehicleArray


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


def open_version(versions: VehicleArray, day: int, details: np.void) -> VehicleArray:
    """A new version `[day, open)` with `details`, closing the open one on `day`."""
    out = _check_not_after(versions, day)
    keep = len(out)
    if keep and out["valid_to"][-1] == DAY_OPEN:
        if out["valid_from"][-1] == day:  # a second change on one day replaces the first
            keep -= 1
        else:
            out["valid_to"][-1] = day
    # filled by assignment: np.concatenate promotes structured dtypes field by field (slow)
    result = np.empty(keep + 1, dtype=VEHICLE_DTYPE)
    result[:keep] = out[:keep]
    result[keep] = details
    result["valid_from"][keep], result["valid_to"][keep] = day, DAY_OPEN
    return result


def close_version(versions: VehicleArray, day: int, *, crossed_out: bool) -> VehicleArray:
    """The open version ends on `day`; a crossing-out marks it status S."""
    if not len(versions) or versions["valid_to"][-1] != DAY_OPEN:
        raise TransactionRefused("no open version to close")
    out = _check_not_after(versions, day)
    if out["valid_from"][-1] == day:  # opened today, closed today: never valid for a day
        out = out[:-1]
        if not (len(out) and out["valid_to"][-1] == day):
            return out
    else:
        out["valid_to"][-1] = day
    if crossed_out:
        out["status"][-1] = CROSSED_OUT_STATUS
    return out


def correct_vehicle(
    versions: VehicleArray, day: int, corrects_from: int, details: np.void
) -> VehicleArray:
    """Vehicle fields of every version from `corrects_from` on take the values of `details`."""
    if corrects_from > day:
        raise TransactionRefused("correctsFrom is after the transaction day")
    if not len(versions) or versions["valid_to"][-1] <= corrects_from:
        raise TransactionRefused("no version on or after correctsFrom to correct")
    out = _check_not_after(versions, day)
    inside = np.flatnonzero((out["valid_from"] < corrects_from) & (corrects_from < out["valid_to"]))
    if len(inside):  # split the version containing the first corrected day
        i = int(inside[0])
        head, tail = out[i : i + 1].copy(), out[i : i + 1].copy()
        head["valid_to"] = corrects_from
        tail["valid_from"] = corrects_from
        out = np.concatenate([out[:i], head, tail, out[i + 1 :]])
    later = out["valid_from"] >= corrects_from
    for name in VEHICLE_FIELDS:
        out[name][later] = details[name]
    return out


def _check_not_after(versions: VehicleArray, day: int) -> VehicleArray:
    """A copy of `versions`, refusing a history that already reaches past `day`."""
    if len(versions) and (
        versions["valid_from"][-1] > day
        or (versions["valid_to"][-1] != DAY_OPEN and versions["valid_to"][-1] > day)
    ):
        raise TransactionRefused("the plate's history already reaches past the transaction day")
    return versions.copy()


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


def apply_day(txs: DayTransactions, current: KeyedRecords) -> DayOutcome:
    """Apply a day's transactions, per plate in `sequence` order, to the current versions.

    `current` holds (at least) the versions of every key the transactions touch; a key absent
    from it has no versions yet. Only plates whose versions changed are in the outcome.
    """
    outcome = DayOutcome(changes=group_by_key(np.zeros((0, KEY_BYTES), np.uint8), _empty()))
    if not len(txs):
        return outcome
    hi, lo = keys_to_u64(txs.keys)
    order = np.lexsort((txs.sequence, lo, hi))
    found = current.find(txs.keys[order]) if current.size else np.full(len(order), -1)
    changed_keys: list[npt.NDArray[np.uint8]] = []
    changed_rows: list[VehicleArray] = []
    removed: list[npt.NDArray[np.uint8]] = []
    start = 0
    while start < len(order):
        stop = start + 1
        first = order[start]
        while stop < len(order) and hi[order[stop]] == hi[first] and lo[order[stop]] == lo[first]:
            stop += 1
        at = int(found[start])
        before = current.rows_of(at).copy() if at >= 0 else _empty()
        versions = before
        for t in order[start:stop].tolist():
            try:
                versions = apply_one(
                    versions,
                    txs.day,
                    int(txs.kinds[t]),
                    int(txs.corrects_from[t]),
                    txs.records[t],
                )
            except TransactionRefused as refused:
                outcome.refused.append((txs.ids[t], refused.message))
                continue
            outcome.applied[FEED_NAMES[TransactionKind(int(txs.kinds[t]))]] += 1
        if versions.tobytes() != before.tobytes():  # structured array_equal is ~20x slower
            key = txs.keys[order[start]]
            if len(versions):
                changed_keys.append(np.repeat(key[None, :], len(versions), axis=0))
                changed_rows.append(versions)
            else:
                removed.append(key)
        start = stop
    outcome.changes = with_removed(
        group_by_key(
            np.concatenate(changed_keys) if changed_keys else np.zeros((0, KEY_BYTES), np.uint8),
            np.concatenate(changed_rows) if changed_rows else _empty(),
        ),
        np.array(removed, dtype=np.uint8).reshape(-1, KEY_BYTES),
    )
    outcome.refused.sort()
    return outcome


def with_removed(table: KeyedRecords, removed: npt.NDArray[np.uint8]) -> KeyedRecords:
    """`table` plus the keys in `removed` with zero rows (a change that deletes the key)."""
    if not len(removed):
        return table
    hi, lo = keys_to_u64(removed)
    all_hi = np.concatenate([table.key_hi, hi])
    all_lo = np.concatenate([table.key_lo, lo])
    counts = np.concatenate(
        [np.diff(table.offsets.astype(np.int64)), np.zeros(len(hi), dtype=np.int64)]
    )
    starts = np.concatenate([table.offsets[:-1].astype(np.int64), np.zeros(len(hi), np.int64)])
    order = np.lexsort((all_lo, all_hi))
    counts, starts = counts[order], starts[order]
    before = np.cumsum(counts) - counts
    rows = np.repeat(starts - before, counts) + np.arange(int(counts.sum()), dtype=np.int64)
    offsets = np.zeros(len(order) + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum(counts)
    return KeyedRecords(
        key_hi=all_hi[order], key_lo=all_lo[order], offsets=offsets, records=table.records[rows]
    )


def _empty() -> VehicleArray:
    return np.zeros(0, dtype=VEHICLE_DTYPE)
