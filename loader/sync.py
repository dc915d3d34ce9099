"""`lez-loader sync`: apply the DIV's daily changes to the store, one day per publication.

For each day after the store's `mutation_watermark` (or after its extract's `source_date` when
no day was synced yet), up to `--through` or the first day the DIV has not closed:

1. **Fetch** (`fetch_day`): the day's transaction list page by page and the details of each
   page (`loader.feed`), keyed at once; after every page the checkpoint (`loader.checkpoint`)
   is saved atomically, so a killed sync resumes after the last page it recorded.
2. **Apply** (`apply_fetched`): the current versions of the touched plates
   (`Snapshot.vehicle_rows`) go through `loader.mutations.apply_day`; plates crossed out longer
   ago than the retention period are purged (`loader.retention`, reading the store's base and
   layer as they are); everything is published in ONE `StoreBuilder.publish_changes` whose
   meta records the day as `mutation_watermark` and a digest of the transaction ids. Only then
   is the checkpoint removed.
3. **Compact** when the store's policy (`lez.store.compaction.needs_compaction`) says the layer
   has grown too large: the sync folds it into a new base itself (`StoreBuilder.compact`, same
   content, atomic like every publication), so an unattended nightly sync keeps lookups fast;
   `--no-compact` only prints that `lez-loader compact` should run.

A sync killed at any point and started again ends with the store an uninterrupted sync gives:
a day is either published with its watermark or not at all, days up to the watermark are never
fetched again, and the checkpoint of a day already published is discarded. docs/sync.md has
the operator's view. No plate in clear reaches the store, the checkpoint, a report or a log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np
import numpy.typing as npt

from lez import data_quality
from lez.days import to_day
from lez.errors import FeedError, StoreNotReady, SyncBusy
from lez.keys import KEY_BYTES, PlateKeyer, load_key
from lez.store import StoreBuilder
from lez.store.columns import KeyedRecords, group_by_key, rows_at
from lez.store.compaction import needs_compaction
from lez.store.reader import LmdbReader, open_store, read_meta
from lez.store.writer import DEFAULT_MAP_SIZE, Progress, new_snapshot_id, no_progress, utc_now
from lez.vehicle import VEHICLE_DTYPE
from loader import checkpoint as checkpoints
from loader.checkpoint import DayCheckpoint
from loader.config import DEFAULT_RETENTION_DAYS
from loader.feed import FeedClient, FeedSettings, Waiter, keyed_transactions
from loader.mutations import DayTransactions, apply_day
from loader.retention import purge_changes

CHECKPOINT_NAME: Final = "sync-checkpoint.json"
"""Default checkpoint file, in the store root beside `builds/` (never inside a build)."""
LOCK_NAME: Final = "sync.lock"
CRASH_HOOK: Final = "LEZ_SYNC_CRASH_AT"
"""Test hook: `page:N`, `before-publish`, `after-publish` or `before-compact` makes the sync
SIGKILL itself there (the kill-and-resume tests); unset in production."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncSettings:
    """Everything a sync needs."""

    store_root: Path
    key_file: Path
    feed: FeedSettings
    checkpoint: Path | None = None  # default: STORE/sync-checkpoint.json
    through: dt.date | None = None  # last day to sync (default: until the DIV has no more)
    retention_days: int = DEFAULT_RETENTION_DAYS
    map_size: int = DEFAULT_MAP_SIZE
    keep_builds: int = 2
    compact: bool = True  # fold the layer into a new base when the store's policy says so

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint or self.store_root / CHECKPOINT_NAME


@dataclass(slots=True)
class DayReport:
    """What one synced day did: counts and transaction ids, never plates."""

    day: str
    listed_by_type: dict[str, int] = field(default_factory=dict)
    applied_by_type: dict[str, int] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (transaction id, reason)
    unrecognised_codes: dict[str, int] = field(default_factory=dict)
    plates_changed: int = 0
    plates_purged: int = 0
    snapshot_id: str = ""
    transactions_sha256: str = ""
    seconds: float = 0.0
    compacted_into: str = ""  # snapshot id of the new base, when the layer was folded
    compaction_advised: bool = False  # the policy says compact, and the sync may not
    data_quality: dict[str, Any] | None = None  # the store's figures after the day

    def lines(self) -> list[str]:
        listed = sum(self.listed_by_type.values())
        applied = sum(self.applied_by_type.values())
        by_type = ", ".join(f"{k} {v}" for k, v in sorted(self.listed_by_type.items()))
        out = [
            f"{self.day}: {listed} transactions ({by_type or 'none'}); applied {applied}, "
            f"refused {len(self.refused)}, plates changed {self.plates_changed}, "
            f"purged {self.plates_purged}; snapshot {self.snapshot_id} in {self.seconds:.1f} s"
        ]
        if self.unrecognised_codes:
            out.append(f"  unrecognised codes loaded as UNKNOWN: {self.unrecognised_codes}")
        if self.data_quality is not None:
            out.append(f"  {data_quality.summary(self.data_quality)}")
        if self.compacted_into:
            out.append(f"  layer compacted into a new base, snapshot {self.compacted_into}")
        if self.compaction_advised:
            out.append("  the layer is large: run `lez-loader compact` (lez.store.compaction)")
        out.extend(f"  refused {txid}: {reason}" for txid, reason in self.refused)
        return out


@dataclass(slots=True)
class SyncReport:
    """A whole run: the days published and where it stopped."""

    days: list[DayReport] = field(default_factory=list)
    up_to_date_through: str = ""
    stopped_because: str = ""


def next_day(meta_watermark: str, source_date: str) -> dt.date:
    """The first day not yet in the store."""
    last = meta_watermark or source_date
    return dt.date.fromisoformat(last) + dt.timedelta(days=1)


def run_sync(
    settings: SyncSettings,
    *,
    transport: httpx.BaseTransport | None = None,
    wait: Waiter | None = None,
    progress: Progress = no_progress,
    on_day: Callable[[DayReport], None] = lambda report: None,
    log: Callable[[str], None] | None = None,
) -> SyncReport:
    """Sync day after day until `through` or DAY_NOT_AVAILABLE; see the module docstring."""
    say = log or (lambda line: print(line, file=sys.stderr))
    keyer = load_key(settings.key_file)
    report = SyncReport()
    with (
        _sync_lock(settings.store_root),
        FeedClient(settings.feed, transport=transport, wait=wait, log=say) as client,
    ):
        while True:
            reader = open_store(settings.store_root, expected_key_id=keyer.key_id)
            try:
                meta = reader.meta
                day = next_day(meta.mutation_watermark, meta.source_date)
                report.up_to_date_through = (day - dt.timedelta(days=1)).isoformat()
                if settings.through is not None and day > settings.through:
                    report.stopped_because = f"reached --through {settings.through}"
                    return report
                started = time.perf_counter()
                fetched = fetch_day(client, day, keyer, settings.checkpoint_path, progress)
                if fetched is None:
                    report.stopped_because = f"DAY_NOT_AVAILABLE for {day}"
                    return report
                day_report = apply_fetched(reader, fetched, settings)
            finally:
                reader.close()
            _crash_point("after-publish")
            checkpoints.discard(settings.checkpoint_path)
            day_report.seconds = round(time.perf_counter() - started, 2)
            report.days.append(day_report)
            report.up_to_date_through = day_report.day
            for txid, reason in day_report.refused:
                say(f"sync {day_report.day}: transaction {txid} refused: {reason}")
            on_day(day_report)


def fetch_day(
    client: FeedClient,
    day: dt.date,
    keyer: PlateKeyer,
    path: Path,
    progress: Progress = no_progress,
) -> DayCheckpoint | None:
    """The day's keyed transactions, resuming a checkpoint of the same day; None when the DIV
    has not closed the day. The checkpoint is saved after every page."""
    state = checkpoints.load(path, key_id=keyer.key_id)
    if state is None or state.day != day:  # none, or one of a day already published
        checkpoints.discard(path)
        state = DayCheckpoint(key_id=keyer.key_id, day=day)
    seen = state.seen()  # ids already fetched, kept up to date below (not rebuilt per page)
    while not state.complete:
        page = client.page(day, state.pages_done)
        if page is None:
            if state.pages_done:
                raise FeedError(
                    f"{day}: the feed said DAY_NOT_AVAILABLE after {state.pages_done} pages; "
                    "run the sync again later (the pages fetched are kept)"
                )
            return None
        fresh: list[str] = []
        for txid, kind in page.items:
            if txid not in seen:
                seen.add(txid)
                fresh.append(txid)
                state.listed_by_type[kind] += 1
        items = client.details(fresh)
        wanted = set(fresh)
        items = [i for i in items if i.get("transactionId") in wanted]
        got = {str(i["transactionId"]) for i in items}
        items = list({str(i["transactionId"]): i for i in items}.values())  # one detail an id
        state.add(keyed_transactions(items, day, keyer))
        del items
        state.refused.extend((txid, "no row details") for txid in fresh if txid not in got)
        state.pages_done += 1
        state.total_pages = page.total_pages
        state.complete = state.pages_done >= page.total_pages
        checkpoints.save(path, state)
        progress(f"fetch {day}", state.pages_done, max(page.total_pages, 1))
        _crash_point(f"page:{state.pages_done}")
    return state


def day_transactions(state: DayCheckpoint) -> DayTransactions:
    """The checkpoint's transactions as the aligned arrays `apply_day` takes."""
    txs = state.transactions
    n = len(txs)
    return DayTransactions(
        day=to_day(state.day),
        ids=[t.transaction_id for t in txs],
        keys=np.frombuffer(b"".join(t.key for t in txs), dtype=np.uint8).reshape(n, KEY_BYTES),
        kinds=np.array([int(t.kind) for t in txs], dtype=np.uint8),
        sequence=np.array([t.sequence for t in txs], dtype=np.int64),
        corrects_from=np.array([t.corrects_from for t in txs], dtype=np.int32),
        records=np.frombuffer(b"".join(t.record for t in txs), dtype=VEHICLE_DTYPE).copy(),
    )


def transactions_digest(ids: list[str]) -> str:
    """SHA-256 of the day's transaction ids (sorted, one per line): what was applied, checkable
    against the feed without keeping the ids in the store."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def apply_fetched(reader: LmdbReader, state: DayCheckpoint, settings: SyncSettings) -> DayReport:
    """Apply a fetched day to the store `reader` has open and publish it in one step."""
    day = to_day(state.day)
    txs = day_transactions(state)
    with reader.snapshot() as snap:
        current = _current_versions(snap.vehicle_rows, txs.keys)
        outcome = apply_day(txs, current)
        cutoff = day - settings.retention_days
        changes, purged = purge_changes(reader.vehicle_tables(), outcome.changes, cutoff)
        replaced = _replaced_versions(snap.vehicle_rows, current, changes)
    refused = sorted(state.refused + outcome.refused)
    quality = _updated_quality(reader.meta.data_quality, replaced, changes, state, len(refused))
    all_ids = [t.transaction_id for t in state.transactions] + [i for i, _ in state.refused]
    report = DayReport(
        day=state.day.isoformat(),
        listed_by_type=dict(sorted(state.listed_by_type.items())),
        applied_by_type=dict(sorted(outcome.applied.items())),
        refused=refused,
        unrecognised_codes=dict(sorted(state.unrecognised_codes.items())),
        plates_changed=outcome.changes.size,
        plates_purged=purged,
        transactions_sha256=transactions_digest(all_ids),
        data_quality=quality,
    )
    now = utc_now()
    meta = replace(
        reader.meta,
        snapshot_id=new_snapshot_id(),
        snapshot_seq=reader.meta.snapshot_seq + 1,
        built_at=now,
        synced_at=now,  # the server exports the time since the last sync (docs/observability.md)
        mutation_watermark=state.day.isoformat(),
        build_report={
            "sync_day": report.day,
            "transactions": len(all_ids),
            "transactions_sha256": report.transactions_sha256,
            "applied": sum(outcome.applied.values()),
            "refused": len(refused),
            "plates_purged": purged,
        },
        data_quality=quality,
    )
    _crash_point("before-publish")
    builder = StoreBuilder(
        settings.store_root, map_size=settings.map_size, keep=settings.keep_builds
    )
    published = builder.publish_changes(changes, meta=meta, source=reader.path)
    report.snapshot_id = meta.snapshot_id
    if needs_compaction(read_meta(published)):
        if settings.compact:
            _crash_point("before-compact")
            compacted = builder.compact(source=published)
            report.compacted_into = compacted.name
        else:
            report.compaction_advised = True
    return report


def _updated_quality(
    previous: dict[str, Any] | None,
    replaced: npt.NDArray[np.void],
    changes: KeyedRecords,
    state: DayCheckpoint,
    refused: int,
) -> dict[str, Any] | None:
    """The store's data quality after the day: the replaced versions' counts out, the new
    versions' counts in, the day's unrecognised codes and refused transactions added
    (`lez.data_quality`). A store whose build recorded none keeps none."""
    if previous is None:
        return None
    day = data_quality.DataQuality(
        unknown_codes=dict(state.unrecognised_codes), rejected=refused
    ).plus(data_quality.count_versions(changes.records))
    updated = data_quality.DataQuality.from_json(previous).minus_versions(
        data_quality.count_versions(replaced)
    )
    return replace(
        updated.plus(day), source=data_quality.sync_source(state.day.isoformat())
    ).to_json()


def _replaced_versions(
    vehicle_rows: Callable[[npt.NDArray[np.uint8]], tuple[npt.NDArray[np.int64], Any]],
    current: KeyedRecords,
    changes: KeyedRecords,
) -> npt.NDArray[np.void]:
    """The stored versions of every key in `changes`: those of the day's plates from `current`
    (looked up once already), those of the plates retention purged (a few) looked up now."""
    found = current.find_halves(changes.key_hi, changes.key_lo)
    _, known = rows_at(current, found)
    missing = np.flatnonzero(found < 0)
    if not len(missing):
        return np.asarray(known)
    _, purged = vehicle_rows(changes.key_matrix()[missing])
    return np.concatenate([known, np.asarray(purged, dtype=VEHICLE_DTYPE)])


def _current_versions(
    vehicle_rows: Callable[[npt.NDArray[np.uint8]], tuple[npt.NDArray[np.int64], Any]],
    keys: npt.NDArray[np.uint8],
) -> KeyedRecords:
    """The stored versions of the distinct `keys`, as a small table of their own."""
    unique = np.unique(np.ascontiguousarray(keys).view(f"V{KEY_BYTES}").ravel())
    key_matrix = unique.view(np.uint8).reshape(-1, KEY_BYTES)
    query, rows = vehicle_rows(key_matrix)
    return group_by_key(key_matrix[query], np.array(rows, dtype=VEHICLE_DTYPE))


@contextlib.contextmanager
def _sync_lock(store_root: Path) -> Iterator[None]:
    """Hold STORE/sync.lock (an advisory `flock`, released when the process ends, even killed):
    two syncs at once would fetch the same day into one checkpoint."""
    if not store_root.is_dir():
        raise StoreNotReady(f"no store at {store_root}; build one with `lez-loader build`")
    path = store_root / LOCK_NAME
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SyncBusy(
                f"another sync is running on {store_root} (it holds {path}); wait for it"
            ) from None
        yield


def _crash_point(name: str) -> None:
    """Kill this process at the point `LEZ_SYNC_CRASH_AT` names (kill-and-resume tests)."""
    if os.environ.get(CRASH_HOOK) == name:
        os.kill(os.getpid(), signal.SIGKILL)
