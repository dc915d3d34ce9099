"""An in-memory reader with the same contract as the LMDB reader (tests and tools)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from lez.store.columns import ColumnQueries, KeyedRecords
from lez.store.layout import StoreMeta


class MemorySnapshot(ColumnQueries):
    """A snapshot over arrays held in memory."""

    def __init__(
        self,
        meta: StoreMeta,
        vehicles: KeyedRecords,
        registrations: KeyedRecords,
        rulesets: dict[str, str],
    ) -> None:
        self.meta = meta
        self.vehicles = vehicles.indexed()
        self.registrations = registrations.indexed()
        self._rulesets = rulesets

    def ruleset_texts(self) -> dict[str, str]:
        return dict(self._rulesets)


class MemoryReader:
    """Holds one snapshot in memory."""

    def __init__(
        self,
        meta: StoreMeta,
        vehicles: KeyedRecords,
        registrations: KeyedRecords,
        rulesets: dict[str, str] | None = None,
    ) -> None:
        self.meta = meta
        self._snap = MemorySnapshot(meta, vehicles, registrations, rulesets or {})

    @contextmanager
    def snapshot(self) -> Iterator[MemorySnapshot]:
        yield self._snap

    def close(self) -> None:
        return None
