"""Instants to Brussels days and hours (`lez.days`): the vectorised path the server uses for a
chunk agrees with zoneinfo one read at a time, around both DST switches, around midnight and
over the whole range of readable days; ISO 8601 parsing; ages in whole years."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez.days import (
    BRUSSELS,
    anniversaries,
    anniversary,
    brussels_day_second,
    brussels_days_seconds,
    format_instant,
    parse_instant,
    to_day,
)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LOW = int((dt.datetime(1900, 1, 1, tzinfo=dt.UTC) - EPOCH).total_seconds())
HIGH = int((dt.datetime(2200, 1, 1, tzinfo=dt.UTC) - EPOCH).total_seconds())


def _zoneinfo(seconds: int) -> tuple[int, int]:
    local = (EPOCH + dt.timedelta(seconds=seconds)).astimezone(BRUSSELS)
    return to_day(local.date()), local.hour * 3600 + local.minute * 60 + local.second


def _switches(year: int) -> list[int]:
    """The UTC instants of the year's DST switches (last Sundays of March and October, 01:00)."""
    out = []
    for month in (3, 10):
        last = dt.date(year, month, 31)
        sunday = last - dt.timedelta(days=(last.weekday() + 1) % 7)
        moment = dt.datetime.combine(sunday, dt.time(1), tzinfo=dt.UTC)
        out.append(int((moment - EPOCH).total_seconds()))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(LOW, HIGH - 1), min_size=1, max_size=300))
def test_vectorised_days_and_seconds_equal_zoneinfo(seconds: list[int]) -> None:
    days, secs = brussels_days_seconds(np.array(seconds, dtype=np.int64))
    assert list(zip(days.tolist(), secs.tolist(), strict=True)) == [_zoneinfo(s) for s in seconds]


@pytest.mark.parametrize("year", [1977, 1996, 2018, 2026, 2027, 2150])
def test_around_both_dst_switches_and_midnight(year: int) -> None:
    around = [
        switch + delta
        for switch in _switches(year)
        for delta in (-3601, -3600, -1, 0, 1, 3599, 3600, 7200)
    ]
    # UTC moments next to Brussels midnight in winter (23:00 UTC) and summer (22:00 UTC)
    for month, utc_hour in ((1, 23), (7, 22)):
        moment = dt.datetime(year, month, 15, utc_hour, tzinfo=dt.UTC)
        base = int((moment - EPOCH).total_seconds())
        around += [base - 1, base, base + 1]
    seconds = np.array(around, dtype=np.int64)
    days, secs = brussels_days_seconds(seconds)
    want = [_zoneinfo(s) for s in around]
    assert list(zip(days.tolist(), secs.tolist(), strict=True)) == want
    assert [brussels_day_second(s) for s in around] == want
    # a second before and at Brussels midnight, in winter and in summer
    assert [w[1] for w in want[-6:]] == [86_399, 0, 1, 86_399, 0, 1]


def test_one_offset_for_a_chunk_inside_one_interval_and_many_across() -> None:
    start = int((dt.datetime(2026, 6, 1, tzinfo=dt.UTC) - EPOCH).total_seconds())
    same = np.arange(start, start + 86_400 * 3, 977, dtype=np.int64)
    days, secs = brussels_days_seconds(same)
    assert [(d, s) for d, s in zip(days.tolist(), secs.tolist(), strict=True)] == [
        _zoneinfo(int(s)) for s in same
    ]
    spring = _switches(2026)[0]
    across = np.array([spring - 10, spring + 10, LOW, HIGH - 1], dtype=np.int64)
    days, secs = brussels_days_seconds(across)
    assert list(zip(days.tolist(), secs.tolist(), strict=True)) == [
        _zoneinfo(int(s)) for s in across
    ]
    empty_days, empty_secs = brussels_days_seconds(np.zeros(0, dtype=np.int64))
    assert len(empty_days) == len(empty_secs) == 0


def test_parse_and_format_instants() -> None:
    assert parse_instant("2026-03-02T05:30:00+01:00") == parse_instant("2026-03-02T04:30:00Z")
    assert format_instant(parse_instant("2026-03-02T05:30:00.750+01:00")) == (
        "2026-03-02T04:30:00Z"
    )
    assert parse_instant("1969-12-31T23:59:59.5Z") == -1  # whole seconds, rounded down
    for bad in ("2026-03-02T05:30:00", "2026-03-02", "tomorrow", ""):
        with pytest.raises(ValueError, match="offset"):
            parse_instant(bad)


def test_anniversaries_in_whole_calendar_years() -> None:
    firsts = np.arange(to_day(dt.date(1950, 1, 1)), to_day(dt.date(2001, 1, 1)), dtype=np.int32)
    vectorised = anniversaries(firsts, 30)
    assert vectorised.tolist() == [anniversary(int(f), 30) for f in firsts]
    assert anniversary(to_day(dt.date(1996, 2, 29)), 30) == to_day(dt.date(2026, 3, 1))
    assert anniversary(to_day(dt.date(1996, 2, 29)), 28) == to_day(dt.date(2024, 2, 29))
    assert anniversary(to_day(dt.date(1996, 6, 1)), 30) == to_day(dt.date(2026, 6, 1))
