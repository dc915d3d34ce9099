"""Layer bench: the cost of a day of mutations, and of lookups through a layer.

Builds a synthetic register once (`lez-loader synth` + `lez-loader build`, reused when
present) under `--dir`, then measures in this process:

- `publish_changes` of one day of `--changes` changed keys (80% new version arrays of existing
  plates, 10% new plates, 10% removals) as the first layer over the base: median of `--runs`;
- the same for day `--days` of cumulative layers (each day's layer is the previous one merged
  with the day's changes), and the size of that layer against the base;
- batch lookups (`vehicles_on`, chunks of 50,000 as the server sends them) of `--pairs` pairs
  on the base alone and on base + the day-`--days` layer: median of
  `--lookup-runs` (the two stores taking turns), and their ratios (of medians; of minima, the
  least noisy on a shared machine);
- `compact` of that layer into a new base (once).

Not run by pytest. Example (the figures of the store brief):

    .venv/bin/python -m bench.layer_bench --plates 1000000 --runs 5
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import cli_help
from bench.build_bench import ensure_key, ensure_register
from lez import vehicle
from lez.keys import KEY_BYTES
from lez.store import KeyedRecords, LmdbReader, StoreBuilder, StoreMeta, group_by_key, open_store
from lez.store.overlay import overlay
from lez.store.reader import current_build

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BASE_ID = "bench-base"
CHUNK = 50_000


def ensure_store(plates: int, seed: int, scratch: Path) -> Path:
    """A store root whose build `bench-base` holds the synthetic register."""
    root = scratch / f"store-{plates}-{seed}"
    if not (root / "builds" / BASE_ID).exists():
        extract = ensure_register(plates, seed, scratch)
        subprocess.run(
            [
                str(BIN / "lez-loader"),
                "build",
                str(extract),
                "--key",
                str(ensure_key(scratch)),
                "--out",
                str(root),
                "--rules",
                str(ROOT / "rules"),
                "--snapshot-id",
                BASE_ID,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return root


def day_changes(
    base: KeyedRecords, changes: int, rng: np.random.Generator, day: int
) -> KeyedRecords:
    """One day of changes: new version arrays for existing plates, new plates, removals."""
    edits, adds = int(changes * 0.8), int(changes * 0.1)
    removals = changes - edits - adds
    chosen = rng.choice(base.size, size=edits + removals, replace=False)
    chosen.sort()
    keys = base.key_matrix()
    parts_keys: list[npt.NDArray[np.uint8]] = []
    parts_rows: list[npt.NDArray[np.void]] = []
    edited = chosen[:edits] if edits else chosen[:0]
    # an edit closes the plate's last version on `day` and opens a new one with another euro
    for i in edited.tolist():
        rows = base.rows_of(i).copy()
        last = rows[-1:].copy()
        rows[-1]["valid_to"] = max(day, int(rows[-1]["valid_from"]) + 1)
        last["valid_from"] = rows[-1]["valid_to"]
        last["euro"] = (int(last["euro"][0]) + 1) % 12
        both = np.concatenate([rows, last])
        parts_keys.append(np.repeat(keys[i : i + 1], len(both), axis=0))
        parts_rows.append(both)
    new_keys = rng.integers(0, 256, size=(adds, KEY_BYTES), dtype=np.uint8)
    fresh = vehicle.empty(adds)
    fresh["valid_from"] = day
    fresh["euro"] = rng.integers(1, 12, adds)
    parts_keys.append(new_keys)
    parts_rows.append(fresh)
    table = group_by_key(np.concatenate(parts_keys), np.concatenate(parts_rows))
    removed = chosen[edits:]
    gone = KeyedRecords(
        key_hi=base.key_hi[removed].copy(),
        key_lo=base.key_lo[removed].copy(),
        offsets=np.zeros(len(removed) + 1, dtype=np.uint64),
        records=vehicle.empty(0),
    )
    return overlay(table, gone, keep_empty=True)


def lookup_seconds(
    readers: list[LmdbReader], keys: npt.NDArray[np.uint8], days: npt.NDArray[np.int32], runs: int
) -> list[list[float]]:
    """Batch lookups of all pairs in server-sized chunks on each reader, `runs` times after a
    warm-up, the readers taking turns (so machine noise hits them alike)."""
    out: list[list[float]] = [[] for _ in readers]
    for run in range(runs + 1):
        for reader, seconds in zip(readers, out, strict=True):
            start = time.perf_counter()
            with reader.snapshot() as snap:
                for lo in range(0, len(keys), CHUNK):
                    snap.vehicles_on(keys[lo : lo + CHUNK], days[lo : lo + CHUNK])
            if run:
                seconds.append(time.perf_counter() - start)
    return out


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.layer_bench", __doc__)
    p.add_argument("--plates", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--changes", type=int, default=50_000, help="changed keys a day")
    p.add_argument("--days", type=int, default=30, help="cumulative layers before measuring")
    p.add_argument("--pairs", type=int, default=500_000)
    p.add_argument("--runs", type=int, default=5, help="timed publishes of each kind")
    p.add_argument("--lookup-runs", type=int, default=11, help="timed batches on each store")
    p.add_argument("--dir", type=Path, default=ROOT / "var" / "bench-layers")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)

    root = ensure_store(args.plates, args.seed, args.dir)
    base_dir = root / "builds" / BASE_ID
    builder = StoreBuilder(root, keep=2)
    rng = np.random.default_rng(args.seed)
    base_reader = LmdbReader(base_dir)
    base = base_reader.vehicle_columns
    meta: StoreMeta = base_reader.meta
    results: dict[str, Any] = {"plates": base.size, "changes_a_day": args.changes}
    results["base_bytes"] = (base_dir / "data.mdb").stat().st_size

    # one day over the base
    first_day = []
    day = int(np.max(base.records["valid_from"])) + 1
    for run in range(args.runs):
        changes = day_changes(base, args.changes, rng, day)
        day_meta = replace(meta, snapshot_id=f"first-{time.time_ns()}-{run}")
        start = time.perf_counter()
        layer = builder.publish_changes(changes, meta=day_meta, source=base_dir)
        first_day.append(time.perf_counter() - start)
    results["publish_first_day_s"] = summary(first_day)
    results["first_layer_bytes"] = (layer / "data.mdb").stat().st_size

    # cumulative layers up to day --days
    source = base_dir
    last_days = []
    for n in range(1, args.days + 1):
        changes = day_changes(base, args.changes, rng, day + n)
        day_meta = replace(meta, snapshot_id=f"day{n:02d}-{time.time_ns()}")
        start = time.perf_counter()
        source = builder.publish_changes(changes, meta=day_meta, source=source)
        if n > args.days - args.runs:
            last_days.append(time.perf_counter() - start)
    results[f"publish_day_{args.days}_s"] = summary(last_days)
    layered = open_store(root)
    assert current_build(root) == layered.path and layered.meta.is_layer
    results[f"layer_day_{args.days}_keys"] = layered.meta.layer_keys
    results[f"layer_day_{args.days}_bytes"] = (layered.path / "data.mdb").stat().st_size

    # lookups: base alone against base + the cumulative layer
    known = rng.choice(base.size, size=args.pairs, replace=True)
    keys = base.key_matrix()[known]
    unknown = rng.random(args.pairs) < 0.05
    keys[unknown] = rng.integers(0, 256, size=(int(unknown.sum()), KEY_BYTES), dtype=np.uint8)
    days = rng.integers(day - 3650, day + args.days, args.pairs).astype(np.int32)
    base_reader.warm()
    layered.warm()
    on_base, on_layer = lookup_seconds([base_reader, layered], keys, days, args.lookup_runs)
    results["lookup_base_s"] = summary(on_base)
    results[f"lookup_base_plus_{args.days}_layers_s"] = summary(on_layer)
    results["lookup_ratio_of_medians"] = round(
        statistics.median(on_layer) / statistics.median(on_base), 3
    )
    results["lookup_ratio_of_minima"] = round(min(on_layer) / min(on_base), 3)

    start = time.perf_counter()
    builder.compact(source=layered.path)
    results["compact_s"] = round(time.perf_counter() - start, 2)
    layered.close()
    base_reader.close()
    # leave the store as the bench found it: the base published, the bench's builds removed
    link = root / "current.bench"
    link.symlink_to(Path("builds") / BASE_ID)
    os.replace(link, root / "current")
    for build in (root / "builds").iterdir():
        if build != base_dir:
            shutil.rmtree(build)
    print(json.dumps(results, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
