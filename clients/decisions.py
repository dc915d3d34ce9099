"""Single decisions as the clients hand them to callers: the answer to one `Check`
(`CheckAnswer`, with its `TechnicalData`), an earlier decision sent back for re-evaluation
(`RecheckItem`) and the answer to a `Recheck` (`RecheckAnswer` of `RecheckResult`s).

Names, not numbers: outcomes, reasons, derived flags and changes are `clients.enum_names`
names, dates are `datetime.date`s. The answers are decoded from the proto here (`from_pb`);
the requests are built in `clients.request_builders`. Batch answers are columns instead:
`clients.result_columns`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from clients.day_input import date_or_none
from clients.enum_names import (
    change_name,
    derived_names,
    note_names,
    outcome_name,
    reason_name,
)
from lez.api.v1 import access_pb2 as pb
from lez.plates import BELGIUM


@dataclass(frozen=True, slots=True, kw_only=True)
class TechnicalData:
    """Technical data a decision used (not sent to the public role)."""

    category: str | None
    fuel: str | None
    first_registration: dt.date | None
    max_mass_kg: int | None
    co2_g_km: int | None
    power_kw: int | None
    version_valid_from: dt.date | None

    @classmethod
    def from_pb(cls, msg: pb.TechnicalData) -> TechnicalData:
        return cls(
            category=msg.category or None,
            fuel=msg.fuel or None,
            first_registration=date_or_none(msg.first_registration),
            max_mass_kg=msg.max_mass_kg or None,
            co2_g_km=msg.co2_g_km or None,
            power_kw=msg.power_kw or None,
            version_valid_from=date_or_none(msg.version_valid_from),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckAnswer:
    """The answer about one plate on one day in one zone: outcome and reason names,
    allowed-until, euro norm, derived flags, notes (`WARNING_ONLY`, `HOUR_UNKNOWN`, ...), the
    data used, and the snapshot and rule revision it was decided on; with an instant, the
    Brussels day the server derived and the instant (UTC text)."""

    outcome: str
    reason: str | None
    allowed_until: dt.date | None
    open_ended: bool
    euro: str | None
    derived: frozenset[str]
    technical: TechnicalData | None
    snapshot_id: str
    revision: str
    zone: str = ""
    date: dt.date | None = None
    notes: frozenset[str] = frozenset()
    instant: str = ""

    @property
    def allowed(self) -> bool:
        return self.outcome == "ALLOWED"

    @classmethod
    def from_pb(
        cls,
        msg: pb.Decision,
        *,
        snapshot_id: str,
        revision: str,
        zone: str = "",
        date: str = "",
        instant: str = "",
    ) -> CheckAnswer:
        return cls(
            outcome=outcome_name(int(msg.outcome)),
            reason=reason_name(int(msg.reason)) if msg.reason else None,
            allowed_until=date_or_none(msg.allowed_until),
            open_ended=bool(msg.open_ended),
            euro=msg.euro or None,
            derived=derived_names(int(msg.derived)),
            technical=TechnicalData.from_pb(msg.technical) if msg.HasField("technical") else None,
            snapshot_id=snapshot_id,
            revision=revision,
            zone=zone,
            date=date_or_none(date),
            notes=note_names(int(msg.notes)),
            instant=instant,
        )

    @classmethod
    def from_check_response(cls, msg: pb.CheckResponse) -> CheckAnswer:
        return cls.from_pb(
            msg.decision,
            snapshot_id=msg.snapshot_id,
            revision=msg.ruleset_revision,
            zone=msg.zone,
            date=msg.date,
            instant=msg.instant,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RecheckItem:
    """An earlier decision to re-evaluate (appeals)."""

    plate: str | None = None
    key: bytes | None = None
    country: str = BELGIUM
    zone: str
    date: dt.date | str
    outcome: str
    reason: str | None = None
    euro: str | None = None
    snapshot_id: str = ""
    revision: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecheckResult:
    """The re-evaluation of one earlier decision."""

    index: int
    previous_outcome: str
    previous_reason: str | None
    current: CheckAnswer
    outcome_changed: bool
    changes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecheckAnswer:
    """The answer to a Recheck."""

    results: tuple[RecheckResult, ...]
    snapshot_id: str
    revision: str
    mutation_watermark: str

    @classmethod
    def from_pb(cls, msg: pb.RecheckResponse) -> RecheckAnswer:
        results = tuple(
            RecheckResult(
                index=int(r.index),
                previous_outcome=outcome_name(int(r.previous_outcome)),
                previous_reason=reason_name(int(r.previous_reason)) if r.previous_reason else None,
                current=CheckAnswer.from_pb(
                    r.current, snapshot_id=msg.snapshot_id, revision=msg.ruleset_revision
                ),
                outcome_changed=bool(r.outcome_changed),
                changes=tuple(change_name(int(c)) for c in r.changes),
            )
            for r in msg.results
        )
        return cls(
            results=results,
            snapshot_id=msg.snapshot_id,
            revision=msg.ruleset_revision,
            mutation_watermark=msg.mutation_watermark,
        )
