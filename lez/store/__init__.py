"""The LMDB store: the only place that imports `lmdb`.

`layout` defines the named databases, meta keys and the two kinds of build (base, layer);
`columns` the sorted key columns and the vectorised lookup shared by every reader; `overlay`
lays a layer's changed keys over its base (merged lookups, merged tables); `writer` builds a
base, publishes daily changes as a layer and compacts, each atomically; `compaction` says when
to compact; `reader` opens a published store read-only (a layer with its base); `digest`
fingerprints the merged content; `memory` is an in-memory reader with the same contract, for
tests and tools.

Incremental layers, in short:

- A **base** build holds the whole register. A **layer** build names its base
  (`StoreMeta.base_snapshot_id`) and holds only the vehicle keys changed since that base, each
  with its complete new version array (no rows: removed), plus the complete registrations and
  rulesets. `StoreBuilder.publish_changes` writes the next layer as the previous layer merged
  with the day's changes (cumulative), so a snapshot is always one base plus at most one
  layer, and the base is never copied or written again (a day of 50,000 changes at 8M plates
  writes ~5 MB instead of 1.3 GB). `replace_registrations` publishes a layer too.
- `current` names one build, a base or a layer: publishing stays one atomic symlink rename.
  Pruning keeps the newest builds and every base a kept build lies over.
- A reader of a layer opens its base with it (each build's environment is opened once per
  process, so consecutive layers share the open base). Lookups search the layer first, behind a
  bitmap filter of its keys, and the base for the rest, and answer exactly as the merged build
  would; whole-table readers get the merged table (`snap.vehicles`, once per layer, or
  `vehicles_in_parts` in bounded pieces).
- `StoreBuilder.compact` writes the merged content as a new base, exactly as a fresh build
  (same `content_digest`); `needs_compaction` (layer keys over a count or a share of the
  plates) says when; `lez-loader compact` runs it.
"""

from lez.store.columns import KeyedRecords, VehicleLookup, group_by_key
from lez.store.compaction import CompactionPolicy, needs_compaction
from lez.store.digest import content_digest
from lez.store.layout import StoreMeta
from lez.store.reader import KeyLookups, LmdbReader, RegisterReader, Snapshot, open_store
from lez.store.writer import StoreBuilder

__all__ = [
    "CompactionPolicy",
    "KeyLookups",
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
