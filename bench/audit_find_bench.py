"""`audit find` bench: a synthetic part of a year of audit logs, scanned for one plate's key,
extrapolated to a year.

A year at 1.5 M pairs a day is about 548 M consulted keys: 8.8 GB of sidecar keys plus the
JSON lines of the calls. Writing that much takes longer than the scan and fills the disk, so
the bench writes `--days` days (default 10) with the product's own writer (`AuditLog`, keyed,
checkpointed, records synced in the background) and scales the measured scan time linearly by
bytes (the scan is one pass over the key columns and one byte search over each audit file, so
it is linear in their size; the figure says it was extrapolated).

Each day: `--unary-per-day` one-pair calls (keys inline) and the rest of the day's pairs in
`CheckStream` calls of `--stream-pairs` pairs (keys in sidecars), spread over `--workers` audit
files; random keys, with the sought key planted in some calls. Scans run with a warm page cache
(the files were just written): on a cold cache the disk's read rate bounds the scan instead.

    python -m bench.audit_find_bench [--days 10] [--pairs-per-day 1500000] [--runs 3] [--out F]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from lez.keys import KEY_BYTES
from server.audit import AuditLog, KeyBatch
from server.audit_find import find_consultations
from server.audit_keys import AuditKeys

DAYS_IN_YEAR = 365


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.audit_find_bench", description=__doc__)
    p.add_argument("--days", type=int, default=10, help="days of logs to write (default 10)")
    p.add_argument("--pairs-per-day", type=int, default=1_500_000)
    p.add_argument("--unary-per-day", type=int, default=20_000, help="one-pair calls a day")
    p.add_argument("--stream-pairs", type=int, default=100_000, help="pairs per CheckStream")
    p.add_argument("--workers", type=int, default=2, help="audit files (one per worker)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated logs")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    return p


def generate(directory: Path, args: argparse.Namespace, sought: bytes) -> dict[str, int]:
    """Write the synthetic logs; returns how many calls hold the sought key, by kind."""
    rng = np.random.default_rng(7)
    keys = AuditKeys.from_secret(b"bench audit secret, not a real one")
    logs = [
        AuditLog(directory, keys=keys, worker=w, sync_window_s=1.0, preallocate_bytes=64 << 20)
        for w in range(args.workers)
    ]
    planted = {"unary": 0, "stream": 0}
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    streams = max(0, args.pairs_per_day - args.unary_per_day) // args.stream_pairs
    try:
        for day in range(args.days):
            calls = args.unary_per_day + streams
            seconds = np.sort(rng.integers(0, 86_400, calls))
            stream_at = set(rng.choice(calls, streams, replace=False).tolist())
            unary_keys = rng.integers(0, 256, (args.unary_per_day, KEY_BYTES), dtype=np.uint8)
            u = 0
            for i, second in enumerate(seconds.tolist()):
                batch = KeyBatch()
                if i in stream_at:
                    blob = rng.integers(0, 256, args.stream_pairs * KEY_BYTES, dtype=np.uint8)
                    if i % 4 == 0:  # the sought plate passed a camera
                        at = int(rng.integers(0, args.stream_pairs)) * KEY_BYTES
                        blob[at : at + KEY_BYTES] = np.frombuffer(sought, dtype=np.uint8)
                        planted["stream"] += 1
                    batch.add(blob.tobytes())
                    rpc, pairs = "CheckStream", args.stream_pairs
                else:
                    key = unary_keys[u].tobytes()
                    u += 1
                    if i % 5000 == 0:  # someone looked the plate up
                        key = sought
                        planted["unary"] += 1
                    batch.add(key)
                    rpc, pairs = "Check", 1
                logs[i % len(logs)].record(
                    rpc=rpc,
                    identity="bench-client",
                    organisation="Bench city",
                    roles=["enforcement"],
                    zone="Gent",
                    ruleset_revision="bench",
                    snapshot_id="bench",
                    pairs=pairs,
                    outcomes={"ALLOWED": pairs},
                    keys=batch,
                    now=start + dt.timedelta(days=day, seconds=second),
                )
    finally:
        for log in logs:
            log.close()
    return planted


def _bytes_scanned(directory: Path) -> int:
    total = 0
    for path in directory.rglob("*"):
        if path.is_file() and (path.suffix == ".bin" or path.name.endswith(".jsonl")):
            if path.parent.name == "checkpoints":
                continue
            total += (
                len(path.read_bytes().rstrip(b"\0"))
                if path.suffix == ".jsonl"
                else (path.stat().st_size)
            )
    return total


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    base = args.dir or Path(tempfile.mkdtemp(prefix="lez-audit-bench-"))
    directory = base / "audit"
    sought = bytes(range(16))
    try:
        t0 = time.perf_counter()
        planted = generate(directory, args, sought)
        written_s = time.perf_counter() - t0
        scanned = _bytes_scanned(directory)
        times = []
        found = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            found = find_consultations(directory, sought)
            times.append(time.perf_counter() - t0)
        expected = planted["unary"] + planted["stream"]
        assert len(found) == expected, f"found {len(found)} calls, planted {expected}"
        median = statistics.median(times)
        scale = DAYS_IN_YEAR / args.days
        result = {
            "bench": "audit_find",
            "command": f"python -m bench.audit_find_bench --days {args.days} --pairs-per-day "
            f"{args.pairs_per_day} --unary-per-day {args.unary_per_day} --stream-pairs "
            f"{args.stream_pairs} --workers {args.workers} --runs {args.runs}",
            "days_written": args.days,
            "pairs_written": args.days * args.pairs_per_day,
            "bytes_scanned": scanned,
            "calls_found": len(found),
            "generate_s": round(written_s, 1),
            "scan_s_median": round(median, 3),
            "scan_s_min_max": [round(min(times), 3), round(max(times), 3)],
            "scan_gb_per_s": round(scanned / median / 1e9, 2),
            "year_extrapolated_s": round(median * scale, 1),
            "year_extrapolated_gb": round(scanned * scale / 1e9, 1),
            "note": f"measured on {args.days} days, scaled x{scale:.1f} to a year (linear in "
            "bytes); warm page cache (files just written); cpus "
            f"{os.cpu_count()}",
        }
        print(json.dumps(result, indent=2))
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(base if args.dir is None else directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
