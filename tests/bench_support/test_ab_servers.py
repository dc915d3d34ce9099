"""The old-against-new comparison of single checks compares runs served by the same worker."""

from __future__ import annotations

from bench.ab_servers import by_worker


def test_runs_are_compared_worker_by_worker() -> None:
    """Old runs all on the fast worker and new runs mostly on the slow one: the medians of all
    runs would call the new code slower, the comparison worker by worker says it is faster."""
    calls = {"old": [1100.0, 1110.0, 1120.0], "new": [1010.0, 1020.0, 1150.0]}
    served_by = {"old": [1, 1, 1], "new": [0, 0, 1]}
    got = by_worker(calls, served_by)
    assert got["worker 1"] == {"old": 1110, "old_runs": 3, "new": 1150, "new_runs": 1,
                               "new_over_old": round(1150 / 1110, 3)}  # fmt: skip
    assert got["worker 0"] == {"new": 1015, "new_runs": 2}  # no old run there: no ratio
