"""The `lez` command line through `clients.cli.main([...])`: complete help, readable errors
without tracebacks or plates, batches with ISO 8601 camera timestamps turned into Brussels days
(DST changes, late-evening UTC reads that are the next Brussels day)."""

from __future__ import annotations

import csv
import datetime as dt
import errno
import io
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from clients import batchfile
from clients.batchfile import utc_ms_to_brussels_days
from clients.cli import main
from clients.cli_parser import build_parser
from lez.days import brussels_day, to_day, today_brussels
from tests.clients.conftest import ZONE
from tests.server.conftest import ServerThread
from tests.support.net import free_port

BRUSSELS = ZoneInfo("Europe/Brussels")
COMMANDS = ("check", "batch", "campaign", "recheck", "info")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def batch(
    capsys: pytest.CaptureFixture[str],
    server: ServerThread,
    source: str,
    target: str,
    *extra: str,
    zone: str = ZONE,
) -> tuple[int, str, str]:
    """`lez batch SOURCE TARGET --zone ZONE [extra]` against `server`."""
    return run(capsys, "--server", server.target, "batch", source, target, "--zone", zone, *extra)


def test_help_is_complete(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for word in (*COMMANDS, "--server", "--ca", "--cert", "--key", "--timeout", "examples"):
        assert word in out
    assert "timestamp" in out and "Europe/Brussels" in out
    for command in COMMANDS:
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "example" in out and "--server" in out, command


def test_check_prints_the_answer(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread
) -> None:
    code, out, err = run(
        capsys,
        "--server",
        live_server.target,
        "check",
        "1-ABC-234",
        "--zone",
        ZONE,
        "--date",
        "2025-06-02",
    )
    assert code == 0, err
    assert "1-ABC-234 (BE) in Gent on 2025-06-02: ALLOWED (MEETS_CRITERIA)" in out
    assert "no end date" in out and "euro norm:     6" in out
    code, out, _ = run(
        capsys,
        "check",
        "2DEF456",
        "--zone",
        ZONE,
        "--date",
        "2025-06-02",
        "--json",
        "--server",
        live_server.target,
    )
    assert (
        code == 0 and '"reason": "LOCAL_PERMIT"' in out and '"allowed_until": "2025-12-30"' in out
    )
    code, out, _ = run(
        capsys,
        "--server",
        live_server.target,
        "check",
        "1ABC234",
        "--zone",
        ZONE,
        "--date",
        "2025-06-02",
        "--first-registration",
        "1990-01-01",
    )
    assert code == 0 and "COMBINATION_MISMATCH" in out


def test_info_and_recheck(capsys: pytest.CaptureFixture[str], live_server: ServerThread) -> None:
    code, out, _ = run(capsys, "--server", live_server.target, "info")
    assert code == 0 and "Gent" in out and "key id" in out and "pairs/chunk 1,000" in out
    code, out, err = run(
        capsys,
        "--server",
        live_server.target,
        "recheck",
        "2DEF456",
        "--zone",
        ZONE,
        "--date",
        "2025-06-02",
        "--outcome",
        "not_allowed",
    )
    assert code == 0, err
    assert "then NOT_ALLOWED -> now ALLOWED (LOCAL_PERMIT): CHANGED" in out
    assert "REGISTRATION_ADDED" in out


@pytest.mark.parametrize(
    ("argv", "needle", "status"),
    [
        (["check", "1ABC234", "--zone", "Atlantis", "--date", "2025-06-02"], "unknown zone", 2),
        (
            ["check", "1ABC234", "--zone", ZONE, "--date", "2025-02-30"],
            "2025-02-30 is not a day of the calendar (February 2025 has 28 days)",
            2,
        ),
        (["check", "1ABC234", "--zone", ZONE, "--date", "2025/02/03"], "YYYY-MM-DD", 2),
        (["check", "1ABC234", "--zone", ZONE, "--country", "Belgium"], "two-letter", 2),
        (["check", "1ABC234"], "--zone", 2),
        (["check", "1ABC234", "--zone", ZONE, "--ruleset", "1999-01-01"], "1999-01-01", 2),
        (["batch", "/nonexistent/in.csv", "out.csv", "--zone", ZONE], "not found", 2),
        (["recheck", "1ABC234", "--zone", ZONE], "missing: date, outcome", 2),
        (["check", "1ABC234", "--zone", ZONE, "--timeout", "-1"], "more than 0", 2),
    ],
)
def test_errors_are_one_readable_line(
    capsys: pytest.CaptureFixture[str],
    live_server: ServerThread,
    argv: list[str],
    needle: str,
    status: int,
) -> None:
    code, out, err = run(capsys, "--server", live_server.target, *argv)
    assert code == status
    assert needle in err
    assert "Traceback" not in err + out
    assert "1ABC234" not in err  # the plate typed is never quoted in an error


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["check", "1-ABC-234", "2-XYZ-999", "--zone", ZONE], "1 unexpected argument "),
        (
            ["check", "1-ABC-234", "2-XYZ-999", "3 XYZ 999", "--zone", ZONE],
            "2 unexpected arguments",
        ),
        (["check", "1-ABC-234", "--zone", ZONE, "--json", "2-XYZ-999"], "1 unexpected argument "),
        (["2-XYZ-999", "--zone", ZONE], "not a command"),  # 'check' forgotten
    ],
)
def test_usage_errors_never_quote_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert needle in err and "lez --help" in err and "Traceback" not in err
    for plate in ("2-XYZ-999", "2XYZ999", "3 XYZ 999", "3XYZ999"):
        assert plate not in err
    if "unexpected" in needle:
        assert "one plate per 'lez check'" in err and "lez batch" in err
    else:
        assert "check" in err and "batch" in err  # the commands there are


def test_parse_args_hides_unrecognized_arguments_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["check", "1-ABC-234", "2-XYZ-999", "--zone", ZONE])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "unexpected arguments (not shown" in err
    assert "2-XYZ-999" not in err and "2XYZ999" not in err


def test_server_down_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code, _, err = run(
        capsys, "--server", f"127.0.0.1:{port}", "check", "1-ABC-234", "--zone", ZONE
    )
    assert code == 1
    assert f"no LEZ server answers at 127.0.0.1:{port}" in err and "lez-server serve" in err
    assert "1-ABC-234" not in err and "Traceback" not in err
    code, _, err = run(capsys, "--server", "nonsense", "info")
    assert code == 2 and "host:port" in err


def test_unreadable_input_files(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread, tmp_path: Path
) -> None:
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("kenteken,datum\n1ABC234,2025-06-02\n")
    code, _, err = batch(capsys, live_server, str(bad_header), str(tmp_path / "o.csv"))
    assert code == 2 and "the header is 'kenteken,datum' (2 columns)" in err
    code, _, err = batch(capsys, live_server, str(tmp_path), str(tmp_path / "o.csv"))
    assert code == 2 and "directory" in err
    good = tmp_path / "in.csv"
    good.write_text("plate,country,day\n1ABC234,BE,2025-06-02\n")
    code, _, err = batch(capsys, live_server, str(good), str(tmp_path / "no" / "o.csv"))
    assert code == 2 and "directory does not exist" in err


def test_unreadable_input_file_says_permission_denied(
    capsys: pytest.CaptureFixture[str],
    live_server: ServerThread,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    locked = tmp_path / "locked.csv"
    locked.write_text("plate,country,day\n1ABC234,BE,2025-06-02\n")
    real_open = open

    def refuse(path: Any, *args: Any, **kw: Any) -> Any:  # root reads any file: refuse it here
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(batchfile, "open", refuse, raising=False)
    code, _, err = batch(capsys, live_server, str(locked), str(tmp_path / "o.csv"))
    assert code == 2 and "permission denied" in err and str(locked) in err
    assert "1ABC234" not in err


def test_batch_with_camera_timestamps(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread, tmp_path: Path
) -> None:
    rows = [
        ("1-ABC-234", "BE", "2025-06-02T18:36:12.345+02:00"),  # the ANPR tender's form
        ("1abc234", "", "2025-06-01T23:30:00Z"),  # 01:30 CEST on 2 June: the next Brussels day
        ("1XYZ987", "BE", "2025-06-02T21:59:59.999+00:00"),  # 23:59:59 CEST, still 2 June
        ("1XYZ987", "BE", "2025-06-02T22:00:00+00:00"),  # 00:00 CEST on 3 June
        ("1ABC234", "BE", "2025-10-26T00:30:00Z"),  # 02:30 CEST, before the switch back
        ("1ABC234", "BE", "2025-10-26T02:30:00+01:00"),  # 02:30 CET, after it
        ("1ABC234", "BE", "2025-10-25T22:30:00Z"),  # 00:30 CEST on 26 October
        ("1ABC234", "BE", "2025-03-29T23:30:00Z"),  # 00:30 CET on 30 March (DST starts)
        ("1ABC234", "BE", "yesterday at noon"),  # unreadable: INVALID_DAY, batch goes on
        ("#", "BE", "2025-06-02T12:00:00+02:00"),
    ]
    src = tmp_path / "reads.csv"
    src.write_text("plate,country,timestamp\n" + "".join(f"{p},{c},{t}\n" for p, c, t in rows))
    out_csv = tmp_path / "decisions.csv"
    code, out, err = batch(capsys, live_server, str(src), str(out_csv))
    assert code == 0, err
    assert "10 pairs" in out and "ALLOWED" in out and "1 row(s) had an unreadable timestamp" in out
    with open(out_csv, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["day"] for r in got] == [
        "2025-06-02",
        "2025-06-02",
        "2025-06-02",
        "2025-06-03",
        "2025-10-26",
        "2025-10-26",
        "2025-10-26",
        "2025-03-30",
        "",
        "2025-06-02",
    ]
    assert [r["outcome"] for r in got][:4] == ["ALLOWED", "ALLOWED", "NOT_ALLOWED", "NOT_ALLOWED"]
    assert (got[8]["outcome"], got[8]["reason"]) == ("INVALID", "INVALID_DAY")
    assert (got[9]["outcome"], got[9]["reason"]) == ("INVALID", "INVALID_PLATE")
    assert got[0]["plate"] == "1-ABC-234" and got[0]["allowed_until"] == "open"
    assert got[0]["euro"] == "6"


@pytest.mark.parametrize(
    ("body", "zone", "needle"),
    [
        ("1-ABC-234,BE,2025-06-02\n2-XYZ-999,BE,2025-06-02\n", "Atlantis", "unknown zone"),
        (
            "1-ABC-234,BE,2025-06-02\n2-XYZ-999,BE,2025-06-02,extra\n",
            ZONE,
            "wrong number of columns (expected 3, got 4)",
        ),
    ],
)
def test_failing_batch_names_no_plate(
    capsys: pytest.CaptureFixture[str],
    live_server: ServerThread,
    tmp_path: Path,
    body: str,
    zone: str,
    needle: str,
) -> None:
    src = tmp_path / "reads.csv"
    src.write_text("plate,country,day\n" + body)
    code, out, err = batch(capsys, live_server, str(src), str(tmp_path / "o.csv"), zone=zone)
    assert code == 2 and err.strip() and needle in err
    assert "Traceback" not in err + out
    for plate in ("1-ABC-234", "1ABC234", "2-XYZ-999", "2XYZ999"):
        assert plate not in err


def test_batch_with_days_and_json_summary(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread, tmp_path: Path
) -> None:
    src = tmp_path / "reads.csv"
    day = dt.date(2025, 6, 2).isoformat()
    src.write_text("plate,country,day\n" + f"1ABC234,BE,{day}\n2DEF456,,{day}\n" * 1500)
    code, out, err = batch(capsys, live_server, str(src), str(tmp_path / "o.csv"), "--json")
    assert code == 0, err
    assert '"pairs": 3000' in out and '"ALLOWED": 3000' in out
    with open(tmp_path / "o.csv", newline="") as fh:
        got = list(csv.DictReader(fh))
    assert got[1]["reason"] == "LOCAL_PERMIT" and got[1]["allowed_until"] == "2025-12-30"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("terminal", "extra", "bar"),
    [(True, (), True), (False, (), False), (True, ("--no-progress",), False)],
)
def test_batch_shows_its_progress_only_on_a_terminal(
    live_server: ServerThread, tmp_path: Path, terminal: bool, extra: tuple[str, ...], bar: bool
) -> None:
    src = tmp_path / "reads.csv"
    src.write_text("plate,country,day\n" + "1ABC234,BE,2025-06-02\n" * 500)
    out, err = io.StringIO(), _Terminal() if terminal else io.StringIO()
    argv = ["--server", live_server.target, "batch", str(src), str(tmp_path / "o.csv")]
    code = main([*argv, "--zone", ZONE, *extra], stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert "500 pairs for zone" in out.getvalue()  # the summary goes to stdout either way
    if bar:
        assert "100%" in err.getvalue() and "500/500" in err.getvalue()
        assert "pairs/s" in err.getvalue()
    else:
        assert err.getvalue() == ""


def test_brussels_day_agrees_with_zoneinfo_around_dst() -> None:
    starts = [
        dt.datetime(2025, 3, 29, 20, tzinfo=dt.UTC),
        dt.datetime(2025, 10, 25, 20, tzinfo=dt.UTC),
    ]
    moments = [s + dt.timedelta(minutes=7 * i) for s in starts for i in range(200)]
    ms = np.array([int(m.timestamp() * 1000) for m in moments], dtype=np.int64)
    want = [to_day(m.astimezone(BRUSSELS).date()) for m in moments]
    assert utc_ms_to_brussels_days(ms).tolist() == want
    assert [brussels_day(m) for m in moments] == want
    naive = dt.datetime(2025, 10, 26, 0, 30)  # taken as Brussels local time
    assert brussels_day(naive) == to_day(dt.date(2025, 10, 26))


def test_today_is_the_brussels_day() -> None:
    before = to_day(dt.datetime.now(BRUSSELS).date())
    today = today_brussels()
    after = to_day(dt.datetime.now(BRUSSELS).date())
    assert today in (before, after)
