"""The names of the contract's enums (`Outcome`, `Reason`, `Derived`, `Note`, `Change`) as the
clients show them: `ALLOWED`, `MEETS_CRITERIA`, ... without the proto prefixes, and back.

Outcome and Reason numbers are dense from 0 (the proto says they never change), so a tuple
indexed by number names them; a test checks the density.
"""

from __future__ import annotations

from typing import Final

from lez.api.v1 import access_pb2 as pb

OUTCOME_NAMES: Final[tuple[str, ...]] = tuple(
    name.removeprefix("OUTCOME_") for name, _v in sorted(pb.Outcome.items(), key=lambda i: i[1])
)
REASON_NAMES: Final[tuple[str, ...]] = tuple(
    name.removeprefix("REASON_") for name, _v in sorted(pb.Reason.items(), key=lambda i: i[1])
)
DERIVED_FLAGS: Final[tuple[tuple[int, str], ...]] = tuple(
    (int(v), pb.Derived.Name(v).removeprefix("DERIVED_")) for v in pb.Derived.values() if v
)
NOTE_FLAGS: Final[tuple[tuple[int, str], ...]] = tuple(
    (int(v), pb.Note.Name(v).removeprefix("NOTE_")) for v in pb.Note.values() if v
)
CHANGE_NAMES: Final[dict[int, str]] = {
    int(v): pb.Change.Name(v).removeprefix("CHANGE_") for v in pb.Change.values()
}


def outcome_name(value: int) -> str:
    """`ALLOWED`, `NOT_ALLOWED`, ... for an Outcome number."""
    return OUTCOME_NAMES[value] if 0 <= value < len(OUTCOME_NAMES) else f"OUTCOME_{value}"


def outcome_value(name: str) -> int:
    """The Outcome number of a name with or without the `OUTCOME_` prefix."""
    return int(pb.Outcome.Value("OUTCOME_" + name.strip().upper().removeprefix("OUTCOME_")))


def reason_name(value: int) -> str:
    """`MEETS_CRITERIA`, ... for a Reason number."""
    return REASON_NAMES[value] if 0 <= value < len(REASON_NAMES) else f"REASON_{value}"


def reason_value(name: str) -> int:
    """The Reason number of a name with or without the `REASON_` prefix."""
    return int(pb.Reason.Value("REASON_" + name.strip().upper().removeprefix("REASON_")))


def derived_names(bits: int) -> frozenset[str]:
    """The names of the `Derived` bits set in `bits`."""
    return frozenset(name for bit, name in DERIVED_FLAGS if bits & bit)


def note_names(bits: int) -> frozenset[str]:
    """The names of the `Note` bits set in `bits` (`WARNING_ONLY`, `HOUR_UNKNOWN`, ...)."""
    return frozenset(name for bit, name in NOTE_FLAGS if bits & bit)


def change_name(value: int) -> str:
    """`REGISTRATION_ADDED`, ... for a Change number (its number as text if unknown)."""
    return CHANGE_NAMES.get(value, str(value))
