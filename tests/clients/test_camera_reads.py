"""`clients.camera_reads`, the demo's camera reads: every kind of read in about its share,
registered plates from the extract and unregistered ones not in it, Brussels timestamps with
the right offset on both sides of the October DST change, a file `lez batch` reads, and no
plate in what it prints."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from clients import camera_reads
from clients.batchfile import read_batch, utc_ms_to_brussels_days
from clients.camera_reads import (
    DEFAULT_MIX,
    ReadKind,
    ReadMix,
    counts_by_kind,
    register_plates,
    sample_reads,
    write_reads,
)
from lez.days import NO_INSTANT, to_day

FIRST_DAY = dt.date(2026, 10, 20)
LAST_DAY = dt.date(2026, 10, 26)  # Brussels leaves summer time on 25 October
READS = 20_000


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("extract") / "extract.csv"
    rows = [f"1-{a}{b}C-{n:03d},M1" for a in "ABK" for b in "DEF" for n in range(100)]
    rows += ["1-AB#-123,M1", ",M1", "1,2,3"]  # malformed plates and a malformed row
    path.write_text("plate,category\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def reads(extract: Path) -> pa.Table:
    plates = register_plates(extract)
    return sample_reads(plates, READS, 7, first_day=FIRST_DAY, last_day=LAST_DAY)


def _compact(plate: str) -> str:
    return plate.upper().replace("-", "").replace(" ", "")


def test_only_readable_register_plates_are_drawn(extract: Path) -> None:
    plates = register_plates(extract).to_pylist()
    assert len(plates) == 900 and "1-AB#-123" not in plates and "" not in plates


def test_every_kind_in_about_its_share(reads: pa.Table) -> None:
    kinds = np.bincount(reads.column("kind").to_numpy(), minlength=len(ReadKind)) / READS
    for kind, share in zip(ReadKind, DEFAULT_MIX.kind_shares(), strict=True):
        assert abs(kinds[kind] - share) < max(0.01, share / 3), kind


def test_registered_reads_are_plates_of_the_extract_and_unregistered_ones_are_not(
    extract: Path, reads: pa.Table
) -> None:
    register = {_compact(p) for p in register_plates(extract).to_pylist()}
    kinds = reads.column("kind").to_numpy()
    plates = reads.column("plate").to_pylist()
    countries = reads.column("country").to_pylist()
    for plate, country, kind in zip(plates, countries, kinds.tolist(), strict=True):
        if kind == ReadKind.REGISTERED:
            assert _compact(plate) in register and country == "BE"
        elif kind == ReadKind.UNREGISTERED:
            assert _compact(plate) not in register and country == "BE"
        elif kind == ReadKind.DUTCH:
            assert country == "NL"


def test_timestamps_are_brussels_time_across_the_dst_change(reads: pa.Table) -> None:
    stamps = reads.column("timestamp").to_pylist()
    moments = [dt.datetime.fromisoformat(s) for s in stamps]
    days = {m.date() for m in moments}
    assert min(days) == FIRST_DAY and max(days) == LAST_DAY
    for moment in moments:
        summer = moment.astimezone(dt.UTC) < dt.datetime(2026, 10, 25, 1, tzinfo=dt.UTC)
        assert moment.utcoffset() == dt.timedelta(hours=2 if summer else 1), moment
    assert all(len(s.split("T")[1]) == len("18:36:12.345+01:00") for s in stamps)


def test_the_file_is_what_lez_batch_reads(reads: pa.Table, tmp_path: Path) -> None:
    path = tmp_path / "reads.csv"
    write_reads(reads, path)
    batch = read_batch(path)
    assert len(batch) == READS and batch.day_column == "timestamp" and batch.bad_days == 0
    # the timestamps travel as instants; the server derives their Brussels days
    assert batch.rows.instants is not None and (batch.rows.instants != NO_INSTANT).all()
    days = utc_ms_to_brussels_days(batch.rows.instants)
    assert days.min() == to_day(FIRST_DAY) and days.max() == to_day(LAST_DAY)


def test_the_same_seed_draws_the_same_reads(extract: Path, reads: pa.Table) -> None:
    again = sample_reads(register_plates(extract), READS, 7, first_day=FIRST_DAY, last_day=LAST_DAY)
    assert again.equals(reads)


def test_the_description_counts_and_shows_no_plate(reads: pa.Table) -> None:
    text = counts_by_kind(reads)
    assert text.startswith("registered=") and "unreadable=" in text
    for plate in reads.column("plate").to_pylist():
        assert not plate or plate not in text


def test_bad_arguments_say_what_is_wrong(extract: Path) -> None:
    plates = register_plates(extract)
    with pytest.raises(ValueError, match="before the first"):
        sample_reads(plates, 10, 1, first_day=LAST_DAY, last_day=FIRST_DAY)
    with pytest.raises(ValueError, match="no readable plate"):
        sample_reads(plates[:0], 10, 1, first_day=FIRST_DAY, last_day=LAST_DAY)
    with pytest.raises(ValueError, match="sum to at most 1"):
        ReadMix(unregistered=0.9, dutch=0.2).kind_shares()


def test_unregistered_plates_avoid_every_register_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    # a plate space of 100 ("1-ABD-000".."1-ABD-099") of which the register holds 95, written
    # in lower case: only the 5 others may be drawn as unregistered
    monkeypatch.setattr(camera_reads, "BELGIAN_SHAPES", ("1-ABD-099",))
    register = pa.array([f"1-abd-{n:03d}" for n in range(95)])
    mix = ReadMix(unregistered=0.5)
    drawn = sample_reads(register, 2000, 3, first_day=FIRST_DAY, last_day=LAST_DAY, mix=mix)
    unregistered = drawn.filter(pc.equal(drawn.column("kind"), ReadKind.UNREGISTERED))
    found = {_compact(p) for p in unregistered.column("plate").to_pylist()}
    assert found and found <= {f"1ABD0{n}" for n in range(95, 100)}
