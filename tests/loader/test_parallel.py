"""Threaded loader steps give exactly what one thread gives (`loader.parallel`).

Validation runs batch by batch on worker threads and the build's gathers are split over them;
both must be independent of the number of workers and of how the table is cut into batches.
The selection squeezes refused rows out in place, equal to boolean indexing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lez.keys import PlateKeyer
from lez.threads import run_threaded
from lez.vehicle import VEHICLE_DTYPE
from loader import build
from loader.extract import Extract, plate_columns, read_table, validate_table
from loader.parallel import gather_rows
from tests.support.extracts import row, write_extract


def _rows(n: int) -> list[dict[str, str]]:
    """`n` rows, some of them breaking one or several rules, some with unknown codes."""
    out = []
    for i in range(n):
        fields: dict[str, str] = {
            "max_mass": str(1000 + i),
            "valid_from": f"20{10 + i % 10}-0{1 + i % 9}-1{i % 10}",
            "euro": ["6", "5", "", "XX"][i % 4],
            "electric": ["0", "1", ""][i % 3],
            "plate_type": ["N", "O"][i % 2],
        }
        if i % 17 == 3:
            fields["seats"] = "300"  # too many (and, at i % 51 == 3, a bad plate first)
        if i % 23 == 5:
            fields["valid_to"] = "2000-01-01"  # before valid_from
        if i % 29 == 7:
            fields["electric"] = "yes"
        plate = f"{1 + i % 9}-ABC-{i:03d}" if i % 51 != 3 else "1-AB$-000"
        out.append(row(plate, **fields))
    return out


def _assert_same(a: Extract, b: Extract) -> None:
    assert a.rejects == b.rejects
    assert a.unknown_codes == b.unknown_codes
    assert a.rows_read == b.rows_read
    for name in ("plates", "keys", "lines"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.records.dtype == b.records.dtype == VEHICLE_DTYPE
    assert a.records.tobytes() == b.records.tobytes()


@pytest.mark.parametrize("typed", [True, False])
def test_validation_is_the_same_on_threads_and_in_batches(
    tmp_path: Path, keyer: PlateKeyer, typed: bool
) -> None:
    rows = _rows(3000)
    if not typed:  # malformed values: the whole file is read as text
        rows[10]["first_registration"] = "2016-13-01"
        rows[20]["seats"] = "many"
    path = write_extract(tmp_path / "extract.csv", rows)
    # small blocks: the table arrives in many record batches
    table, lines, skipped = read_table(path, block_size=16 << 10, segment_blocks=2)
    assert len(table.to_batches()) > 4
    assert pa.types.is_date32(table.column("valid_from").type) == typed
    whole = pa.Table.from_batches([table.combine_chunks().to_batches()[0]])
    assert len(whole.to_batches()) == 1
    one = validate_table(whole, lines, skipped, keyer, workers=1)
    assert one.rejects and one.unknown_codes["euro"]["unrecognised"]  # the rules did apply
    for workers in (1, 2, 3):
        _assert_same(validate_table(table, lines, skipped, keyer, workers=workers), one)


def test_plate_columns_are_the_same_on_threads(tmp_path: Path, keyer: PlateKeyer) -> None:
    path = write_extract(tmp_path / "extract.csv", _rows(2000))
    table, _, _ = read_table(path, block_size=16 << 10, segment_blocks=2)
    for key in (keyer, None):
        serial = plate_columns(table.column("plate"), key, 1)
        threaded = plate_columns(table.column("plate"), key, 2)
        for a, b in zip(serial, threaded, strict=True):
            assert np.array_equal(a, b)


def test_gather_rows_equals_indexing() -> None:
    rng = np.random.default_rng(3)
    records = np.zeros(1001, dtype=VEHICLE_DTYPE)
    records.view(np.uint8)[:] = rng.integers(0, 256, records.nbytes, dtype=np.uint8)
    matrix = rng.integers(0, 256, (1001, 16), dtype=np.uint8)
    column = rng.integers(0, 2**63, 1001).astype(np.uint64)
    for rows in (rng.permutation(1001), rng.integers(0, 1001, 50), np.zeros(0, np.int64)):
        for workers in (1, 2):
            got = gather_rows(records, rows, workers)
            assert got.dtype == VEHICLE_DTYPE and got.tobytes() == records[rows].tobytes()
            assert np.array_equal(gather_rows(matrix, rows, workers), matrix[rows])
            assert np.array_equal(gather_rows(column, rows, workers), column[rows])


def test_run_threaded_keeps_task_order_and_raises_a_failure() -> None:
    assert run_threaded([lambda i=i: i * i for i in range(9)], 2) == [i * i for i in range(9)]

    def fails() -> int:
        raise ValueError("task failed")

    with pytest.raises(ValueError, match="task failed"):
        run_threaded([lambda: 1, fails, lambda: 3], 2)


@pytest.mark.parametrize("block", [1 << 16, 7, 1])
def test_squeeze_equals_boolean_indexing(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "_SQUEEZE_BLOCK", block)
    rng = np.random.default_rng(5)
    records = np.zeros(500, dtype=VEHICLE_DTYPE)
    records.view(np.uint8)[:] = rng.integers(0, 256, records.nbytes, dtype=np.uint8)
    halves = rng.integers(0, 2**63, (500, 2)).astype(np.uint64)
    rows = rng.permutation(500).astype(np.int64)
    for keep in (rng.random(500) < 0.9, np.zeros(500, np.bool_), np.ones(500, np.bool_)):
        for array in (records, halves, rows):
            want = array[keep].copy()
            got = build.squeeze(array.copy(), keep)
            assert got.dtype == array.dtype and got.tobytes() == want.tobytes()
