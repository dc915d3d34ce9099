"""Read a published store: read-only LMDB, zero-copy columns, a read transaction only on demand.

`open_store(root)` resolves the `current` link once, so a reader stays on the build it opened
even when a newer one is published (the server's hot reload opens a new reader and lets calls
in flight finish on the old one). Open readers after `fork`, never before.

A layer build opens transparently: its reader opens the base the layer names (read-only, a
sibling under `builds/`; or shares one already open, see `LmdbReader(base=...)`) and answers
through an `Overlay`, exactly as if base and layer were one build: lookups search the layer
first and the base for the rest; registrations and rulesets come from the layer alone.

A `Snapshot` is one consistent view. Batch and single-key lookups read the columns the reader
holds for its lifetime; a snapshot opens an LMDB read transaction only when it reads a named
database (`ruleset_texts`) and ends it with the `with` block.
Its arrays are views into the memory map: copy what must outlive the `with` block.
`snap.vehicles` is the whole vehicles table; for a layer it is merged once per reader, on first
use (memory: the size of the base), for readers of every plate; `vehicles_in_parts` gives the
same in bounded pieces.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

import lmdb
import numpy as np
import numpy.typing as npt

from lez import vehicle
from lez.errors import StoreCorrupt, StoreFormatMismatch, StoreNotReady
from lez.registrations import REGISTRATION_DTYPE
from lez.store import layout, pages
from lez.store.columns import ColumnQueries, KeyedRecords, VehicleLookup, rows_for, rows_of_key
from lez.store.layout import StoreMeta
from lez.store.overlay import Overlay, OverlayCounts


class Snapshot(Protocol):
    """One consistent view of a store."""

    @property
    def meta(self) -> StoreMeta: ...

    @property
    def vehicles(self) -> KeyedRecords: ...

    @property
    def registrations(self) -> KeyedRecords: ...

    def vehicles_on(
        self, keys: npt.NDArray[np.uint8], days: npt.NDArray[np.int32]
    ) -> VehicleLookup: ...

    def vehicle_rows(
        self, keys: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]: ...

    def vehicles_in_parts(self, parts: int = 64) -> Iterator[KeyedRecords]: ...

    def registrations_of(
        self, keys: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]: ...

    def versions_of(self, key: bytes) -> vehicle.VehicleArray: ...

    def vehicle_on(self, key: bytes, day: int) -> tuple[bool, np.void | None]: ...

    def registrations_for(self, key: bytes) -> npt.NDArray[np.void]: ...

    def ruleset_texts(self) -> dict[str, str]: ...


class KeyLookups(Protocol):
    """A single check's reads of one key: its vehicle on a day and its registrations (what
    `Snapshot` also offers, without a snapshot opened per call: `LmdbReader.key_lookups`)."""

    def vehicle_on(self, key: bytes, day: int) -> tuple[bool, np.void | None]: ...

    def registrations_for(self, key: bytes) -> npt.NDArray[np.void]: ...


@runtime_checkable
class RegisterReader(Protocol):
    """Something that hands out snapshots: the LMDB reader or the in-memory one."""

    @property
    def meta(self) -> StoreMeta: ...

    def snapshot(self) -> AbstractContextManager[Snapshot]: ...

    def close(self) -> None: ...


class _EnvSnapshot:
    """What every snapshot reads from its own environment, through a read transaction opened on
    first use (most requests never need one). A published build is never written again, so the
    reader's columns and that transaction see the same data."""

    def __init__(self, reader: LmdbReader) -> None:
        self._reader = reader
        self._txn: lmdb.Transaction | None = None

    @property
    def meta(self) -> StoreMeta:
        return self._reader.meta

    def _read(self) -> lmdb.Transaction:
        if self._txn is None:
            self._txn = self._reader.env.begin(buffers=True)
        return self._txn

    def close(self) -> None:
        """End the read transaction, if one was opened."""
        if self._txn is not None:
            self._txn.abort()
            self._txn = None

    def ruleset_texts(self) -> dict[str, str]:
        with self._read().cursor(db=self._reader.rulesets_db) as cur:
            return {bytes(k).decode(): bytes(v).decode() for k, v in cur}


class _LmdbSnapshot(_EnvSnapshot, ColumnQueries):
    """A snapshot of one base build: lookups on the reader's long-lived columns."""

    def __init__(self, reader: LmdbReader) -> None:
        super().__init__(reader)
        self.vehicles = reader.vehicle_columns
        self.registrations = reader.registrations


class _LayeredSnapshot(_EnvSnapshot):
    """A snapshot of a layer over its base, answering as the merged build would."""

    def __init__(self, reader: LmdbReader, overlay: Overlay) -> None:
        super().__init__(reader)
        self._overlay = overlay
        self.registrations = reader.registrations

    @property
    def vehicles(self) -> KeyedRecords:
        return self._reader.merged_vehicles()

    def vehicles_on(
        self, keys: npt.NDArray[np.uint8], days: npt.NDArray[np.int32]
    ) -> VehicleLookup:
        return self._overlay.versions_on(keys, days)

    def vehicle_rows(
        self, keys: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]:
        return self._overlay.rows_for(keys)

    def vehicles_in_parts(self, parts: int = 64) -> Iterator[KeyedRecords]:
        yield from self._overlay.merged_parts(parts)

    def versions_of(self, key: bytes) -> vehicle.VehicleArray:
        return self._overlay.rows_of_key(key)

    def vehicle_on(self, key: bytes, day: int) -> tuple[bool, np.void | None]:
        return self._overlay.vehicle_on(key, day)

    def registrations_of(
        self, keys: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]:
        q, rows = rows_for(self.registrations, keys)
        return q, rows.copy()

    def registrations_for(self, key: bytes) -> npt.NDArray[np.void]:
        return rows_of_key(self.registrations, key)


class _OpenBuild:
    """One build's LMDB environment with its meta and columns, opened once per process.

    LMDB refuses to open one environment twice in a process, and a base is needed by every
    layer over it as well as by its own readers: they all share this object, which closes with
    its last user (`_acquire`, `_release`).
    """

    def __init__(self, path: Path, max_readers: int, max_spare_txns: int) -> None:
        self.path = path
        self.users = 1
        self.warmed = False
        self.merged: KeyedRecords | None = None  # a layer: base and layer merged, on demand
        self.counts: OverlayCounts | None = None
        self.lock = threading.Lock()
        self.env = lmdb.open(
            str(path),
            readonly=True,
            lock=False,  # a published build is never written again
            max_dbs=layout.MAX_DBS,
            max_readers=max_readers,
            max_spare_txns=max_spare_txns,
            readahead=False,
        )
        pages.advise_huge_pages(path / "data.mdb")  # before any read: see lez.store.pages
        try:
            # Handles opened outside a transaction stay valid for the environment's lifetime.
            self.meta_db = self.env.open_db(layout.META_DB, create=False)
            self.columns_db = self.env.open_db(layout.COLUMNS_DB, create=False)
            self.rulesets_db = self.env.open_db(layout.RULESETS_DB, create=False)
            with self.env.begin() as txn, txn.cursor(db=self.meta_db) as cur:
                self.meta = StoreMeta.from_items({bytes(k): bytes(v) for k, v in cur})
            # A published build is never written again, so one read transaction held for the
            # environment's lifetime pins nothing a writer needs; the column views (zero-copy,
            # in the memory map) stay valid until it closes. Looking them up per request cost
            # ~0.1 ms.
            self.columns_txn = self.env.begin(buffers=True)
            self.vehicle_columns = self._table(
                layout.VEHICLES_TABLE, vehicle.VEHICLE_DTYPE
            ).indexed()
            self.registrations = self._table(
                layout.REGISTRATIONS_TABLE, REGISTRATION_DTYPE
            ).indexed()
        except BaseException:
            self.env.close()
            raise

    def _column(self, table: str, part: str) -> memoryview:
        value = self.columns_txn.get(layout.column_key(table, part), db=self.columns_db)
        if value is None:
            raise StoreCorrupt(f"column {table}/{part} is missing; rebuild the store")
        return value if isinstance(value, memoryview) else memoryview(value)

    def _table(self, table: str, dtype: np.dtype[np.void]) -> KeyedRecords:
        key_hi, key_lo, offsets, records = (self._column(table, p) for p in layout.COLUMN_PARTS)
        return KeyedRecords(
            key_hi=np.frombuffer(key_hi, dtype="<u8"),
            key_lo=np.frombuffer(key_lo, dtype="<u8"),
            offsets=np.frombuffer(offsets, dtype="<u8"),
            records=np.frombuffer(records, dtype=dtype),
        )

    def close(self) -> None:
        self.merged = None
        self.columns_txn.abort()
        self.env.close()


_OPEN_BUILDS: dict[Path, _OpenBuild] = {}
_OPEN_BUILDS_LOCK = threading.Lock()


def _acquire(path: Path, max_readers: int, max_spare_txns: int) -> _OpenBuild:
    key = path.resolve()
    with _OPEN_BUILDS_LOCK:
        build = _OPEN_BUILDS.get(key)
        if build is not None:
            build.users += 1
            return build
        build = _OpenBuild(path, max_readers, max_spare_txns)
        _OPEN_BUILDS[key] = build
        return build


def _release(build: _OpenBuild) -> None:
    with _OPEN_BUILDS_LOCK:
        build.users -= 1
        if build.users:
            return
        _OPEN_BUILDS.pop(build.path.resolve(), None)
    build.close()


class LmdbReader:
    """A read-only handle on one published build (a base, or a layer with its base).

    Readers of one build in a process share its open environment, and every layer over a base
    shares the base's (a server switching from one layer to the next on the same base opens,
    indexes and warms the base once).
    """

    def __init__(
        self,
        path: Path,
        *,
        expected_key_id: str | None = None,
        max_readers: int = 126,
        max_spare_txns: int = 4,
    ) -> None:
        if not (path / "data.mdb").exists():
            raise StoreNotReady(f"no store at {path}; build one with `lez-loader build`")
        self.path = path
        self._build = _acquire(path, max_readers, max_spare_txns)
        self._closed = False
        self.base: LmdbReader | None = None
        self.overlay: Overlay | None = None
        try:
            self._check(expected_key_id)
            if self.meta.is_layer:
                self.base = self._open_base(max_readers, max_spare_txns)
                self.overlay = Overlay(self.base.vehicle_columns, self.vehicle_columns)
        except BaseException:
            _release(self._build)
            raise

    @property
    def meta(self) -> StoreMeta:
        return self._build.meta

    @functools.cached_property
    def key_lookups(self) -> KeyLookups:
        """A single check's reads, made once per reader: they read the reader's own columns,
        which never change, and never its LMDB transaction, so a call needs no snapshot (and
        no context manager) of its own."""
        if self.overlay is not None:
            return _LayeredSnapshot(self, self.overlay)
        return _LmdbSnapshot(self)

    @property
    def env(self) -> lmdb.Environment:
        return self._build.env

    @property
    def vehicle_columns(self) -> KeyedRecords:
        """The vehicles columns of this build: every key of a base, the changed keys of a
        layer (use a snapshot for the store's vehicles)."""
        return self._build.vehicle_columns

    @property
    def registrations(self) -> KeyedRecords:
        return self._build.registrations

    @property
    def rulesets_db(self) -> lmdb._Database:
        return self._build.rulesets_db

    def _check(self, expected_key_id: str | None) -> None:
        if self.meta.format_version != vehicle.FORMAT_VERSION:
            raise StoreFormatMismatch(
                f"store format {self.meta.format_version}, this code reads "
                f"{vehicle.FORMAT_VERSION}; rebuild the store with this version's loader"
            )
        if expected_key_id is not None and self.meta.key_id != expected_key_id:
            raise StoreFormatMismatch(
                f"store key id {self.meta.key_id} differs from the configured key "
                f"{expected_key_id}; use the key file the store was built with"
            )

    def _open_base(self, max_readers: int, max_spare_txns: int) -> LmdbReader:
        path = self.path.parent / self.meta.base_snapshot_id
        if not (path / "data.mdb").exists():
            raise StoreCorrupt(
                f"layer {self.meta.snapshot_id} lies over base {self.meta.base_snapshot_id}, "
                f"which is not in {self.path.parent}; publish a new base (`lez-loader build`)"
            )
        base = LmdbReader(
            path,
            expected_key_id=self.meta.key_id,
            max_readers=max_readers,
            max_spare_txns=max_spare_txns,
        )
        if base.meta.is_layer or base.meta.snapshot_id != self.meta.base_snapshot_id:
            base.close()
            raise StoreCorrupt(
                f"layer {self.meta.snapshot_id} names base {self.meta.base_snapshot_id}, but "
                f"{path.name} holds {'a layer' if base.meta.is_layer else 'another snapshot'}; "
                "publish a new base (`lez-loader build`)"
            )
        return base

    def vehicle_tables(self) -> list[KeyedRecords]:
        """The published vehicles as tables laid over each other, lowest first: a base alone,
        or the base and its layer (whose key without rows removes it). Nothing is merged: for
        readers that judge the whole store but look up only a few keys in the layer (the
        sync's retention)."""
        if self.overlay is None:
            return [self.vehicle_columns]
        return [self.overlay.base, self.overlay.layer]

    def merged_vehicles(self) -> KeyedRecords:
        """The store's whole vehicles table: a base's columns, or base and layer merged (once
        per process and layer, on first use; it lives as long as the layer is open)."""
        if self.overlay is None:
            return self.vehicle_columns
        with self._build.lock:
            if self._build.merged is None:
                self._build.merged = self.overlay.merged()
            return self._build.merged

    def overlay_counts(self) -> OverlayCounts:
        """Sizes of the merged vehicles table of a layer (computed once)."""
        if self.overlay is None:
            raise ValueError(f"{self.path.name} is a base build, not a layer")
        with self._build.lock:
            if self._build.counts is None:
                self._build.counts = self.overlay.counts()
            return self._build.counts

    @contextmanager
    def snapshot(self) -> Iterator[_LmdbSnapshot | _LayeredSnapshot]:
        """One consistent view; never hold it across requests (it may hold a read txn)."""
        snap: _LmdbSnapshot | _LayeredSnapshot
        if self.overlay is not None and self.base is not None:
            snap = _LayeredSnapshot(self, self.overlay)
        else:
            snap = _LmdbSnapshot(self)
        try:
            yield snap
        finally:
            snap.close()

    def warm(self) -> int:
        """Touch every page of the columns (a layer's and its base's) so lookups never fault
        to disk; returns bytes read. A build shared by several readers is warmed once."""
        total = self.base.warm() if self.base is not None else 0
        with self._build.lock:
            if self._build.warmed:
                return total
            self._build.warmed = True
        for table in (self.vehicle_columns, self.registrations):
            for arr in (table.key_hi, table.key_lo, table.offsets):
                total += int(arr.nbytes)
                arr[:: max(1, 4096 // max(arr.itemsize, 1))].sum()
            raw = np.frombuffer(table.records, dtype=np.uint8)
            raw[::4096].sum()
            total += raw.nbytes
        return total

    def close(self) -> None:
        """Close this reader; the build's environment closes with its last reader."""
        if self._closed:
            return
        self._closed = True
        _release(self._build)
        if self.base is not None:
            self.base.close()


def read_meta(path: Path) -> StoreMeta:
    """The meta of one build directory (without indexing its columns when it is not open)."""
    with _OPEN_BUILDS_LOCK:
        build = _OPEN_BUILDS.get(path.resolve())
        if build is not None:
            return build.meta
    # readahead off: LMDB then reads little more than the meta (about 100 KiB, against the whole
    # file of a small build), so a build the writer has just let go of stays out of the page
    # cache for its readers' huge pages (lez.store.pages) but for the first 2 MiB
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=layout.MAX_DBS, readahead=False)
    try:
        meta_db = env.open_db(layout.META_DB, create=False)
        with env.begin() as txn, txn.cursor(db=meta_db) as cur:
            return StoreMeta.from_items({bytes(k): bytes(v) for k, v in cur})
    finally:
        env.close()


def current_build(root: Path) -> Path:
    """The build directory the `current` link of a store root names."""
    link = root / layout.CURRENT_LINK
    if not link.exists():
        if (root / "data.mdb").exists():
            return root  # a bare build directory
        raise StoreNotReady(f"no published store under {root}; run `lez-loader build`")
    return link.resolve()


def open_store(root: Path, *, expected_key_id: str | None = None) -> LmdbReader:
    """Open the currently published build of a store root (or a bare build directory)."""
    return LmdbReader(current_build(root), expected_key_id=expected_key_id)
