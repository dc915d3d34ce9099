"""`audit find` bench: days of synthetic audit logs as the server writes them, scanned for one
plate's key; a year measured with `--days 365`, else extrapolated.

A year at 1.5 M pairs a day is about 548 M consulted keys: 8.8 GB of logged keys plus the
JSON lines of the calls. The bench writes `--days` days (default 10) with the product's own
writer (`AuditLog`: keyed, checkpointed, rotated each UTC day as the server's default, records
synced in the background) in the server's record shapes: each day `--unary-per-day` one-pair
`Check` calls (keys inline) and the rest of the day's pairs in `CheckStream` calls of
`--stream-pairs` pairs, each recorded chunk by chunk (`--chunk-pairs`, the client's default:
keys in the key log, each pair's outcome packed in the record) and closed by a closing record;
spread over `--workers` series; random keys, with the sought key planted in some calls. The
scan of `--days 365` is a measured year; fewer days are scaled linearly by bytes (the scan is
one pass over the key columns and one byte search over each audit file, so it is linear in
their size) and the figure says so. Scans run with a warm page cache when the files fit in
memory (they were just written); a year that does not is read at the disk's rate.

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
from typing import Any, Final

import numpy as np

from bench import cli_help, report
from lez.decision import Outcome
from lez.keys import KEY_BYTES
from server.audit import AuditLog, KeyBatch
from server.audit_find import find_consultations
from server.audit_keys import AuditKeys

DAYS_IN_YEAR = 365


def _parser() -> argparse.ArgumentParser:
    p = cli_help.parser("python -m bench.audit_find_bench", __doc__)
    p.add_argument("--days", type=int, default=10, help="days of logs to write (default 10)")
    p.add_argument("--pairs-per-day", type=int, default=1_500_000)
    p.add_argument("--unary-per-day", type=int, default=20_000, help="one-pair calls a day")
    p.add_argument("--stream-pairs", type=int, default=100_000, help="pairs per CheckStream")
    p.add_argument("--chunk-pairs", type=int, default=25_000, help="pairs per stream chunk")
    p.add_argument("--workers", type=int, default=2, help="audit series (one per worker)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated logs")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return _parser().parse_args(argv)


_RECORD: Final[dict[str, Any]] = {
    "identity": "bench-client",
    "organisation": "Bench city",
    "roles": ["enforcement"],
    "zone": "Gent",
    "ruleset_revision": "bench",
    "snapshot_id": "bench",
}


def _stream(
    log: AuditLog, rng: np.random.Generator, args: argparse.Namespace, when: dt.datetime,
    sought: bytes | None,
) -> None:  # fmt: skip
    """One CheckStream as the server records it: a record per chunk, then a closing one."""
    stream_id = f"{int(rng.integers(0, 2**63)):016x}"
    planted_at = int(rng.integers(0, args.stream_pairs)) if sought is not None else -1
    chunks = -(-args.stream_pairs // args.chunk_pairs)
    for c in range(chunks):
        first = c * args.chunk_pairs
        n = min(args.chunk_pairs, args.stream_pairs - first)
        blob = rng.integers(0, 256, n * KEY_BYTES, dtype=np.uint8)
        if first <= planted_at < first + n:  # the sought plate passed a camera
            at = (planted_at - first) * KEY_BYTES
            blob[at : at + KEY_BYTES] = np.frombuffer(sought or b"", dtype=np.uint8)
        outcomes = np.where(rng.random(n) < 0.9, Outcome.ALLOWED, Outcome.NOT_ALLOWED)
        batch = KeyBatch()
        batch.add(blob.tobytes())
        log.append(
            rpc="CheckStream", **_RECORD, pairs=n,
            outcomes={"ALLOWED": int((outcomes == Outcome.ALLOWED).sum()),
                      "NOT_ALLOWED": int((outcomes == Outcome.NOT_ALLOWED).sum())},
            keys=batch, pair_outcomes=outcomes.astype(np.uint8).tobytes(), now=when,
            extra={"stream": stream_id, "part": "chunk", "chunk": c, "first_index": first},
        )  # fmt: skip
    log.append(
        rpc="CheckStream", **_RECORD, pairs=args.stream_pairs, outcomes={}, keys=KeyBatch(),
        now=when, extra={"stream": stream_id, "part": "end", "chunks": chunks},
    )  # fmt: skip


def generate(directory: Path, args: argparse.Namespace, sought: bytes) -> dict[str, int]:
    """Write the synthetic logs; returns how many records hold the sought key, by kind."""
    rng = np.random.default_rng(7)
    keys = AuditKeys.from_secret(b"bench audit secret, not a real one")
    logs = [
        AuditLog(
            directory, keys=keys, worker=w, sync_window_s=1.0, preallocate_bytes=8 << 20,
            rotate_daily=True, rotate_bytes=1 << 30,
        )
        for w in range(args.workers)
    ]  # fmt: skip
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
                log = logs[i % len(logs)]
                when = start + dt.timedelta(days=day, seconds=second)
                if i in stream_at:
                    plant = i % 4 == 0
                    _stream(log, rng, args, when, sought if plant else None)
                    planted["stream"] += plant
                    continue
                key = unary_keys[u].tobytes()
                u += 1
                if i % 5000 == 0:  # someone looked the plate up
                    key = sought
                    planted["unary"] += 1
                batch = KeyBatch()
                batch.add(key)
                log.append(
                    rpc="Check", **_RECORD, pairs=1, outcomes={"ALLOWED": 1}, keys=batch,
                    now=when,
                )  # fmt: skip
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Write the days, scan them `--runs` times; the result as a dict."""
    base = args.dir or Path(tempfile.mkdtemp(prefix="lez-audit-bench-"))
    directory = base / "audit"
    shutil.rmtree(directory, ignore_errors=True)
    sought = bytes(range(16))
    try:
        t0 = time.perf_counter()
        planted = generate(directory, args, sought)
        written_s = time.perf_counter() - t0
        scanned = _bytes_scanned(directory)
        files = len(list(directory.glob("audit-w*.jsonl")))
        times = []
        found = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            found = find_consultations(directory, sought)
            times.append(time.perf_counter() - t0)
        expected = planted["unary"] + planted["stream"]
        assert len(found) == expected, f"found {len(found)} calls, planted {expected}"
        streams = [c for c in found if c.rpc == "CheckStream"]
        assert all(c.ended == "OK" and c.outcome in ("ALLOWED", "NOT_ALLOWED") for c in streams)
        median = statistics.median(times)
        scale = DAYS_IN_YEAR / args.days
        measured = args.days >= DAYS_IN_YEAR
        return {
            "bench": "audit_find",
            "command": f"python -m bench.audit_find_bench --days {args.days} --pairs-per-day "
            f"{args.pairs_per_day} --unary-per-day {args.unary_per_day} --stream-pairs "
            f"{args.stream_pairs} --chunk-pairs {args.chunk_pairs} --workers {args.workers} "
            f"--runs {args.runs}",
            "days_written": args.days,
            "pairs_per_day": args.pairs_per_day,
            "pairs_written": args.days * args.pairs_per_day,
            "files": files,
            "bytes_scanned": scanned,
            "calls_found": len(found),
            "generate_s": round(written_s, 1),
            "scan_s_median": round(median, 3),
            "scan_s_min_max": [round(min(times), 3), round(max(times), 3)],
            "scan_gb_per_s": round(scanned / median / 1e9, 2),
            "year_s": round(median if measured else median * scale, 1),
            "year_gb": round(scanned * (1 if measured else scale) / 1e9, 1),
            "year_basis": "measured"
            if measured
            else f"extrapolated x{scale:.1f} from {args.days} days, linear in bytes",
            "note": "warm page cache when the files fit in memory (just written); cpus "
            f"{os.cpu_count()}",
        }
    finally:
        if not args.keep:
            shutil.rmtree(base if args.dir is None else directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    if args.out is not None:
        report.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
