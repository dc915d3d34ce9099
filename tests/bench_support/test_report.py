"""The README's bench table is written from a run, between its markers, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report

ROOT = Path(__file__).resolve().parents[2]


def test_splice_replaces_only_the_marked_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\nbefore\n<!-- bench-table:start (written by make bench) -->\nold table\n"
        "<!-- bench-table:end -->\nafter\n"
    )
    report.splice_readme(readme, "| new | table |\n")
    assert readme.read_text() == (
        "# Title\nbefore\n<!-- bench-table:start (written by make bench) -->\n| new | table |\n"
        "<!-- bench-table:end -->\nafter\n"
    )


def test_splice_refuses_a_readme_without_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# Title\nno markers\n")
    with pytest.raises(SystemExit, match="markers"):
        report.splice_readme(readme, "| t |\n")
    assert readme.read_text() == "# Title\nno markers\n"


def test_the_project_readme_has_the_markers() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(report.README_START) == 1 and text.count(report.README_END) == 1


def test_a_run_records_its_conditions(tmp_path: Path) -> None:
    """Load, pressure stalls (where Linux gives them) and the disk's flush time, leaving no file
    behind; the README's table names the flush at both ends of the run."""
    measured = report.conditions(tmp_path)
    assert measured["flush_ms"] > 0
    assert len(measured["load_average"]) == 3
    if Path("/proc/pressure/io").exists():
        assert "io_some_avg60" in measured["pressure_percent"]
    assert list(tmp_path.iterdir()) == []
    assert measured["memory"]["copy_gb_s"] > 0 and measured["memory"]["random_read_ns"] > 0
    end = {**measured, "flush_ms": 9.5, "memory": {"copy_gb_s": 3.5, "random_read_ns": 77.0}}
    line = report.conditions_line({"conditions_at_start": measured, "conditions_at_end": end})
    assert line is not None and f"{measured['flush_ms']} ms at the start" in line
    assert "9.5 ms at the end" in line
    assert f"memory copied {measured['memory']['copy_gb_s']} and 3.5 GB/s" in line
    assert "and 77.0 ns" in line
    assert report.conditions_line({}) is None


def test_the_audit_table_shows_what_the_two_promises_cost_the_floor() -> None:
    """The README rows put the service's TLS + audit ratio beside the ratio it would have if
    mutual TLS and the durable chunk records cost it what they cost the floor."""
    from bench.report import audit_table

    def part(ratio: float, ceiling: float) -> dict[str, object]:
        return {
            "tls_audit": {"median_s": 0.17}, "plain_no_audit": {"median_s": 0.15},
            "plain_audit": {"median_s": 0.16}, "ratio": ratio,
            "tls_floor": {"seconds": 0.01, "ratio": 1.17, "service_ratio_if_only_tls": 1.07},
            "promises_floor": {"seconds": 0.02, "ratio": 1.35,
                               "service_ratio_if_only_promises": ceiling},
        }  # fmt: skip

    stream = part(1.19, 1.16) | {
        "pairs": 500_000, "ratio_audit_alone": 1.1, "bar": "at most 1.10",
        "warm_client": part(1.13, 1.12) | {"processor_time": {
            "cpu_ms": {"plain_no_audit": 257.2}, "cores_busy_plain": 1.88,
            "audit_cpu_ms": 16.7, "tls_cpu_ms": 23.1, "cpu_ratio": 1.155,
        }},
    }  # fmt: skip
    text = "\n".join(audit_table({"stream": stream}))
    assert "1.16x, against its 1.19x" in text and "1.12x, against its 1.13x" in text
    assert "257 ms plain TCP with the audit off (1.88 of the 2 cores busy)" in text
    assert "the audit +17 ms, mutual TLS +23 ms: 1.16x" in text
    assert "round by round" not in text  # runs from before the paired ratios


def test_the_audit_table_gives_the_round_by_round_ratios_when_measured() -> None:
    from bench.audit_bench import _paired_ratio
    from bench.report import audit_table

    times = {"tls_audit": [0.20, 0.11, 0.33], "plain_no_audit": [0.20, 0.10, 0.30]}
    paired = _paired_ratio(times)
    assert paired == {"median": 1.1, "min": 1.0, "max": 1.1}  # the medians' ratio: 1.0
    stream = {
        "tls_audit": {"median_s": 0.20}, "plain_no_audit": {"median_s": 0.20}, "ratio": 1.0,
        "pairs": 3, "ratio_audit_alone": 1.0, "bar": "at most 1.10", "paired_ratio": paired,
    }  # fmt: skip
    text = "\n".join(audit_table({"stream": stream}))
    assert "round by round 1.10x (1.00-1.10)" in text


def test_the_audit_table_shows_what_the_audit_promise_leaves_of_the_unary_ceiling() -> None:
    """The unary ladder's audit floor gets its own row: its share of the flush ceiling and the
    service's share of it, beside the bar's share."""
    point = {"calls_per_s": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0}
    unary = {
        "ceiling_grpc_plus_flush": {**point, "calls_per_s": 1800.0},
        "audit_floor": {**point, "calls_per_s": 1530.0, "share_of_ceiling": 0.85},
        "sequential": {**point, "calls_per_s": 1150.0},
        "sequential_share_of_ceiling": 0.639,
        "sequential_share_of_audit_floor": 0.752,
        "bar": "at least 0.70 of the ceiling",
        "concurrent": {**point, "callers": 32, "client_processes": 2, "calls_per_s": 1500.0},
        "concurrent_speedup_over_sequential": 1.3,
    }
    lines = report.audit_table({"unary": unary})
    (row,) = [line for line in lines if "audit promise alone" in line]
    assert "85% of the ceiling (1,530 calls/s)" in row and "the service: 75% of it" in row
    assert any("64% (1,150 vs 1,800 calls/s" in line for line in lines)


def test_the_unary_row_gives_each_worker_s_share_of_its_own_core_s_ceiling() -> None:
    """The ladder times the service on each worker against floors pinned to that worker's core;
    the row gives the mean and each worker's share, rate and ceiling."""
    point = {"calls_per_s": 1000.0, "p50_ms": 1.0, "p99_ms": 2.0}
    unary = {
        "ceiling_grpc_plus_flush": {**point, "calls_per_s": 1500.0},
        "sequential": {**point, "calls_per_s": 1000.0},
        "sequential_share_of_ceiling": 0.667,
        "by_worker": {
            "worker 0": {"sequential_share_of_ceiling": 0.65, "sequential_calls_per_s": 910.0,
                         "ceiling_calls_per_s": 1400.0},
            "worker 1": {"sequential_share_of_ceiling": 0.684, "sequential_calls_per_s": 1090.0,
                         "ceiling_calls_per_s": 1594.0},
        },
        "bar": "at least 0.70 of the ceiling",
        "concurrent": {**point, "callers": 32, "client_processes": 2, "calls_per_s": 1500.0},
        "concurrent_speedup_over_sequential": 1.5,
    }  # fmt: skip
    (row,) = [line for line in report.audit_table({"unary": unary}) if "one sequential" in line]
    assert "on the same core, mean of the workers" in row and "67% (1,000 vs 1,500" in row
    assert "worker 0 65% (910 vs 1,400)" in row and "worker 1 68% (1,090 vs 1,594)" in row
