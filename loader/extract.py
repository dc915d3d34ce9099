"""Read a DIV extract (docs/extract-format.md) into validated, normalised column arrays.

The file is parsed with pyarrow (multi-threaded, `.csv` or `.csv.gz`), every column as text,
then validated column by column with NumPy: no Python loop per row. A row that breaks a rule is
not loaded; it becomes a `Reject` naming its physical line, the column and the rule, never the
plate. Unknown DIV codes are not rejects: they become UNKNOWN (0) and are counted.
"""

from __future__ import annotations

import csv
import ctypes
import itertools
from collections import Counter
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lez import codes, keys, plates
from lez.codes import UNKNOWN, CodeList
from lez.days import DAY_OPEN, DAY_UNKNOWN
from lez.errors import ExtractError
from lez.keys import PlateKeyer
from lez.store.writer import Progress, no_progress
from lez.threads import each_threaded, run_threaded
from lez.vehicle import U8_UNKNOWN, U16_UNKNOWN, U32_UNKNOWN, VEHICLE_DTYPE, Flag
from loader.parallel import gather_rows

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
_PARSED_INTS: Final = {
    "max_mass": pa.uint32(),
    "running_mass": pa.uint32(),
    "seats": pa.int32(),
    "co2": pa.int32(),
    "power_kw": pa.int32(),
    "nis": pa.int32(),
}
"""Arrow's type of each integer column in the typed parse: wide enough for every value the
column accepts (`_INT_COLUMNS`), half the memory of int64. A value that does not fit (negative
masses, huge numbers) fails the typed parse, and the text parse refuses its row as before."""
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
    keys: npt.NDArray[np.uint8]  # (n, 16) plate keys, or (n, 0) when read without a key
    records: npt.NDArray[np.void]  # (n,) VEHICLE_DTYPE
    lines: npt.NDArray[np.int64]  # physical line of each accepted row
    rows_read: int
    rejects: list[Reject]
    unknown_codes: dict[str, dict[str, int]] = field(default_factory=dict)


_HEADER_LIMIT: Final = 1 << 16
"""Bytes read to find the header line; a longer first line is not a header."""


def check_header(path: Path) -> None:
    """Refuse a file whose first line is not exactly the header `COLUMNS`.

    The message names the missing and the unexpected columns and what the header must be. It
    never quotes a field of a line that may be data: when the first line names none of the
    columns (a file without a header starts with a plate), nothing of it is shown.
    """
    expected = ",".join(COLUMNS)
    must = f"the first line must be the header {expected} (docs/extract-format.md)"
    try:
        with pa.input_stream(str(path), compression="detect") as stream:
            head = stream.read(_HEADER_LIMIT)
    except (OSError, pa.ArrowException) as exc:
        # nothing was parsed yet: the reason is about the file (access, compression), not a value
        reason = str(exc).split("\n")[0][:120]
        raise ExtractError(
            f"{path}: cannot read the file ({reason}); give a CSV or gzip-compressed CSV extract"
        ) from None
    first, newline, _rest = head.partition(b"\n")
    if not newline and len(head) == _HEADER_LIMIT:
        raise ExtractError(f"{path}: no header line found; {must}")
    try:
        text = first.decode("utf-8").removeprefix("\ufeff").removesuffix("\r")
    except UnicodeDecodeError:
        raise ExtractError(f"{path}: the header is not UTF-8 text; {must}") from None
    names = next(csv.reader([text]), [])
    if names == list(COLUMNS):
        return
    if not names:
        raise ExtractError(f"{path}: the file is empty or its first line is blank; {must}")
    if not set(names) & set(COLUMNS):
        raise ExtractError(
            f"{path}: the first line names none of the columns (a file without its header?); {must}"
        )
    # From here the line names at least one column, so it is a header: its fields are column
    # names, not data, and may be quoted back.
    missing = [c for c in COLUMNS if c not in names]
    unexpected = [n for n in names if n not in COLUMNS]
    repeated = sorted({n for n in names if n in COLUMNS and names.count(n) > 1})
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(repr(n[:40]) for n in unexpected)}")
    if repeated:
        problems.append(f"repeated {', '.join(repeated)}")
    if not problems:
        problems.append("the columns are not in the documented order")
    raise ExtractError(f"{path}: wrong header ({'; '.join(problems)}); {must}")


READ_BLOCK_BYTES: Final = 16 << 20
"""The block Arrow parses at once (`ReadOptions.block_size`); a longer line fails the parse."""
READ_POOL: Final = pa.system_memory_pool()
"""Where the parsed table lives: the C library's allocator. Arrow's default (mimalloc) took fresh
pages for every block, and the page faults cost as much as the parse on the build machine (read
of the 8M extract 4.4-5.7 s against 3.7-3.8 s, measured); freed, the memory goes back to the
system at once (`release_read_memory`) for the build's next stages."""


def release_read_memory() -> None:
    """Return the memory of parsed tables no longer referenced to the system now, not later.

    Arrow's system pool frees into the C library's heaps, which keep the pages; glibc's
    `malloc_trim` gives them back (1.3 GiB after the 8M extract). Elsewhere this does nothing.
    """
    READ_POOL.release_unused()
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


READ_STAGES: Final = ("read_csv", "reread_as_text", "reread_for_lines")
"""The progress stages of `read_table`, counted in bytes of the file: the parse, then the
re-reads that follow it when a value is malformed (every column as text) and when rows have the
wrong number of columns (line numbers)."""


def read_table(
    path: Path,
    progress: Progress = no_progress,
    *,
    block_size: int = READ_BLOCK_BYTES,
    segment_blocks: int | None = None,
) -> tuple[pa.Table, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Parse the CSV: the table, the physical line of each of its rows, and the lines skipped
    because they had the wrong number of columns.

    The header is checked first (`check_header`). Arrow's own error messages are never passed
    on: some quote the offending value, which may be a plate.

    The file is parsed in segments of up to `segment_blocks` blocks of `block_size` bytes
    (`_segments`; by default one block per core, at least two), each segment by Arrow's
    multi-threaded reader, so that `progress(stage, done, total)` learns the bytes of the file
    parsed after each segment (`READ_STAGES`) while the parse goes on: one call per segment, a
    few a second. Arrow's reader of a whole file could not tell: it reads up to 32 blocks ahead
    of its parse. The rows, lines and skipped lines are those of one read of the whole file.
    """
    if not path.exists():
        raise ExtractError(f"extract {path} does not exist")
    check_header(path)
    invalid: list[int | None] = []
    lines_before = 0  # physical lines of the segments already parsed
    most_blocks = segment_blocks or max(2, pa.cpu_count() or 1)

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # never look at row.text: it holds a plate
        invalid.append(None if row.number is None else lines_before + row.number)
        return "skip"

    def parse(stage: str, threads: bool, typed: bool) -> pa.Table:
        nonlocal lines_before
        invalid.clear()
        lines_before = 0
        types: dict[str, pa.DataType] = dict.fromkeys(COLUMNS, pa.string())
        # code columns arrive dictionary-encoded: the reader does it while parsing, in parallel
        dictionary = pa.dictionary(pa.int32(), pa.string())
        types.update(dict.fromkeys((*_CODE_COLUMNS, "electric", "plate_type"), dictionary))
        if typed:
            types.update(dict.fromkeys(_DATE_COLUMNS, pa.date32()))
            types.update(_PARSED_INTS)
        parse_options = pacsv.ParseOptions(invalid_row_handler=on_invalid, ignore_empty_lines=False)
        convert_options = pacsv.ConvertOptions(
            column_types=types, strings_can_be_null=False, include_columns=list(COLUMNS)
        )
        tables: list[pa.Table] = []
        total = path.stat().st_size
        progress(stage, 0, total)
        with closing(_segments(path, block_size, most_blocks)) as segments:  # ends its thread
            for segment, done in segments:
                # the first segment starts with the header (checked to be COLUMNS); the others
                # are named by it
                read_options = pacsv.ReadOptions(
                    use_threads=threads,
                    block_size=block_size,
                    column_names=list(COLUMNS) if tables else None,
                )
                tables.append(
                    pacsv.read_csv(
                        pa.BufferReader(segment),
                        read_options=read_options,
                        parse_options=parse_options,
                        convert_options=convert_options,
                        memory_pool=READ_POOL,
                    )
                )
                if not threads:  # line numbers are only given by the single-threaded reader
                    lines_before += _line_count(segment)
                if done < total:
                    progress(stage, done, total)
        progress(stage, total, total)
        return pa.concat_tables(tables, memory_pool=READ_POOL)

    try:
        try:
            # Fast path: Arrow parses dates and numbers itself. Any malformed value makes it
            # fail as a whole; then everything is read as text and checked row by row.
            table = parse(READ_STAGES[0], threads=True, typed=True)
        except pa.ArrowInvalid:
            table = parse(READ_STAGES[1], threads=True, typed=False)
        if invalid:  # line numbers are only computed by the single-threaded reader
            typed = all(table.column(c).type == pa.date32() for c in _DATE_COLUMNS)
            table = parse(READ_STAGES[2], threads=False, typed=typed)
    except (OSError, pa.ArrowException) as exc:
        raise ExtractError(
            f"{path}: not a readable CSV extract ({type(exc).__name__}: "
            f"{_safe_reason(str(exc))}); see docs/extract-format.md"
        ) from None
    skipped = np.array(sorted(n for n in invalid if n is not None), dtype=np.int64)
    return table, _row_lines(table.num_rows, skipped), skipped


def _segments(path: Path, block_size: int, most_blocks: int) -> Generator[tuple[pa.Buffer, int]]:
    """The file's text in segments that end at a line end, each with the bytes of the file
    read up to its end (of the compressed file, for a compressed one).

    An uncompressed file is sliced from a memory map of it (`_mapped_segments`). A compressed
    one is decompressed as Arrow's reader of a path does, by the file name's extension, the
    next segment in a thread while the caller parses one, as Arrow's own reader reads ahead of
    its parse. Segments grow from one block to `most_blocks`,
    so that the parse starts after one block, as Arrow's own does (a first segment of many
    blocks of a gzip file would keep the parse waiting for its decompression). A line longer
    than a segment is taken whole; Arrow refuses it anyway (longer than a block).
    """
    try:
        codec: str | None = pa.Codec.detect(str(path)).name
    except (TypeError, ValueError):  # no compression extension
        codec = None
    sizes = (block_size * min(1 << min(i, 30), most_blocks) for i in itertools.count())
    if codec is None:
        yield from _mapped_segments(path, sizes)
        return
    with (
        pa.OSFile(str(path)) as raw,
        pa.CompressedInputStream(raw, codec) as stream,
        ThreadPoolExecutor(1, thread_name_prefix="extract-read") as reader,
    ):

        def next_segment(carry: bytes, size: int) -> tuple[pa.Buffer, bytes, int, bool]:
            # Arrow's memory (not a bytearray): reused between segments, and never zero-filled
            buffer = pa.allocate_buffer(len(carry) + size, memory_pool=READ_POOL)
            text = memoryview(buffer).cast("B")
            text[: len(carry)] = carry
            end = len(carry)
            while True:
                n = stream.readinto(text[end:])
                end += n
                if n == 0:  # the end of the file: the rest is the last segment
                    return buffer.slice(0, end), b"", raw.tell(), True
                if end < len(text):
                    continue
                cut = _after_last_line_end(text, end)
                if cut:
                    return buffer.slice(0, cut), text[cut:end].tobytes(), raw.tell(), False
                # no line end yet (a line longer than a segment): read on in a larger buffer
                larger = pa.allocate_buffer(end + next(sizes), memory_pool=READ_POOL)
                memoryview(larger).cast("B")[:end] = text[:end]
                buffer, text = larger, memoryview(larger).cast("B")

        ahead = reader.submit(next_segment, b"", next(sizes))
        while True:
            segment, carry, done, last = ahead.result()
            if not last:
                ahead = reader.submit(next_segment, carry, next(sizes))
            if segment.size:
                yield segment, done
            if last:
                return


def _mapped_segments(path: Path, sizes: Iterator[int]) -> Generator[tuple[pa.Buffer, int]]:
    """`_segments` of an uncompressed file: slices of one read-only memory map of it, cut after
    a line end, each with the file's bytes up to its end. The parse reads the page cache in
    place: no copy of the text and no fresh memory to hold it, whose page faults cost more than
    the copy (read of the 8M extract 3.7-4.3 s, system time 0.6-1.4 s, against 4.3-6.1 s and
    1.7-5.1 s read into buffers, measured alternately). The mapped pages count in the process's
    resident size while it reads (about the file's size) and are let go with the map."""
    with pa.memory_map(str(path)) as mapped:
        total = mapped.size()
        whole = mapped.read_buffer(total)
        text = memoryview(whole).cast("B")
        start = 0
        while start < total:
            end, cut = start, 0
            while not cut and end < total:  # grown past a line longer than a segment
                end = min(total, end + next(sizes))
                if end < total:
                    cut = _after_last_line_end(text[start:end], end - start)
            end = start + cut if cut else total
            yield whole.slice(start, end - start), end
            start = end
        del text, whole


def _after_last_line_end(text: memoryview, end: int, window: int = 1 << 16) -> int:
    """Where text read up to `end` may be cut: after its last line end (Arrow's: "\\n", "\\r\\n"
    or a lone "\\r"; a "\\r" at the very end may be the first half of "\\r\\n"), 0 for none.
    Searched backwards a window at a time: a segment is large, its lines are short."""
    stop = end
    while stop > 0:
        start = max(0, stop - window)
        part = text[start:stop].tobytes()
        found = max(part.rfind(b"\n"), part.rfind(b"\r", 0, end - 1 - start))
        if found >= 0:
            return start + found + 1
        stop = start
    return 0


def _line_count(segment: pa.Buffer) -> int:
    """Physical lines of a segment that ends at a line end, counted as Arrow numbers them."""
    text: bytes = segment.to_pybytes()
    return text.count(b"\n") + text.count(b"\r") - text.count(b"\r\n")


def _safe_reason(message: str) -> str:
    """A fixed description of an Arrow/IO failure: Arrow's text can quote a value (a plate)."""
    lowered = message.lower()
    if "utf8" in lowered or "utf-8" in lowered:
        return "text that is not UTF-8"
    if "straddl" in lowered or "block" in lowered:
        return "a quoted value spans lines or a line is too long"
    if "zlib" in lowered or "gzip" in lowered or "compress" in lowered:
        return "the compressed data is damaged"
    return "the file cannot be parsed as CSV"


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


StringParts = list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]]
"""Per Arrow chunk: value starts, value lengths and the data buffer, as NumPy views."""


def string_parts(column: pa.ChunkedArray) -> StringParts:
    """NumPy views of a string column's Arrow buffers, chunk by chunk."""
    return [chunk_parts(chunk) for chunk in column.chunks]


def chunk_parts(
    chunk: pa.Array,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """Value starts, value lengths and the data buffer of one string chunk (NumPy views)."""
    bufs = chunk.buffers()
    n = len(chunk)
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=chunk.offset * 4)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else None
    return (
        offsets[:-1].astype(np.int64),
        np.diff(offsets).astype(np.int64),
        data if data is not None and len(data) else np.zeros(1, dtype=np.uint8),
    )


def parts_matrix(
    parts: StringParts, width: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """A (n, w) NUL-padded byte matrix (w = longest value, at most `width`) and the lengths."""
    total = sum(len(length) for _, length, _ in parts)
    longest = max((int(length.max()) for _, length, _ in parts if len(length)), default=0)
    w = max(1, min(width, longest))
    out = np.zeros((total, w), dtype=np.uint8)
    row = 0
    for start, length, data in parts:
        m = len(start)
        last = len(data) - 1
        for k in range(w):
            out[row : row + m, k] = np.where(length > k, data[np.minimum(start + k, last)], 0)
        row += m
    lengths = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    return out, lengths


def string_matrix(
    column: pa.ChunkedArray, width: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """A (n, w) NUL-padded byte matrix of a string column and each value's byte length."""
    return parts_matrix(string_parts(column), width)


def plate_columns(
    column: pa.ChunkedArray, keyer: PlateKeyer | None, workers: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Normalised plates, their PlateRule and (with a keyer) their keys, for a plate column.

    Arrow chunks are handed to `workers` threads (the native batch releases the GIL), each
    writing its rows of the three result arrays in place.
    """
    chunks = column.chunks
    ends = np.cumsum([len(c) for c in chunks], dtype=np.int64)
    n = int(ends[-1]) if len(ends) else 0
    normalised = np.empty((n, plates.PLATE_WIDTH), dtype=np.uint8)
    rule = np.empty(n, dtype=np.uint8)
    plate_keys = np.empty((n, keys.KEY_BYTES if keyer else 0), dtype=np.uint8)

    def one_chunk(i: int) -> None:
        first, end = int(ends[i]) - len(chunks[i]), int(ends[i])
        rule[first:end] = _plate_batch(
            chunks[i], keyer, normalised[first:end], plate_keys[first:end]
        )

    each_threaded(one_chunk, range(len(chunks)), workers)
    return normalised, rule, plate_keys


_DAYS_BEFORE_MONTH: Final = np.array([0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334])
_MONTH_DAYS: Final = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _dates(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.bool_]]:
    """Days of an ISO date column (blank -> DAY_UNKNOWN) and a mask of malformed values.

    Parsed arithmetically from the bytes: digits and dashes in place, month 1-12, day within
    the month (leap years included), so 2016-02-30 is refused rather than rolled over.
    """
    if pa.types.is_date32(column.type):
        values = pc.fill_null(column.cast(pa.int32()), DAY_UNKNOWN).to_numpy(zero_copy_only=False)
        return values.astype(np.int32), np.zeros(len(values), dtype=np.bool_)
    mat, length = string_matrix(column, 10)
    n = len(length)
    blank = length == 0
    if mat.shape[1] < 10:
        return np.full(n, DAY_UNKNOWN, dtype=np.int32), ~blank
    d = mat.astype(np.int64) - ord("0")
    digits_ok = ((d[:, [0, 1, 2, 3, 5, 6, 8, 9]] >= 0) & (d[:, [0, 1, 2, 3, 5, 6, 8, 9]] <= 9)).all(
        1
    )
    dashes_ok = (mat[:, 4] == ord("-")) & (mat[:, 7] == ord("-"))
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 5] * 10 + d[:, 6]
    day = d[:, 8] * 10 + d[:, 9]
    month_ok = (month >= 1) & (month <= 12)
    safe_month = np.where(month_ok, month, 1)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    max_day = _MONTH_DAYS[safe_month] - ((safe_month == 2) & ~leap)
    ok = (length == 10) & digits_ok & dashes_ok & month_ok & (day >= 1) & (day <= max_day)
    # days since 1970-01-01 (proleptic Gregorian)
    y = year - 1
    days_before_year = y * 365 + y // 4 - y // 100 + y // 400 - 719162
    days = days_before_year + _DAYS_BEFORE_MONTH[safe_month] + ((safe_month > 2) & leap) + day - 1
    bad = ~blank & ~ok
    days = np.where(ok, days, DAY_UNKNOWN)
    return days.astype(np.int32), bad


def _ints(
    column: pa.ChunkedArray, maximum: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Values of a non-negative integer column, a blank mask and a malformed mask."""
    if pa.types.is_integer(column.type):
        blank_typed = pc.is_null(column).to_numpy(zero_copy_only=False)
        vals = pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        return vals, blank_typed, (vals < 0) | (vals > maximum)
    blank = pc.equal(column, "").to_numpy(zero_copy_only=False)
    digits = pc.match_substring_regex(column, r"^[0-9]{1,10}$")
    ok = digits.to_numpy(zero_copy_only=False)
    values = pc.if_else(digits, column, "0").cast(pa.int64()).to_numpy(zero_copy_only=False)
    bad = (~blank) & ((~ok) | (values > maximum))
    return values, blank, bad


def _codes(column: pa.ChunkedArray, code_list: CodeList) -> tuple[npt.NDArray[np.uint8], int, int]:
    """Ids of a code column; counts of blank and of unrecognised (non-blank) codes."""
    ids_parts = []
    blanks = unrecognised = 0
    for chunk in column.chunks:
        encoded = chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode()
        entry_ids, entry_unrecognised = code_list.encode_many(encoded.dictionary.to_pylist())
        entry_blank = (entry_ids == UNKNOWN) & ~entry_unrecognised  # known codes have ids > 0
        # one more entry, id 0 and counted as neither, for an index past the dictionary
        ids = np.append(entry_ids, np.uint8(UNKNOWN))
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        per_entry = np.bincount(indices, minlength=len(ids))[: len(entry_ids)]
        blanks += int(per_entry[entry_blank].sum())
        unrecognised += int(per_entry[entry_unrecognised].sum())
        ids_parts.append(ids[indices])
    if not ids_parts:
        return np.zeros(0, dtype=np.uint8), 0, 0
    return np.concatenate(ids_parts), blanks, unrecognised


def _electric(column: pa.ChunkedArray) -> npt.NDArray[np.int8]:
    """The electric indicator: 1, 0, -2 for blank and -1 for anything else."""
    parts = []
    meaning = {"1": 1, "0": 0, "": -2}
    for chunk in column.chunks:
        encoded = chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode()
        table = np.array(
            [meaning.get(v.strip(), -1) for v in encoded.dictionary.to_pylist()] + [-2],
            dtype=np.int8,
        )
        parts.append(table[encoded.indices.to_numpy(zero_copy_only=False)])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)


def _oldtimer_plate(column: pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    """Rows whose plate type is `O` (oldtimer, docs/extract-format.md#plate_type); any other or
    blank plate type is not an oldtimer plate (the type list is ours, so no row is refused)."""
    parts = []
    for chunk in column.chunks:
        encoded = chunk if pa.types.is_dictionary(chunk.type) else chunk.dictionary_encode()
        words = encoded.dictionary.to_pylist()
        table = np.array([(v or "").strip().upper() == "O" for v in words] + [False])
        indices = pc.fill_null(encoded.indices, len(words)).to_numpy(zero_copy_only=False)
        parts.append(table[indices])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.bool_)


def load_extract(path: Path, keyer: PlateKeyer | None = None, workers: int = 1) -> Extract:
    """Parse and validate an extract. Rows that break a rule become rejects.

    With a keyer, each accepted row's plate key is computed too (`Extract.keys`).
    """
    table, lines, skipped = read_table(path)
    return validate_table(table, lines, skipped, keyer, workers)


def validate_table(
    table: pa.Table,
    lines: npt.NDArray[np.int64],
    skipped: npt.NDArray[np.int64],
    keyer: PlateKeyer | None = None,
    workers: int = 1,
) -> Extract:
    """Validate a table of the extract's `COLUMNS` (text or typed as `read_table` gives them).

    `lines` numbers the table's rows in the rejects; `skipped` are lines refused before (wrong
    column count). The daily sync validates the feed's row details through here too, so both
    paths share one set of rules and code tables.

    The table is validated batch by batch (its Arrow record batches, some 10^5 rows each) on
    `workers` threads: every batch writes its rows of the result arrays in place, so each
    column's temporaries are the size of a batch, not of the extract, and both cores stay busy
    (the native keying, NumPy and Arrow's kernels release the GIL). A row is refused for the
    first rule it breaks, in the order of `REJECT_RULES`.
    """
    n = table.num_rows
    batches = table.to_batches()
    ends = np.cumsum([b.num_rows for b in batches], dtype=np.int64)
    records = np.zeros(n, dtype=VEHICLE_DTYPE)  # every field is written below
    normalised = np.empty((n, plates.PLATE_WIDTH), dtype=np.uint8)
    plate_keys = np.empty((n, keys.KEY_BYTES if keyer else 0), dtype=np.uint8)
    reason = np.empty(n, dtype=np.uint8)  # 1 + index in REJECT_RULES of the rule broken, or 0

    def one_batch(i: int) -> dict[str, tuple[int, int]]:
        batch = batches[i]
        first, end = int(ends[i]) - batch.num_rows, int(ends[i])
        unknown, batch_reason = _validate_batch(
            batch,
            keyer,
            records[first:end],
            normalised[first:end],
            plate_keys[first:end],
        )
        reason[first:end] = batch_reason
        return unknown

    per_batch = run_threaded([partial(one_batch, i) for i in range(len(batches))], workers)
    unknown_codes = {
        column: {
            "blank": sum(counts[column][0] for counts in per_batch),
            "unrecognised": sum(counts[column][1] for counts in per_batch),
        }
        for column in _CODE_COLUMNS
    }
    rejects = [
        Reject(line=int(line), column="*", rule=f"not {len(COLUMNS)} columns")
        for line in skipped.tolist()
    ]
    refused = np.flatnonzero(reason)
    if len(refused):
        for line, code in zip(lines[refused].tolist(), reason[refused].tolist(), strict=True):
            column, rule = REJECT_RULES[code - 1]
            rejects.append(Reject(line=int(line), column=column, rule=rule))
        keep = np.flatnonzero(reason == 0)
        normalised, plate_keys, lines = normalised[keep], plate_keys[keep], lines[keep]
        records = gather_rows(records, keep, workers)
    rejects.sort(key=lambda r: r.line)
    return Extract(
        plates=normalised,
        keys=plate_keys,
        records=records,
        lines=lines,
        rows_read=n + len(skipped),
        rejects=rejects,
        unknown_codes=unknown_codes,
    )


_PLATE_RULES: Final = [r for r in plates.PlateRule if r is not plates.PlateRule.OK]
REJECT_RULES: Final[list[tuple[str, str]]] = [
    *(("plate", f"plate {r.name.lower()}") for r in _PLATE_RULES),
    *((column, "date not YYYY-MM-DD") for column in _DATE_COLUMNS),
    ("valid_from", "valid_from is required"),
    ("valid_to", "valid_to not after valid_from"),
    *((column, f"not a whole number from 0 to {m}") for column, (_, m, _) in _INT_COLUMNS.items()),
    ("electric", "electric must be 1, 0 or blank"),
]
"""(column, rule) of each reason to refuse a row, in the order the rules are applied."""
_REASON: Final = {rule: code for code, rule in enumerate(REJECT_RULES, start=1)}
_PLATE_REASON: Final = np.zeros(max(plates.PlateRule) + 1, dtype=np.uint8)
for _rule in _PLATE_RULES:
    _PLATE_REASON[_rule] = _REASON[("plate", f"plate {_rule.name.lower()}")]


def _validate_batch(
    batch: pa.RecordBatch,
    keyer: PlateKeyer | None,
    records: npt.NDArray[np.void],
    normalised: npt.NDArray[np.uint8],
    plate_keys: npt.NDArray[np.uint8],
) -> tuple[dict[str, tuple[int, int]], npt.NDArray[np.uint8]]:
    """Validate one record batch into its rows of the result arrays (given as views); returns
    (blank and unrecognised count of each code column, the reason each row is refused)."""
    reason = np.zeros(batch.num_rows, dtype=np.uint8)

    def refuse(mask: npt.NDArray[np.bool_], column: str, rule: str) -> None:
        np.copyto(reason, np.uint8(_REASON[(column, rule)]), where=mask & (reason == 0))

    def column(name: str) -> pa.ChunkedArray:
        return pa.chunked_array([batch.column(name)])

    rule = _plate_batch(batch.column("plate"), keyer, normalised, plate_keys)
    reason[:] = _PLATE_REASON[rule]

    for name in _DATE_COLUMNS:
        days, bad = _dates(column(name))
        refuse(bad, name, "date not YYYY-MM-DD")
        if name == "valid_to":
            days = np.where(days == DAY_UNKNOWN, DAY_OPEN, days).astype(np.int32)
        records[name] = days
    refuse(records["valid_from"] == DAY_UNKNOWN, "valid_from", "valid_from is required")
    refuse(
        records["valid_to"] <= records["valid_from"], "valid_to", "valid_to not after valid_from"
    )

    for name, (fld, maximum, sentinel) in _INT_COLUMNS.items():
        values, blank, bad = _ints(column(name), maximum)
        refuse(bad, name, f"not a whole number from 0 to {maximum}")
        records[fld] = np.where(blank | bad, sentinel, values)

    electric = _electric(column("electric"))
    refuse(electric == -1, "electric", "electric must be 1, 0 or blank")
    flags = np.where(electric == 1, np.uint8(Flag.ELECTRIC_MOTOR), np.uint8(0))
    flags |= np.where(_oldtimer_plate(column("plate_type")), np.uint8(Flag.OLDTIMER_PLATE), 0)
    records["flags"] = flags

    unknown: dict[str, tuple[int, int]] = {}
    for name, code_list in _CODE_COLUMNS.items():
        ids, blanks, unrecognised = _codes(column(name), code_list)
        records[name] = ids
        unknown[name] = (blanks, unrecognised)
    return unknown, reason


def _plate_batch(
    chunk: pa.Array,
    keyer: PlateKeyer | None,
    normalised: npt.NDArray[np.uint8],
    plate_keys: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint8]:
    """Normalise (and with a keyer, key) one chunk of plates into `normalised` and `plate_keys`
    (its rows, as views); returns each plate's `PlateRule`."""
    start, length, data = chunk_parts(chunk)
    countries = np.broadcast_to(np.frombuffer(plates.BELGIUM.encode(), np.uint8), (len(start), 2))
    if keyer:
        norm, rule, key = keyer.normalise_and_key(data, start, length, countries)
        plate_keys[:] = key
    else:
        norm, rule = plates.normalise_flat(data, start, length, countries)
    normalised[:] = norm
    too_long = np.uint8(plates.PlateRule.TOO_LONG)
    return np.where(length > RAW_PLATE_WIDTH, too_long, rule).astype(np.uint8)


def reject_summary(rejects: list[Reject]) -> dict[str, int]:
    """Counts of rejects by rule."""
    return dict(Counter(r.rule for r in rejects).most_common())
