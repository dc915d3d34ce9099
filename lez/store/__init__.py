"""The LMDB store: the only place that imports `lmdb`.

`layout` defines the named databases, meta keys and the two kinds of build (base, layer);
`columns` the sorted key columns and the vectorised lookup shared by every reader; `overlay`
lays a layer's changed keys over its base (merged lookups, merged tables); `writer` builds a
base, publishes daily changes as a layer and compacts, each atomically; `compaction` says when
to compact; `reader` opens a published store read-only (a layer with its base); `digest`
fingerprints the merged content; `memory` is an in-memory reader with the same contract, for
tests and tools.
"""

from lez.store.columns import KeyedRecords, VehicleLookup, group_by_key
from lez.store.compaction import CompactionPolicy, needs_compaction
from lez.store.digest import content_digest
from lez.store.layout import StoreMeta
from lez.store.reader import LmdbReader, RegisterReader, Snapshot, open_store
from lez.store.writer import StoreBuilder

__all__ = [
    "CompactionPolicy",
    "KeyedRecords",
    "LmdbReader",
    "RegisterReader",
    "Snapshot",
    "StoreBuilder",
    "StoreMeta",
    "VehicleLookup",
    "content_digest",
    "group_by_key",
    "needs_compaction",
    "open_store",
]
