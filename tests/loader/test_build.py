"""The register build: rejects with lines, atomic publish, crash safety, no raw plates."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lez import codes, plates
from lez.days import to_day
from lez.errors import BuildFailed
from lez.keys import PlateKeyer
from lez.store import open_store
from lez.store.reader import current_build
from loader.build import build_store
from loader.config import LoaderConfig
from tests.support.extracts import row, write_extract

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, key_file: Path, **kw: object) -> LoaderConfig:
    kw.setdefault("rules_dir", REPO / "rules")  # a build without rules is refused
    return LoaderConfig(
        store_root=tmp_path / "store",
        key_file=key_file,
        reports_dir=tmp_path / "store" / "reports",
        workers=1,
        **kw,  # type: ignore[arg-type]
    )


def _lookup(root: Path, keyer: PlateKeyer, plate: str, day: int) -> np.void | None:
    reader = open_store(root, expected_key_id=keyer.key_id)
    try:
        cm = plates.countries_matrix("BE", 1)
        pm, rule = plates.normalise_many(plates.as_matrix([plate]), cm)
        assert rule[0] == plates.PlateRule.OK
        k = keyer.key_matrix(cm, pm)
        with reader.snapshot() as snap:
            got = snap.vehicles_on(k, np.array([day], dtype=np.int32))
            return got.records[0].copy() if got.found[0] else None
    finally:
        reader.close()


def test_bad_rows_are_reported_with_their_line(
    tmp_path: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    rows = [
        row("1-ABC-234"),  # line 2
        row("1-ABC-999", first_registration="2016-02-30"),  # line 3: no such date
        row("bad#plate"),  # line 4
        row("1-DEF-111", seats="many"),  # line 5
        row("1-GHI-222", valid_to="2010-01-01"),  # line 6: ends before it starts
        row("1-JKL-333", euro="Z9"),  # line 7: unknown code -> UNKNOWN, not a reject
        row("1-JKL-333", valid_from="2017-01-01"),  # line 8: overlaps line 7
        row("2-ELE-001", electric=""),  # line 10: blank indicator is fine
        row("2-ELE-002", electric="yes"),  # line 11
    ]
    extract = write_extract(tmp_path / "x.csv", rows, raw_lines={3: "1-MNO-444,N,M1"})
    config = _config(tmp_path, key_file, max_reject_share=0.9)
    report = build_store(config, extract)
    got = Path(report.rejects_file).read_text().splitlines()
    assert got == [
        "line,column,rule",
        "3,first_registration,date not YYYY-MM-DD",
        "4,plate,plate bad_character",
        "5,*,not 19 columns",
        "6,seats,not a whole number from 0 to 254",
        "7,valid_to,valid_to not after valid_from",
        "9,valid_from,versions of a plate overlap",
        "11,electric,electric must be 1, 0 or blank",
    ]
    assert report.rows_read == 10 and report.rows_rejected == 7
    assert report.unknown_codes["euro"]["unrecognised"] == 1
    assert report.plates == 3 and report.published
    for line in got:
        assert "ABC" not in line and "plate#" not in line
    rec = _lookup(config.store_root, keyer, "1abc234", 17000)
    assert rec is not None and int(rec["euro"]) == codes.EURO.id_of("6")
    rec = _lookup(config.store_root, keyer, "1-JKL-333", 17000)
    assert rec is not None and int(rec["euro"]) == 0


def test_too_many_rejects_fails_and_keeps_the_published_store(
    tmp_path: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    config = _config(tmp_path, key_file)
    good = write_extract(tmp_path / "good.csv", [row("1-ABC-234"), row("2-XYZ-999")])
    first = build_store(config, good)
    bad = write_extract(tmp_path / "bad.csv", [row("1-ABC-234", fuel="02"), row("###")])
    with pytest.raises(BuildFailed, match="over the limit"):
        build_store(config, bad)
    assert current_build(config.store_root) == Path(first.build_dir)
    assert _lookup(config.store_root, keyer, "2XYZ999", 17000) is not None


def test_rebuild_increments_the_snapshot_and_keeps_two_builds(
    tmp_path: Path, key_file: Path
) -> None:
    config = _config(tmp_path, key_file)
    extract = write_extract(tmp_path / "x.csv", [row("1-ABC-234")])
    ids = [build_store(config, extract).snapshot_id for _ in range(3)]
    assert len(set(ids)) == 3
    reader = open_store(config.store_root)
    assert reader.meta.snapshot_seq == 3 and reader.meta.snapshot_id == ids[-1]
    reader.close()
    assert len(list((config.store_root / "builds").iterdir())) == 2


def test_store_contains_no_raw_plate(tmp_path: Path, key_file: Path) -> None:
    numbers = [
        f"1-{a}{b}{c}-{n:03d}"
        for a, b, c, n in zip("ABCDEFGH", "JKLMNPRS", "TUVWXYZA", range(100, 900, 100), strict=True)
    ]
    extract = write_extract(tmp_path / "x.csv", [row(p) for p in numbers])
    report = build_store(_config(tmp_path, key_file), extract)
    data = (Path(report.build_dir) / "data.mdb").read_bytes()
    for p in numbers:
        for form in (p, p.replace("-", ""), p.lower(), p.replace("-", "").lower()):
            assert form.encode() not in data
    for path in (tmp_path / "store" / "reports").iterdir():
        text = path.read_text()
        assert not any(p.replace("-", "") in text or p in text for p in numbers)


def test_store_is_a_standard_lmdb(tmp_path: Path, key_file: Path) -> None:
    extract = write_extract(tmp_path / "x.csv", [row("1-ABC-234"), row("2-ABC-234")])
    report = build_store(_config(tmp_path, key_file), extract)
    mdb_stat = shutil.which("mdb_stat")
    assert mdb_stat, "mdb_stat (Debian lmdb-utils) is needed: `make tools` installs it"
    out = subprocess.run(
        [mdb_stat, "-a", report.build_dir], capture_output=True, text=True, check=True
    ).stdout
    assert "Status of columns" in out and "Status of meta" in out
    assert "Status of rulesets" in out
    assert report.plates == 2


def test_killed_build_leaves_the_published_store_intact(
    tmp_path: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    config = _config(tmp_path, key_file)
    small = write_extract(tmp_path / "small.csv", [row("1-ABC-234", euro="4")])
    first = build_store(config, small)
    big_rows = (row(f"{i:07d}A", euro="6") for i in range(300_000))
    big = write_extract(tmp_path / "big.csv", big_rows)
    cmd = [
        sys.executable,
        "-m",
        "loader",
        "build",
        str(big),
        "--key",
        str(key_file),
        "--out",
        str(config.store_root),
        "--rules",
        str(REPO / "rules"),
        "--workers",
        "1",
    ]
    killed_during_write = False
    for _attempt in range(3):
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        tmp_builds: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            tmp_builds = list((config.store_root / "builds").glob("*.tmp"))
            if tmp_builds:
                break
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_during_write = bool(tmp_builds)
        if killed_during_write:
            break
    assert killed_during_write, "the build finished before it could be killed"
    assert current_build(config.store_root) == Path(first.build_dir)
    rec = _lookup(config.store_root, keyer, "1ABC234", 17000)
    assert rec is not None and int(rec["euro"]) == codes.EURO.id_of("4")
    # the next build clears the half-written one and publishes
    again = build_store(config, small)
    assert not list((config.store_root / "builds").glob("*.tmp"))
    assert current_build(config.store_root) == Path(again.build_dir)


def test_cli_help_and_clear_errors(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "loader"]
    out = subprocess.run([*run, "--help"], cwd=REPO, capture_output=True, text=True)
    for command in ("keygen", "synth", "build", "registrations", "info"):
        assert command in out.stdout
    out = subprocess.run(
        [*run, "build", str(tmp_path / "nope.csv"), "--key", str(tmp_path / "k")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "keygen" in out.stderr


def test_retention_purges_plates_crossed_out_long_ago(
    tmp_path: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    rows = [
        # crossed out a year before the extract date: purged with its whole history
        row("1-OLD-001", valid_from="2015-01-01", valid_to="2020-01-01", status="A"),
        row("1-OLD-001", valid_from="2020-01-01", valid_to="2025-11-01", status="S"),
        # still in use: its old version stays (appeals about 2016 remain answerable)
        row("1-LIV-002", valid_from="2010-01-01", valid_to="2016-06-01", euro="4"),
        row("1-LIV-002", valid_from="2016-06-01", euro="6"),
        # crossed out a month ago: kept until six months have passed
        row("1-REC-003", valid_from="2018-01-01", valid_to="2026-10-01", status="S"),
    ]
    extract = write_extract(tmp_path / "x.csv", rows)
    config = _config(tmp_path, key_file, source_date=dt.date(2026, 11, 1))
    report = build_store(config, extract)
    assert report.versions_purged == 2 and report.plates == 2
    old_day = to_day(dt.date(2012, 1, 1))
    assert _lookup(config.store_root, keyer, "1LIV002", old_day) is not None
    assert _lookup(config.store_root, keyer, "1REC003", to_day(dt.date(2026, 9, 1))) is not None
    assert _lookup(config.store_root, keyer, "1OLD001", to_day(dt.date(2025, 1, 1))) is None


def test_rebuild_keeps_the_cities_registrations(
    tmp_path: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    from loader.registrations_import import import_registrations

    config = _config(tmp_path, key_file, rules_dir=REPO / "rules")
    extract = write_extract(tmp_path / "x.csv", [row("1-ABC-234")])
    build_store(config, extract)
    regs = tmp_path / "regs.csv"
    regs.write_text(
        "plate,country,zone,region,kind,valid_from,valid_until,euro\n"
        "AB-123-CD,FR,Antwerpen,,FOREIGN_VEHICLE,2026-01-01,,\n"
    )
    import_registrations(config.store_root, regs, keyer)
    again = build_store(config, extract)
    reader = open_store(config.store_root, expected_key_id=keyer.key_id)
    try:
        assert reader.meta.registrations == 1 and reader.meta.snapshot_seq == 3
        assert reader.meta.snapshot_id == again.snapshot_id
        with reader.snapshot() as snap:
            cty = plates.countries_matrix("FR", 1)
            pm, _ = plates.normalise_many(plates.as_matrix(["AB123CD"]), cty)
            q, rows = snap.registrations_of(keyer.key_matrix(cty, pm))
            assert q.tolist() == [0] and len(rows) == 1
    finally:
        reader.close()


def test_build_reports_each_stage_within_its_wall_time(tmp_path: Path, key_file: Path) -> None:
    """The report names every stage of a build once, and the stages are parts of the build's
    own time (they never add up to more than the call took)."""
    extract = write_extract(tmp_path / "x.csv", [row(f"1-ABC-{i:03d}") for i in range(200)])
    start = time.perf_counter()
    report = build_store(_config(tmp_path, key_file), extract)
    wall = time.perf_counter() - start
    assert list(report.seconds) == [
        "read_csv", "validate_and_key", "sort", "group", "rules", "quality", "write", "sync",
        "verify", "publish",
    ]  # fmt: skip
    assert all(v >= 0 for v in report.seconds.values())
    assert sum(report.seconds.values()) <= wall + 0.01  # rounding of ten stages to 1 ms
