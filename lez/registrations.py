"""The cities' registrations (docs/rules.md#registrations): the packed record and its kinds.

A registration belongs to a country-qualified plate key (`lez.keys`), applies to one zone or to
every zone of a region, and is valid in `[valid_from, valid_to)` (days). Kinds follow
docs/rules.md#flanders-registrations and #brussels-registrations. A euro-norm correction carries
the proven euro id.
"""

from __future__ import annotations

import enum
from typing import Final

import numpy as np
import numpy.typing as npt


class RegistrationKind(enum.IntEnum):
    """What a registration grants."""

    DISABLED_PERSON = 1  # permit for a person with a disability (Flanders: 5 years)
    OLDTIMER = 2  # oldtimer over 30 years, registered once (Flanders since 2024)
    TRACTOR_UNDER_130KW = 3  # category T below 130 kW, until 2028-12-31 after registration
    PRIORITY_VEHICLE = 4  # priority vehicle that fails the criteria (Ghent: must register)
    WHEELCHAIR_LIFT = 5  # vehicle with a wheelchair lift or similar (always allowed)
    LOCAL_PERMIT = 6  # paid temporary permit for a period (at most one year)
    DAY_PASS = 7  # one day
    FOREIGN_VEHICLE = 8  # registration of a foreign vehicle (mandatory except NL)
    EURO_CORRECTION = 9  # the owner proved a better euro norm than DIV shows


class Region(enum.IntEnum):
    """Regions with their own LEZ legislation."""

    NONE = 0
    FLANDERS = 1
    BRUSSELS = 2


REGISTRATION_DTYPE: Final = np.dtype(
    [
        ("valid_from", "<i4"),  # first day the registration applies
        ("valid_to", "<i4"),  # first day it no longer applies (DAY_OPEN: no end)
        ("zone", "<u2"),  # zone id from the rule tables; 0 = every zone of `region`
        ("kind", "u1"),  # RegistrationKind
        ("region", "u1"),  # Region, used when zone == 0
        ("euro", "u1"),  # lez.codes.EURO id for EURO_CORRECTION, else 0
        ("reserved", "u1"),
        ("reserved2", "<u2"),
    ]
)
"""One registration: 16 bytes, little-endian."""

assert REGISTRATION_DTYPE.itemsize == 16

RegistrationArray = npt.NDArray[np.void]
