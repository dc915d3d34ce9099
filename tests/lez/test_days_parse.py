"""`lez.days.parse_day` tells a day that is not on the calendar or out of the accepted range
from a text that is not a date, and never quotes a value that could be a plate."""

from __future__ import annotations

import datetime as dt

import pytest

from lez.days import DAY_OPEN, DAY_UNKNOWN, DAYS_ACCEPTED, FIRST_DATE, LAST_DATE, parse_day, to_day


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-02-30", "2026-02-30 is not a day of the calendar (February 2026 has 28 days)"),
        ("2024-02-30", "2024-02-30 is not a day of the calendar (February 2024 has 29 days)"),
        ("2026-04-31", "2026-04-31 is not a day of the calendar (April 2026 has 30 days)"),
        ("2026-13-01", "2026-13-01 is not a day of the calendar (there is no month 13)"),
        ("0000-01-01", "0000-01-01 is out of range: " + DAYS_ACCEPTED),
        ("10000-01-01", "10000-01-01 is out of range: " + DAYS_ACCEPTED),
        ("2026/02/03", "expected a date as YYYY-MM-DD, got '2026/02/03'"),
        ("tomorrow", "expected a date as YYYY-MM-DD, got 'tomorrow'"),
    ],
)
def test_what_is_wrong_with_a_date(text: str, message: str) -> None:
    with pytest.raises(ValueError) as bad:
        parse_day(text)
    assert str(bad.value) == message


def test_a_value_that_could_be_a_plate_is_not_quoted() -> None:
    with pytest.raises(ValueError) as bad:
        parse_day("1ABC234")
    assert "1ABC234" not in str(bad.value) and "expected a date as YYYY-MM-DD" in str(bad.value)


def test_the_accepted_range_fits_int32_clear_of_the_sentinels() -> None:
    assert DAYS_ACCEPTED == "days from 0001-01-01 to 9999-12-31 are accepted"
    assert parse_day("0001-01-01") == to_day(FIRST_DATE)
    assert parse_day("9999-12-31") == to_day(LAST_DATE)
    assert to_day(FIRST_DATE) > DAY_UNKNOWN and to_day(LAST_DATE) < DAY_OPEN
    assert parse_day(" 2024-02-29 ") == to_day(dt.date(2024, 2, 29))
