"""Batch answers as NumPy columns: one `ResultChunk` per answered chunk (unpacked from the
proto `DecisionChunk`), and a whole batch's `BatchResult` with its `BatchSummary`.

`unpack_chunk` is where an answered chunk is checked against what was sent (row counts of
every column); the clients turn its ValueError into `ProtocolError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from clients.day_input import day_or_none
from clients.enum_names import OUTCOME_NAMES, REASON_NAMES
from lez.api.v1 import access_pb2 as pb
from lez.days import DAY_UNKNOWN

DECISION_COLUMNS: Final = (
    ("outcome", np.uint8),
    ("reason", np.uint8),
    ("allowed_until", np.int32),
    ("euro", np.uint8),
    ("derived", np.uint8),
    ("notes", np.uint8),
    ("decided_day", np.int32),
)
"""The columns of batch decisions, with their NumPy types."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionColumns:
    """Decisions as aligned NumPy columns: Outcome and Reason numbers (`clients.enum_names`),
    allowed-until day numbers (open = 2147483647, unknown = -2147483648), ids of the server's
    euro code list (ServerInfo), Derived bits, Note bits (`clients.enum_names.note_names`) and
    the day each pair was decided on when it was sent with an instant (the Europe/Brussels day
    the server derived; unknown = -2147483648 for pairs sent with a day, or unreadable)."""

    outcome: npt.NDArray[np.uint8]
    reason: npt.NDArray[np.uint8]
    allowed_until: npt.NDArray[np.int32]
    euro: npt.NDArray[np.uint8]
    derived: npt.NDArray[np.uint8]
    notes: npt.NDArray[np.uint8]
    decided_day: npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultChunk(DecisionColumns):
    """Decisions for input rows [first_index, first_index + count); `technical` is empty for
    the public role."""

    first_index: int
    snapshot_id: str
    revision: str
    technical: Mapping[str, npt.NDArray[Any]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.outcome)


TECHNICAL_COLUMNS: Final = (
    ("category", "u1"),
    ("fuel", "u1"),
    ("first_registration", "<i4"),
    ("max_mass_kg", "<u4"),
    ("co2_g_km", "<u2"),
    ("power_kw", "<u2"),
)


def unpack_chunk(msg: pb.DecisionChunk, first_index: int, expected: int) -> ResultChunk:
    """NumPy columns of a DecisionChunk; raises ValueError if a column has the wrong size."""
    rows = int(msg.count)
    columns: dict[str, npt.NDArray[Any]] = {
        "outcome": np.frombuffer(msg.outcome, dtype=np.uint8),
        "reason": _bytes_or_zeros(msg.reason, rows),
        "allowed_until": np.frombuffer(msg.allowed_until, dtype="<i4").astype(np.int32),
        "euro": np.frombuffer(msg.euro, dtype=np.uint8),
        "derived": _bytes_or_zeros(msg.derived, rows),
        "notes": _bytes_or_zeros(msg.notes, rows),
        "decided_day": (
            np.frombuffer(msg.days, dtype="<i4").astype(np.int32)
            if msg.days
            else np.full(rows, DAY_UNKNOWN, dtype=np.int32)
        ),
    }
    if rows != expected or any(len(v) != rows for v in columns.values()):
        raise ValueError(f"a result chunk holds {rows} rows for {expected} pairs sent")
    technical: dict[str, npt.NDArray[Any]] = {}
    if msg.HasField("technical"):
        for name, dtype in TECHNICAL_COLUMNS:
            raw = getattr(msg.technical, name)
            if raw:
                technical[name] = np.frombuffer(raw, dtype=dtype)
    return ResultChunk(
        first_index=first_index,
        snapshot_id=msg.snapshot_id,
        revision=msg.ruleset_revision,
        technical=technical,
        **columns,
    )


def _bytes_or_zeros(raw: bytes, rows: int) -> npt.NDArray[np.uint8]:
    """A uint8 column the server may leave out when it is all zeros."""
    return np.frombuffer(raw, dtype=np.uint8) if raw else np.zeros(rows, dtype=np.uint8)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSummary:
    """What a whole batch got: pairs, chunks, pairs per outcome, audit ids, timing."""

    pairs: int
    chunks: int
    outcomes: Mapping[str, int]
    audit_ids: tuple[str, ...]
    snapshot_ids: tuple[str, ...]
    revision: str
    seconds: float
    streams: int
    as_of: dt.date | None = None  # the evaluation date every read was decided on, if asked

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchResult(DecisionColumns):
    """All decisions of a batch, aligned with the input rows, plus the summary."""

    summary: BatchSummary

    def __len__(self) -> int:
        return len(self.outcome)

    def outcome_names(self) -> list[str]:
        return [OUTCOME_NAMES[v] for v in self.outcome.tolist()]

    def reason_names(self) -> list[str]:
        return [REASON_NAMES[v] for v in self.reason.tolist()]

    def allowed_until_dates(self) -> list[dt.date | None]:
        return [day_or_none(d) for d in self.allowed_until.tolist()]


def summarise(
    parts_outcomes: Iterable[npt.NDArray[np.uint8]],
    *,
    pairs: int,
    chunks: int,
    audit_ids: Iterable[str],
    snapshot_ids: Iterable[str],
    revision: str,
    seconds: float,
    streams: int,
    as_of: dt.date | None = None,
) -> BatchSummary:
    """A summary counted on the client side from the outcome columns received."""
    counts = np.zeros(len(OUTCOME_NAMES), dtype=np.int64)
    for outcomes in parts_outcomes:
        counts += np.bincount(outcomes, minlength=len(OUTCOME_NAMES))[: len(OUTCOME_NAMES)]
    return BatchSummary(
        pairs=pairs,
        chunks=chunks,
        outcomes={OUTCOME_NAMES[i]: int(c) for i, c in enumerate(counts) if c},
        audit_ids=tuple(a for a in audit_ids if a),
        snapshot_ids=tuple(dict.fromkeys(s for s in snapshot_ids if s)),
        revision=revision,
        seconds=seconds,
        streams=streams,
        as_of=as_of,
    )
