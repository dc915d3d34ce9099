"""Why a decision changed since it was first given: the change classes of a recheck.

A recheck re-decides an earlier (plate, day, zone) on today's store and rule tables and says
what changed between the earlier answer and today's: the plate entered or left the register, a
registration started or stopped applying, the euro norm was corrected or the vehicle data
changed, or the rule revision itself gives another outcome. The servicer only translates these
classes to the wire (`Change` mirrors the proto enum `lez.api.v1.Change` value for value; a test
checks it). Pure: no gRPC, no store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from lez.decision import Derived, Outcome, Reason
from lez.rules import Verdict


class Change(enum.IntEnum):
    """What changed between an earlier answer and today's. Stable numbers."""

    REGISTRATION_ADDED = 1
    REGISTRATION_REMOVED = 2
    EURO_CORRECTED = 3
    VEHICLE_DATA = 4
    PLATE_ADDED = 5
    PLATE_REMOVED = 6
    RULESET = 7


REGISTRATION_REASONS: Final = frozenset(
    {
        Reason.REGISTERED_DISABLED_PERSON,
        Reason.REGISTERED_OLDTIMER,
        Reason.REGISTERED_TRACTOR_UNDER_130KW,
        Reason.REGISTERED_PRIORITY_VEHICLE,
        Reason.REGISTERED_WHEELCHAIR_LIFT,
        Reason.LOCAL_PERMIT,
        Reason.DAY_PASS,
        Reason.FOREIGN_REGISTERED,
    }
)
"""Reasons that say a registration decided the answer."""
NO_DATA_OUTCOMES: Final = frozenset({Outcome.UNKNOWN_PLATE, Outcome.INVALID, Outcome.UNSPECIFIED})
"""Outcomes given without any vehicle data."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlierAnswer:
    """What the caller was told then (as it sends it back)."""

    outcome: Outcome
    reason: Reason
    euro: str  # the euro code shown then; "" when none was shown or the caller does not know


def classify_changes(
    earlier: EarlierAnswer,
    now: Verdict,
    now_euro: str,
    outcome_under_earlier_rules: int | None,
    *,
    same_rules: bool = False,
    same_register: bool = False,
) -> list[Change]:
    """The changes that explain today's answer `now` against `earlier`, in a stable order; a
    cause is named only when it is known.

    `now_euro` is the euro code today's answer shows; `outcome_under_earlier_rules` is today's
    data decided under the earlier rule revision, when that revision is still loaded and is not
    today's (None otherwise). `same_rules`: the earlier decision names today's revision;
    `same_register`: it names today's snapshot. An outcome that changed for no recognised
    reason is put down to the vehicle data when the rules are known not to explain it (the same
    revision, or the earlier one gives today's outcome too), to the rules when the register is
    the same; otherwise no change is named: the answer differs for a reason that cannot be told.
    """
    new_outcome, new_reason = Outcome(now.outcome), Reason(now.reason)
    changes = _register_changes(earlier, new_outcome, new_reason)
    changes += _euro_changes(earlier.euro, now, now_euro)
    if outcome_under_earlier_rules is not None and outcome_under_earlier_rules != new_outcome:
        changes.append(Change.RULESET)
    if earlier.outcome != new_outcome and not changes:
        if same_rules or outcome_under_earlier_rules is not None:
            changes.append(Change.VEHICLE_DATA)
        elif same_register:
            changes.append(Change.RULESET)
    return changes


def _register_changes(earlier: EarlierAnswer, outcome: Outcome, reason: Reason) -> list[Change]:
    """The plate entering or leaving the register, a registration starting or stopping."""
    changes: list[Change] = []
    if earlier.outcome == Outcome.UNKNOWN_PLATE and outcome not in NO_DATA_OUTCOMES:
        changes.append(Change.PLATE_ADDED)
    if earlier.outcome not in NO_DATA_OUTCOMES and outcome == Outcome.UNKNOWN_PLATE:
        changes.append(Change.PLATE_REMOVED)
    if reason in REGISTRATION_REASONS and earlier.reason not in REGISTRATION_REASONS:
        changes.append(Change.REGISTRATION_ADDED)
    if earlier.reason in REGISTRATION_REASONS and reason not in REGISTRATION_REASONS:
        changes.append(Change.REGISTRATION_REMOVED)
    return changes


def _euro_changes(earlier_euro: str, now: Verdict, now_euro: str) -> list[Change]:
    """A registered euro correction, or another euro norm in the vehicle data."""
    corrected = bool(now.derived & Derived.EURO_CORRECTED)
    euro_changed = bool(earlier_euro) and earlier_euro.strip().upper() != now_euro
    if corrected and (euro_changed or not earlier_euro):
        return [Change.EURO_CORRECTED]
    if euro_changed:
        return [Change.VEHICLE_DATA]
    return []
