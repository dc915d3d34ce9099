"""Write stores in a fresh directory, verify them, then publish them atomically.

A build writes `builds/<snapshot_id>.tmp/` (the sorted columns of each table, the rulesets and
the meta), syncs, reopens it read-only to verify it, renames the directory to its final name
and swaps the `current` symlink in one `rename`. A build that fails or is killed at any point
leaves the published store as it was; stale `.tmp` builds are removed by the next build.
Readers of the previous build keep their open map until they close it; the previous `keep - 1`
builds stay on disk, and so does every base a kept build lies over.

Three ways to publish (`lez.store.layout` describes base and layer builds):

- `build`: a complete base from whole tables (`lez-loader build`).
- `publish_changes`: the daily changes as a layer over the base of the published snapshot. The
  new layer is the previous layer (if any) with the changed keys' rows replaced, so a snapshot
  is always one base plus one layer; the base is never copied or written. A layer writes only
  columns (what lookups read), its complete registrations and the rulesets: tens of megabytes
  where the base is a gigabyte. `replace_registrations` is a layer with no vehicle changes.
- `compact`: the merged content of base and layer written as a new base, exactly as a fresh
  build of the same data (same `content_digest`). When to compact: `lez.store.compaction`.
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

from lez import vehicle
from lez.durable_io import fsync_dir
from lez.errors import StoreChangeError, StoreCorrupt
from lez.registrations import REGISTRATION_DTYPE
from lez.store import layout, pages
from lez.store.columns import KeyedRecords, empty_table, strictly_increasing
from lez.store.layout import StoreMeta
from lez.store.overlay import Overlay, overlay
from lez.store.reader import LmdbReader, read_meta

DEFAULT_MAP_SIZE: Final = 64 * 2**30  # sparse: only what is written takes disk space

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
        """Write a complete base and publish it; returns the published build directory."""
        full_meta = replace(
            meta, rulesets=tuple(sorted(rulesets)), base_snapshot_id="", layer_keys=0
        )
        return self._write(full_meta, vehicles, registrations, rulesets, progress)

    def publish_changes(
        self,
        changes: KeyedRecords,
        *,
        meta: StoreMeta,
        registrations: KeyedRecords | None = None,
        source: Path | None = None,
    ) -> Path:
        """Publish a snapshot equal to `source` (default: current) with the vehicle rows of
        every key in `changes` replaced by the rows given there (a key with no rows is
        removed) and, when given, the registrations table replaced. Writes a small layer on
        the same base; never copies the base. `meta` carries the new snapshot id, sequence,
        mutation_watermark, build_report...; the writer fills base_snapshot_id and the merged
        counts (plates, versions, registrations).

        `changes` holds strictly increasing keys, each with its versions in `valid_from` order
        and not overlapping (`group_by_key` makes such a table); else `StoreChangeError`.
        """
        _check_vehicle_changes(changes)
        if registrations is not None:
            _check_table(registrations, REGISTRATION_DTYPE, "registrations")
        reader = self._open_source(source, meta)
        try:
            base = reader.base or reader
            previous = reader.vehicle_columns if reader.meta.is_layer else empty_table()
            layer = _without_needless_removals(
                overlay(previous, changes, keep_empty=True), base.vehicle_columns
            )
            counts = Overlay(base.vehicle_columns, layer).counts()
            table = reader.registrations if registrations is None else registrations
            with reader.snapshot() as snap:
                texts = snap.ruleset_texts()
            full_meta = replace(
                meta,
                base_snapshot_id=base.meta.snapshot_id,
                layer_keys=layer.size,
                plates=counts.plates,
                versions=counts.versions,
                registrations=len(table.records),
                rulesets=tuple(sorted(texts)),
            )
            return self._write(full_meta, layer, table, texts, no_progress)
        finally:
            reader.close()

    def replace_registrations(
        self, table: KeyedRecords, meta: StoreMeta, *, source: Path | None = None
    ) -> Path:
        """Publish a build (default: over the current one) whose registrations are `table`: a
        layer with no vehicle changes, so an import never copies the register."""
        return self.publish_changes(empty_table(), meta=meta, registrations=table, source=source)

    def compact(
        self,
        *,
        meta: StoreMeta | None = None,
        source: Path | None = None,
        progress: Progress = no_progress,
    ) -> Path:
        """Fold the current layer into a new base build and publish it (off the hot path).

        `source` is the layer to fold (default: the published build). The new base is written
        exactly as a fresh build of the merged data; readers of the layer keep it until they
        close it. `meta` (default: the layer's, with a new snapshot id and the next sequence)
        gets the merged counts filled in. A base has nothing to fold: it is returned as it is
        and nothing is published.
        """
        reader = self._open_source(source, meta)
        try:
            if not reader.meta.is_layer:
                return reader.path
            progress("merge", 0, 1)
            vehicles = reader.merged_vehicles()
            progress("merge", 1, 1)
            with reader.snapshot() as snap:
                texts = snap.ruleset_texts()
            if meta is None:
                meta = replace(
                    reader.meta,
                    snapshot_id=new_snapshot_id(),
                    snapshot_seq=reader.meta.snapshot_seq + 1,
                    built_at=utc_now(),
                    build_report={"compacted_from": reader.meta.snapshot_id},
                )
            full_meta = replace(
                meta,
                plates=vehicles.size,
                versions=len(vehicles.records),
                registrations=len(reader.registrations.records),
            )
            return self.build(
                meta=full_meta,
                vehicles=vehicles,
                registrations=reader.registrations,
                rulesets=texts,
                progress=progress,
            )
        finally:
            reader.close()

    def current(self) -> Path | None:
        link = self.root / layout.CURRENT_LINK
        return link.resolve() if link.exists() else None

    # -- internals ----------------------------------------------------------------------------

    def _open_source(self, source: Path | None, meta: StoreMeta | None) -> LmdbReader:
        """Open the build to change (default: the published one), refusing a `meta` written
        for another key or record format."""
        if source is None:
            source = self.current()
            if source is None:
                raise FileNotFoundError(f"no published store under {self.root}; build one first")
        if meta is not None and meta.format_version != vehicle.FORMAT_VERSION:
            raise StoreChangeError(
                f"meta says record format {meta.format_version}, this code writes "
                f"{vehicle.FORMAT_VERSION}; pass the source build's meta with replace()"
            )
        return LmdbReader(source, expected_key_id=None if meta is None else meta.key_id)

    def _write(
        self,
        meta: StoreMeta,
        vehicles: KeyedRecords,
        registrations: KeyedRecords,
        rulesets: dict[str, str],
        progress: Progress,
    ) -> Path:
        """Write one build (a base's whole vehicles table or a layer's changed keys), then
        verify and publish it."""
        tmp, final = self._start(meta.snapshot_id)
        env = self._open_env(tmp)
        try:
            progress("write", 0, 1)
            with env.begin(write=True) as txn:
                self._write_columns(txn, env, layout.VEHICLES_TABLE, vehicles)
                self._write_columns(txn, env, layout.REGISTRATIONS_TABLE, registrations)
                rdb = env.open_db(layout.RULESETS_DB, txn=txn)
                for revision, text in sorted(rulesets.items()):
                    txn.put(revision.encode(), text.encode(), db=rdb)
            progress("write", 1, 1)
        except BaseException:
            env.close()
            raise
        return self._finish(env, tmp, final, meta, progress)

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
            progress("sync", 0, 1)
            env.sync(True)
            progress("sync", 1, 1)
        finally:
            env.close()
        progress("verify", 0, 1)
        verify(tmp, expected=meta)
        progress("verify", 1, 1)
        os.rename(tmp, final)
        self._publish(final)
        self._prune()
        pages.drop_cached(final / "data.mdb")  # its readers read it back in huge pages
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
        fsync_dir(self.root)

    def _remove_stale(self) -> None:
        if not self.builds.exists():
            return
        for entry in self.builds.iterdir():
            if entry.name.endswith(layout.TMP_SUFFIX):
                shutil.rmtree(entry, ignore_errors=True)

    def _prune(self) -> None:
        """Keep the `keep` newest builds, the current one and every base they lie over."""
        current = self.current()
        builds = sorted(
            (p for p in self.builds.iterdir() if not p.name.endswith(layout.TMP_SUFFIX)),
            key=lambda p: p.stat().st_mtime,
        )
        kept = set(builds[max(0, len(builds) - self.keep) :])
        if current is not None:
            kept.add(current)
        needed = kept | {self.builds / base for base in map(_base_of, kept) if base}
        for old in builds:
            if old not in needed:
                shutil.rmtree(old, ignore_errors=True)


def _base_of(build: Path) -> str:
    """The base a build lies over ("" for a base, or for a directory that is no build)."""
    try:
        return read_meta(build).base_snapshot_id
    except lmdb.Error:
        return ""


def _check_table(table: KeyedRecords, dtype: np.dtype[np.void], what: str) -> None:
    if table.records.dtype != dtype:
        raise StoreChangeError(f"{what}: rows of dtype {table.records.dtype}, expected {dtype}")
    if not strictly_increasing(table):
        raise StoreChangeError(
            f"{what}: keys must be strictly increasing with consistent offsets "
            "(group the rows with lez.store.group_by_key)"
        )


def _check_vehicle_changes(changes: KeyedRecords) -> None:
    _check_table(changes, vehicle.VEHICLE_DTYPE, "changes")
    counts = changes.counts()
    owner = np.repeat(np.arange(changes.size), counts)
    same = owner[1:] == owner[:-1]
    valid_from, valid_to = changes.records["valid_from"], changes.records["valid_to"]
    bad = same & (valid_from[1:] < valid_to[:-1])
    if bad.any():
        key = int(owner[1:][bad][0])
        raise StoreChangeError(
            f"changes: the versions of key #{key} (of {changes.size}) are out of valid_from "
            "order or overlap; give each key its versions oldest first, without overlap"
        )


def _without_needless_removals(layer: KeyedRecords, base: KeyedRecords) -> KeyedRecords:
    """Drop the layer's removals of keys the base does not hold (added, then removed)."""
    empty_keys = np.flatnonzero(layer.counts() == 0)
    if len(empty_keys) == 0:
        return layer
    absent = base.find_halves(layer.key_hi[empty_keys], layer.key_lo[empty_keys]) < 0
    if not absent.any():
        return layer
    keep = np.ones(layer.size, dtype=np.bool_)
    keep[empty_keys[absent]] = False
    return KeyedRecords(
        key_hi=layer.key_hi[keep],
        key_lo=layer.key_lo[keep],
        offsets=np.append(layer.offsets[:-1][keep], layer.offsets[-1]).astype(np.uint64),
        records=layer.records,
    )


def verify(path: Path, *, expected: StoreMeta) -> None:
    """Reopen a build read-only and check it against what was meant to be written."""
    reader = LmdbReader(path, expected_key_id=expected.key_id)
    try:
        if expected.is_layer:
            problems = _layer_problems(reader, expected)
        else:
            problems = _base_problems(reader, expected)
        if problems:
            raise StoreCorrupt(f"build {path.name} failed verification: " + "; ".join(problems))
    finally:
        reader.close()


def _layer_problems(reader: LmdbReader, expected: StoreMeta) -> list[str]:
    meta, layer = reader.meta, reader.vehicle_columns
    problems = []
    if reader.base is None or reader.base.meta.snapshot_id != expected.base_snapshot_id:
        problems.append(f"does not lie over base {expected.base_snapshot_id}")
    problems += _table_problems(layer, "layer vehicles")
    problems += _table_problems(reader.registrations, "registrations")
    if meta.layer_keys != layer.size or layer.size != expected.layer_keys:
        problems.append(f"layer keys {layer.size} != {expected.layer_keys}")
    counts = reader.overlay_counts()
    if (counts.plates, counts.versions) != (expected.plates, expected.versions):
        problems.append(
            f"merged plates/versions {counts.plates}/{counts.versions} != "
            f"{expected.plates}/{expected.versions}"
        )
    if len(reader.registrations.records) != expected.registrations:
        problems.append("registration count differs")
    return problems


def _base_problems(reader: LmdbReader, expected: StoreMeta) -> list[str]:
    meta = reader.meta
    with reader.snapshot() as snap:
        vehicles = snap.vehicles
        problems = _table_problems(vehicles, "vehicles")
        problems += _table_problems(snap.registrations, "registrations")
        if meta.plates != expected.plates or vehicles.size != expected.plates:
            problems.append(f"plates {vehicles.size} != {expected.plates}")
        if len(vehicles.records) != expected.versions:
            problems.append(f"versions {len(vehicles.records)} != {expected.versions}")
        if snap.registrations.size and meta.registrations != len(snap.registrations.records):
            problems.append("registration count differs")
    return problems


def _table_problems(table: KeyedRecords, name: str) -> list[str]:
    """What is wrong with a table's columns as read back: keys out of order, or offsets that do
    not cut the records into one run per key."""
    problems = []
    offsets = table.offsets.astype(np.int64)
    if len(offsets) != table.size + 1 or len(table.key_lo) != table.size:
        problems.append(f"{name}: {table.size} keys with {len(offsets)} offsets")
    elif offsets[0] != 0 or offsets[-1] != len(table.records) or (np.diff(offsets) < 0).any():
        problems.append(f"{name}: offsets do not cover its {len(table.records)} records")
    if not strictly_increasing(table):
        problems.append(f"{name}: keys not strictly increasing")
    return problems


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def new_snapshot_id() -> str:
    """A unique, sortable snapshot id: UTC time plus a random suffix."""
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"
