"""Recheck change classes (`lez.recheck`): what explains today's answer against an earlier one."""

from __future__ import annotations

from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.decision import Derived, Outcome, Reason
from lez.recheck import Change, EarlierAnswer, classify_changes
from lez.rules import Verdict

ALLOWED = Verdict(Outcome.ALLOWED, Reason.MEETS_CRITERIA, DAY_OPEN, 9, 1, 0)
UNKNOWN = Verdict(Outcome.UNKNOWN_PLATE, Reason.NOT_IN_REGISTER, DAY_UNKNOWN, 0, 0, 0)
PERMIT = Verdict(Outcome.ALLOWED, Reason.LOCAL_PERMIT, DAY_OPEN, 4, 1, 0)
REFUSED = Verdict(Outcome.NOT_ALLOWED, Reason.EURO_BELOW_MINIMUM, DAY_UNKNOWN, 4, 1, 0)


def _then(outcome: Outcome, reason: Reason = Reason.UNSPECIFIED, euro: str = "") -> EarlierAnswer:
    return EarlierAnswer(outcome=outcome, reason=reason, euro=euro)


def test_nothing_changed() -> None:
    then = _then(Outcome.ALLOWED, Reason.MEETS_CRITERIA, "6")
    assert classify_changes(then, ALLOWED, "6", None) == []


def test_plate_added_and_removed() -> None:
    assert classify_changes(_then(Outcome.UNKNOWN_PLATE), ALLOWED, "6", None) == [
        Change.PLATE_ADDED
    ]
    then = _then(Outcome.ALLOWED, Reason.MEETS_CRITERIA)
    assert classify_changes(then, UNKNOWN, "", None) == [Change.PLATE_REMOVED]


def test_registration_added_and_removed() -> None:
    refused = _then(Outcome.NOT_ALLOWED, Reason.EURO_BELOW_MINIMUM, "4")
    assert classify_changes(refused, PERMIT, "4", None) == [Change.REGISTRATION_ADDED]
    permitted = _then(Outcome.ALLOWED, Reason.LOCAL_PERMIT, "4")
    assert classify_changes(permitted, REFUSED, "4", None) == [Change.REGISTRATION_REMOVED]


def test_euro_corrected_or_other_vehicle_data() -> None:
    corrected = ALLOWED._replace(derived=int(Derived.EURO_CORRECTED))
    then = _then(Outcome.ALLOWED, Reason.MEETS_CRITERIA, "4")
    assert classify_changes(then, corrected, "6", None) == [Change.EURO_CORRECTED]
    assert classify_changes(_then(Outcome.ALLOWED), corrected, "6", None) == [Change.EURO_CORRECTED]
    assert classify_changes(then, ALLOWED, "6", None) == [Change.VEHICLE_DATA]
    assert classify_changes(_then(Outcome.ALLOWED, euro=" 6 "), ALLOWED, "6", None) == []


def test_ruleset_change_needs_another_outcome_under_the_earlier_rules() -> None:
    then = _then(Outcome.NOT_ALLOWED, Reason.EURO_BELOW_MINIMUM, "6")
    assert classify_changes(then, ALLOWED, "6", Outcome.NOT_ALLOWED) == [Change.RULESET]
    # same outcome under the earlier rules: not the rules; an unexplained change is vehicle data
    assert classify_changes(then, ALLOWED, "6", Outcome.ALLOWED) == [Change.VEHICLE_DATA]


def test_a_cause_is_named_only_when_known() -> None:
    then = _then(Outcome.INSUFFICIENT_DATA, reason=Reason.EURO_UNKNOWN)
    assert classify_changes(then, ALLOWED, "6", None) == []  # rules or data: cannot tell
    assert classify_changes(then, ALLOWED, "6", None, same_rules=True) == [Change.VEHICLE_DATA]
    assert classify_changes(then, ALLOWED, "6", None, same_register=True) == [Change.RULESET]
    assert classify_changes(then, ALLOWED, "6", Outcome.ALLOWED) == [Change.VEHICLE_DATA]
