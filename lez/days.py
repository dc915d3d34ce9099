"""Calendar days as int32 counts since 1970-01-01, the time unit of records, rules and batches.

Two sentinels: `DAY_UNKNOWN` (a date the register does not hold) and `DAY_OPEN` (an interval
with no end). Intervals are half-open: `[valid_from, valid_to)`.

A moment becomes a day in Europe/Brussels (`brussels_day`): the zones are Belgian, so "today"
and a camera read's day are Brussels calendar days whatever the machine's time zone.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Final
from zoneinfo import ZoneInfo

EPOCH: Final = dt.date(1970, 1, 1)
DAY_UNKNOWN: Final = -(2**31)
DAY_OPEN: Final = 2**31 - 1
BRUSSELS: Final = ZoneInfo("Europe/Brussels")


def to_day(value: dt.date) -> int:
    """Day number of a date."""
    return (value - EPOCH).days


def from_day(day: int) -> dt.date:
    """Date of a day number (not a sentinel)."""
    return EPOCH + dt.timedelta(days=day)


def parse_day(text: str) -> int:
    """Day number of an ISO date `YYYY-MM-DD`; raises ValueError naming the expected form."""
    try:
        return to_day(dt.date.fromisoformat(text.strip()))
    except ValueError:
        raise ValueError("expected a date as YYYY-MM-DD") from None


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
