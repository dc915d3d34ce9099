"""`lez recheck --file`: the CSV of earlier decisions (`clients.recheck_file`), read alone and
through the command line against the in-process server, as text and as JSON; bad files are
one line naming the file (and the line) but never a plate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients.batchfile import BatchFileError
from clients.cli import main
from clients.recheck_file import read_recheck_file
from tests.clients.conftest import ZONE
from tests.server.conftest import ServerThread

PLATE = "2DEF456"
HEADER = "plate,country,zone,date,outcome,reason"


def _file(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "appeals.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_rows_become_earlier_decisions(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        f"{PLATE},,{ZONE},2025-06-02,not_allowed,",
        f"1ABC234,nl,{ZONE},2025-06-02,ALLOWED,MEETS_CRITERIA",
    )
    first, second = read_recheck_file(path)
    assert (first.plate, first.country, first.outcome, first.reason) == (
        PLATE,
        "BE",
        "NOT_ALLOWED",
        None,
    )
    assert (second.country, second.reason) == ("NL", "MEETS_CRITERIA")


@pytest.mark.parametrize(
    ("rows", "header", "needle"),
    [
        ((), HEADER, "no rows after the header"),
        (
            (f"{PLATE},BE,{ZONE},2025-06-02",),
            "plate,country,zone,date",
            "missing column(s) outcome",
        ),
        (
            (f"{PLATE},BE,{ZONE},2025-06-02,ALLOWED,", f"{PLATE},BE,{ZONE},2025-06-02,MAYBE,"),
            HEADER,
            "line 3: one of ALLOWED",
        ),
        ((f"{PLATE},BE,{ZONE},2025-06-02,ALLOWED,BECAUSE",), HEADER, "line 2: a reason name"),
    ],
)
def test_a_bad_file_says_what_and_where_without_the_plate(
    tmp_path: Path, rows: tuple[str, ...], header: str, needle: str
) -> None:
    with pytest.raises(BatchFileError) as bad:
        read_recheck_file(_file(tmp_path, *rows, header=header))
    assert needle in str(bad.value) and PLATE not in str(bad.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BatchFileError, match="not found"):
        read_recheck_file(tmp_path / "nothing.csv")


def test_recheck_a_file_as_text_and_json(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread, tmp_path: Path
) -> None:
    path = _file(tmp_path, f"{PLATE},BE,{ZONE},2025-06-02,NOT_ALLOWED,")
    server = ["--server", live_server.target]
    assert main([*server, "recheck", "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "row 1: then NOT_ALLOWED -> now ALLOWED (LOCAL_PERMIT): CHANGED" in out
    assert PLATE not in out  # rows of a file are named by their number
    assert main([*server, "recheck", "--file", str(path), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    (result,) = answer["results"]
    assert result["outcome_changed"] and result["current"]["outcome"] == "ALLOWED"
    assert "REGISTRATION_ADDED" in result["changes"] and answer["snapshot_id"]
