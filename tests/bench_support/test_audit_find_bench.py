"""The `audit find` bench on a tiny synthetic log: it writes the server's record shapes into
rotated daily files and finds exactly the calls it planted the sought key in."""

from __future__ import annotations

from pathlib import Path

from bench import audit_find_bench


def test_the_bench_finds_what_it_planted(tmp_path: Path) -> None:
    args = audit_find_bench.parse(
        [
            "--days",
            "2",
            "--pairs-per-day",
            "7001",
            "--unary-per-day",
            "5001",
            "--stream-pairs",
            "1000",
            "--chunk-pairs",
            "300",
            "--runs",
            "1",
            "--dir",
            str(tmp_path),
        ]
    )
    result = audit_find_bench.run(args)
    assert result["files"] == 2 * 2  # a file a day for each of the 2 series
    assert result["calls_found"] >= 2 * 2  # the planted unary checks, at least
    assert result["year_basis"].startswith("extrapolated")
    assert not (tmp_path / "audit").exists()  # cleaned up
