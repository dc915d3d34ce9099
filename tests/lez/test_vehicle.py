"""The packed record: fixed layout, explicit little-endian, lossless round trip."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lez import vehicle


def test_layout_is_fixed() -> None:
    dt = vehicle.VEHICLE_DTYPE
    assert dt.itemsize == 40
    assert vehicle.FORMAT_VERSION == 1
    assert [dt.fields[n][1] for n in ("valid_from", "max_mass", "co2", "seats", "flags")] == [
        0,
        16,
        28,
        32,
        39,
    ]
    for name in dt.names or ():
        assert dt.fields[name][0].str[0] in ("<", "|"), name


@given(hnp.arrays(vehicle.VEHICLE_DTYPE, st.integers(0, 12)))
def test_pack_unpack_roundtrip(records: np.ndarray) -> None:
    blob = vehicle.pack(records)
    assert len(blob) == len(records) * 40
    back = vehicle.unpack(blob)
    assert back.tobytes() == records.tobytes()


def test_version_on_uses_half_open_intervals() -> None:
    recs = vehicle.empty(2)
    recs["valid_from"] = [100, 200]
    recs["valid_to"] = [200, vehicle.DAY_OPEN]
    assert vehicle.version_on(recs, 99) is None
    assert vehicle.version_on(recs, 199) == 0
    assert vehicle.version_on(recs, 200) == 1
