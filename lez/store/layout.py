"""The single definition of the LMDB layout: directory, named databases, meta keys.

A store root holds `builds/<snapshot_id>/` (one LMDB environment each) and a `current` symlink
naming the published build; publishing is one `rename` of that link.

A build is a **base** (a complete register, `base_snapshot_id` empty) or a **layer** (the
daily changes since a base: `base_snapshot_id` names the base, a sibling under `builds/`). A
layer's vehicles columns hold only the keys changed since its base, each with its complete new
version array (no rows: the plate was removed); its registrations and rulesets are complete.
Layers are cumulative, so a snapshot is always one base plus at most one layer. Inside an
environment:

- `meta`: `format_version`, `key_id`, `snapshot_id`, ... (UTF-8 values, see `StoreMeta`).
- `rulesets`: revision id -> the rule-table file text the store was built with.
- `columns`: the vehicles and the registrations as sorted columns (`<table>/key_hi`,
  `<table>/key_lo`, `<table>/offsets`, `<table>/records`: packed `VEHICLE_DTYPE` versions sorted
  by `valid_from` per key, or `REGISTRATION_DTYPE` rows), each one LMDB value read zero-copy from
  the memory map. Batch lookups, single lookups and whole-table reads all use them; they are
  the only copy of the data (stores of earlier versions also held a per-key `vehicles` and
  `registrations` database, which readers ignore).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Final

META_DB: Final = b"meta"
RULESETS_DB: Final = b"rulesets"
COLUMNS_DB: Final = b"columns"
MAX_DBS: Final = 8

BUILDS_DIR: Final = "builds"
CURRENT_LINK: Final = "current"
TMP_SUFFIX: Final = ".tmp"

VEHICLES_TABLE: Final = "vehicles"
REGISTRATIONS_TABLE: Final = "registrations"
COLUMN_PARTS: Final = ("key_hi", "key_lo", "offsets", "records")
"""The columns of a table in the `columns` database, in the order the writer and reader use."""


def column_key(table: str, part: str) -> bytes:
    """Key of one column value in the `columns` database."""
    return f"{table}/{part}".encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreMeta:
    """What a store says about itself; stored as one JSON value per field in `meta`."""

    format_version: int
    key_id: str
    snapshot_id: str
    snapshot_seq: int
    source_date: str  # ISO date of the DIV extract
    built_at: str  # ISO timestamp, UTC
    plates: int
    versions: int
    registrations: int
    mutation_watermark: str = ""  # last applied DIV mutation id (daily sync)
    base_snapshot_id: str = ""  # a layer: the base it lies over; "" for a base
    layer_keys: int = 0  # a layer: keys in its vehicles columns (changed or removed plates)
    rulesets: tuple[str, ...] = ()
    build_report: dict[str, object] = field(default_factory=dict)
    synced_at: str = ""  # ISO timestamp, UTC, of the last daily sync published; "" never synced
    # lez.data_quality.DataQuality.to_json(); None for a store built before it was recorded
    data_quality: dict[str, Any] | None = None

    @property
    def is_layer(self) -> bool:
        return bool(self.base_snapshot_id)

    def to_items(self) -> list[tuple[bytes, bytes]]:
        return sorted((k.encode(), json.dumps(v).encode()) for k, v in asdict(self).items())

    @classmethod
    def from_items(cls, items: dict[bytes, bytes]) -> StoreMeta:
        values = {k.decode(): json.loads(v) for k, v in items.items()}
        values["rulesets"] = tuple(values.get("rulesets", ()))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})
