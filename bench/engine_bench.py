"""Engine-only bench: `lez.rules.evaluate` on records already in memory, one core.

Builds a synthetic chunk (random but plausible vehicles, days around the rule changes, a few
registrations), warms up, then times `evaluate` several times and prints one JSON line with the
median pairs per second. The target is >= 10,000,000 pairs/s (issue 4).

    .venv/bin/python -m bench.engine_bench --pairs 1000000 --runs 7 [--zone Brussels]

`bench.run` runs it (in its own process, since it pins itself to one core) for Antwerpen and
Brussels and keeps the figures in results.json (`engine`).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench import cli_help
from lez import codes
from lez.days import DAY_OPEN, parse_day
from lez.decision import BatchInput
from lez.registrations import REGISTRATION_DTYPE, RegistrationKind
from lez.rules import evaluate, load_catalog_dir
from lez.vehicle import empty

ROOT = Path(__file__).resolve().parents[1]
TARGET_PAIRS_PER_S: Final = 10_000_000


def make_batch(n: int, seed: int) -> BatchInput:
    rng = np.random.default_rng(seed)
    rec = empty(n)
    cats = [
        codes.CATEGORY.id_of(c) for c in ("M1", "M1", "M1", "M1", "N1", "N2", "N3", "L3", "O2", "T")
    ]
    rec["category"] = rng.choice(cats, n)
    rec["category"][rng.random(n) < 0.05] = 0
    rec["kind"] = rng.integers(1, codes.KIND.size, n)
    fuels = [codes.FUEL.id_of(f) for f in ("01", "01", "02", "02", "03", "04", "07", "08", "")]
    rec["fuel"] = rng.choice(fuels, n)
    rec["euro"] = rng.integers(0, codes.EURO.size, n)
    rec["first_registration"] = rng.integers(parse_day("1990-01-01"), parse_day("2025-01-01"), n)
    rec["max_mass"] = rng.integers(900, 20000, n)
    rec["running_mass"] = rng.integers(800, 3000, n)
    rec["co2"] = rng.integers(20, 250, n)
    rec["power_kw"] = rng.integers(40, 200, n)
    rec["flags"] = rng.integers(0, 2, n)
    found = rng.random(n) < 0.97
    belgian = rng.random(n) < 0.93
    days = rng.integers(parse_day("2019-06-01"), parse_day("2026-06-01"), n).astype(np.int32)
    m = n // 100
    reg_query = np.sort(rng.integers(0, n, m)).astype(np.int64)
    regs = np.zeros(m, dtype=REGISTRATION_DTYPE)
    regs["kind"] = rng.integers(1, len(RegistrationKind) + 1, m)
    regs["valid_from"] = days[reg_query] - rng.integers(0, 30, m)
    regs["valid_to"] = np.where(rng.random(m) < 0.5, DAY_OPEN, days[reg_query] + 5)
    regs["region"] = 1
    regs["euro"] = np.where(regs["kind"] == RegistrationKind.EURO_CORRECTION, 9, 0)
    return BatchInput(
        records=rec,
        found=found,
        known=found | (rng.random(n) < 0.5),
        days=days,
        belgian=belgian,
        dutch=~belgian & (rng.random(n) < 0.5),
        invalid=np.zeros(n, dtype=np.uint8),
        reg_query=reg_query,
        reg_rows=regs,
    )


def measure(pairs: int, runs: int, zone_name: str, seed: int) -> dict[str, Any]:
    """`evaluate` on a synthetic chunk of `pairs`: two warm-ups, then `runs` timed calls."""
    catalog = load_catalog_dir(ROOT / "rules")
    revision = catalog.get()
    zone = catalog.zone(zone_name)
    batch = make_batch(pairs, seed)
    for _ in range(2):
        evaluate(revision, zone.id, batch)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        evaluate(revision, zone.id, batch)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "bench": "engine",
        "pairs": pairs,
        "zone": zone.name,
        "revision": revision.id,
        "runs": runs,
        "median_s": round(median, 5),
        "min_s": round(min(times), 5),
        "max_s": round(max(times), 5),
        "pairs_per_s": round(pairs / median),
        "target_pairs_per_s": TARGET_PAIRS_PER_S,
        "ok": pairs / median >= TARGET_PAIRS_PER_S,
    }


def main(argv: list[str] | None = None) -> None:
    ap = cli_help.parser("python -m bench.engine_bench", __doc__)
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--zone", default="Antwerpen")
    ap.add_argument("--seed", type=int, default=4)
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print(json.dumps(measure(args.pairs, args.runs, args.zone, args.seed)))


if __name__ == "__main__":
    main()
