"""The plate type of the extract reaches the record: an `O` plate sets `Flag.OLDTIMER_PLATE`
(docs/extract-format.md#plate_type), which the Brussels automatic oldtimer exemption reads."""

from __future__ import annotations

from pathlib import Path

from lez.vehicle import Flag
from loader.extract import load_extract
from tests.support.extracts import row, write_extract


def test_o_plates_are_flagged_and_other_types_are_not(tmp_path: Path) -> None:
    path = write_extract(
        tmp_path / "extract.csv",
        [
            row("O-ABC-123", plate_type="O", electric="1"),
            row("1-ABC-234", plate_type="N"),
            row("1-ABD-234", plate_type=""),
            row("1-ABE-234", plate_type="o"),
            row("1-ABF-234", plate_type="X"),
        ],
    )
    extract = load_extract(path)
    assert not extract.rejects
    flags = extract.records["flags"].tolist()
    plate = int(Flag.OLDTIMER_PLATE)
    assert [bool(f & plate) for f in flags] == [True, False, False, True, False]
    assert flags[0] & Flag.ELECTRIC_MOTOR  # the electric bit is kept beside it
