"""The packed vehicle version record: the one binary format shared by loader, store and server.

A plate maps to a short array of versions sorted by `valid_from`; each version holds the DIV
subset (docs/sources.md: DIV-VMM protocol section IX, items 1-3) valid in
`[valid_from, valid_to)`, in days since 1970-01-01 (`lez.days`). Nothing else: no VIN, no holder
identity. Explicit little-endian, fixed itemsize (asserted by a test); any change to the layout
bumps `FORMAT_VERSION`, and the server refuses a store written with another version.

Unknown values use sentinels: `DAY_UNKNOWN` for dates, 0 for codes (UNKNOWN), and
`U16_UNKNOWN` / `U32_UNKNOWN` / `U8_UNKNOWN` for numbers that can legitimately be 0.
"""

from __future__ import annotations

import enum
from typing import Final

import numpy as np
import numpy.typing as npt

from lez.days import DAY_OPEN, DAY_UNKNOWN

FORMAT_VERSION: Final = 1

U8_UNKNOWN: Final = 0xFF
U16_UNKNOWN: Final = 0xFFFF
U32_UNKNOWN: Final = 0xFFFFFFFF


class Flag(enum.IntFlag):
    """Bits of the `flags` field."""

    NONE = 0
    ELECTRIC_MOTOR = 1  # DIV electric-motor indicator (docs/sources.md: DIV-VMM protocol IX)
    OLDTIMER_PLATE = 2  # plate type O in the register (docs/extract-format.md#plate_type)


VEHICLE_DTYPE: Final = np.dtype(
    [
        ("valid_from", "<i4"),  # first day this version is valid
        ("valid_to", "<i4"),  # first day it is no longer valid (DAY_OPEN: still valid)
        ("first_registration", "<i4"),  # day of first registration (DAY_UNKNOWN if missing)
        ("last_registration", "<i4"),  # day of last registration (DAY_UNKNOWN if missing)
        ("max_mass", "<u4"),  # maximum permissible mass, kg (U32_UNKNOWN)
        ("running_mass", "<u4"),  # mass in running order, kg (U32_UNKNOWN)
        ("nis", "<u4"),  # NIS code of the holder's municipality (0 unknown)
        ("co2", "<u2"),  # g/km, official combined value (U16_UNKNOWN)
        ("power_kw", "<u2"),  # net power, kW (U16_UNKNOWN)
        ("seats", "u1"),  # seats including the driver (U8_UNKNOWN)
        ("category", "u1"),  # lez.codes.CATEGORY id
        ("kind", "u1"),  # lez.codes.KIND id (aard)
        ("bodywork", "u1"),  # lez.codes.BODYWORK id
        ("fuel", "u1"),  # lez.codes.FUEL id
        ("euro", "u1"),  # lez.codes.EURO id
        ("status", "u1"),  # lez.codes.STATUS id
        ("flags", "u1"),  # Flag bits
    ]
)
"""One version of a plate's vehicle data: 40 bytes."""

RECORD_SIZE: Final = 40
assert VEHICLE_DTYPE.itemsize == RECORD_SIZE

VehicleArray = npt.NDArray[np.void]


def _unknown_record() -> VehicleArray:
    rec = np.zeros(1, dtype=VEHICLE_DTYPE)
    rec["valid_from"] = DAY_UNKNOWN
    rec["valid_to"] = DAY_OPEN
    rec["first_registration"] = DAY_UNKNOWN
    rec["last_registration"] = DAY_UNKNOWN
    rec["max_mass"] = U32_UNKNOWN
    rec["running_mass"] = U32_UNKNOWN
    rec["co2"] = U16_UNKNOWN
    rec["power_kw"] = U16_UNKNOWN
    rec["seats"] = U8_UNKNOWN
    return rec


_UNKNOWN_WORDS: Final = _unknown_record().view(np.uint64)
"""One record of unknown sentinels as its five 8-byte words."""


def empty(n: int) -> VehicleArray:
    """`n` records with every field set to its unknown sentinel and an open validity (copied
    as whole words from one template: 2x faster than setting the fields one by one, and every
    stream chunk's lookup starts from one)."""
    rec = np.empty(n, dtype=VEHICLE_DTYPE)
    rec.view(np.uint64).reshape(n, RECORD_SIZE // 8)[:] = _UNKNOWN_WORDS
    return rec


def pack(records: VehicleArray) -> bytes:
    """Bytes of a version array (the LMDB value of one plate)."""
    return np.ascontiguousarray(records, dtype=VEHICLE_DTYPE).tobytes()


def unpack(blob: bytes | memoryview) -> VehicleArray:
    """Version array from bytes written by `pack` (a copy, safe after the transaction ends)."""
    if len(blob) % RECORD_SIZE:
        raise ValueError(f"a packed version array is a multiple of {RECORD_SIZE} bytes")
    return np.frombuffer(blob, dtype=VEHICLE_DTYPE).copy()


def version_on(records: VehicleArray, day: int) -> int | None:
    """Index of the version valid on `day`, or None (one-item reference path)."""
    for i in range(len(records)):
        if int(records["valid_from"][i]) <= day < int(records["valid_to"][i]):
            return i
    return None
