"""The CSV files of `lez batch`: reading camera reads, writing decisions.

Input: a header, then one row per camera read. Columns `plate`, optional `country` (ISO 3166
alpha-2, empty = BE) and either `day` (`YYYY-MM-DD`) or `timestamp`: an ISO 8601 moment with
its offset as ANPR cameras give it (`2016-06-02T18:36:12.345+01:00`, the form of
docs/sources.md#anpr-platform-tender; `Z` is UTC). Timestamps are sent as instants (ms since the
epoch, UTC): the server derives the calendar day in Europe/Brussels and uses the hour (a day
pass valid until 06:00), so a read at 23:30 UTC on a summer evening is the next Brussels day;
a timestamp without an offset is taken as Brussels local time. An unreadable day or timestamp
does not stop the batch: that row is sent without an instant and with the unknown day and
answered INVALID / INVALID_DAY; the summary counts apart the dates that are not on the calendar
or out of range (`2026-02-30`, `0000-01-01`) and the texts that are not dates. A header that
names no `plate` or no `day`/`timestamp` column is an error quoting the header (unless a cell
could be a plate: then the first line is likely a data row and is not shown) beside the expected
one.

The output is also the input of `lez recheck --file` as it is (`clients.recheck_file`).

Output: the input columns, then `day` (the Brussels date decided on, as the server derived it
for a timestamp), `outcome`, `reason`, `allowed_until` (a date, `open`, or empty), `euro` (DIV
code) and `notes` (`WARNING_ONLY`, `HOUR_UNKNOWN`, `REGISTERED_AFTER_ENTRY`,
`VALID_UNTIL_HOUR`, joined by `|`; empty when none). Rows stay in input order.

Files are read with pyarrow (vectorised); no plate is ever printed from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clients.batch_rows import BatchRows, JoinedPlates, pack_countries
from clients.day_input import instant_ms, parse_when
from clients.enum_names import OUTCOME_NAMES, REASON_NAMES, note_names
from clients.errors import file_problem
from clients.result_columns import BatchResult
from lez.days import DAY_OPEN, DAY_UNKNOWN, NO_INSTANT, brussels_days_seconds, date_problem
from lez.plates import could_hold_plate

MS_PER_SECOND: Final = 1000
EXPECTED_HEADERS: Final = "plate,country,day or plate,country,timestamp"
HEADER_SHOWN: Final = 80
"""Characters of a wrong header line an error quotes."""
_COLUMN_COUNTS: Final = re.compile(r"Expected (\d+) columns, got (\d+)")


class BatchFileError(Exception):
    """An input file that cannot be used as a whole; the message says what to change."""


@dataclass(frozen=True, slots=True)
class BatchFile:
    """The rows of an input file, ready to send."""

    rows: BatchRows
    table: pa.Table
    day_column: str  # "day" or "timestamp"
    bad_days: int
    days_off_calendar: int = 0
    """Of `bad_days`, the dates not on the calendar (2026-02-30) or out of range (0000-01-01):
    written as dates, unlike the rest, which are not dates at all."""

    def __len__(self) -> int:
        return len(self.rows)


def _open_error(path: Path, exc: OSError, *, writing: bool = False) -> BatchFileError:
    what = "output file" if writing else "input file"
    return BatchFileError(file_problem(path, exc, what=what, writing=writing))


def read_batch(path: Path) -> BatchFile:
    """Read an input CSV; raises BatchFileError naming the file and the problem."""
    try:
        with open(path, "rb") as fh:
            head = fh.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
    except OSError as exc:
        raise _open_error(path, exc) from None
    columns = [c.strip().lower() for c in head.split(",")]
    if "plate" not in columns or not ({"day", "timestamp"} & set(columns)):
        raise BatchFileError(f"{path}: {header_problem(head, columns)}")
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=columns, skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except OSError as exc:
        raise _open_error(path, exc) from None
    except pa.ArrowInvalid as exc:
        raise BatchFileError(f"{path}: not a readable CSV file ({_arrow_where(exc)})") from None
    if table.num_rows == 0:
        raise BatchFileError(f"{path}: no rows after the header")
    day_column = "timestamp" if "timestamp" in columns else "day"
    raw_days = table.column(day_column).combine_chunks()
    instants: npt.NDArray[np.int64] | None = None
    off_calendar = 0
    if day_column == "timestamp":
        instants = timestamps_to_instants(raw_days)
        days = np.full(len(instants), DAY_UNKNOWN, dtype=np.int32)  # the server derives them
        bad_days = int((instants == NO_INSTANT).sum())
    else:
        days = dates_to_days(raw_days)
        bad_days = int((days == DAY_UNKNOWN).sum())
        off_calendar = _off_calendar(raw_days, days) if bad_days else 0
    plates = table.column("plate").combine_chunks()
    countries: npt.NDArray[Any] | None = None
    if "country" in columns:
        cty = pc.utf8_upper(pc.utf8_trim_whitespace(table.column("country").combine_chunks()))
        cty = pc.if_else(pc.equal(cty, ""), "BE", cty)
        if not pc.all(pc.equal(cty, "BE")).as_py():
            countries = np.asarray(cty.to_numpy(zero_copy_only=False), dtype=object)
    rows = BatchRows(
        days=days,
        countries=b"" if countries is None else _country_bytes(countries),
        plates=plates_from_arrow(plates),
        instants=instants,
    )
    return BatchFile(
        rows=rows,
        table=table,
        day_column=day_column,
        bad_days=bad_days,
        days_off_calendar=off_calendar,
    )


def _off_calendar(texts: pa.Array, days: npt.NDArray[np.int32]) -> int:
    """How many of the unreadable days are dates off the calendar or out of range."""
    bad = pc.filter(texts, pa.array(days == DAY_UNKNOWN)).to_pylist()
    return sum(not date_problem(text or "").startswith("expected") for text in bad)


def header_problem(head: str, columns: list[str]) -> str:
    """What the header line holds and what it should: the line is quoted unless a cell could be
    a plate (a letter and a digit: then it is likely a data row, the header missing)."""
    expected = f"expected {EXPECTED_HEADERS} (country optional), e.g. 'plate,country,day'"
    if not head:
        return f"the first line is empty: {expected}"
    if any(could_hold_plate(c) for c in re.split(r"[,;\t|]", head)):
        return (
            "the first line looks like a data row, not a header (not shown: it may hold a "
            f"plate): the file needs a header line first; {expected}"
        )
    shown = head if len(head) <= HEADER_SHOWN else head[:HEADER_SHOWN] + "..."
    shown = "".join(c if c.isprintable() else "?" for c in shown)
    found = f"{len(columns)} column{'s' if len(columns) != 1 else ''}"
    other = [sep for sep in (";", "\t", "|") if sep in head]
    if len(columns) == 1 and other:
        name = "tab" if other[0] == "\t" else f"'{other[0]}'"
        found += f", separated by {name}? columns are separated by commas"
    return f"the header is '{shown}' ({found}): {expected}"


def _arrow_where(exc: Exception) -> str:
    # Arrow's messages can quote a row's content (a plate): keep only numbers from them.
    text = str(exc)
    marker = "Row #"
    if marker in text:
        tail = text.split(marker, 1)[1]
        number = "".join(ch for ch in tail[:12] if ch.isdigit())
        return f"row {number}: wrong number of columns" if number else "malformed rows"
    counts = _COLUMN_COUNTS.search(text)
    if counts is not None:
        return f"a row has the wrong number of columns (expected {counts[1]}, got {counts[2]})"
    return "malformed CSV"


def _country_bytes(values: npt.NDArray[Any]) -> bytes:
    return pack_countries(list(values), len(values))


def plates_from_arrow(values: pa.Array) -> JoinedPlates:
    """Plates of an Arrow string array as a packed column (its own buffers: no Python loop)."""
    arr = values.cast(pa.string()) if values.type != pa.string() else values
    if arr.offset or arr.null_count:
        arr = pa.concat_arrays([pc.fill_null(arr, "")])
    _validity, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, dtype="<i4", count=len(arr) + 1).astype(np.uint32)
    base, end = int(offsets[0]), int(offsets[-1])
    # copy only the plates' bytes: slicing an Arrow buffer copies nothing
    data = data_buf.slice(base, end - base).to_pybytes() if data_buf is not None else b""
    if base:
        offsets = offsets - np.uint32(base)
    return JoinedPlates(data, offsets)


def dates_to_days(values: pa.Array) -> npt.NDArray[np.int32]:
    """`YYYY-MM-DD` texts to day numbers; unreadable ones become DAY_UNKNOWN."""
    try:
        dates = pc.cast(pc.utf8_trim_whitespace(values), pa.date32())
        return np.asarray(dates.to_numpy(zero_copy_only=False), dtype="datetime64[D]").astype(
            np.int32
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _slow_days(values)


def timestamps_to_instants(values: pa.Array) -> npt.NDArray[np.int64]:
    """ISO 8601 timestamps with offset to ms since the epoch (UTC), vectorised; unreadable ones
    become NO_INSTANT and naive ones are taken as Brussels time, row by row on the slow path."""
    try:
        moments = pc.cast(pc.utf8_trim_whitespace(values), pa.timestamp("ms", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.fromiter(
            (instant_ms(v or "") for v in values.to_pylist()), dtype=np.int64, count=len(values)
        )
    return np.asarray(moments.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def utc_ms_to_brussels_days(utc_ms: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
    """Brussels calendar day of UTC instants (ms), as the server derives it (`lez.days`)."""
    days, _ = brussels_days_seconds(np.floor_divide(utc_ms, MS_PER_SECOND))
    return days


def _slow_days(values: pa.Array) -> npt.NDArray[np.int32]:
    out = np.empty(len(values), dtype=np.int32)
    for i, text in enumerate(values.to_pylist()):
        try:
            out[i] = parse_when(text or "")
        except (ValueError, OverflowError):
            out[i] = DAY_UNKNOWN
    return out


def write_results(
    path: Path, batch: BatchFile, result: BatchResult, euro_codes: dict[int, str]
) -> None:
    """The input columns plus day, outcome, reason, allowed_until and euro, in input order."""
    days = np.where(result.decided_day != DAY_UNKNOWN, result.decided_day, batch.rows.days)
    day_text = _day_texts(days)
    until = result.allowed_until
    until_text = _day_texts(until, open_text="open")
    allowed = result.outcome == OUTCOME_NAMES.index("ALLOWED")
    until_text = pc.if_else(pa.array(allowed), until_text, "")
    outcome_names = np.array(OUTCOME_NAMES, dtype=object)
    reason_names = np.array([r if r != "UNSPECIFIED" else "" for r in REASON_NAMES], dtype=object)
    euro_lut = np.array([euro_codes.get(i, "") for i in range(256)], dtype=object)
    columns: dict[str, Any] = {c: batch.table.column(c) for c in batch.table.column_names}
    if batch.day_column == "timestamp" or "day" not in columns:
        columns["day"] = day_text
    columns["outcome"] = pa.array(outcome_names[result.outcome], pa.string())
    columns["reason"] = pa.array(reason_names[result.reason], pa.string())
    columns["allowed_until"] = until_text
    columns["euro"] = pa.array(euro_lut[result.euro], pa.string())
    note_lut = np.array(["|".join(sorted(note_names(i))) for i in range(256)], dtype=object)
    columns["notes"] = pa.array(note_lut[result.notes], pa.string())
    table = pa.table(columns)
    try:
        with open(path, "wb") as out:
            pacsv.write_csv(table, out, pacsv.WriteOptions(quoting_style="needed"))
    except OSError as exc:
        raise _open_error(path, exc, writing=True) from None


def _day_texts(days: npt.NDArray[np.int32], open_text: str = "") -> pa.Array:
    bad = (days == DAY_UNKNOWN) | (days == DAY_OPEN)
    safe = np.where(bad, 0, days).astype(np.int32)
    text = pc.cast(pa.array(safe, pa.int32()).cast(pa.date32()), pa.string())
    fill = np.where(days == DAY_OPEN, open_text, "")
    return pc.if_else(pa.array(bad), pa.array(fill, pa.string()), text)
