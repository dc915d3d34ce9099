"""The batch lookup alone: the native core (`lez._lookup`) against the NumPy search.

    python -m bench.lookup_bench --store var/bench/store-8000000-1 --runs 7

Queries the store's vehicles table the way a stream chunk does (25,000 keys a call, 90 % of
them stored, 10 % not, one day), one core, in this process: the key search (`find_halves`) and
the version valid on the day (`fill_versions`), each in the native core and in NumPy, over the
same queries. Prints and writes (`--out`) the median and min-max nanoseconds per query, and
checks both paths give the same answers.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import cli_help, report
from lez.store import open_store
from lez.store.columns import (
    KeyedRecords,
    VehicleLookup,
    fill_versions_native,
    fill_versions_numpy,
)

CHUNK = 25_000


def _lookup(fill: Any, table: KeyedRecords, idx: np.ndarray, days: np.ndarray) -> VehicleLookup:
    lookup = VehicleLookup.empty(len(idx))
    fill(lookup, table, idx, days)
    return lookup


def measure(store: Path, queries: int, runs: int, day: int) -> dict[str, Any]:
    reader = open_store(store)
    try:
        table = reader.vehicle_columns
        rng = np.random.default_rng(7)
        rows = rng.integers(0, table.size, queries)
        hi, lo = table.key_hi[rows].copy(), table.key_lo[rows].copy()
        absent = rng.random(queries) < 0.10
        lo[absent] ^= np.uint64(0x5A5A5A5A5A5A5A5A)  # a key beside a stored one: not found
        days = np.full(CHUNK, day, dtype=np.int32)
        spans = [(s, min(s + CHUNK, queries)) for s in range(0, queries, CHUNK)]
        paths = {
            "native": (table.find_halves_native, fill_versions_native),
            "numpy": (table.find_halves_numpy, fill_versions_numpy),
        }
        times: dict[str, dict[str, list[float]]] = {p: {"find": [], "fill": []} for p in paths}
        answers: dict[str, list[bytes]] = {}
        for run in range(runs + 1):  # the first run warms the pages and is not counted
            for name, (find, fill) in paths.items():
                spent = {"find": 0.0, "fill": 0.0}
                out: list[bytes] = []
                for s, e in spans:
                    start = time.perf_counter()
                    idx = find(hi[s:e], lo[s:e])
                    mid = time.perf_counter()
                    lookup = _lookup(fill, table, idx, days[: e - s])
                    spent["find"] += mid - start
                    spent["fill"] += time.perf_counter() - mid
                    if run == 0:
                        out.append(idx.tobytes() + lookup.records.tobytes())
                if run == 0:
                    answers[name] = out
                else:
                    for stage, seconds in spent.items():
                        times[name][stage].append(seconds)
        if answers["native"] != answers["numpy"]:
            raise SystemExit("the native and NumPy lookups disagree")
    finally:
        reader.close()

    def ns(values: list[float]) -> dict[str, float]:
        per = [v / queries * 1e9 for v in values]
        return {
            "median": round(statistics.median(per), 1),
            "min": round(min(per), 1),
            "max": round(max(per), 1),
        }

    figures = {p: {stage: ns(v) for stage, v in t.items()} for p, t in times.items()}
    total = {
        p: statistics.median(
            [f + g for f, g in zip(times[p]["find"], times[p]["fill"], strict=True)]
        )
        for p in paths
    }
    return {
        "bench": "lookup",
        "store": str(store),
        "plates": int(table.size),
        "queries": queries,
        "chunk": CHUNK,
        "runs": runs,
        "ns_per_query": figures,
        "numpy_over_native": round(total["numpy"] / total["native"], 2),
        "same_answers": True,
        "machine": report.machine(),
        "commit": report.commit(),
        "date": report.now(),
    }


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.lookup_bench", __doc__)
    p.add_argument("--store", type=Path, required=True, help="a store root (lez-loader build)")
    p.add_argument("--queries", type=int, default=500_000, help="keys looked up per run")
    p.add_argument("--runs", type=int, default=7, help="timed runs (after one warm-up)")
    p.add_argument("--day", type=int, default=20_750, help="the day of every query (days)")
    p.add_argument("--out", type=Path, help="write the figures to this JSON file")
    a = p.parse_args(argv)
    res = measure(a.store, a.queries, a.runs, a.day)
    if a.out:
        report.write_json(a.out, res)
    for path, stages in res["ns_per_query"].items():
        print(f"{path:>6}: " + ", ".join(f"{s} {v['median']} ns" for s, v in stages.items()))
    print(f"NumPy takes {res['numpy_over_native']}x the native time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
