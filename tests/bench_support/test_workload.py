"""Enforcement workload: mix shares, determinism, invalid items, CSV with days or timestamps."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from bench import workload
from bench.workload import Item
from lez import plates
from lez.days import from_day, to_day
from loader import synth

DAY_FROM = dt.date(2026, 10, 20)
DAY_TO = dt.date(2026, 10, 26)  # crosses the end of summer time (25 Oct 2026)
BRUSSELS = ZoneInfo("Europe/Brussels")


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.generate(5_000, 3, tmp_path_factory.mktemp("reg"), bad_rows=2).extract


@pytest.fixture(scope="module")
def batch(extract: Path) -> workload.Batch:
    return workload.make_batch(extract, 20_000, 7, day_from=DAY_FROM, day_to=DAY_TO)


def _register(extract: Path) -> set[str]:
    return {plates.try_normalise(p)[0] for p in workload.read_plates(extract).to_pylist()} - {""}


def test_mix_shares(batch: workload.Batch) -> None:
    n = len(batch)
    counts = np.bincount(batch.kinds, minlength=len(Item)) / n
    belgian = counts[Item.KNOWN] + counts[Item.UNKNOWN] + counts[Item.MISREAD]
    assert belgian == pytest.approx(0.93, abs=0.01)
    assert counts[Item.DUTCH] == pytest.approx(0.04, abs=0.006)
    assert counts[Item.FOREIGN] == pytest.approx(0.03, abs=0.006)
    assert counts[Item.UNKNOWN] / belgian == pytest.approx(0.05, abs=0.01)
    assert 0 < counts[Item.INVALID] < 0.01
    countries = np.array(batch.countries)
    assert set(countries[batch.kinds == Item.DUTCH]) == {"NL"}
    assert {"FR", "DE", "LU"} <= set(countries[batch.kinds == Item.FOREIGN])
    assert any(p != p.upper() for p in batch.plates)  # lower case from cameras
    assert any(" " in p for p in batch.plates)
    assert len(set(zip(batch.plates, batch.countries, strict=True))) < n  # repeats


def test_deterministic(extract: Path, batch: workload.Batch) -> None:
    again = workload.make_batch(extract, 20_000, 7, day_from=DAY_FROM, day_to=DAY_TO)
    assert again.plates == batch.plates and again.countries == batch.countries
    assert np.array_equal(again.days, batch.days)
    other = workload.make_batch(extract, 20_000, 8, day_from=DAY_FROM, day_to=DAY_TO)
    assert other.plates != batch.plates


def test_items_are_what_they_claim(extract: Path, batch: workload.Batch) -> None:
    register = _register(extract)
    for plate, country, kind in zip(batch.plates, batch.countries, batch.kinds, strict=True):
        text, rule = plates.try_normalise(plate, country)
        if kind == Item.INVALID:
            assert rule is not plates.PlateRule.OK
            continue
        assert rule is plates.PlateRule.OK, (kind, rule)
        if kind == Item.KNOWN:
            assert text in register
        elif kind == Item.UNKNOWN:
            assert country == "BE" and text not in register
    misread = [p for p, k in zip(batch.plates, batch.kinds, strict=True) if k == Item.MISREAD]
    unknown = sum(plates.try_normalise(p)[0] not in register for p in misread)
    assert unknown > 0.9 * len(misread)
    assert batch.days.dtype == np.int32
    assert batch.days.min() == to_day(DAY_FROM) and batch.days.max() == to_day(DAY_TO)


def test_csv_days_and_timestamps(tmp_path: Path, batch: workload.Batch) -> None:
    batch.write_csv(tmp_path / "days.csv", timestamps=False)
    batch.write_csv(tmp_path / "ts.csv", timestamps=True)
    with open(tmp_path / "days.csv", encoding="utf-8", newline="") as f:
        days = list(csv.DictReader(f))
    with open(tmp_path / "ts.csv", encoding="utf-8", newline="") as f:
        stamps = list(csv.DictReader(f))
    assert len(days) == len(stamps) == len(batch)
    assert list(days[0]) == ["plate", "country", "day"]
    assert list(stamps[0]) == ["plate", "country", "timestamp"]
    offsets = set()
    for i, (d, s) in enumerate(zip(days, stamps, strict=True)):
        assert d["plate"] == s["plate"] == batch.plates[i]
        assert d["country"] == batch.countries[i]
        assert dt.date.fromisoformat(d["day"]) == from_day(int(batch.days[i]))
        when = dt.datetime.fromisoformat(s["timestamp"])
        assert when.date() == from_day(int(batch.days[i]))  # local date is the day
        offset = when.utcoffset()
        assert offset is not None
        offsets.add(offset)
        # the same instant on a Brussels clock reads the same wall time with the same offset
        local = when.astimezone(BRUSSELS)
        assert local.replace(tzinfo=None) == when.replace(tzinfo=None)
        assert local.utcoffset() == offset
    assert offsets == {dt.timedelta(hours=1), dt.timedelta(hours=2)}


@pytest.mark.parametrize("day", [dt.date(2026, 3, 29), dt.date(2026, 10, 25)])
def test_timestamps_on_switch_days(day: dt.date) -> None:
    """Every second of a switch day gets a real Brussels time on that day (none in the skipped
    spring hour), with the offset the zone database gives that instant."""
    seconds = np.arange(0, 86_400, 7, dtype=np.int32)
    days = np.full(len(seconds), to_day(day), dtype=np.int32)
    stamps = workload._timestamps(days, seconds).to_pylist()
    offsets = set()
    for wall_s, text in zip(seconds.tolist(), stamps, strict=True):
        when = dt.datetime.fromisoformat(text)
        assert when.date() == day
        local = when.astimezone(BRUSSELS)
        assert local.replace(tzinfo=None) == when.replace(tzinfo=None), text
        assert local.utcoffset() == when.utcoffset(), text
        clock = when.hour * 3600 + when.minute * 60 + when.second
        assert clock in (wall_s, wall_s + 3600), text  # moved on only out of the skipped hour
        offsets.add(when.utcoffset())
    assert offsets == {dt.timedelta(hours=1), dt.timedelta(hours=2)}
