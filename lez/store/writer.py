"""Build a store in a fresh directory, verify it, then publish it atomically.

A build writes `builds/<snapshot_id>.tmp/` with keys already sorted (`append=True`: 8x faster and
46% smaller than unsorted writes), syncs, reopens it read-only to verify it, renames the
directory to its final name and swaps the `current` symlink in one `rename`. A build that fails
or is killed at any point leaves the published store as it was; stale `.tmp` builds are
removed by the next build. Readers of the previous build keep their open map until they close
it; the previous `keep - 1` builds stay on disk.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Final

import lmdb
import numpy as np

from lez.errors import StoreCorrupt
from lez.store import layout
from lez.store.columns import KeyedRecords
from lez.store.layout import StoreMeta

DEFAULT_MAP_SIZE: Final = 64 * 2**30  # sparse: only what is written takes disk space
PUT_BATCH: Final = 200_000

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total)."""


def no_progress(stage: str, done: int, total: int) -> None:
    """A `Progress` that reports nothing."""
    return None


class StoreBuilder:
    """Writes and publishes stores under one root directory."""

    def __init__(self, root: Path, *, map_size: int = DEFAULT_MAP_SIZE, keep: int = 2) -> None:
        self.root = root
        self.map_size = map_size
        self.keep = max(1, keep)

    @property
    def builds(self) -> Path:
        return self.root / layout.BUILDS_DIR

    def build(
        self,
        *,
        meta: StoreMeta,
        vehicles: KeyedRecords,
        registrations: KeyedRecords,
        rulesets: dict[str, str],
        progress: Progress = no_progress,
    ) -> Path:
        """Write a complete store and publish it; returns the published build directory."""
        tmp, final = self._start(meta.snapshot_id)
        env = self._open_env(tmp)
        try:
            self._write_table(env, layout.VEHICLES_DB, vehicles, progress, "vehicles")
            self._write_table(
                env, layout.REGISTRATIONS_DB, registrations, progress, "registrations"
            )
            with env.begin(write=True) as txn:
                self._write_columns(txn, env, layout.VEHICLES_TABLE, vehicles)
                self._write_columns(txn, env, layout.REGISTRATIONS_TABLE, registrations)
                rdb = env.open_db(layout.RULESETS_DB, txn=txn)
                for revision, text in sorted(rulesets.items()):
                    txn.put(revision.encode(), text.encode(), db=rdb)
        except BaseException:
            env.close()
            raise
        full_meta = replace(meta, rulesets=tuple(sorted(rulesets)))
        return self._finish(env, tmp, final, full_meta, progress)

    def amend(
        self,
        new_snapshot_id: str,
        change: Callable[[lmdb.Environment, lmdb.Transaction], StoreMeta],
        *,
        source: Path | None = None,
    ) -> Path:
        """Copy a published build, apply `change` in one write transaction, publish the copy.

        `source` is the build to copy (default: the one `current` names now); give the build a
        caller read its meta and data from, so that what it changes is what it read.
        `change` returns the new meta; it must rewrite any `columns` it invalidates.
        """
        if source is None:
            source = self.current()
            if source is None:
                raise FileNotFoundError(f"no published store under {self.root}; build one first")
        tmp, final = self._start(new_snapshot_id)
        src = lmdb.open(str(source), readonly=True, lock=False, max_dbs=layout.MAX_DBS)
        try:
            src.copy(str(tmp), compact=True)
        finally:
            src.close()
        env = self._open_env(tmp)
        try:
            with env.begin(write=True) as txn:
                meta = change(env, txn)
        except BaseException:
            env.close()
            raise
        return self._finish(env, tmp, final, meta, no_progress)

    def replace_registrations(
        self, table: KeyedRecords, meta: StoreMeta, *, source: Path | None = None
    ) -> Path:
        """Publish a copy of a build (default: the current one) whose registrations are `table`."""

        def change(env: lmdb.Environment, txn: lmdb.Transaction) -> StoreMeta:
            db = env.open_db(layout.REGISTRATIONS_DB, txn=txn)
            txn.drop(db, delete=False)
            with txn.cursor(db=db) as cur:
                cur.putmulti(zip(_keys(table), _values(table), strict=True), append=True)
            self._write_columns(txn, env, layout.REGISTRATIONS_TABLE, table)
            return meta

        return self.amend(meta.snapshot_id, change, source=source)

    def current(self) -> Path | None:
        link = self.root / layout.CURRENT_LINK
        return link.resolve() if link.exists() else None

    # -- internals ----------------------------------------------------------------------------

    def _start(self, snapshot_id: str) -> tuple[Path, Path]:
        """Clear stale builds and create the temporary directory; (tmp, final) paths."""
        self._remove_stale()
        tmp = self.builds / f"{snapshot_id}{layout.TMP_SUFFIX}"
        final = self.builds / snapshot_id
        if final.exists():
            raise FileExistsError(f"{final} exists: snapshot ids must be unique")
        tmp.mkdir(parents=True)
        return tmp, final

    def _finish(
        self, env: lmdb.Environment, tmp: Path, final: Path, meta: StoreMeta, progress: Progress
    ) -> Path:
        """Write `meta`, sync and close `env`, verify the build, then publish it and prune."""
        try:
            with env.begin(write=True) as txn:
                mdb = env.open_db(layout.META_DB, txn=txn)
                for k, v in meta.to_items():
                    txn.put(k, v, db=mdb)
            env.sync(True)
        finally:
            env.close()
        progress("verify", 0, 1)
        verify(tmp, expected=meta)
        progress("verify", 1, 1)
        os.rename(tmp, final)
        self._publish(final)
        self._prune()
        return final

    def _open_env(self, path: Path) -> lmdb.Environment:
        return lmdb.open(
            str(path),
            map_size=self.map_size,
            max_dbs=layout.MAX_DBS,
            sync=False,  # one explicit env.sync(True) before publishing
            metasync=False,
            readahead=False,
            writemap=False,
        )

    def _write_table(
        self,
        env: lmdb.Environment,
        name: bytes,
        table: KeyedRecords,
        progress: Progress,
        label: str,
    ) -> None:
        n = table.size
        key_list = _keys(table)
        value_list = _values(table)
        db = env.open_db(name)
        progress(label, 0, n)
        for lo in range(0, n, PUT_BATCH):
            hi = min(n, lo + PUT_BATCH)
            items = zip(key_list[lo:hi], value_list[lo:hi], strict=True)
            with env.begin(write=True, db=db) as txn, txn.cursor() as cur:
                _consumed, added = cur.putmulti(items, append=True)
                if added != hi - lo:
                    raise StoreCorrupt(f"{label}: keys not strictly increasing near row {lo}")
            progress(label, hi, n)

    @staticmethod
    def _write_columns(
        txn: lmdb.Transaction, env: lmdb.Environment, table: str, data: KeyedRecords
    ) -> None:
        cdb = env.open_db(layout.COLUMNS_DB, txn=txn)
        arrays = (
            np.ascontiguousarray(data.key_hi, dtype="<u8"),
            np.ascontiguousarray(data.key_lo, dtype="<u8"),
            np.ascontiguousarray(data.offsets, dtype="<u8"),
            np.ascontiguousarray(data.records),
        )
        for part, arr in zip(layout.COLUMN_PARTS, arrays, strict=True):
            txn.put(layout.column_key(table, part), arr.data.cast("B"), db=cdb)

    def _publish(self, build: Path) -> None:
        link = self.root / layout.CURRENT_LINK
        tmp_link = self.root / f"{layout.CURRENT_LINK}{layout.TMP_SUFFIX}"
        if tmp_link.is_symlink():
            tmp_link.unlink()
        tmp_link.symlink_to(Path(layout.BUILDS_DIR) / build.name)
        os.replace(tmp_link, link)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _remove_stale(self) -> None:
        if not self.builds.exists():
            return
        for entry in self.builds.iterdir():
            if entry.name.endswith(layout.TMP_SUFFIX):
                shutil.rmtree(entry, ignore_errors=True)

    def _prune(self) -> None:
        current = self.current()
        builds = sorted(
            (p for p in self.builds.iterdir() if not p.name.endswith(layout.TMP_SUFFIX)),
            key=lambda p: p.stat().st_mtime,
        )
        for old in builds[: max(0, len(builds) - self.keep)]:
            if old != current:
                shutil.rmtree(old, ignore_errors=True)


def _keys(table: KeyedRecords) -> list[bytes]:
    """The 16-byte keys as bytes, in order: one C loop, not one slice per key."""
    keys = np.empty((table.size, 2), dtype=">u8")
    keys[:, 0] = table.key_hi
    keys[:, 1] = table.key_lo
    return keys.view("V16").ravel().tolist()


def _values(table: KeyedRecords) -> list[bytes]:
    """The packed value of every key, built per version count (a few C loops, not one per key)."""
    n = table.size
    counts = np.diff(table.offsets.astype(np.int64))
    starts = table.offsets[:-1].astype(np.int64)
    itemsize = table.records.dtype.itemsize
    raw = table.records.view(np.uint8).reshape(-1, itemsize) if len(table.records) else None
    values = np.empty(n, dtype=object)
    for count in np.unique(counts).tolist():
        idx = np.flatnonzero(counts == count)
        if count == 0 or raw is None:
            values[idx] = [b""] * len(idx)
            continue
        rows = starts[idx, None] + np.arange(count)
        block = np.ascontiguousarray(raw[rows].reshape(len(idx), count * itemsize))
        values[idx] = block.view(f"V{count * itemsize}").ravel().tolist()
    return values.tolist()


def verify(path: Path, *, expected: StoreMeta) -> None:
    """Reopen a build read-only and check it against what was meant to be written."""
    from lez.store.reader import LmdbReader

    reader = LmdbReader(path, expected_key_id=expected.key_id)
    try:
        meta = reader.meta
        with reader.snapshot() as snap:
            vehicles = snap.vehicles
            problems = []
            if meta.plates != expected.plates or vehicles.size != expected.plates:
                problems.append(f"plates {vehicles.size} != {expected.plates}")
            if len(vehicles.records) != expected.versions:
                problems.append(f"versions {len(vehicles.records)} != {expected.versions}")
            if snap.registrations.size and meta.registrations != len(snap.registrations.records):
                problems.append("registration count differs")
            entries = snap.vehicle_entries()
            if entries != vehicles.size:
                problems.append(f"vehicles db has {entries} entries, columns {vehicles.size}")
            if vehicles.size:
                # spot-check that the two representations agree
                for i in np.linspace(0, vehicles.size - 1, num=min(64, vehicles.size)).astype(int):
                    key = vehicles.key_bytes(int(i))
                    if snap.history(key).tobytes() != vehicles.rows_of(int(i)).tobytes():
                        problems.append(f"row {int(i)} differs between vehicles db and columns")
                        break
                if np.any(vehicles.key_hi[1:] < vehicles.key_hi[:-1]):
                    problems.append("key column not sorted")
        if problems:
            raise StoreCorrupt(f"build {path.name} failed verification: " + "; ".join(problems))
    finally:
        reader.close()


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def new_snapshot_id() -> str:
    """A unique, sortable snapshot id: UTC time plus a random suffix."""
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"
