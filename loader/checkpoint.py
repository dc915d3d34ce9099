"""The sync checkpoint: one day's keyed transactions as fetched so far, written atomically.

A sync fetches a day page by page into this file and only then applies it to the store in one
publication. Killed while fetching, the next run resumes after the last page recorded; killed
after publishing, the store's `mutation_watermark` already names the day and the stale
checkpoint is discarded. So a transaction is never lost nor applied twice.

Format (JSON, UTF-8, `CHECKPOINT_FORMAT`; docs/sync.md): the store's key id, the day, the
pages done, the page count the feed last announced, whether the list is complete, the
transactions as `[id, type, sequence, key hex, correctsFrom ISO or null, record hex]` (the
record is one packed `lez.vehicle` record), the refusals as `[id, reason]`, counts of
transactions by type and of unrecognised codes. No plate in clear: keys are the HMAC keys the
store uses. Each save writes `<path>.tmp`, fsyncs it, renames it over `<path>` and fsyncs the
directory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lez.days import DAY_UNKNOWN, format_day, parse_day
from lez.errors import CheckpointError
from loader.feed import KeyedBatch, KeyedTransaction
from loader.mutations import FEED_NAMES, FEED_TYPES

CHECKPOINT_FORMAT: Final = "lez-sync-checkpoint-1"


@dataclass(slots=True)
class DayCheckpoint:
    """What has been fetched of one day."""

    key_id: str
    day: dt.date
    pages_done: int = 0
    total_pages: int | None = None
    complete: bool = False
    transactions: list[KeyedTransaction] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    listed_by_type: Counter[str] = field(default_factory=Counter)
    unrecognised_codes: Counter[str] = field(default_factory=Counter)

    def seen(self) -> set[str]:
        """Ids already fetched (used or refused): a repeat on a later page is skipped."""
        return {t.transaction_id for t in self.transactions} | {i for i, _ in self.refused}

    def add(self, batch: KeyedBatch) -> None:
        self.transactions.extend(batch.transactions)
        self.refused.extend(batch.refused)
        self.unrecognised_codes.update(batch.unrecognised_codes)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "key_id": self.key_id,
            "day": self.day.isoformat(),
            "pages_done": self.pages_done,
            "total_pages": self.total_pages,
            "complete": self.complete,
            "transactions": [
                [
                    t.transaction_id,
                    FEED_NAMES[t.kind],
                    t.sequence,
                    t.key.hex(),
                    None if t.corrects_from == DAY_UNKNOWN else format_day(t.corrects_from),
                    t.record.hex(),
                ]
                for t in self.transactions
            ],
            "refused": [list(r) for r in self.refused],
            "listed_by_type": dict(sorted(self.listed_by_type.items())),
            "unrecognised_codes": dict(sorted(self.unrecognised_codes.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DayCheckpoint:
        if data.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format is not {CHECKPOINT_FORMAT}")
        return cls(
            key_id=str(data["key_id"]),
            day=dt.date.fromisoformat(data["day"]),
            pages_done=int(data["pages_done"]),
            total_pages=None if data["total_pages"] is None else int(data["total_pages"]),
            complete=bool(data["complete"]),
            transactions=[
                KeyedTransaction(
                    transaction_id=str(txid),
                    kind=FEED_TYPES[kind],
                    sequence=int(seq),
                    key=bytes.fromhex(key),
                    corrects_from=DAY_UNKNOWN if cf is None else parse_day(cf),
                    record=bytes.fromhex(record),
                )
                for txid, kind, seq, key, cf, record in data["transactions"]
            ],
            refused=[(str(i), str(r)) for i, r in data["refused"]],
            listed_by_type=Counter(data["listed_by_type"]),
            unrecognised_codes=Counter(data["unrecognised_codes"]),
        )


def save(path: Path, checkpoint: DayCheckpoint) -> None:
    """Write the checkpoint atomically (tmp, fsync, rename, fsync of the directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps(checkpoint.to_json(), separators=(",", ":")).encode()
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: Path, *, key_id: str) -> DayCheckpoint | None:
    """The checkpoint at `path`, or None when there is none. Refuses one made with another
    key (its keys would not match the store's) and one that cannot be read."""
    if not path.exists():
        return None
    try:
        checkpoint = DayCheckpoint.from_json(json.loads(path.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(
            f"{path}: not a readable sync checkpoint ({type(exc).__name__}); delete it to "
            "fetch the day again from the start"
        ) from None
    if checkpoint.key_id != key_id:
        raise CheckpointError(
            f"{path}: made with key {checkpoint.key_id}, the store uses {key_id}; delete it"
        )
    return checkpoint


def discard(path: Path) -> None:
    """Remove the checkpoint (after its day is published, or when it is stale)."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".tmp").unlink(missing_ok=True)
