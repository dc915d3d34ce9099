"""The sync checkpoint is a page log: each save appends the new page, a page cut off by a kill
is read as not saved, and the next save goes on from the last whole page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from lez.days import DAY_UNKNOWN
from lez.vehicle import RECORD_SIZE
from loader import checkpoint as checkpoints
from loader.feed import KeyedBatch, KeyedTransaction
from loader.mutations import TransactionKind

DAY = dt.date(2026, 10, 21)


def _page(first: int, n: int) -> KeyedBatch:
    return KeyedBatch(
        transactions=[
            KeyedTransaction(
                transaction_id=f"T{i}",
                kind=next(iter(TransactionKind)),
                sequence=i,
                key=bytes([i % 256]) * 16,
                corrects_from=DAY_UNKNOWN,
                record=bytes([i % 256]) * RECORD_SIZE,
            )
            for i in range(first, first + n)
        ],
        refused=[(f"R{first}", "no row details")],
    )


def _fetch(path: Path, state: checkpoints.DayCheckpoint, pages: range, total: int) -> None:
    for page in pages:
        state.add(_page(page * 10, 3))
        state.listed_by_type["registrationsNew"] += 3
        state.pages_done, state.total_pages = page + 1, total
        state.complete = state.pages_done >= total
        checkpoints.save(path, state)


def test_pages_append_and_a_cut_page_is_not_saved(tmp_path: Path) -> None:
    path = tmp_path / "cp.jsonl"
    whole = checkpoints.DayCheckpoint(key_id="k", day=DAY)
    _fetch(path, whole, range(3), total=3)
    assert path.read_bytes().count(b"\n") == 1 + 3  # the header and one line a page

    state = checkpoints.DayCheckpoint(key_id="k", day=DAY)
    _fetch(path.with_name("cut.jsonl"), state, range(2), total=3)
    cut = path.with_name("cut.jsonl")
    lines = cut.read_bytes()
    cut.write_bytes(lines + lines.splitlines(keepends=True)[-1][:25])  # killed mid-append
    resumed = checkpoints.load(cut, key_id="k")
    assert resumed is not None and resumed.pages_done == 2 and len(resumed.transactions) == 6
    _fetch(cut, resumed, range(2, 3), total=3)
    again = checkpoints.load(cut, key_id="k")
    expected = checkpoints.load(path, key_id="k")
    assert again is not None and expected is not None and again.complete
    assert again.transactions == expected.transactions and again.refused == expected.refused
    assert again.listed_by_type == expected.listed_by_type
