"""What the clients accept as a day, and the day texts they send.

A day may be a date, an aware datetime (its Europe/Brussels calendar day), ISO text
(`YYYY-MM-DD` or an ISO 8601 timestamp) or a day number. In a batch an unreadable day becomes
the unknown sentinel, which the server answers per item with OUTCOME_INVALID /
REASON_INVALID_DAY instead of failing the batch; a unary request sends the text as given and
the server says what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import numpy as np
import numpy.typing as npt

from lez.days import (
    BRUSSELS,
    DAY_OPEN,
    DAY_UNKNOWN,
    NO_INSTANT,
    brussels_day,
    from_day,
    parse_day,
    to_day,
)

SECONDS_PER_HOUR: Final = 3600
SECONDS_PER_DAY: Final = 86_400
EPOCH_UTC: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_when(text: str) -> int:
    """Day number of `YYYY-MM-DD` or of an ISO 8601 timestamp (its Brussels calendar day).

    Raises ValueError saying what is expected; never echoes the input.
    """
    text = text.strip()
    if "T" in text or " " in text:
        try:
            moment = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            date_part = text.replace(" ", "T", 1).partition("T")[0]
            try:
                parse_day(date_part)
            except ValueError as exc:  # the day itself is wrong (2026-02-30, 0000-01-01)
                if not str(exc).startswith("expected"):
                    raise ValueError(f"{exc}, in a timestamp") from None
            raise ValueError(
                "expected an ISO 8601 timestamp such as 2016-06-02T18:36:12.345+01:00"
            ) from None
        return brussels_day(moment)
    return parse_day(text)


def to_day_number(value: object) -> int:
    """A day number from a date, datetime, ISO text or int; DAY_UNKNOWN when unreadable."""
    if isinstance(value, dt.datetime):
        return brussels_day(value)
    if isinstance(value, dt.date):
        return to_day(value)
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return parse_when(value)
        except ValueError:
            return DAY_UNKNOWN
    return DAY_UNKNOWN


def day_or_none(day: int) -> dt.date | None:
    """The date of a day number; None for the sentinels (unknown, open)."""
    return None if day in (DAY_UNKNOWN, DAY_OPEN) else from_day(day)


def date_or_none(text: str) -> dt.date | None:
    """The date of an ISO date text from an answer; None for the empty text."""
    return dt.date.fromisoformat(text) if text else None


def date_text(value: dt.date | str | None) -> str:
    """ISO text for a request field; '' for None."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return from_day(brussels_day(value)).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value.strip()


def instant_ms(value: object) -> int:
    """ms since the epoch of a read's moment: an aware datetime, or ISO 8601 text with a time
    (`2016-06-02T18:36:12.345+01:00`, `...Z`); a naive one is taken as Brussels local time.
    NO_INSTANT for anything else (a date, a day number, unreadable text)."""
    if isinstance(value, str):
        text = value.strip()
        if "T" not in text and " " not in text:
            return NO_INSTANT
        try:
            value = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            return NO_INSTANT
    if not isinstance(value, dt.datetime):
        return NO_INSTANT
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=BRUSSELS)
    try:
        return (value - EPOCH_UTC) // dt.timedelta(milliseconds=1)
    except OverflowError:
        return NO_INSTANT


def instant_text(value: dt.datetime | str | None) -> str:
    """ISO 8601 text of a read's moment for a request field ('' for None); a datetime must be
    aware (a naive one would leave the server to guess its offset)."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("an instant must be an aware datetime (with its UTC offset)")
        return value.isoformat()
    return value.strip()


def brussels_offsets_s(utc_seconds: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The Europe/Brussels UTC offset (seconds) at each UTC instant (seconds since 1970),
    looked up with zoneinfo once per distinct UTC hour: Brussels changes offset only on whole
    UTC hours."""
    if len(utc_seconds) == 0:
        return np.zeros(0, dtype=np.int64)
    hours, inverse = np.unique(np.floor_divide(utc_seconds, SECONDS_PER_HOUR), return_inverse=True)
    offsets = np.array(
        [_offset_s(int(h) * SECONDS_PER_HOUR) for h in hours.tolist()], dtype=np.int64
    )
    return offsets[inverse.reshape(-1)]


def _offset_s(utc_second: int) -> int:
    moment = dt.datetime.fromtimestamp(utc_second, tz=dt.UTC).astimezone(BRUSSELS)
    offset = moment.utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0
