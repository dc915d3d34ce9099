"""Reconciliation: each kind of difference planted in an extract is found, none on an equal one,
the store is not written, and the report and output hold keys, never plates."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from lez.keys import PlateKeyer
from lez.store import open_store
from loader.__main__ import main
from loader.reconcile import ReconcileReport, reconcile
from tests.support.extracts import build_test_store, row, write_extract

REPO = Path(__file__).resolve().parents[2]
SOURCE = dt.date(2026, 10, 20)
ROWS = [
    row("1-ABC-001"),
    row("1-ABC-002", valid_to="2020-01-01", euro="4"),
    row("1-ABC-002", valid_from="2020-01-01"),
    row("1-ABC-003", co2="140"),
    row("1-ABC-004", status="S", valid_to="2026-05-01"),  # kept: within retention
    row("1-ABC-005", status="S", valid_to="2026-01-01"),  # purged by the build and reconcile
]


@pytest.fixture
def store(tmp_path: Path, key_file: Path) -> Path:
    extract = write_extract(tmp_path / "extract.csv", ROWS)
    return build_test_store(tmp_path / "store", key_file, extract, SOURCE)


def _diff(
    tmp_path: Path, store: Path, keyer: PlateKeyer, rows: list[dict[str, str]]
) -> ReconcileReport:
    return reconcile(store, write_extract(tmp_path / "fresh.csv", rows), keyer, retention_days=183)


def _hex(keyer: PlateKeyer, plate: str) -> str:
    return bytes(keyer.key("BE", plate)).hex()


def test_an_equal_extract_finds_no_difference(
    tmp_path: Path, store: Path, keyer: PlateKeyer
) -> None:
    shuffled = list(reversed(ROWS))  # row order does not matter
    report = _diff(tmp_path, store, keyer, shuffled)
    assert report.equal, report.lines()
    assert report.plates_in_store == 4 == report.plates_in_extract


def test_each_kind_of_difference_is_found(tmp_path: Path, store: Path, keyer: PlateKeyer) -> None:
    rows = [
        row("1-ABC-001"),
        row("1-ABC-002", valid_to="2021-01-01", euro="4"),  # history: other interval
        row("1-ABC-002", valid_from="2021-01-01"),
        row("1-ABC-003", co2="150", nis="44021"),  # fields: co2 and nis
        # 1-ABC-004 missing from the extract: extra in the store
        row("1-ABC-006"),  # missing from the store
    ]
    report = _diff(tmp_path, store, keyer, rows)
    assert not report.equal
    assert report.missing == [_hex(keyer, "1ABC006")]
    assert report.extra == [_hex(keyer, "1ABC004")]
    assert report.history == [_hex(keyer, "1ABC002")]
    assert report.fields == [_hex(keyer, "1ABC003")]
    assert report.field_counts == {"co2": 1, "nis": 1}


def test_cli_exit_codes_report_file_and_no_plates(
    tmp_path: Path, store: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published = open_store(store).path
    equal = write_extract(tmp_path / "equal.csv", ROWS)
    common = ["--store", str(store), "--key", str(key_file)]
    assert main(["reconcile", str(equal), *common]) == 0
    different = write_extract(tmp_path / "different.csv", [*ROWS, row("1-ABC-009")])
    report_file = tmp_path / "diff.json"
    assert main(["reconcile", str(different), *common, "--report", str(report_file)]) == 1
    out = capsys.readouterr().out
    assert "missing from the store: 1 keys" in out
    saved = json.loads(report_file.read_text())
    assert saved["equal"] is False and len(saved["missing"]) == 1
    assert main(["reconcile", str(tmp_path / "nope.csv"), *common]) == 2
    text = out + capsys.readouterr().err + report_file.read_text()
    assert "ABC" not in text
    assert open_store(store).path == published  # read-only


def test_rebuild_publishes_the_extract(
    tmp_path: Path, store: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    fresh = write_extract(tmp_path / "fresh.csv", [*ROWS, row("1-ABC-009")])
    common = ["--store", str(store), "--key", str(key_file), "--rules", str(REPO / "rules")]
    assert main(["reconcile", str(fresh), *common, "--rebuild"]) == 1
    assert reconcile(store, fresh, keyer, retention_days=183).equal
