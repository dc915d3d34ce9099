"""Cost of the shared quota counters (`server.quotas`) per call.

Each single check charges three counters (checks this minute, checks today, pairs today) in one
SQLite transaction shared by the workers; each stream chunk charges one. The bench times
`charge_check` alone in one process, then in `--processes` processes charging the same
organisation at once (the workers of one server contending for the write lock), and a stream
lease taken and given back. Times are per call, median of `--runs` runs of `--calls` calls.

    python -m bench.quota_bench [--calls 20000] [--processes 2] [--runs 5] [--out F]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from bench import cli_help, report
from server.auth import Identity, Role
from server.quotas import QuotaStore

WHO = Identity(
    identity="bench",
    organisation="Bench",
    roles=frozenset({Role.DESK}),
    checks_per_minute=10**9,
    checks_per_day=10**9,
    pairs_per_day=10**12,
    concurrent_streams=10**6,
)


def _parser() -> argparse.ArgumentParser:
    p = cli_help.parser("python -m bench.quota_bench", __doc__)
    p.add_argument("--calls", type=int, default=20_000, help="charges per process and run")
    p.add_argument("--processes", type=int, default=2, help="processes contending (workers)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    return p


def _charge(state: str, calls: int, start: multiprocessing.synchronize.Event) -> float:
    with QuotaStore(Path(state)) as quotas:
        quotas.charge_check(WHO)  # open and warm
        start.wait()
        began = time.perf_counter()
        for _ in range(calls):
            quotas.charge_check(WHO)
        return (time.perf_counter() - began) / calls


def _charge_worker(
    state: str, calls: int, start: multiprocessing.synchronize.Event,
    out: multiprocessing.Queue[float],
) -> None:  # fmt: skip
    out.put(_charge(state, calls, start))


def _contended(state: Path, calls: int, processes: int) -> float:
    """Mean time per charge seen by each of `processes` processes charging at once."""
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_charge_worker, args=(str(state), calls, start, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    times: list[float] = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return statistics.mean(times)


def _lease(state: Path, calls: int) -> float:
    with QuotaStore(state) as quotas:
        began = time.perf_counter()
        for _ in range(calls):
            with quotas.stream_lease(WHO):
                pass
        return (time.perf_counter() - began) / calls


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    alone, contended, lease = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="lez-quota-bench-") as tmp:
            ctx = multiprocessing.get_context("fork")
            event = ctx.Event()
            event.set()
            alone.append(_charge(tmp, args.calls, event))
            contended.append(_contended(Path(tmp), args.calls, args.processes))
            lease.append(_lease(Path(tmp), args.calls // 10))
    us = 1e6
    result = {
        "charge_check_us": statistics.median(alone) * us,
        "charge_check_us_min_max": [min(alone) * us, max(alone) * us],
        f"charge_check_us_{args.processes}_processes": statistics.median(contended) * us,
        "stream_lease_us": statistics.median(lease) * us,
        "calls": args.calls,
        "runs": args.runs,
        "command": "python -m bench.quota_bench "
        f"--calls {args.calls} --processes {args.processes} --runs {args.runs}",
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        report.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
