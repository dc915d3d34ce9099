"""The extract's header is checked before parsing: clear errors, no traceback, no plate echoed."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from lez.errors import ExtractError
from loader import extract
from loader.extract import COLUMNS, load_extract
from tests.support.extracts import DEFAULTS, row, write_extract

REPO = Path(__file__).resolve().parents[2]
HEADER = ",".join(COLUMNS)
PLATE = "1-PRV-123"


def _with_header(path: Path, header: list[str], plate: str = PLATE) -> Path:
    values = dict(DEFAULTS, plate=plate)
    data = [values.get(name, "x") for name in header]
    path.write_text(",".join(header) + "\n" + ",".join(data) + "\n")
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(ExtractError) as caught:
        load_extract(path)
    message = str(caught.value)
    assert f"the first line must be the header {HEADER}" in message
    assert PLATE not in message and PLATE.replace("-", "") not in message
    return message


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = [c for c in COLUMNS if c != "valid_to"]
    message = _refusal(_with_header(tmp_path / "x.csv", header))
    assert "wrong header (missing valid_to)" in message


def test_renamed_column_is_named_both_ways(tmp_path: Path) -> None:
    header = ["foo" if c == "plate_type" else c for c in COLUMNS]
    message = _refusal(_with_header(tmp_path / "x.csv", header))
    assert "missing plate_type; unexpected 'foo'" in message


def test_two_column_header(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text(f"plate,foo\n{PLATE},1\n")
    message = _refusal(tmp_path / "x.csv")
    assert "missing plate_type, category," in message and "unexpected 'foo'" in message


def test_extra_column_is_refused(tmp_path: Path) -> None:
    message = _refusal(_with_header(tmp_path / "x.csv", [*COLUMNS, "vin"]))
    assert "wrong header (unexpected 'vin')" in message


def test_repeated_and_reordered_columns_are_refused(tmp_path: Path) -> None:
    swapped = [COLUMNS[1], COLUMNS[0], *COLUMNS[2:]]
    message = _refusal(_with_header(tmp_path / "a.csv", swapped))
    assert "not in the documented order" in message
    message = _refusal(_with_header(tmp_path / "b.csv", [*COLUMNS, "plate"]))
    assert "repeated plate" in message


def test_file_without_header_quotes_nothing_of_its_first_line(tmp_path: Path) -> None:
    path = write_extract(tmp_path / "x.csv", [row(PLATE)])
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")
    message = _refusal(path)
    assert "names none of the columns" in message
    assert "M1" not in message and "11002" not in message


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("")
    assert "empty" in _refusal(tmp_path / "x.csv")


def test_gzip_header_is_checked_and_a_good_one_loads(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(f"plate,foo\n{PLATE},1\n".encode()))
    assert "missing plate_type" in _refusal(path)
    good = write_extract(tmp_path / "good.csv", [row(PLATE)])
    zipped = tmp_path / "good.csv.gz"
    zipped.write_bytes(gzip.compress(good.read_bytes()))
    assert len(load_extract(zipped).records) == 1


def test_arrow_messages_never_reach_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_extract(tmp_path / "x.csv", [row(PLATE)])

    def failing(*args: object, **kwargs: object) -> pa.Table:
        raise pa.ArrowKeyError(f"CSV parse error: Expected 19 columns, got 1: {PLATE},N,M1")

    monkeypatch.setattr(extract.pacsv, "read_csv", failing)
    with pytest.raises(ExtractError) as caught:
        load_extract(path)
    message = str(caught.value)
    assert "not a readable CSV extract (ArrowKeyError" in message
    assert PLATE not in message and "M1" not in message


def test_invalid_utf8_is_reported_without_the_value(tmp_path: Path) -> None:
    path = write_extract(tmp_path / "x.csv", [row(PLATE)])
    path.write_bytes(path.read_bytes().replace(PLATE.encode(), PLATE.encode() + b"\xff"))
    with pytest.raises(ExtractError, match="not UTF-8") as caught:
        load_extract(path)
    assert PLATE not in str(caught.value)


def test_cli_wrong_header_is_a_clear_error_not_a_traceback(tmp_path: Path, key_file: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text(f"plate,foo\n{PLATE},1\n")
    out = subprocess.run(
        [
            *(sys.executable, "-m", "loader", "build", str(bad)),
            *("--key", str(key_file), "--out", str(tmp_path / "store")),
            *("--rules", str(REPO / "rules")),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.startswith("lez-loader build: ")
    assert "missing plate_type" in out.stderr and f"must be the header {HEADER}" in out.stderr
    assert PLATE not in out.stderr
    assert not (tmp_path / "store" / "current").exists()
