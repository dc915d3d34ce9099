"""What a newcomer meets with `lez` (issue 13, point 6): dates that are not on the calendar told
from a wrong form, a wrong batch header shown beside the expected one, the output of
`lez batch` read by `lez recheck --file` as it is, a recheck naming a cause only when it knows
one and refusing an unknown snapshot id, and the exit statuses `--help` promises. No message
quotes a plate."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clients import errors
from clients.cli import main
from clients.cli_parser import build_parser
from clients.sync import LezClient
from lez.days import DAYS_ACCEPTED
from tests.clients.conftest import ZONE
from tests.server.conftest import ServerThread
from tests.support.net import free_port

HELP_PROMISE = "exit status: 0 answered, 1 the call failed, 2 bad usage or input, 130 interrupted"
PLATES = ("1ABC234", "1-ABC-234", "2DEF456", "9ZZZ999")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    for plate in PLATES:
        assert plate not in err, err
    assert "Traceback" not in err
    return code, out, err


# ---- 1. dates that are not on the calendar, or out of range, or not dates ----------------------


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        (
            "--date",
            "2026-02-30",
            "2026-02-30 is not a day of the calendar (February 2026 has 28 days)",
        ),
        ("--date", "2024-02-30", "(February 2024 has 29 days)"),
        ("--date", "2026-13-01", "there is no month 13"),
        ("--date", "0000-12-31", f"0000-12-31 is out of range: {DAYS_ACCEPTED}"),
        ("--date", "2026/02/03", "expected a date as YYYY-MM-DD, got '2026/02/03'"),
        ("--date", "2026-02-30T10:00:00+01:00", "not a day of the calendar"),
        ("--date", "9ZZZ999", "expected a date as YYYY-MM-DD, got (a value of 7 characters"),
        ("--first-registration", "2025-02-29", "(February 2025 has 28 days)"),
        ("--first-registration", "20260230", "not a day of the calendar"),
    ],
)
def test_check_tells_an_impossible_date_from_a_wrong_form(
    capsys: pytest.CaptureFixture[str], option: str, value: str, needle: str
) -> None:
    code, out, err = run(capsys, "check", "1ABC234", "--zone", ZONE, option, value)
    assert code == 2 and out == "" and needle in err


def test_as_of_out_of_range(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "batch", "in.csv", str(tmp_path / "o.csv"), "--zone", ZONE, "--as-of", "0000-01-01"
    )
    assert code == 2 and "days from 0001-01-01 to 9999-12-31 are accepted" in err


def test_a_batch_counts_impossible_days_apart(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread, tmp_path: Path
) -> None:
    src = tmp_path / "reads.csv"
    src.write_text(
        "plate,country,day\n1ABC234,BE,2025-06-02\n1ABC234,BE,2025-02-30\n"
        "1ABC234,BE,2025-02-31\n1ABC234,BE,02/06/2025\n"
    )
    target = str(tmp_path / "o.csv")
    code, out, err = run(capsys, "--server", live_server.target, "batch", str(src), target,
                         "--zone", ZONE)  # fmt: skip
    assert code == 0, err
    assert "3 row(s) had an unreadable day" in out
    assert "of which 2 not a day of the calendar or out of range" in out
    assert "1 not written YYYY-MM-DD" in out
    code, out, _ = run(capsys, "--server", live_server.target, "batch", str(src), target,
                       "--zone", ZONE, "--json")  # fmt: skip
    summary = json.loads(out)
    assert (summary["unreadable_days"], summary["days_off_calendar"]) == (3, 2)


def test_a_recheck_file_with_an_impossible_date_names_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "appeals.csv"
    path.write_text(
        "plate,country,zone,date,outcome\n"
        f"1ABC234,BE,{ZONE},2025-06-02,ALLOWED\n1ABC234,BE,{ZONE},2025-04-31,ALLOWED\n"
    )
    code, _, err = run(capsys, "recheck", "--file", str(path))
    assert code == 2
    assert "line 3: 2025-04-31 is not a day of the calendar (April 2025 has 30 days)" in err


# ---- 3. a wrong header: what was found beside what is expected ---------------------------------


@pytest.mark.parametrize(
    ("header", "found"),
    [
        ("plate;pays;jour", "the header is 'plate;pays;jour' (1 column, separated by ';'?"),
        ("kenteken,land,dag", "the header is 'kenteken,land,dag' (3 columns)"),
        ("plate\tcountry\tday", "(1 column, separated by tab?"),
        ("plate,country", "the header is 'plate,country' (2 columns)"),
        ("1ABC234,BE,2025-06-02", "the first line looks like a data row, not a header"),
        ("", "the first line is empty"),
    ],
)
def test_a_wrong_header_is_shown_beside_the_expected_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, header: str, found: str
) -> None:
    src = tmp_path / "reads.csv"
    src.write_text(f"{header}\n2DEF456,BE,2025-06-02\n")
    code, _, err = run(capsys, "batch", str(src), str(tmp_path / "o.csv"), "--zone", ZONE)
    assert code == 2 and found in err
    assert "expected plate,country,day or plate,country,timestamp" in err


# ---- 4. the output of `lez batch` is the input of `lez recheck --file` --------------------------


def test_batch_output_goes_to_recheck_as_it_is(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread, tmp_path: Path
) -> None:
    server = ("--server", live_server.target)
    src = tmp_path / "reads.csv"
    src.write_text(
        "plate,country,timestamp\n1-ABC-234,BE,2025-06-02T18:36:12+02:00\n"
        "2DEF456,,2025-06-02T09:00:00Z\n1ABC234,BE,yesterday\n"
    )
    decisions = tmp_path / "decisions.csv"
    code, out, err = run(capsys, *server, "batch", str(src), str(decisions), "--zone", ZONE,
                         "--json")  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    before = decisions.read_bytes()
    code, _, err = run(capsys, *server, "recheck", "--file", str(decisions))
    assert code == 2 and "missing column(s) zone (give --zone ZONE" in err
    code, out, err = run(
        capsys, *server, "recheck", "--file", str(decisions), "--zone", ZONE, "--json",
        "--snapshot", summary["snapshot_ids"][0], "--ruleset", summary["ruleset_revision"],
    )  # fmt: skip
    assert code == 0, err
    assert decisions.read_bytes() == before  # read as it is
    with open(decisions, newline="") as fh:
        rows = list(csv.DictReader(fh))
    results = json.loads(out)["results"]
    assert len(results) == len(rows) == 3
    for row, result in zip(rows, results, strict=True):
        assert result["previous_outcome"] == row["outcome"]
        assert result["current"]["outcome"] == row["outcome"]
        assert not result["outcome_changed"] and result["changes"] == []
    assert results[1]["previous_reason"] == "LOCAL_PERMIT"
    assert results[2]["current"]["reason"] == "INVALID_DAY"  # its day was unreadable


# ---- 5. a cause only when known; an unknown snapshot id is an error ----------------------------


def _recheck(
    capsys: pytest.CaptureFixture[str], server: ServerThread, *extra: str
) -> tuple[int, str, str]:
    return run(capsys, "--server", server.target, "recheck", "1ABC234", "--zone", ZONE,
               "--date", "2025-06-02", "--outcome", "INSUFFICIENT_DATA", *extra)  # fmt: skip


def test_recheck_names_a_cause_only_when_it_knows(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread
) -> None:
    code, out, err = _recheck(capsys, live_server)
    assert code == 0, err
    assert "CHANGED; the answer differs; what changed cannot be told" in out
    assert "VEHICLE_DATA" not in out and "RULESET" not in out
    newest = out.rsplit("rule revision ", 1)[1].split(",")[0]
    code, out, err = _recheck(capsys, live_server, "--ruleset", newest)  # same rules: the data
    assert code == 0 and "CHANGED; what changed: VEHICLE_DATA" in out


@pytest.mark.parametrize("snapshot", ["old", "20991231T000000Z-0a1b2c", "2DEF456"])
def test_recheck_with_an_unknown_snapshot_is_an_error(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread, snapshot: str
) -> None:
    code, out, err = _recheck(capsys, live_server, "--snapshot", snapshot)
    assert code == 2 and out == ""
    assert "is not a snapshot this server has served" in err and "its current snapshot" in err


# ---- 6. exit statuses as `--help` says them -----------------------------------------------------


def _raise(exc: BaseException) -> Callable[..., Any]:
    def call(*_args: Any, **_kw: Any) -> Any:
        raise exc

    return call


@pytest.mark.parametrize(
    ("argv", "fault", "status"),
    [
        (["check", "1ABC234", "--zone", ZONE, "--date", "2025-06-02"], None, 0),
        (["--help"], None, 0),
        (["check", "1ABC234", "--zone", ZONE, "--bogus"], None, 2),
        (["check", "1ABC234", "--zone", ZONE, "--date", "2025-02-30"], None, 2),
        (["check", "1ABC234", "--zone", "Atlantis"], None, 2),
        (["check", "1ABC234", "--zone", ZONE, "--ruleset", "1999-01-01"], None, 2),
        (["batch", "missing.csv", "o.csv", "--zone", ZONE], None, 2),
        (["recheck", "1ABC234", "--zone", ZONE], None, 2),
        (["recheck", "--file", "missing.csv"], None, 2),
        (["check", "1ABC234", "--zone", ZONE], "down", 1),
        (["info"], "down", 1),
        (["check", "1ABC234", "--zone", ZONE], errors.InternalError("failed, ref 1"), 1),
        (["check", "1ABC234", "--zone", ZONE], errors.RateLimited("no more calls"), 1),
        (["check", "1ABC234", "--zone", ZONE], errors.PermissionDenied("not yours"), 1),
        (["check", "1ABC234", "--zone", ZONE], KeyboardInterrupt(), 130),
        (["info"], KeyboardInterrupt(), 130),
    ],
)
def test_exit_status_follows_help(
    capsys: pytest.CaptureFixture[str],
    live_server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    fault: BaseException | str | None,
    status: int,
) -> None:
    monkeypatch.chdir(tmp_path)
    target = f"127.0.0.1:{free_port()}" if fault == "down" else live_server.target
    if isinstance(fault, BaseException):
        for method in ("check", "server_info"):
            monkeypatch.setattr(LezClient, method, _raise(fault))
    code, _, err = run(capsys, "--server", target, *argv)
    assert code == status, err
    assert HELP_PROMISE in build_parser().format_help()
