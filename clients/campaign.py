"""What a warning campaign (`LosingAccess`) gives back, as the clients hand it over: the
vehicles that will lose access as NumPy columns (`LosingRows`, one per answer chunk, and all of
them together in a `CampaignResult`) and the server's closing summary (`CampaignSummary`).

Keys only: the caller, who holds the plates and the HMAC key, matches them by keying its own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from clients.day_input import day_or_none
from clients.enum_names import REASON_NAMES
from lez.api.v1 import access_pb2 as pb

KEY_BYTES: Final = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class LosingRows:
    """Vehicles that will lose access, as aligned columns."""

    keys: npt.NDArray[np.uint8]  # (n, 16) pseudonymised keys
    reason: npt.NDArray[np.uint8]  # Reason number: why each is refused on the date
    first_day_lost: npt.NDArray[np.int32]  # days since 1970-01-01: first day not allowed
    category: npt.NDArray[np.uint8]  # code-list ids (ServerInfo's "category" list)
    fuel: npt.NDArray[np.uint8]  # ... "fuel"
    euro: npt.NDArray[np.uint8]  # ... "euro"

    def __len__(self) -> int:
        return len(self.reason)

    def reason_names(self) -> list[str]:
        return [REASON_NAMES[v] for v in self.reason.tolist()]

    def first_days_lost(self) -> list[dt.date | None]:
        return [day_or_none(d) for d in self.first_day_lost.tolist()]

    @classmethod
    def joined(cls, parts: Sequence[LosingRows]) -> LosingRows:
        """One set of columns of several parts, in order."""
        if not parts:
            return empty_rows()
        return cls(
            keys=np.concatenate([p.keys for p in parts]),
            reason=np.concatenate([p.reason for p in parts]),
            first_day_lost=np.concatenate([p.first_day_lost for p in parts]),
            category=np.concatenate([p.category for p in parts]),
            fuel=np.concatenate([p.fuel for p in parts]),
            euro=np.concatenate([p.euro for p in parts]),
        )


def empty_rows() -> LosingRows:
    """No vehicle."""
    return LosingRows(
        keys=np.zeros((0, KEY_BYTES), dtype=np.uint8),
        reason=np.zeros(0, dtype=np.uint8),
        first_day_lost=np.zeros(0, dtype=np.int32),
        category=np.zeros(0, dtype=np.uint8),
        fuel=np.zeros(0, dtype=np.uint8),
        euro=np.zeros(0, dtype=np.uint8),
    )


def unpack_losing(msg: pb.LosingAccessChunk) -> LosingRows:
    """The columns of one answer chunk; ValueError when a column has the wrong size."""
    rows = int(msg.count)
    keys = np.frombuffer(msg.keys, dtype=np.uint8)
    out = LosingRows(
        keys=keys.reshape(-1, KEY_BYTES) if len(keys) % KEY_BYTES == 0 else keys[:0, None],
        reason=np.frombuffer(msg.reason, dtype=np.uint8),
        first_day_lost=np.frombuffer(msg.first_day_lost, dtype="<i4").astype(np.int32),
        category=np.frombuffer(msg.category, dtype=np.uint8),
        fuel=np.frombuffer(msg.fuel, dtype=np.uint8),
        euro=np.frombuffer(msg.euro, dtype=np.uint8),
    )
    lengths = {len(out.keys), len(out.reason), len(out.first_day_lost)}
    lengths |= {len(out.category), len(out.fuel), len(out.euro)}
    if len(keys) != KEY_BYTES * rows or lengths != {rows}:
        raise ValueError(f"a campaign chunk's columns do not all hold its {rows} rows")
    return out


@dataclass(frozen=True, slots=True)
class CampaignCell:
    """Vehicles listed of one (category, fuel, euro) cell (DIV codes)."""

    category: str
    fuel: str
    euro: str
    vehicles: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignSummary:
    """The server's closing summary of a campaign: counts, small cells suppressed."""

    vehicles: int
    cells: tuple[CampaignCell, ...]
    suppressed_cells: int
    suppressed_vehicles: int
    min_cell_size: int
    audit_id: str
    key_id: str
    snapshot_id: str
    revision: str

    @classmethod
    def from_pb(cls, msg: pb.LosingAccessChunk) -> CampaignSummary:
        s = msg.summary
        return cls(
            vehicles=int(s.vehicles),
            cells=tuple(CampaignCell(c.category, c.fuel, c.euro, int(c.vehicles)) for c in s.cells),
            suppressed_cells=int(s.suppressed_cells),
            suppressed_vehicles=int(s.suppressed_vehicles),
            min_cell_size=int(s.min_cell_size),
            audit_id=s.audit_id,
            key_id=msg.key_id,
            snapshot_id=msg.snapshot_id,
            revision=msg.ruleset_revision,
        )


@dataclass(frozen=True, slots=True)
class CampaignResult:
    """Every vehicle listed by a campaign, with the summary and how long it took."""

    rows: LosingRows
    summary: CampaignSummary
    seconds: float

    def __len__(self) -> int:
        return len(self.rows)
