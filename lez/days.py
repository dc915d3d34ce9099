"""Calendar days as int32 counts since 1970-01-01, the time unit of records, rules and batches.

Two sentinels: `DAY_UNKNOWN` (a date the register does not hold) and `DAY_OPEN` (an interval
with no end). Intervals are half-open: `[valid_from, valid_to)`.

A moment becomes a day in Europe/Brussels (`brussels_day`): the zones are Belgian, so "today"
and a camera read's day are Brussels calendar days whatever the machine's time zone.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import re
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from lez.errors import echo

EPOCH: Final = dt.date(1970, 1, 1)
DAY_UNKNOWN: Final = -(2**31)
DAY_OPEN: Final = 2**31 - 1
BRUSSELS: Final = ZoneInfo("Europe/Brussels")
FIRST_DATE: Final = dt.date.min
LAST_DATE: Final = dt.date.max
DAYS_ACCEPTED: Final = f"days from {FIRST_DATE.isoformat()} to {LAST_DATE.isoformat()} are accepted"
"""The dates a day number may be made of (`parse_day`): those of the proleptic Gregorian
calendar with a four-digit year; their day numbers fit int32 far from the sentinels."""
_MONTHS: Final = ("January", "February", "March", "April", "May", "June", "July", "August",
                   "September", "October", "November", "December")  # fmt: skip
_DATE_SHAPE: Final = re.compile(r"(\d+)-(\d{1,2})-(\d{1,2})|(\d{4})(\d{2})(\d{2})")


def to_day(value: dt.date) -> int:
    """Day number of a date."""
    return (value - EPOCH).days


def from_day(day: int) -> dt.date:
    """Date of a day number (not a sentinel)."""
    return EPOCH + dt.timedelta(days=day)


def parse_day(text: str) -> int:
    """Day number of an ISO date `YYYY-MM-DD`; raises ValueError telling a day that is not on
    the calendar (`2026-02-30`) or outside `DAYS_ACCEPTED` from a text that is not a date at
    all (quoted only through `lez.errors.echo`: never a value that could be a plate)."""
    text = text.strip()
    try:
        return to_day(dt.date.fromisoformat(text))
    except ValueError:
        raise ValueError(date_problem(text)) from None


def date_problem(text: str) -> str:
    """What is wrong with a text that `parse_day` refuses, in words a person can act on."""
    shape = _DATE_SHAPE.fullmatch(text.strip())
    if shape is None:
        return f"expected a date as YYYY-MM-DD, got {echo(text.strip())}"
    parts = [part for part in shape.groups() if part is not None]  # extended or basic form
    year, month, day = (int(part) for part in parts)
    shown = shape[0]
    if len(parts[0]) != 4 or year < FIRST_DATE.year:
        return f"{shown} is out of range: {DAYS_ACCEPTED}"
    if not 1 <= month <= 12:
        return f"{shown} is not a day of the calendar (there is no month {parts[1]})"
    month_days = calendar.monthrange(year, month)[1]
    if not 1 <= day <= month_days:
        name = f"{_MONTHS[month - 1]} {year}"
        return f"{shown} is not a day of the calendar ({name} has {month_days} days)"
    return f"expected a date as YYYY-MM-DD, got {shown}"  # not reached: the date is valid


def brussels_day(moment: dt.datetime) -> int:
    """The Europe/Brussels calendar day of an aware moment (naive: taken as Brussels time)."""
    local = moment.astimezone(BRUSSELS) if moment.tzinfo is not None else moment
    return to_day(local.date())


def today_brussels() -> int:
    """Today's day number in Europe/Brussels."""
    return brussels_day(dt.datetime.now(BRUSSELS))


@functools.lru_cache(maxsize=8192)
def format_day(day: int) -> str:
    """ISO date of a day number, '' for DAY_UNKNOWN, 'open' for DAY_OPEN."""
    if day == DAY_UNKNOWN:
        return ""
    if day == DAY_OPEN:
        return "open"
    return from_day(day).isoformat()


# ---- instants: a moment as seconds since 1970-01-01T00:00:00Z --------------------------------

SECONDS_PER_DAY: Final = 86_400
NO_INSTANT: Final = -(2**63)
"""An instants column's value for a row without one (int64 minimum, as on the wire)."""
_FEW_CHANGES: Final = 8
"""Up to this many offset changes inside a chunk's span, each is one vectorised compare (a
`searchsorted` over the whole chunk costs more)."""
SECOND_UNKNOWN: Final = -1
"""The second-of-day of a read given only as a day: its hour is not known."""


def parse_instant(text: str) -> int:
    """Seconds since the epoch of an ISO 8601 moment with a UTC offset (`...+01:00`, `...Z`);
    raises ValueError naming the expected form (a moment without an offset is ambiguous)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("expected an ISO 8601 moment with a UTC offset") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("expected an ISO 8601 moment with a UTC offset (e.g. +01:00 or Z)")
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(seconds=1)


def format_instant(seconds: int) -> str:
    """ISO 8601 text of an instant, in UTC (`2026-03-01T04:30:00Z`)."""
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def brussels_day_second(seconds: int) -> tuple[int, int]:
    """(Europe/Brussels calendar day, second of that local day) of an instant, by zoneinfo:
    the one-item reference of `brussels_days_seconds`."""
    moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    local = moment.astimezone(BRUSSELS)
    return to_day(local.date()), local.hour * 3600 + local.minute * 60 + local.second


@functools.lru_cache(maxsize=512)
def _year_changes(year: int) -> tuple[tuple[int, int], ...]:
    """(instant, UTC offset in seconds from then on) at the start of `year` (UTC) and at every
    change of the Brussels offset inside the year, found by probing zoneinfo daily and then
    bisecting to the second (the real rules, past ones included)."""

    def offset(t: int) -> int:
        moment = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=t)
        delta = moment.astimezone(BRUSSELS).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    start = int((dt.datetime(year, 1, 1, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
                .total_seconds())  # fmt: skip
    end = int((dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
              .total_seconds())  # fmt: skip
    out = [(start, offset(start))]
    t = start
    while t < end:
        step = min(t + SECONDS_PER_DAY, end)
        if offset(step) != out[-1][1] or step == end:
            lo, hi = t, step  # offset(lo) == current; find the first second with another one
            if offset(hi) != out[-1][1]:
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if offset(mid) == out[-1][1]:
                        lo = mid
                    else:
                        hi = mid
                out.append((hi, offset(hi)))
        t = step
    return tuple(out)


@functools.lru_cache(maxsize=64)
def _offset_table(
    first_year: int, last_year: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted change instants and the offset in force from each, for the given UTC years."""
    changes = [c for year in range(first_year, last_year + 1) for c in _year_changes(year)]
    starts = np.array([c[0] for c in changes], dtype=np.int64)
    offsets = np.array([c[1] for c in changes], dtype=np.int64)
    return starts, offsets


def _utc_year(seconds: int) -> int:
    return (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=seconds)).year


def brussels_days_seconds(
    seconds: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Europe/Brussels calendar day and second of the local day of each instant (seconds since
    the epoch, within years 1..9998), vectorised: the offset comes from a table of the zone's
    offset changes over the years the instants span: one constant when every instant lies
    between the same two changes (the usual case for a day of reads), one masked add per change
    when there are a few (a week across a DST switch), a `searchsorted` otherwise."""
    seconds = np.asarray(seconds, dtype=np.int64)
    if not len(seconds):
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
    low, high = int(seconds.min()), int(seconds.max())
    starts, offsets = _offset_table(_utc_year(low), _utc_year(high))
    first = int(np.searchsorted(starts, low, side="right")) - 1
    last = int(np.searchsorted(starts, high, side="right")) - 1
    if high - low >= 2**31 - 2 * SECONDS_PER_DAY or last - first > _FEW_CHANGES:
        local = seconds + offsets[np.searchsorted(starts, seconds, side="right") - 1]
        days64 = local // SECONDS_PER_DAY
        local -= days64 * SECONDS_PER_DAY
        return days64.astype(np.int32), local.astype(np.int32)
    # The usual chunk spans days, not years: seconds since the first local midnight fit int32,
    # and each offset change inside the span is one masked add. In place, without int64
    # temporaries: fresh large arrays (page faults) cost more than the arithmetic.
    base = (low + int(offsets[first])) // SECONDS_PER_DAY
    within = np.empty(len(seconds), dtype=np.int32)
    np.subtract(seconds, base * SECONDS_PER_DAY - int(offsets[first]), out=within,
                casting="unsafe")  # fmt: skip
    for k in range(first + 1, last + 1):
        np.add(within, np.int32(offsets[k] - offsets[k - 1]), out=within,
               where=seconds >= starts[k])  # fmt: skip
    days = np.floor_divide(within, np.int32(SECONDS_PER_DAY))
    np.remainder(within, np.int32(SECONDS_PER_DAY), out=within)
    days += np.int32(base)
    return days, within


def anniversary(first: int, years: int) -> int:
    """The day `first` turns `years` years old (a 29 February turns on 1 March): one-item
    reference of `anniversaries`."""
    date = from_day(first)
    month_start = dt.date(date.year + years, date.month, 1)
    return to_day(month_start) + date.day - 1


def anniversaries(first: npt.NDArray[np.int32], years: int) -> npt.NDArray[np.int64]:
    """`anniversary` of each day (not sentinels), vectorised with datetime64 months."""
    as_days = np.asarray(first, dtype=np.int64).astype("M8[D]")
    months = as_days.astype("M8[M]")
    within = (as_days - months.astype("M8[D]")).astype(np.int64)
    later: npt.NDArray[np.int64] = (
        (months + np.timedelta64(12 * years, "M")).astype("M8[D]").astype(np.int64)
    )
    out: npt.NDArray[np.int64] = later + within
    return out
