"""Read a DIV extract (docs/extract-format.md) into validated, normalised column arrays.

The file is parsed with pyarrow (multi-threaded, `.csv` or `.csv.gz`), every column as text,
then validated column by column with NumPy: no Python loop per row. A row that breaks a rule is
not loaded; it becomes a `Reject` naming its physical line, the column and the rule, never the
plate. Unknown DIV codes are not rejects: they become UNKNOWN (0) and are counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lez import codes, plates
from lez.codes import CodeList
from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.errors import ExtractError
from lez.vehicle import U8_UNKNOWN, U16_UNKNOWN, U32_UNKNOWN, Flag, empty

COLUMNS: Final = (
    "plate",
    "plate_type",
    "category",
    "kind",
    "bodywork",
    "max_mass",
    "running_mass",
    "seats",
    "fuel",
    "euro",
    "co2",
    "power_kw",
    "first_registration",
    "last_registration",
    "nis",
    "status",
    "electric",
    "valid_from",
    "valid_to",
)
RAW_PLATE_WIDTH: Final = 24
"""Bytes of a raw plate read before normalisation; longer ones are rejected as too long."""

_CODE_COLUMNS: Final[dict[str, CodeList]] = {
    "category": codes.CATEGORY,
    "kind": codes.KIND,
    "bodywork": codes.BODYWORK,
    "fuel": codes.FUEL,
    "euro": codes.EURO,
    "status": codes.STATUS,
}
# column -> (record field, maximum value, unknown sentinel)
_INT_COLUMNS: Final = {
    "max_mass": ("max_mass", U32_UNKNOWN - 1, U32_UNKNOWN),
    "running_mass": ("running_mass", U32_UNKNOWN - 1, U32_UNKNOWN),
    "seats": ("seats", U8_UNKNOWN - 1, U8_UNKNOWN),
    "co2": ("co2", U16_UNKNOWN - 1, U16_UNKNOWN),
    "power_kw": ("power_kw", U16_UNKNOWN - 1, U16_UNKNOWN),
    "nis": ("nis", 99999, 0),
}
_DATE_COLUMNS: Final = ("first_registration", "last_registration", "valid_from", "valid_to")


@dataclass(frozen=True, slots=True)
class Reject:
    """One refused row: physical line (1-based, header is line 1), column and rule."""

    line: int
    column: str
    rule: str


@dataclass(slots=True)
class Extract:
    """The accepted rows of an extract, aligned: normalised plates and vehicle records."""

    plates: npt.NDArray[np.uint8]  # (n, PLATE_WIDTH) normalised, NUL padded
    records: npt.NDArray[np.void]  # (n,) VEHICLE_DTYPE
    lines: npt.NDArray[np.int64]  # physical line of each accepted row
    rows_read: int
    rejects: list[Reject]
    unknown_codes: dict[str, dict[str, int]] = field(default_factory=dict)


def read_table(path: Path) -> tuple[pa.Table, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Parse the CSV: the table, the physical line of each of its rows, and the lines skipped
    because they had the wrong number of columns."""
    if not path.exists():
        raise ExtractError(f"extract {path} does not exist")
    invalid: list[int | None] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row.number)  # never look at row.text: it holds a plate
        return "skip"

    def parse(threads: bool) -> pa.Table:
        invalid.clear()
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=threads, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in COLUMNS},
                strings_can_be_null=False,
                include_columns=list(COLUMNS),
            ),
        )

    try:
        table = parse(threads=True)
        if invalid:  # line numbers are only computed by the single-threaded reader
            table = parse(threads=False)
    except pa.ArrowInvalid as exc:
        message = str(exc).split("\n")[0]
        if "column" in message.lower() and "not" in message.lower():
            raise ExtractError(
                f"{path}: the header must name the columns {', '.join(COLUMNS)}"
            ) from None
        raise ExtractError(f"{path}: not a readable CSV extract ({message[:120]})") from None
    skipped = np.array(sorted(n for n in invalid if n is not None), dtype=np.int64)
    return table, _row_lines(table.num_rows, skipped), skipped


def _row_lines(n: int, skipped: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    lines = np.arange(n, dtype=np.int64) + 2
    if len(skipped) == 0:
        return lines
    shift = np.zeros(n, dtype=np.int64)
    while True:
        new_shift = np.searchsorted(skipped, lines + shift, side="right").astype(np.int64)
        if np.array_equal(new_shift, shift):
            return lines + shift
        shift = new_shift


def string_matrix(
    column: pa.ChunkedArray, width: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """A (n, width) NUL-padded byte matrix of a string column, and each value's byte length."""
    parts = []
    lengths = []
    for chunk in column.chunks:
        arr = chunk.cast(pa.string()) if chunk.type != pa.string() else chunk
        n = len(arr)
        bufs = arr.buffers()
        offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
        data = (
            np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
        )
        start = offsets[:-1].astype(np.int64)
        length = (offsets[1:] - offsets[:-1]).astype(np.int64)
        take = np.minimum(length, width)
        cols = np.arange(width, dtype=np.int64)
        mask = cols[None, :] < take[:, None]
        idx = np.where(mask, start[:, None] + cols[None, :], 0)
        mat = np.where(mask, data[np.minimum(idx, max(len(data) - 1, 0))], 0).astype(np.uint8)
        parts.append(mat)
        lengths.append(length)
    if not parts:
        return np.zeros((0, width), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    return np.concatenate(parts), np.concatenate(lengths)


def _dates(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    """Days of an ISO date column (blank -> DAY_UNKNOWN) and a mask of malformed values."""
    blank = pc.equal(column, "").to_numpy(zero_copy_only=False)
    parsed = pc.strptime(column, format="%Y-%m-%d", unit="s", error_is_null=True)
    is_null = pc.is_null(parsed).to_numpy(zero_copy_only=False)
    # strptime rolls 2016-02-30 over to March: a date is valid only if it prints back the same
    round_trip = pc.strftime(parsed, format="%Y-%m-%d")
    well_formed = pc.fill_null(pc.equal(round_trip, column), False).to_numpy(zero_copy_only=False)
    secs = pc.fill_null(parsed.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    days = (secs // 86400).astype(np.int64)
    bad = (~blank) & (is_null | ~well_formed)
    days = np.where(blank | bad, DAY_UNKNOWN, days)
    return days.astype(np.int32), bad


def _ints(
    column: pa.ChunkedArray, maximum: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Values of a non-negative integer column, a blank mask and a malformed mask."""
    blank = pc.equal(column, "").to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(column, r"^[0-9]{1,10}$").to_numpy(zero_copy_only=False)
    safe = pc.if_else(pc.match_substring_regex(column, r"^[0-9]{1,10}$"), column, "0")
    values = safe.cast(pa.int64()).to_numpy(zero_copy_only=False)
    bad = (~blank) & ((~ok) | (values > maximum))
    return values, blank, bad


def _codes(column: pa.ChunkedArray, code_list: CodeList) -> tuple[npt.NDArray[np.uint8], int, int]:
    """Ids of a code column; counts of blank and of unrecognised (non-blank) codes."""
    encoded = column.combine_chunks().dictionary_encode()
    dictionary = encoded.dictionary.to_pylist()
    ids = np.array([code_list.id_of(v) for v in dictionary] or [0], dtype=np.uint8)
    known = np.array([code_list.is_known(v) for v in dictionary] or [True], dtype=np.bool_)
    blank_entry = np.array([v.strip() == "" for v in dictionary] or [False], dtype=np.bool_)
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    per_entry = np.bincount(indices, minlength=len(dictionary)) if len(indices) else np.zeros(0)
    blanks = int(per_entry[blank_entry[: len(per_entry)]].sum()) if len(per_entry) else 0
    unrecognised = (
        int(per_entry[(~known & ~blank_entry)[: len(per_entry)]].sum()) if len(per_entry) else 0
    )
    return ids[indices], blanks, unrecognised


def load_extract(path: Path) -> Extract:
    """Parse and validate an extract. Rows that break a rule become rejects."""
    table, lines, skipped = read_table(path)
    n = table.num_rows
    rejects = [
        Reject(line=int(line), column="*", rule=f"not {len(COLUMNS)} columns")
        for line in skipped.tolist()
    ]
    # First failing column per row, in column order, so each row is reported once.
    failed = np.zeros(n, dtype=np.bool_)

    def reject(mask: npt.NDArray[np.bool_], column: str, rule: str) -> None:
        new = mask & ~failed
        for line in lines[new].tolist():
            rejects.append(Reject(line=int(line), column=column, rule=rule))
        failed[new] = True

    raw, raw_len = string_matrix(table.column("plate"), RAW_PLATE_WIDTH)
    countries = np.tile(np.frombuffer(b"BE", dtype=np.uint8), (n, 1))
    normalised, rule = plates.normalise_many(raw, countries)
    rule = np.where(raw_len > RAW_PLATE_WIDTH, plates.PlateRule.TOO_LONG, rule).astype(np.uint8)
    for plate_rule in plates.PlateRule:
        if plate_rule is not plates.PlateRule.OK:
            reject(rule == plate_rule, "plate", f"plate {plate_rule.name.lower()}")

    records = empty(n)
    for column in _DATE_COLUMNS:
        days, bad = _dates(table.column(column))
        reject(bad, column, "date not YYYY-MM-DD")
        if column == "valid_to":
            days = np.where(days == DAY_UNKNOWN, DAY_OPEN, days).astype(np.int32)
        records[column] = days
    reject(records["valid_from"] == DAY_UNKNOWN, "valid_from", "valid_from is required")
    reject(
        records["valid_to"] <= records["valid_from"], "valid_to", "valid_to not after valid_from"
    )

    for column, (fld, maximum, sentinel) in _INT_COLUMNS.items():
        values, blank, bad = _ints(table.column(column), maximum)
        reject(bad, column, f"not a whole number from 0 to {maximum}")
        records[fld] = np.where(blank | bad, sentinel, values)

    electric = table.column("electric")
    e_blank = pc.equal(electric, "").to_numpy(zero_copy_only=False)
    e_one = pc.equal(electric, "1").to_numpy(zero_copy_only=False)
    e_zero = pc.equal(electric, "0").to_numpy(zero_copy_only=False)
    reject(~(e_blank | e_one | e_zero), "electric", "electric must be 1, 0 or blank")
    records["flags"] = np.where(e_one, int(Flag.ELECTRIC_MOTOR), 0)

    unknown_codes: dict[str, dict[str, int]] = {}
    for column, code_list in _CODE_COLUMNS.items():
        ids, blanks, unrecognised = _codes(table.column(column), code_list)
        records[column] = ids
        unknown_codes[column] = {"blank": blanks, "unrecognised": unrecognised}

    keep = ~failed
    rejects.sort(key=lambda r: r.line)
    return Extract(
        plates=normalised[keep],
        records=records[keep],
        lines=lines[keep],
        rows_read=n + len(skipped),
        rejects=rejects,
        unknown_codes=unknown_codes,
    )


def reject_summary(rejects: list[Reject]) -> dict[str, int]:
    """Counts of rejects by rule."""
    return dict(Counter(r.rule for r in rejects).most_common())
