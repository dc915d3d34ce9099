"""The clients pass reads' moments as instants: `lez batch` sends camera timestamps as an
instants column (the server derives the Brussels day and hour, and the output's `day` is the
server's) and writes the answers' notes; `LezClient.check(instant=...)` sends the moment and
reads the notes (docs/rules.md#time-of-day)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from clients import LezClient
from clients.batch_rows import BatchRows
from clients.request_builders import chunk_request
from lez.api.v1 import access_pb2 as pb
from lez.days import DAY_UNKNOWN, NO_INSTANT
from tests.clients.test_cli import batch
from tests.server.conftest import ServerThread

# Ghent's first month (January 2020) was warnings only; the old diesel is refused there.
OLD_DIESEL = "1XYZ987"


def test_lez_batch_sends_instants_and_writes_notes(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread, tmp_path: Path
) -> None:
    rows = [
        (OLD_DIESEL, "2020-01-15T10:00:00+01:00"),  # warning-only month
        (OLD_DIESEL, "2020-01-31T23:30:00Z"),  # 00:30 on 1 February in Brussels: fined
        (OLD_DIESEL, "2020-01-31T22:30:00Z"),  # 23:30 on 31 January: still a warning
        ("1ABC234", "2020-01-15T10:00:00+01:00"),  # allowed: no note
    ]
    src = tmp_path / "reads.csv"
    src.write_text("plate,timestamp\n" + "".join(f"{p},{t}\n" for p, t in rows))
    out_csv = tmp_path / "decisions.csv"
    code, out, err = batch(capsys, live_server, str(src), str(out_csv))
    assert code == 0, err
    assert "notes: WARNING_ONLY 2" in out
    with open(out_csv, newline="") as fh:
        got = list(csv.DictReader(fh))
    assert [r["day"] for r in got] == ["2020-01-15", "2020-02-01", "2020-01-31", "2020-01-15"]
    assert [r["outcome"] for r in got] == ["NOT_ALLOWED", "NOT_ALLOWED", "NOT_ALLOWED", "ALLOWED"]
    assert [r["notes"] for r in got] == ["WARNING_ONLY", "", "WARNING_ONLY", ""]


def test_check_sends_the_instant_and_reads_the_notes(client: LezClient) -> None:
    moment = dt.datetime(2020, 1, 31, 23, 30, tzinfo=dt.UTC)
    answer = client.check(OLD_DIESEL, zone="Gent", instant=moment)
    assert answer.date == dt.date(2020, 2, 1) and answer.instant == "2020-01-31T23:30:00Z"
    assert answer.outcome == "NOT_ALLOWED" and answer.notes == frozenset()
    warned = client.check(OLD_DIESEL, zone="Gent", instant="2020-01-31T23:30:00+01:00")
    assert warned.date == dt.date(2020, 1, 31) and warned.notes == {"WARNING_ONLY"}
    with pytest.raises(ValueError, match="aware"):
        client.check(OLD_DIESEL, zone="Gent", instant=dt.datetime(2020, 1, 31, 23, 30))


def test_rows_mixing_moments_and_days_pack_both_columns() -> None:
    moment = dt.datetime(2026, 3, 2, 5, 30, tzinfo=dt.UTC)
    rows = BatchRows.of(
        ["1ABC234", "1ABC234", "1ABC234"], None, [moment, dt.date(2026, 3, 2), "not a day"]
    )
    msg = chunk_request(rows, 0, 3, chunk_id=0, zone="Gent", ruleset="")
    instants = np.frombuffer(msg.instants, dtype="<i8").tolist()
    assert instants == [int(moment.timestamp()) * 1000, NO_INSTANT, NO_INSTANT]
    assert msg.instant_unit == pb.INSTANT_UNIT_MILLISECONDS
    assert np.frombuffer(msg.days, dtype="<i4").tolist()[1:] == [rows.days[1], DAY_UNKNOWN]
    only_days = BatchRows.of(["1ABC234"], None, [dt.date(2026, 3, 2)])
    plain = chunk_request(only_days, 0, 1, chunk_id=0, zone="Gent", ruleset="")
    assert plain.instants == b"" and len(plain.days) == 4
    only_moments = BatchRows.of(["1ABC234"], None, [moment])
    timed = chunk_request(only_moments, 0, 1, chunk_id=0, zone="Gent", ruleset="")
    assert timed.days == b"" and len(timed.instants) == 8


def test_lez_check_with_an_instant_prints_the_day_and_the_notes(
    capsys: pytest.CaptureFixture[str], live_server: ServerThread
) -> None:
    from tests.clients.test_cli import run

    code, out, err = run(
        capsys, "--server", live_server.target, "check", OLD_DIESEL, "--zone", "Gent",
        "--instant", "2020-01-31T23:30:00+01:00",
    )  # fmt: skip
    assert code == 0, err
    assert "on 2020-01-31: NOT_ALLOWED" in out and "notes:         WARNING_ONLY" in out
    code, _out, err = run(
        capsys, "--server", live_server.target, "check", OLD_DIESEL, "--zone", "Gent",
        "--instant", "31 January, late",
    )  # fmt: skip
    assert code == 2 and "instant" in err and "Traceback" not in err
