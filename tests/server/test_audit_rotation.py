"""Rotation of the audit log by size and by day with the chain carried across files, retention
that records what it removes, and `verify-audit` / `audit find` over a rotated series."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from server.__main__ import main
from server.audit import AuditLog, KeyBatch, read_records, read_series, series_files
from server.audit_find import find_consultations
from server.audit_verify import audit_files, verify, verify_file
from server.config import ServerConfig, parse_serve_args
from tests.server.test_audit import KEYS, audit_key_file

START = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)
SOUGHT = bytes(range(16))
OTHER = bytes(range(16, 32))


def _open(directory: Path, **options: Any) -> AuditLog:
    options.setdefault("preallocate_bytes", 4096)
    return AuditLog(directory, keys=KEYS, inline_keys=2, **options)


def _write(log: AuditLog, n: int, *, day: int = 0, keys: bytes = OTHER, pairs: int = 1) -> None:
    for i in range(n):
        batch = KeyBatch()
        batch.add(keys * pairs)
        log.record(
            rpc="CheckStream" if pairs > 2 else "Check",
            identity="gent-enforcement",
            organisation="Stad Gent",
            roles=["enforcement"],
            zone="Gent",
            ruleset_revision="r1",
            snapshot_id="s1",
            pairs=pairs,
            outcomes={"ALLOWED": pairs},
            keys=batch,
            pair_outcomes=bytes([1]) * pairs,
            now=START + dt.timedelta(days=day, minutes=i),
        )


def _seqs(directory: Path) -> list[int]:
    return [int(r["seq"]) for _, r in read_series(directory, "audit-w0")]


def test_rotation_by_size_carries_the_chain(tmp_path: Path) -> None:
    log = _open(tmp_path, rotate_bytes=2000)
    _write(log, 20)
    log.close()
    files = series_files(tmp_path, "audit-w0")
    assert len(files) >= 4 and files[-1].name == "audit-w0.jsonl"
    for rotated in files[:-1]:
        assert rotated.stat().st_size <= 2000  # cut to its records, under the limit
        first = next(read_records(rotated))[1]
        assert rotated.name == f"audit-w0.{first['seq']:012d}.jsonl"
    assert _seqs(tmp_path) == list(range(1, 21))
    verdict = verify_file(tmp_path / "audit-w0.jsonl", KEYS)
    assert verdict.problems == [] and verdict.records == 20
    assert verify_file(files[1], KEYS).problems == []  # any file of the series: the series
    assert audit_files([tmp_path]) == [tmp_path / "audit-w0.jsonl"]
    again = _open(tmp_path, rotate_bytes=2000)  # a restart continues the series
    _write(again, 3)
    again.close()
    assert _seqs(tmp_path) == list(range(1, 24))
    assert verify(tmp_path / "audit-w0.jsonl", KEYS) == []


def test_rotation_by_day(tmp_path: Path) -> None:
    log = _open(tmp_path, rotate_daily=True)
    for day in range(3):
        _write(log, 4, day=day)
    log.close()
    files = series_files(tmp_path, "audit-w0")
    assert [f.name for f in files] == [
        "audit-w0.000000000001.jsonl",
        "audit-w0.000000000005.jsonl",
        "audit-w0.jsonl",
    ]
    for day, path in enumerate(files):
        days = {r["ts"][:10] for _, r in read_records(path)}
        assert days == {(START + dt.timedelta(days=day)).date().isoformat()}
    assert verify(files[-1], KEYS) == []


def test_a_file_deleted_from_the_middle_of_a_series_is_detected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _open(tmp_path, rotate_daily=True)
    for day in range(3):
        _write(log, 4, day=day)
    log.close()
    files = series_files(tmp_path, "audit-w0")
    files[1].unlink()
    problems = verify(tmp_path / "audit-w0.jsonl", KEYS)
    assert any(
        "records 5-8 missing between audit-w0.000000000001.jsonl and audit-w0.jsonl: a file of "
        "the series was deleted" in p
        for p in problems
    ), problems
    (tmp_path / "k").mkdir()
    key = audit_key_file(tmp_path / "k")
    assert main(["verify-audit", str(tmp_path), "--audit-key-file", str(key)]) == 1
    assert "a file of the series was deleted" in capsys.readouterr().out


def test_the_oldest_files_deleted_without_retention_are_detected(tmp_path: Path) -> None:
    log = _open(tmp_path, rotate_daily=True)
    for day in range(3):
        _write(log, 4, day=day)
    log.close()
    series_files(tmp_path, "audit-w0")[0].unlink()
    problems = verify(tmp_path / "audit-w0.jsonl", KEYS)
    assert any(
        "records 1-4 missing: the series' first file(s) were deleted, and no retention record" in p
        for p in problems
    ), problems


def test_retention_removes_old_files_and_says_so(tmp_path: Path) -> None:
    log = _open(tmp_path, rotate_daily=True, retention_days=30)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - dt.timedelta(days=45)
    key_logs: list[Path] = []
    for day in (0, 25, 45):  # 45 and 20 days old, today; logged keys on the oldest day
        if day == 25:  # before the rotation, which may start the retention at once
            key_logs = sorted((tmp_path / "audit-w0-keys").iterdir())
        for i in range(2):
            batch = KeyBatch()
            batch.add(OTHER * (3 if day == 0 else 1))
            log.record(
                rpc="Check", identity="dev", organisation="org", roles=["desk"], zone="Gent",
                ruleset_revision="r1", snapshot_id="s1", pairs=batch.count,
                outcomes={"ALLOWED": batch.count}, keys=batch,
                now=start + dt.timedelta(days=day, minutes=i),
            )  # fmt: skip
    assert len(key_logs) == 1  # the oldest day's two big records share its key log
    log.apply_retention()  # the checkpoint thread may have done it already at the rotation
    log.close()
    assert not any(p.exists() for p in key_logs)  # the oldest file's key log went with it
    files = series_files(tmp_path, "audit-w0")
    assert [f.name for f in files] == ["audit-w0.000000000003.jsonl", "audit-w0.jsonl"]
    retention = [r for _, r in read_records(files[-1]) if r["rpc"] == "AuditRetention"]
    assert [(r["removed_through_seq"], r["removed_files"]) for r in retention] == [
        (2, ["audit-w0.000000000001.jsonl"])
    ]
    verdict = verify_file(files[-1], KEYS)
    assert verdict.problems == []
    assert any("records 1-2 removed by retention" in n for n in verdict.notes)
    files[0].unlink()  # deleting the next one is not retention
    assert any("records 1-4 missing" in p for p in verify(files[-1], KEYS))


def test_audit_find_searches_every_file_of_a_series(tmp_path: Path) -> None:
    log = _open(tmp_path, rotate_daily=True)
    _write(log, 2, day=0)
    _write(log, 1, day=1, keys=SOUGHT)  # inline
    _write(log, 2, day=2)
    _write(log, 1, day=3, keys=SOUGHT, pairs=3)  # in a sidecar
    _write(log, 1, day=4)
    log.close()
    assert len(series_files(tmp_path, "audit-w0")) == 5
    found = find_consultations(tmp_path, SOUGHT)
    assert [(c.where, c.times, c.outcome) for c in found] == [
        ("audit-w0.000000000003.jsonl#3", 1, "ALLOWED"),
        ("audit-w0.000000000006.jsonl#6", 3, "ALLOWED"),
    ]
    assert find_consultations(tmp_path, SOUGHT, since=START.date() + dt.timedelta(days=2))[0].where
    shutil.copy(tmp_path / "audit-w0.jsonl", tmp_path / "audit-w1.jsonl")  # another series
    assert len(find_consultations(tmp_path, SOUGHT)) == 2


def test_rotation_and_retention_settings() -> None:
    default = parse_serve_args([], {})
    assert (default.audit_rotate_mb, default.audit_rotate_daily) == (1024, True)
    assert default.audit_retention_days == 0
    given = parse_serve_args(
        ["--audit-rotate-mb", "64", "--audit-rotate-daily", "0", "--audit-retention-days", "400"],
        {},
    )
    assert (given.audit_rotate_mb, given.audit_rotate_daily, given.audit_retention_days) == (
        64,
        False,
        400,
    )
    assert parse_serve_args([], {"LEZ_AUDIT_RETENTION_DAYS": "90"}).audit_retention_days == 90
    with pytest.raises(ValueError, match="must not be negative"):
        parse_serve_args(["--audit-retention-days", "-1"], {})
    with pytest.raises(ValueError, match="loopback only"):
        ServerConfig(address="0.0.0.0:1", audit_off=True, tls_cert=Path("c"), tls_key=Path("k"),
                     tls_ca=Path("a")).validate()  # fmt: skip


def test_serve_help_lists_rotation_and_retention(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for option in ("--audit-rotate-mb", "--audit-rotate-daily", "--audit-retention-days"):
        assert option in out
    assert json.dumps("x")  # keep json used for the records above
