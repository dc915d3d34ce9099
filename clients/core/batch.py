"""One batch, without its I/O: `BatchOptions` (what a batch call takes besides its rows),
`BatchRun` (how many streams, the deadline, the window, the chunk source, the streams'
attempts and results, the summary) and the assembly of the answers: `InputOrder` hands result
chunks on in input order, `BatchCollector` gathers them into columns aligned with the input.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Iterator
from typing import Any, Final, TypedDict

import numpy as np
import numpy.typing as npt

from clients.batch_rows import BatchInput, BatchRows
from clients.core.chunks import ChunkSource
from clients.core.retry import Attempts, Deadline
from clients.core.streams import BatchTally, Progress, StreamAttempts, StreamResults
from clients.day_input import date_or_none, date_text
from clients.request_builders import checked_options
from clients.result_columns import (
    DECISION_COLUMNS,
    BatchResult,
    BatchSummary,
    ResultChunk,
    summarise,
)
from clients.settings import ClientSettings

QUEUED_CHUNKS_PER_SLOT: Final = 2
"""Result chunks the streams may queue for the caller, per chunk in flight."""


class _BatchZone(TypedDict):
    zone: str


class BatchOptions(_BatchZone, total=False):
    """What a batch call takes besides its rows, as keywords.

    `zone` (name or id, required); `ruleset` (pin a rule revision); `as_of` (evaluate every
    read on this date: the register of the read's day, the rules and registrations of the
    date, for warning campaigns); `chunk_size` (pairs per
    chunk; default: the client's, see `ChunkLimit`); `connections` (streams, one per
    connection; default `ClientSettings.connections`); `timeout` (of the whole batch; default
    `ClientSettings.batch_timeout_s`); `progress` (called with the pairs of each chunk
    answered).
    """

    ruleset: str | None
    as_of: dt.date | str | None
    chunk_size: int | None
    connections: int | None
    timeout: float | None
    progress: Progress | None


class BatchRun:
    """One batch over several streams: its plan, its shared state and its summary."""

    def __init__(
        self,
        settings: ClientSettings,
        rows: BatchInput,
        options: BatchOptions,
        *,
        chunk_size: int,
    ) -> None:
        checked_options(options, BatchOptions, "check_batch")
        self.streams = options.get("connections") or settings.connections
        if isinstance(rows, BatchRows):  # no point in more streams than chunks
            self.streams = max(1, min(self.streams, -(-len(rows) // chunk_size)))
        self.window = settings.window
        """Chunks in flight per stream (sent, not answered yet)."""
        self.queue_size = self.streams * self.window * QUEUED_CHUNKS_PER_SLOT
        timeout = options.get("timeout")
        self.deadline = Deadline(settings.batch_timeout_s if timeout is None else timeout)
        self.source = ChunkSource(
            rows,
            zone=options["zone"],
            ruleset=options.get("ruleset") or "",
            chunk_size=chunk_size,
            as_of=date_text(options.get("as_of")),
        )
        self.tally = BatchTally()
        self.results = StreamResults(self.streams, options.get("progress"))
        self._settings = settings
        self._started = time.perf_counter()
        self.seconds = 0.0

    def stream(self) -> StreamAttempts:
        """The attempts of one more stream (each stream keeps its own backoff)."""
        return StreamAttempts(self.source, self.tally, Attempts(self._settings, self.deadline))

    def finished(self) -> None:
        """Every stream has ended: the batch's time is taken."""
        self.seconds = time.perf_counter() - self._started

    def summary(self, outcomes: Iterable[npt.NDArray[np.uint8]]) -> BatchSummary:
        return summarise(
            outcomes,
            pairs=self.source.sent_pairs,
            chunks=self.source.chunks,
            audit_ids=self.tally.audit_ids,
            snapshot_ids=self.tally.snapshot_ids,
            revision=self.tally.revision,
            as_of=date_or_none(self.source.as_of),
            seconds=self.seconds,
            streams=self.streams,
        )

    def collected(self, parts: Iterable[ResultChunk]) -> BatchResult:
        """The batch's result from all its chunks (taken to the end before summing up)."""
        collector = BatchCollector()
        for part in parts:
            collector.add(part)
        return collector.result(self.summary(p.outcome for p in collector.parts))


class InputOrder:
    """Hands result chunks on in input order, whatever order they arrive in."""

    def __init__(self) -> None:
        self._waiting: dict[int, ResultChunk] = {}
        self._next = 0

    def add(self, part: ResultChunk) -> list[ResultChunk]:
        """The chunks that are next in input order now that `part` arrived (maybe none)."""
        self._waiting[part.first_index] = part
        ready: list[ResultChunk] = []
        while self._next in self._waiting:
            chunk = self._waiting.pop(self._next)
            self._next += chunk.count
            ready.append(chunk)
        return ready


def in_input_order(parts: Iterable[ResultChunk]) -> Iterator[ResultChunk]:
    """`parts` handed on in input order (each as soon as the ones before it are)."""
    order = InputOrder()
    for part in parts:
        yield from order.add(part)


class BatchCollector:
    """Gathers result chunks (in any order) into aligned columns for `BatchResult`."""

    def __init__(self) -> None:
        self.parts: list[ResultChunk] = []

    def add(self, part: ResultChunk) -> None:
        self.parts.append(part)

    def result(self, summary: BatchSummary) -> BatchResult:
        parts = sorted(self.parts, key=lambda p: p.first_index)
        rows = sum(p.count for p in parts)
        columns: dict[str, Any] = {}
        for name, dtype in DECISION_COLUMNS:
            column = np.empty(rows, dtype=dtype)
            for part in parts:
                column[part.first_index : part.first_index + part.count] = getattr(part, name)
            columns[name] = column
        return BatchResult(summary=summary, **columns)
