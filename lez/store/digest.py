"""A digest of what a store says, independent of how it is stored.

`content_digest` is a SHA-256 over the merged logical content: the vehicles table (keys in
order, each with its version rows), the registrations table and the rule-table texts. It leaves
out snapshot ids, sequence numbers, timestamps, counts and the layering, so a base with a layer
and the same data compacted into one base, or rebuilt from scratch, give the same digest. The
daily sync's exactly-once tests compare these digests.
"""

from __future__ import annotations

import hashlib
from typing import Final

import numpy as np

from lez.store.columns import KeyedRecords
from lez.store.reader import RegisterReader, Snapshot

DIGEST_VERSION: Final = b"lez-store-content/1"
DIGEST_PARTS: Final = 64
"""The vehicles table is read in this many key ranges (a layered store is merged per range)."""


def content_digest(source: RegisterReader | Snapshot) -> str:
    """Hex SHA-256 of the merged content of a reader's snapshot, or of a snapshot."""
    if isinstance(source, RegisterReader):
        with source.snapshot() as snap:
            return _snapshot_digest(snap)
    return _snapshot_digest(source)


def _snapshot_digest(snap: Snapshot) -> str:
    h = hashlib.sha256(DIGEST_VERSION)
    h.update(b"\0vehicles")
    for part in snap.vehicles_in_parts(DIGEST_PARTS):
        _feed_table(h, part)
    h.update(b"\0registrations")
    _feed_table(h, snap.registrations)
    h.update(b"\0rulesets")
    for revision, text in sorted(snap.ruleset_texts().items()):
        for blob in (revision.encode(), text.encode()):
            h.update(len(blob).to_bytes(8, "little"))
            h.update(blob)
    return h.hexdigest()


def _feed_table(h: hashlib._Hash, table: KeyedRecords) -> None:
    """Sizes, then keys (16 big-endian bytes each), rows per key, rows."""
    h.update(table.size.to_bytes(8, "little"))
    h.update(len(table.records).to_bytes(8, "little"))
    h.update(table.key_matrix().tobytes())
    h.update(table.counts().astype("<u8").tobytes())
    h.update(np.ascontiguousarray(table.records).view(np.uint8).tobytes())
