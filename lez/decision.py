"""Outcomes, reasons and the inputs and outputs of the rules engine (a chunk, or one item).

The outcomes are the five answers of the public checker (docs/sources.md: DIV-VMM protocol
annex par. 18) plus INVALID for an unreadable item (docs/rules.md#outcomes-and-reasons). Every
answer carries a reason; the proto enums in `lez.api.v1` mirror these values one to one (a test
checks it), so they never change meaning once released.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lez.registrations import RegistrationArray
from lez.vehicle import VehicleArray


class Outcome(enum.IntEnum):
    """The answer for one (plate, day, zone)."""

    UNSPECIFIED = 0
    ALLOWED = 1  # "uw voertuig is toegelaten tot ..."
    NOT_ALLOWED = 2  # "uw voertuig is niet toegelaten"
    UNKNOWN_PLATE = 3  # "dit kenteken is onbekend"
    INSUFFICIENT_DATA = 4  # "er zijn onvoldoende gegevens over uw voertuig beschikbaar"
    COMBINATION_MISMATCH = 5  # "de ingegeven combinatie van gegevens klopt niet"
    INVALID = 6  # the item could not be read; the rest of the batch goes on


class Reason(enum.IntEnum):
    """Why an outcome was given. Stable numbers: append, never renumber."""

    UNSPECIFIED = 0
    MEETS_CRITERIA = 1  # euro norm at or above the minimum in force
    ZONE_NOT_IN_FORCE = 2  # the zone has no restriction yet on day X
    CATEGORY_NOT_REGULATED = 3  # outside the regulated categories (L, O, ... in Flanders)
    ZERO_EMISSION = 4  # electric or hydrogen
    PLUG_IN_HYBRID_EXEMPT = 5  # PHEV exemption, where the revision has one
    REGISTERED_DISABLED_PERSON = 6
    REGISTERED_OLDTIMER = 7
    REGISTERED_TRACTOR_UNDER_130KW = 8
    REGISTERED_PRIORITY_VEHICLE = 9
    REGISTERED_WHEELCHAIR_LIFT = 10
    LOCAL_PERMIT = 11
    DAY_PASS = 12
    EURO_BELOW_MINIMUM = 13
    FUEL_BANNED = 14  # the fuel is no longer allowed at all in this zone
    FOREIGN_NOT_REGISTERED = 15
    FOREIGN_REGISTERED = 16
    DUTCH_PLATE_CHECKED_ELSEWHERE = 17  # NL plates are checked against the RDW register
    NOT_IN_REGISTER = 18
    NO_VERSION_ON_DAY = 19  # the plate exists but was not assigned on day X
    EURO_UNKNOWN = 20
    CATEGORY_UNKNOWN = 21
    FUEL_UNKNOWN = 22
    FIRST_REGISTRATION_MISMATCH = 23
    INVALID_PLATE = 24
    INVALID_DAY = 25
    INVALID_COUNTRY = 26
    CATEGORY_ALWAYS_ALLOWED = 27  # a category the revision exempts (e.g. priority vehicles)
    CRITERIA_NOT_FOUND = 28  # the revision marks this case's criterion as not found in the sources
    OLDTIMER_PLATE_EXEMPT = 29  # Brussels: O plate older than the age the law sets, no registration
    OLDTIMER_TOO_YOUNG = 30  # an oldtimer registration, but the vehicle is under the age on the day


class Derived(enum.IntFlag):
    """Which inputs of a decision were derived or corrected rather than read from DIV."""

    NONE = 0
    CATEGORY = 1  # category derived from kind, masses and seats
    EURO = 2  # euro norm derived from the first-registration date
    PLUG_IN_HYBRID = 4  # plug-in hybrid derived from fuel, electric indicator and CO2
    EURO_CORRECTED = 8  # euro norm from a registered correction


class Note(enum.IntFlag):
    """What a reader of an answer should know beyond outcome and reason (docs/rules.md#notes)."""

    NONE = 0
    HOUR_UNKNOWN = 1  # a day without a time, where the time could change the outcome
    WARNING_ONLY = 2  # the day is in a warning-only period: a refusal leads to a warning
    REGISTERED_AFTER_ENTRY = 4  # allowed by a registration made within the grace days after
    VALID_UNTIL_HOUR = 8  # allowed by a registration of the day before valid until an hour today


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchInput:
    """Everything the engine needs for n items of one zone, aligned by item index."""

    records: VehicleArray  # (n,) the version valid on the item's day (sentinels if none)
    found: npt.NDArray[np.bool_]  # a version is valid on the day
    known: npt.NDArray[np.bool_]  # the plate exists in the register on some day
    days: npt.NDArray[np.int32]  # day X of each item
    belgian: npt.NDArray[np.bool_]  # country is BE
    dutch: npt.NDArray[np.bool_]  # country is NL
    invalid: npt.NDArray[np.uint8]  # 0 = readable; else the Reason.INVALID_* value
    reg_query: npt.NDArray[np.int64]  # registration rows: index of their item
    reg_rows: RegistrationArray  # registration rows matching the items' keys
    claimed_first_registration: npt.NDArray[np.int32] | None = None  # public checker only
    seconds: npt.NDArray[np.int32] | None = None  # second of the Brussels day; -1: hour unknown
    # (None: no item has a time, as for reads given by day)


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemInput:
    """Everything the engine needs for one item of a single check (`lez.rules.decide_one`)."""

    record: np.void | None  # the version valid on the item's day; None if none (or not Belgian)
    known: bool  # the plate exists in the register on some day
    day: int  # day X
    belgian: bool  # country is BE
    dutch: bool  # country is NL
    registrations: RegistrationArray  # every registration row of the item's key
    invalid: int = 0  # 0 = readable; else the Reason.INVALID_* value
    claimed_first_registration: int | None = None  # public checker only
    second: int = -1  # second of the Brussels day of the read; -1: the hour is not known


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionColumns:
    """The engine's answers for n items as columns, aligned with the input (row i of each
    column is the `lez.rules.Verdict` of item i)."""

    outcome: npt.NDArray[np.uint8]
    reason: npt.NDArray[np.uint8]
    allowed_until: npt.NDArray[np.int32]  # last allowed day; DAY_OPEN = no end; DAY_UNKNOWN
    euro: npt.NDArray[np.uint8]  # effective euro id used (after derivation or correction)
    category: npt.NDArray[np.uint8]  # effective category id used
    derived: npt.NDArray[np.uint8]  # Derived bits
    notes: npt.NDArray[np.uint8]  # Note bits
