"""Retention in the sync (loader/retention.py): the build's rule over the store with the day's
changes laid over it; whole histories go, open plates stay, counts only."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lez.days import DAY_OPEN, parse_day
from lez.store.columns import (
    KeyedRecords,
    empty_table,
    group_by_key,
    key_range_parts,
    strictly_increasing,
)
from lez.store.overlay import overlay
from lez.vehicle import empty
from loader.mutations import with_removed
from loader.retention import last_ends, purge_changes

CUTOFF = parse_day("2026-04-22")


def _table(spans: dict[int, list[tuple[int, int]]]) -> KeyedRecords:
    keys, rows = [], []
    for plate, versions in spans.items():
        key = np.zeros((len(versions), 16), dtype=np.uint8)
        key[:, 0] = plate
        rec = empty(len(versions))
        for i, (a, b) in enumerate(versions):
            rec["valid_from"][i], rec["valid_to"][i] = a, b
        keys.append(key)
        rows.append(rec)
    return group_by_key(np.concatenate(keys), np.concatenate(rows))


D = parse_day


def test_last_ends_reads_the_latest_version() -> None:
    table = _table({1: [(D("2010-01-01"), D("2012-01-01")), (D("2012-01-01"), DAY_OPEN)],
                    2: [(D("2010-01-01"), D("2026-01-01"))]})  # fmt: skip
    assert last_ends(table).tolist() == [DAY_OPEN, D("2026-01-01")]


def test_expired_plates_are_removed_with_their_whole_history() -> None:
    store = _table(
        {
            1: [(D("2010-01-01"), D("2015-01-01")), (D("2015-01-01"), D("2026-04-22"))],  # gone
            2: [(D("2010-01-01"), D("2026-04-23"))],  # one day short: kept
            3: [(D("2010-01-01"), D("2012-01-01")), (D("2012-01-01"), DAY_OPEN)],  # open: kept
            4: [(D("2010-01-01"), D("2020-01-01"))],  # gone, but re-registered today: kept
        }
    )
    changes = _table({4: [(D("2010-01-01"), D("2020-01-01")), (D("2026-10-21"), DAY_OPEN)],
                      5: [(D("2010-01-01"), D("2019-01-01"))]})  # fmt: skip
    out, purged = purge_changes([store], changes, CUTOFF)
    assert purged == 2  # plate 1 from the store, plate 5 from the day's changes
    counts = np.diff(out.offsets.astype(np.int64)).tolist()
    assert (out.key_hi >> np.uint64(56)).tolist() == [1, 4, 5]
    assert counts == [0, 2, 0]  # zero rows: the key is removed


def test_nothing_to_purge_returns_the_changes_as_they_are() -> None:
    changes = _table({7: [(D("2026-10-21"), DAY_OPEN)]})
    out, purged = purge_changes([empty_table()], changes, CUTOFF)
    assert purged == 0 and out is changes


def _random_table(rng: np.random.Generator, pool: np.ndarray, *, removals: bool) -> KeyedRecords:
    """Some keys of `pool`, each with 1-2 versions ending around the cutoff or open (or, in a
    layer, no rows: the key is removed)."""
    chosen = pool[rng.random(len(pool)) < 0.5]
    keys, rows, removed = [], [], []
    for key in chosen:
        if removals and rng.random() < 0.2:
            removed.append(key)
            continue
        n = int(rng.integers(1, 3))
        rec = empty(n)
        ends = np.sort(rng.integers(CUTOFF - 3, CUTOFF + 3, size=n))
        rec["valid_from"] = ends - 30
        rec["valid_to"] = ends
        rec["valid_from"][1:] = ends[:-1]
        if rng.random() < 0.3:
            rec["valid_to"][-1] = DAY_OPEN
        keys.append(np.repeat(key[None, :], n, axis=0))
        rows.append(rec)
    table = group_by_key(
        np.concatenate(keys) if keys else np.zeros((0, 16), np.uint8),
        np.concatenate(rows) if rows else empty(0),
    )
    return with_removed(table, np.array(removed, dtype=np.uint8).reshape(-1, 16))


def _reference_purge(
    base: KeyedRecords, layer: KeyedRecords, changes: KeyedRecords
) -> tuple[dict[bytes, bytes], int]:
    """Plate by plate over the merged content: key -> rows of the purged changes; count."""
    merged = overlay(base, layer, keep_empty=False)
    rows = {merged.key_bytes(i): merged.rows_of(i) for i in range(merged.size)}
    rows |= {changes.key_bytes(i): changes.rows_of(i) for i in range(changes.size)}
    out = {changes.key_bytes(i): changes.rows_of(i).tobytes() for i in range(changes.size)}
    purged = 0
    for key, versions in rows.items():
        end = int(versions["valid_to"][-1]) if len(versions) else DAY_OPEN
        if end != DAY_OPEN and end <= CUTOFF:
            out[key] = b""
            purged += 1
    return out, purged


def _as_dict(table: KeyedRecords) -> dict[bytes, bytes]:
    return {table.key_bytes(i): table.rows_of(i).tobytes() for i in range(table.size)}


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_base_and_layer_give_what_the_merged_store_gives(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, size=(40, 16), dtype=np.uint8)
    pool[1, :8] = pool[0, :8]  # a 64-bit prefix collision
    base = _random_table(rng, pool, removals=False)
    layer = _random_table(rng, pool, removals=True)
    changes = _random_table(rng, pool, removals=True)
    want, want_purged = _reference_purge(base, layer, changes)
    merged = overlay(base, layer, keep_empty=False)
    for store in ([base, layer], [merged], list(key_range_parts(merged, 4))):
        out, purged = purge_changes(store, changes, CUTOFF)
        assert purged == want_purged
        assert _as_dict(out) == want
        assert strictly_increasing(out)


def test_a_plate_removed_in_the_layer_is_not_purged_again() -> None:
    base = _table({1: [(D("2010-01-01"), D("2015-01-01"))], 2: [(D("2010-01-01"), DAY_OPEN)]})
    layer = with_removed(empty_table(), _table({1: [(0, 1)]}).key_matrix())
    out, purged = purge_changes([base, layer], empty_table(), CUTOFF)
    assert purged == 0 and out.size == 0
    out, purged = purge_changes([base], empty_table(), CUTOFF)  # without the layer: purged
    assert purged == 1 and out.counts().tolist() == [0]
