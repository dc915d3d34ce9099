"""When to fold the layer into a new base: one policy, read by the daily sync and the operator.

A lookup searches the layer before the base (`lez.store.overlay`), and each day's layer is
written whole (it is cumulative), so a growing layer costs both the batch lookups and the
daily publish. Compaction (`StoreBuilder.compact`, `lez-loader compact`) rewrites the register
as a new base, about as long as a fresh build, off the hot path. The policy compacts when the
layer holds more than `max_layer_keys` keys or more than `max_layer_share` of the plates.

The defaults come from the daily-sync bench at 8,000,000 plates (`bench/sync_bench.py`, 50,000
changes a day): a day applied and published took 0.30 s on a base and grew with the layer to
1.2 s at 1.4 million layer keys (30 days, no compaction), while a compaction took 11 s. Folding
the layer past 750,000 keys (about two weeks of changes at that scale; a quarter of the plates
on smaller registers) keeps a day near or under the 1 s a day may take (an interpolation
between those two measured points), at the price of one compaction every two weeks or so,
run by the sync after it has published the day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lez.store.layout import StoreMeta


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """Compact when the layer exceeds either bound."""

    max_layer_keys: int = 750_000
    """Keys in the layer; ~2.5 MB of columns per 50,000 changed plates."""
    max_layer_share: float = 0.25
    """Layer keys over the store's plates."""

    def __post_init__(self) -> None:
        if self.max_layer_keys < 0 or not 0.0 <= self.max_layer_share <= 1.0:
            raise ValueError(
                f"compaction policy: max_layer_keys {self.max_layer_keys} must be >= 0 and "
                f"max_layer_share {self.max_layer_share} between 0 and 1"
            )


DEFAULT_COMPACTION: Final = CompactionPolicy()


def needs_compaction(meta: StoreMeta, policy: CompactionPolicy = DEFAULT_COMPACTION) -> bool:
    """True when the published snapshot `meta` describes is a layer the policy says to fold."""
    if not meta.is_layer:
        return False
    return (
        meta.layer_keys > policy.max_layer_keys
        or meta.layer_keys > policy.max_layer_share * max(1, meta.plates)
    )
