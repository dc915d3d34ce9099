"""Retention in the sync (loader/retention.py): the build's rule over the store with the day's
changes laid over it; whole histories go, open plates stay, counts only."""

from __future__ import annotations

import numpy as np

from lez.days import DAY_OPEN, parse_day
from lez.store.columns import KeyedRecords, empty_table, group_by_key
from lez.vehicle import empty
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
