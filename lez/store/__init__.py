"""The LMDB store: the only place that imports `lmdb`.

`layout` defines the named databases and meta keys; `columns` the sorted key columns and the
vectorised lookup shared by every reader; `writer` builds a new store and publishes it
atomically; `reader` opens a published store read-only; `memory` is an in-memory reader with
the same contract, for tests and tools.
"""

from lez.store.columns import KeyedRecords, VehicleLookup, group_by_key
from lez.store.layout import StoreMeta
from lez.store.reader import LmdbReader, RegisterReader, Snapshot, open_store
from lez.store.writer import StoreBuilder

__all__ = [
    "KeyedRecords",
    "LmdbReader",
    "RegisterReader",
    "Snapshot",
    "StoreBuilder",
    "StoreMeta",
    "VehicleLookup",
    "group_by_key",
    "open_store",
]
