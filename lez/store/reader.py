"""Read a published store: read-only LMDB, zero-copy columns, a read transaction only on demand.

`open_store(root)` resolves the `current` link once, so a reader stays on the build it opened
even when a newer one is published (the server's hot reload opens a new reader and lets calls
in flight finish on the old one). Open readers after `fork`, never before.

A `Snapshot` is one consistent view. Batch and single-key lookups read the columns the reader
holds for its lifetime; a snapshot opens an LMDB read transaction only when it reads the named
databases (`history`, `ruleset_texts`, `vehicle_entries`) and ends it with the `with` block.
Its arrays are views into the memory map: copy what must outlive the `with` block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

import lmdb
import numpy as np
import numpy.typing as npt

from lez import vehicle
from lez.errors import StoreCorrupt, StoreFormatMismatch, StoreNotReady
from lez.registrations import REGISTRATION_DTYPE
from lez.store import layout
from lez.store.columns import ColumnQueries, KeyedRecords, VehicleLookup
from lez.store.layout import StoreMeta


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

    def registrations_of(
        self, keys: npt.NDArray[np.uint8]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.void]]: ...

    def history(self, key: bytes) -> vehicle.VehicleArray: ...

    def versions_of(self, key: bytes) -> vehicle.VehicleArray: ...

    def registrations_for(self, key: bytes) -> npt.NDArray[np.void]: ...

    def ruleset_texts(self) -> dict[str, str]: ...

    def vehicle_entries(self) -> int: ...


class RegisterReader(Protocol):
    """Something that hands out snapshots: the LMDB reader or the in-memory one."""

    @property
    def meta(self) -> StoreMeta: ...

    def snapshot(self) -> AbstractContextManager[Snapshot]: ...

    def close(self) -> None: ...


class _LmdbSnapshot(ColumnQueries):
    """A snapshot of one published build.

    Lookups use the reader's long-lived columns; only `history`, `ruleset_texts` and
    `vehicle_entries` read the named databases, through a read transaction opened on first use
    (most requests never need one). A published build is never written again, so the columns
    and that transaction see the same data.
    """

    def __init__(self, reader: LmdbReader) -> None:
        self._reader = reader
        self._txn: lmdb.Transaction | None = None
        self.vehicles = reader.vehicles
        self.registrations = reader.registrations

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

    def history(self, key: bytes) -> vehicle.VehicleArray:
        value = self._read().get(key, db=self._reader.vehicles_db)
        if value is None:
            return vehicle.empty(0)
        return vehicle.unpack(value)

    def ruleset_texts(self) -> dict[str, str]:
        with self._read().cursor(db=self._reader.rulesets_db) as cur:
            return {bytes(k).decode(): bytes(v).decode() for k, v in cur}

    def vehicle_entries(self) -> int:
        return int(self._read().stat(self._reader.vehicles_db)["entries"])


class LmdbReader:
    """A read-only handle on one published build."""

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
        self.env = lmdb.open(
            str(path),
            readonly=True,
            lock=False,  # a published build is never written again
            max_dbs=layout.MAX_DBS,
            max_readers=max_readers,
            max_spare_txns=max_spare_txns,
            readahead=False,
        )
        # Handles opened outside a transaction stay valid for the environment's lifetime.
        self.meta_db = self.env.open_db(layout.META_DB, create=False)
        self.vehicles_db = self.env.open_db(layout.VEHICLES_DB, create=False)
        self.columns_db = self.env.open_db(layout.COLUMNS_DB, create=False)
        self.rulesets_db = self.env.open_db(layout.RULESETS_DB, create=False)
        with self.env.begin() as txn, txn.cursor(db=self.meta_db) as cur:
            items = {bytes(k): bytes(v) for k, v in cur}
        self.meta = StoreMeta.from_items(items)
        if self.meta.format_version != vehicle.FORMAT_VERSION:
            self.env.close()
            raise StoreFormatMismatch(
                f"store format {self.meta.format_version}, this code reads "
                f"{vehicle.FORMAT_VERSION}; rebuild the store with this version's loader"
            )
        if expected_key_id is not None and self.meta.key_id != expected_key_id:
            self.env.close()
            raise StoreFormatMismatch(
                f"store key id {self.meta.key_id} differs from the configured key "
                f"{expected_key_id}; use the key file the store was built with"
            )
        self._load_columns()

    def _load_columns(self) -> None:
        # A published build is never written again, so one read transaction held for the
        # reader's lifetime pins nothing a writer needs; the column views (zero-copy, in the
        # memory map) stay valid until `close`. Looking them up per request cost ~0.1 ms.
        self._columns_txn = self.env.begin(buffers=True)
        self.vehicles = self._table(layout.VEHICLES_TABLE, vehicle.VEHICLE_DTYPE).indexed()
        self.registrations = self._table(layout.REGISTRATIONS_TABLE, REGISTRATION_DTYPE).indexed()

    def _column(self, table: str, part: str) -> memoryview:
        value = self._columns_txn.get(layout.column_key(table, part), db=self.columns_db)
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

    @contextmanager
    def snapshot(self) -> Iterator[_LmdbSnapshot]:
        """One consistent view; never hold it across requests (it may hold a read txn)."""
        snap = _LmdbSnapshot(self)
        try:
            yield snap
        finally:
            snap.close()

    def warm(self) -> int:
        """Touch every page of the columns so lookups never fault to disk; returns bytes read."""
        total = 0
        with self.snapshot() as snap:
            for table in (snap.vehicles, snap.registrations):
                for arr in (table.key_hi, table.key_lo, table.offsets):
                    total += int(arr.nbytes)
                    arr[:: max(1, 4096 // max(arr.itemsize, 1))].sum()
                raw = np.frombuffer(table.records, dtype=np.uint8)
                raw[::4096].sum()
                total += raw.nbytes
        return total

    def close(self) -> None:
        self._columns_txn.abort()
        self.env.close()


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
