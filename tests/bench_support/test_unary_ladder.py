"""The unary ladder's figures: each worker held to the ceiling of its own core."""

from __future__ import annotations

from bench.audit_bench import _ladder_figures


def _run(calls_per_s: float, cpu_us: float) -> dict[str, float]:
    return {"calls": 2 * calls_per_s, "calls_per_s": calls_per_s, "p50_ms": 1.0, "p99_ms": 2.0,
            "mean_ms": 1.0, "server_cpu_us_per_call": cpu_us}  # fmt: skip


def test_each_worker_s_share_is_of_its_own_core_s_ceiling_and_the_headline_is_their_mean() -> None:
    rows = {
        ("ceiling", 0): [_run(1500, 300), _run(1400, 310)],
        ("ceiling", 1): [_run(1800, 280), _run(1900, 290)],
        ("audit_floor", 0): [_run(1300, 400), _run(1200, 410)],
        ("audit_floor", 1): [_run(1500, 380), _run(1600, 390)],
        ("sequential", 0): [_run(1000, 650), _run(950, 660)],
        ("sequential", 1): [_run(1100, 640), _run(1150, 630)],
    }
    out = _ladder_figures(rows, {"calls_per_s": 1500.0}, runs=2, seconds=2.0)
    assert out["by_worker"]["worker 0"]["sequential_share_of_ceiling"] == 0.672  # 975 / 1450
    assert out["by_worker"]["worker 1"]["sequential_share_of_ceiling"] == 0.608  # 1125 / 1850
    assert out["sequential_share_of_ceiling"] == 0.64  # not 1050 / 1650 = 0.636
    assert out["ceiling_grpc_plus_flush"]["calls_per_s"] == 1650.0
    assert out["server_cpu_us_per_call_beyond_ceiling"] == 350.0
    assert out["share_min_max_of_pairs"] == [0.605, 0.679]  # 1150/1900, 950/1400
    assert out["meets_bar"] is False
