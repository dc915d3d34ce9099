"""This code's server against an earlier commit's, on one store, alternated in one run.

    python -m bench.ab_servers --old c0e1bcd --plates 8000000 --rounds 7

Checks out `--old` into a git worktree under `--scratch` (git-ignored `var/bench/`), builds its
native cores in place, and starts both servers (2 workers each, plain TCP on loopback) on
the same base store of the bench (`var/bench/store-<plates>-<seed>`, made by `make bench`).
Each round runs the 500,000-pair `CheckStream` (a fresh client), the same batch pre-keyed
(one client per server kept for every round, after an untimed warm-up batch, as `make bench`
does) and then 1.5 s of sequential unary `Check` on each worker of one server and then the
other, so drift of the machine hits both alike. Prints the medians, and for single checks
every run, the mean and a comparison worker by worker (`unary_by_worker`): the kernel places a
fresh client's connection on a worker by a hash of its ports, and single checks served by one
core ran 10-14% faster than by the other on the bench machine (where the disk's interrupts
go to one core); one run of 14 rounds, before each server's runs were spread over its workers,
put every old run on worker 1 and every new one on worker 0. So each caller reconnects until
the worker it is to time serves it (`ServerInfo.worker`).
`--unary-only` skips the streams (more rounds of single checks in the same time).
Used to show that a restructuring left the figures where they were.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from bench import build_bench, cli_help, sync_bench
from bench.stream import StreamClient, free_port, fresh_audit_dir, unary

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
UNARY_S = 1.5
"""Seconds of single checks a round on each worker of each server."""


@contextmanager
def worktree(rev: str, scratch: Path) -> Iterator[Path]:
    path = scratch / f"ab-{rev}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                   capture_output=True, check=False)  # fmt: skip
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(path), rev],
                   check=True)  # fmt: skip
    try:
        subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
                       cwd=path, check=True, capture_output=True)  # fmt: skip
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                       check=False)  # fmt: skip


@contextmanager
def server(code: Path, store: Path, key: Path, audit: Path) -> Iterator[str]:
    """`python -m server serve` of the code under `code` (its packages first on the path)."""
    from clients import LezClient

    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--store-root", str(store), "--key-file",
         str(key), "--workers", str(WORKERS), "--address", address,
         "--audit-dir", str(fresh_audit_dir(audit)),
         "--log-level", "WARNING"],
        cwd=code, env=dict(os.environ, PYTHONPATH=str(code)), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        with LezClient([address], timeout_s=120) as client:
            client.wait_until_serving(timeout=120)
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def by_worker(
    calls: dict[str, list[float]], served_by: dict[str, list[int]]
) -> dict[str, dict[str, float]]:
    """Single-check runs grouped by the worker that served them: each side's median calls/s on
    each worker (and its number of runs), and new over old on each worker both sides reached
    (comparing runs served by the same core)."""
    out: dict[str, dict[str, float]] = {}
    medians: dict[str, dict[int, float]] = {}
    for name in ("old", "new"):
        medians[name] = {}
        for worker in sorted(set(served_by[name])):
            runs = [c for c, w in zip(calls[name], served_by[name], strict=True) if w == worker]
            medians[name][worker] = float(np.median(runs))
            out.setdefault(f"worker {worker}", {})[name] = round(medians[name][worker])
            out[f"worker {worker}"][f"{name}_runs"] = len(runs)
    for worker in sorted(set(medians["old"]) & set(medians["new"])):
        ratio = medians["new"][worker] / medians["old"][worker]
        out[f"worker {worker}"]["new_over_old"] = round(ratio, 3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.ab_servers", __doc__)
    p.add_argument("--old", required=True, help="the earlier commit to compare with")
    p.add_argument("--plates", type=int, default=8_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--scratch", type=Path, default=ROOT / "var" / "bench")
    p.add_argument("--unary-only", action="store_true", help="time sequential single checks only")
    a = p.parse_args(argv)
    scratch = a.scratch.resolve()
    extract = build_bench.ensure_register(a.plates, a.seed, scratch)
    key = build_bench.ensure_key(scratch).resolve()
    store = scratch / f"store-{a.plates}-{a.seed}"
    if not (store / "current").exists():
        raise SystemExit(f"no bench store at {store}: run `make bench` first")
    batch = sync_bench.stream_batch(extract, a.seed)
    requests = sync_bench.unary_requests(batch)
    stream: dict[str, list[float]] = {"old": [], "new": []}
    prekeyed: dict[str, list[float]] = {"old": [], "new": []}
    calls: dict[str, list[float]] = {"old": [], "new": []}
    served_by: dict[str, list[int]] = {"old": [], "new": []}
    with ExitStack() as stack:
        old_code = stack.enter_context(worktree(a.old, scratch))
        addresses = {
            "old": stack.enter_context(server(old_code, store, key, scratch / "ab-audit-old")),
            "new": stack.enter_context(server(ROOT, store, key, scratch / "ab-audit-new")),
        }
        kept: dict[str, StreamClient] = {}
        if not a.unary_only:  # one client per server kept for the pre-keyed batches
            kept = {name: stack.enter_context(StreamClient(at)) for name, at in addresses.items()}
            keyed = kept["old"].prekeyed(batch, key)
            for client in kept.values():  # a warm-up batch each, untimed, as make bench does
                client.seconds(keyed, "Antwerpen")
        for _ in range(a.rounds):
            for name, address in addresses.items():
                if kept:
                    stream[name] += sync_bench.stream_seconds(address, batch, 1)
                    prekeyed[name].append(kept[name].seconds(keyed, "Antwerpen"))
                for worker in range(WORKERS):  # each server's single checks on each core
                    run = unary(address, requests, "Antwerpen", seconds=UNARY_S, on_worker=worker)
                    calls[name].append(run["calls_per_s"])
                    served_by[name].append(worker)
    figures: dict[str, object] = {"old": a.old, "rounds": a.rounds}
    if not a.unary_only:
        figures["stream_500k_s"] = {k: round(float(np.median(v)), 3) for k, v in stream.items()}
        figures["prekeyed_500k_s"] = {k: round(float(np.median(v)), 3) for k, v in prekeyed.items()}
    figures["unary_calls_per_s"] = {k: round(float(np.median(v))) for k, v in calls.items()}
    figures["unary_calls_per_s_mean"] = {k: round(float(np.mean(v))) for k, v in calls.items()}
    figures["unary_calls_per_s_runs"] = {k: sorted(round(x) for x in v) for k, v in calls.items()}
    figures["unary_new_over_old_paired"] = round(
        float(np.median(np.array(calls["new"]) / np.array(calls["old"]))), 3
    )
    figures["unary_by_worker"] = by_worker(calls, served_by)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
