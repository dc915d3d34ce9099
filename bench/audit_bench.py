"""What the audit costs, measured in one run against the bars the service is held to:

1. **Stream.** The 500,000-pair `CheckStream` (the bench's camera mix, the Python client over 4
   connections, 2 worker processes) against a server with mutual TLS and the audit on (each
   chunk's record, with its keys and each pair's outcome, durable before the chunk's answer is
   sent) and against a server in plain TCP with the audit off (`--audit-off`), on the same
   store, alternated run by run so drift of the machine hits both alike. Bar: at most 10% more.
   Beside them, alternated with them: the server in plain TCP with the audit on (the audit's
   share), and the stream floor (`bench.stream_floor`: gRPC servers that decide nothing) plain,
   with mutual TLS (`tls_floor`: what TLS costs a transport that does no work) and with mutual
   TLS and the audit's records (`promises_floor`: what the two promises cost it). Each with a
   fresh client per run (its connections' set-up counts) and again with one long-lived client
   per server (`warm_client`), where each batch's processor time is also read, servers and
   client (`processor_time`, `bench.process_cpu`). Every run's seconds are kept (`all_s`); the
   bar's figure is the ratio of the medians, and the ratio taken round by round (each round runs
   every server once) is given beside it (`paired_ratio`).
2. **Unary ladder.** In the same run: the ceiling of a gRPC server that only flushes one record
   a call (`bench.unary_floor --mode flush`), the same server keeping the audit promise alone
   (`--mode audit`: the service's own record a call, durable before the answer; what that
   promise leaves of the ceiling to everything else a check does), then the real server with one
   sequential caller (bar: at least 70% of the ceiling; with each server's CPU per call, which
   the drifting latency of a flush does not move), timed on each of its two workers against
   floors pinned to that worker's core (`unary_ladder`), then 32 concurrent callers from 2 client
   processes (16 threads each, so the load generator is not the limit), where group commit lets
   one flush carry the records of every call waiting on it.

    python -m bench.audit_bench [--plates 8000000] [--runs 5] [--unary-seconds 3] [--out F]
        [--parts stream,unary]

`--parts unary` measures the unary ladder alone (a short run while working on single checks).

The store is the bench's (`var/bench/store-<plates>-<seed>`, built by `make bench` or reused);
the servers write their audit under `--scratch`. `bench.run` calls `run` (`make bench`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench import build_bench, cli_help, sync_bench
from bench.peer_data import WireBatch
from bench.process_cpu import tree_cpu_seconds
from bench.report import stats
from bench.stream import batch_seconds, free_port, fresh_audit_dir, unary
from bench.unary_floor import FloorServer

if TYPE_CHECKING:
    from clients import BatchRows, LezClient

ROOT = Path(__file__).resolve().parents[1]
ZONE = "Antwerpen"
CLIENT = "bench-client"
STREAM_BAR = 1.10
UNARY_BAR = 0.70
CONCURRENT_PROCESSES = 2
CONCURRENT_THREADS = 16
FLOOR_SERVER = "python -m bench.unary_floor --mode flush"
AUDIT_FLOOR_SERVER = "python -m bench.unary_floor --mode audit"
PARTS = ("stream", "unary")
OUR_SERVER = "lez-server serve --workers 2 (plain TCP; each record synced before its answer)"


@contextmanager
def server(
    store: Path, key: Path, scratch: Path, *, tls: bool, audit: bool, workers: int = 2
) -> Iterator[dict[str, Any]]:
    """`python -m server serve` (this checkout) on a loopback port; yields the client settings
    that reach it (address, and the client's certificate with TLS)."""

    scratch.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [sys.executable, "-m", "server", "serve", "--store-root", str(store),
            "--key-file", str(key), "--workers", str(workers), "--audit-dir",
            str(fresh_audit_dir(scratch / "audit")), "--reload-interval-s", "3600",
            "--log-level", "WARNING"]  # fmt: skip
    client: dict[str, Any] = {}
    if tls:
        certs, client = _dev_tls(scratch)
        clients_file = scratch / "clients.toml"
        clients_file.write_text(
            f'[[client]]\nidentity = "{CLIENT}"\norganisation = "Bench city"\n'
            'roles = ["enforcement", "desk"]\n'
        )
        args += ["--address", f"localhost:{port}", "--tls-cert", str(certs / "server.pem"),
                 "--tls-key", str(certs / "server.key"), "--tls-ca", str(certs / "ca.pem"),
                 "--clients-file", str(clients_file)]  # fmt: skip
        address = f"localhost:{port}"
    else:
        address = f"127.0.0.1:{port}"
        args += ["--address", address]
    if not audit:
        args += ["--audit-off", "1"]
    log = (scratch / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(
        args, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    with _serving(proc, address, client, timeout=180) as settings:
        yield settings


def _dev_tls(scratch: Path) -> tuple[Path, dict[str, Any]]:
    """Development certificates under `scratch/certs` (a server's for localhost and the bench
    client's), and the client settings that present the client's."""
    from server.certs import write_dev_certs

    certs = scratch / "certs"
    write_dev_certs(certs, clients=(CLIENT,), hosts=("localhost",))
    client = {
        "ca": certs / "ca.pem",
        "cert": certs / f"{CLIENT}.pem",
        "key": certs / f"{CLIENT}.key",
    }
    return certs, client


@contextmanager
def _serving(
    proc: subprocess.Popen[bytes], address: str, client: dict[str, Any], *, timeout: float
) -> Iterator[dict[str, Any]]:
    """The client settings of a server process in its own session, once it says SERVING;
    the process group is stopped on exit (killed when it does not stop)."""
    from clients import LezClient

    try:
        with LezClient([address], timeout_s=timeout, **client) as c:
            c.wait_until_serving(timeout=timeout)
        yield {"servers": [address], "pid": proc.pid, **client}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextmanager
def floor_server(scratch: Path, *, tls: bool, audit: bool = False) -> Iterator[dict[str, Any]]:
    """`python -m bench.stream_floor` (2 processes that decide nothing) on a loopback port,
    plain or with mutual TLS set up as `server` sets it up, with or without the streams' audit
    records (under `scratch/audit`); yields the client settings."""

    scratch.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [sys.executable, "-m", "bench.stream_floor", "--port", str(port), "--workers", "2"]
    if audit:
        args += ["--audit", str(fresh_audit_dir(scratch / "audit"))]
    client: dict[str, Any] = {}
    address = f"127.0.0.1:{port}"
    if tls:
        certs, client = _dev_tls(scratch)
        args += ["--tls", str(certs)]
        address = f"localhost:{port}"
    proc = subprocess.Popen(args, cwd=ROOT, start_new_session=True)
    # connect once the port is open: a channel whose first attempts fail backs off for longer
    # and longer (with TLS it took over a minute to come back)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
                raise RuntimeError(f"the stream floor did not open port {port}") from None
            time.sleep(0.05)
    with _serving(proc, address, client, timeout=120) as settings:
        yield settings


def _client(settings: dict[str, Any]) -> LezClient:
    from clients import LezClient

    servers = settings["servers"]
    extra = {k: v for k, v in settings.items() if k not in ("servers", "pid")}
    return LezClient(servers, connections=4, batch_timeout_s=600.0, **extra)


def _rows(batch: WireBatch) -> BatchRows:
    from clients import BatchRows, JoinedPlates

    return BatchRows(
        days=batch.days, countries=batch.countries, plates=JoinedPlates(batch.data, batch.offsets)
    )


def _stream_seconds(settings: dict[str, Any], batch: WireBatch) -> float:
    """One run of the whole batch through `check_batch` (a fresh client: its connections'
    TLS handshakes and its spreading of them over the workers count, as a camera system's
    would once a batch)."""
    with _client(settings) as client:
        client.wait_until_serving()
        return batch_seconds(client, _rows(batch), ZONE)


def _warm_clients(
    targets: dict[str, dict[str, Any]], batch: WireBatch, runs: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """The batch through one long-lived client per server, alternated after a warm-up: the
    per-batch cost without the connections' setup. Returns the seconds of each batch and the
    processor seconds it took the server's processes and this process (the client; the other
    clients are idle meanwhile)."""
    rows = _rows(batch)
    times: dict[str, list[float]] = {name: [] for name in targets}
    cpu: dict[str, list[float]] = {name: [] for name in targets}
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(_client(s)) for name, s in targets.items()}
        for client in clients.values():
            client.wait_until_serving()
            batch_seconds(client, rows, ZONE)
        for _ in range(runs):
            for name, client in clients.items():
                pid = int(targets[name]["pid"])
                before = tree_cpu_seconds(pid) + time.process_time()
                times[name].append(batch_seconds(client, rows, ZONE))
                cpu[name].append(tree_cpu_seconds(pid) + time.process_time() - before)
    return times, cpu


def _processor_time(times: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict[str, Any]:
    """What a batch costs the processors (servers and client), and what the two promises add
    to it: on 2 cores the batch is bound by that time, so its wall-clock ratio follows."""
    ms = {name: float(np.median(values)) * 1000 for name, values in cpu.items()}
    plain = ms["plain_no_audit"]
    return {
        "cpu_ms": {name: round(value, 1) for name, value in ms.items()},
        "cores_busy_plain": round(plain / 1000 / float(np.median(times["plain_no_audit"])), 2),
        "audit_cpu_ms": round(ms["plain_audit"] - plain, 1),
        "tls_cpu_ms": round(ms["tls_audit"] - ms["plain_audit"], 1),
        "cpu_ratio": round(ms["tls_audit"] / plain, 3),
        "what": "median processor time of a batch, the server's processes (every thread: their "
        "CPU-time clocks) plus the client's process; cores_busy_plain = that time over the "
        "batch's wall time with plain TCP and the audit off",
    }


def _paired_ratio(times: dict[str, list[float]]) -> dict[str, float]:
    """The bar's ratio taken round by round (each round runs every server once, one after the
    other, so a drift of the machine between rounds cancels out): the median, min and max of
    the rounds' ratios. Beside the ratio of the medians, which is the bar's figure."""
    ratios = np.array(times["tls_audit"]) / np.array(times["plain_no_audit"])
    return {
        "median": round(float(np.median(ratios)), 3),
        "min": round(float(ratios.min()), 3),
        "max": round(float(ratios.max()), 3),
    }


def stream_overhead(
    store: Path, key: Path, batch: WireBatch, scratch: Path, runs: int
) -> dict[str, Any]:
    """The batch against mutual TLS with the audit on and plain TCP with the audit off,
    alternated; after one warm-up run each."""
    names = (
        "tls_audit", "plain_audit", "plain_no_audit", "floor_tls_audit", "floor_tls",
        "floor_plain",
    )  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in names}
    with (
        server(store, key, scratch / "tls-audit", tls=True, audit=True) as tls_audit,
        server(store, key, scratch / "plain-audit", tls=False, audit=True) as plain_audit,
        server(store, key, scratch / "plain-off", tls=False, audit=False) as plain,
        floor_server(scratch / "floor-tls-audit", tls=True, audit=True) as floor_tls_audit,
        floor_server(scratch / "floor-tls", tls=True) as floor_tls,
        floor_server(scratch / "floor-plain", tls=False) as floor_plain,
    ):
        targets = {
            "tls_audit": tls_audit,
            "plain_audit": plain_audit,
            "plain_no_audit": plain,
            "floor_tls_audit": floor_tls_audit,
            "floor_tls": floor_tls,
            "floor_plain": floor_plain,
        }
        for settings in targets.values():
            _stream_seconds(settings, batch)  # warm-up
        for _ in range(runs):
            for name, settings in targets.items():
                times[name].append(_stream_seconds(settings, batch))
        warm, warm_cpu = _warm_clients(targets, batch, runs)
        records = _audit_records(scratch / "tls-audit" / "audit")
    baseline = float(np.median(times["plain_no_audit"]))
    ratio = float(np.median(times["tls_audit"])) / baseline
    warm_ratio = float(np.median(warm["tls_audit"])) / float(np.median(warm["plain_no_audit"]))
    return {
        "warm_client": {
            **{name: stats(values) for name, values in warm.items()},
            "ratio": round(warm_ratio, 3),
            "paired_ratio": _paired_ratio(warm),
            "meets_bar": warm_ratio <= STREAM_BAR,
            "tls_floor": _tls_floor(warm),
            "promises_floor": _promises_floor(warm),
            "processor_time": _processor_time(warm, warm_cpu),
            "what": "one client per server kept for every run (connected, its connections "
            "spread over the workers once): what each further batch costs",
        },
        "pairs": len(batch),
        **{name: stats(values) for name, values in times.items()},
        "tls_floor": _tls_floor(times),
        "promises_floor": _promises_floor(times),
        "ratio": round(ratio, 3),
        "paired_ratio": _paired_ratio(times),
        "ratio_audit_alone": round(float(np.median(times["plain_audit"])) / baseline, 3),
        "bar": f"at most {STREAM_BAR:.2f}",
        "meets_bar": ratio <= STREAM_BAR,
        "audit_records_written": records,
        "command": f"LezClient(connections=4).check_batch(<{len(batch):,} packed pairs>, "
        f"zone={ZONE!r}) against `lez-server serve --workers 2` with --tls-* and the audit "
        "(default: each chunk's record synced before its answer), with plain TCP and the "
        f"audit, and with plain TCP and --audit-off 1; and the same client against `python -m "
        "bench.stream_floor` (2 processes that answer without deciding) with mutual TLS and the "
        "streams' audit records (--audit), with mutual TLS alone, and plain; alternated, median "
        f"of {runs} runs each after a warm-up (a fresh client per run: its TLS handshakes "
        "count)",
    }


def _floor_cost(times: dict[str, list[float]], floor: str) -> tuple[float, float, float]:
    """What the floor named `floor` costs beyond the plain floor (seconds and ratio of medians),
    and the ratio the bar's comparison would show if that were all the service paid beyond its
    plain time (the service's plain time plus that cost, over the service's plain time)."""
    plain = float(np.median(times["floor_plain"]))
    with_it = float(np.median(times[floor]))
    service_plain = float(np.median(times["plain_no_audit"]))
    return with_it - plain, with_it / plain, (service_plain + with_it - plain) / service_plain


def _tls_floor(times: dict[str, list[float]]) -> dict[str, Any]:
    """What mutual TLS costs the transport alone (`bench.stream_floor` with and without it),
    and the service's ratio had TLS cost it exactly that and the audit nothing."""
    seconds, ratio, service_ratio = _floor_cost(times, "floor_tls")
    return {
        "seconds": round(seconds, 4),
        "ratio": round(ratio, 3),
        "service_ratio_if_only_tls": round(service_ratio, 3),
    }


def _promises_floor(times: dict[str, list[float]]) -> dict[str, Any]:
    """What mutual TLS and the stream's audit records together cost a transport that does no
    work, the service's ratio had they cost it exactly that (the bar's ceiling on this machine
    for a service that keeps both promises), and what the service paid beyond that."""
    seconds, ratio, service_ratio = _floor_cost(times, "floor_tls_audit")
    service_beyond = float(np.median(times["tls_audit"])) - float(
        np.median(times["plain_no_audit"])
    )
    return {
        "seconds": round(seconds, 4),
        "ratio": round(ratio, 3),
        "service_ratio_if_only_promises": round(service_ratio, 3),
        "service_beyond_promises_s": round(service_beyond - seconds, 4),
    }


def _audit_records(directory: Path) -> dict[str, int]:
    from server.audit import read_records

    counts: dict[str, int] = {}
    for path in sorted(directory.glob("audit-w*.jsonl")):
        for _, rec in read_records(path):
            kind = f"{rec['rpc']}/{rec.get('part', 'call')}"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _unary_summary(latencies: np.ndarray, elapsed: float) -> dict[str, float]:
    return {
        "calls": len(latencies),
        "calls_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50) * 1000), 3),
        "p99_ms": round(float(np.percentile(latencies, 99) * 1000), 3),
    }


def concurrent_unary(
    address: str, requests_file: Path, *, processes: int, threads: int, seconds: float
) -> dict[str, Any]:
    """`processes` client processes of `threads` callers each, started together once every
    one of them is connected and warmed; their calls merged."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.audit_bench",
                "--unary-client",
                address,
                "--requests",
                str(requests_file),
                "--threads",
                str(threads),
                "--unary-seconds",
                str(seconds),
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:  # each says when its callers are connected and warmed
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    start_at = time.time() + 0.2
    outs = [json.loads(p.communicate(f"{start_at}\n", timeout=seconds + 120)[0]) for p in procs]
    latencies = np.concatenate([np.asarray(o["latencies_s"]) for o in outs])
    elapsed = max(o["elapsed_s"] for o in outs)
    return {
        "callers": processes * threads,
        "client_processes": processes,
        **_unary_summary(latencies, elapsed),
    }


def _unary_client(args: argparse.Namespace) -> int:
    """One load-generating process: `--threads` callers, each its own client; says `ready`,
    reads the start time on stdin, calls until `--unary-seconds` after it."""
    from clients import LezClient

    requests = json.loads(args.requests.read_text())
    latencies: list[list[float]] = [[] for _ in range(args.threads)]
    ready = threading.Barrier(args.threads + 1)
    start = threading.Barrier(args.threads + 1)
    window: list[float] = []

    def caller(k: int) -> None:
        with LezClient([args.unary_client]) as client:
            plate, country, day = requests[k]
            client.check(plate, zone=ZONE, day=day, country=country)
            ready.wait()
            start.wait()
            stop = window[0] + args.unary_seconds
            j = k * 7919
            got = latencies[k]
            while time.time() < stop:
                plate, country, day = requests[j % len(requests)]
                t0 = time.perf_counter()
                client.check(plate, zone=ZONE, day=day, country=country)
                got.append(time.perf_counter() - t0)
                j += 1

    workers = [threading.Thread(target=caller, args=(k,)) for k in range(args.threads)]
    for w in workers:
        w.start()
    ready.wait()
    print("ready", flush=True)
    window.append(float(sys.stdin.readline()))
    time.sleep(max(0.0, window[0] - time.time()))
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    flat = [x for lst in latencies for x in lst]
    print(json.dumps({"latencies_s": flat, "elapsed_s": elapsed}))
    return 0


def _with_cpu(
    pid: int, address: str, requests: list[tuple[str, str, str]], seconds: float,
    on_worker: int | None = None,
) -> dict[str, float]:  # fmt: skip
    """One sequential-caller run, with the server's CPU per call (all its processes)."""
    before = tree_cpu_seconds(pid)
    figures = unary(address, requests, ZONE, threads=1, seconds=seconds, on_worker=on_worker)
    figures["server_cpu_us_per_call"] = (tree_cpu_seconds(pid) - before) / figures["calls"] * 1e6
    return figures


LADDER_WORKERS: tuple[int, ...] = (0, 1)
"""The service's workers the sequential caller times, each against floors pinned to its core."""


def unary_ladder(
    store: Path, key: Path, requests: list[tuple[str, str, str]], scratch: Path, runs: int,
    seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """The flush ceiling, the audit floor and the real server's one sequential caller, on each
    worker's core in turn, then 32 callers from 2 processes.

    The service pins worker i to a core (`server.affinity`), and the floors are pinned as that
    worker is (`FloorServer(worker=i)`): a single check ran 10-14% faster on one core than on
    the other on the bench machine (the disk's interrupts go to one), so the service is held to
    the ceiling of the core that served it. The sequential runs alternate ceiling, audit floor
    and server, worker after worker, run after run. Each figure is the mean over the workers of
    that worker's median; each share, the mean over the workers of that worker's share."""
    scratch.mkdir(parents=True, exist_ok=True)
    requests_file = scratch / "unary-requests.json"
    requests_file.write_text(json.dumps(requests))
    parts = ("ceiling", "audit_floor", "sequential")
    rows: dict[tuple[str, int], list[dict[str, float]]] = {
        (part, w): [] for part in parts for w in LADDER_WORKERS
    }
    with contextlib.ExitStack() as stack:
        floors = {
            (mode, w): stack.enter_context(
                FloorServer(mode, scratch / f"{mode}-floor-w{w}", worker=w)
            )
            for mode in ("flush", "audit")
            for w in LADDER_WORKERS
        }
        real = stack.enter_context(server(store, key, scratch / "unary", tls=False, audit=True))
        address = real["servers"][0]
        targets: dict[tuple[str, int], tuple[int, str, int | None]] = {}
        for w in LADDER_WORKERS:
            for part, mode in (("ceiling", "flush"), ("audit_floor", "audit")):
                floor = floors[(mode, w)]
                assert floor.proc is not None
                targets[(part, w)] = (floor.proc.pid, floor.address, None)
            targets[("sequential", w)] = (int(real["pid"]), address, w)
        for _, warm_up, on_worker in targets.values():
            unary(warm_up, requests, ZONE, threads=1, seconds=0.5, on_worker=on_worker)
        for _ in range(runs):
            for w in LADDER_WORKERS:
                for part in parts:
                    pid, target, on_worker = targets[(part, w)]
                    rows[(part, w)].append(_with_cpu(pid, target, requests, seconds, on_worker))
        concurrent = concurrent_unary(
            address, requests_file, processes=CONCURRENT_PROCESSES,
            threads=CONCURRENT_THREADS, seconds=seconds,
        )  # fmt: skip
    return _ladder_figures(rows, concurrent, runs, seconds)


def _ladder_figures(
    rows: dict[tuple[str, int], list[dict[str, float]]], concurrent: dict[str, Any], runs: int,
    seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """The ladder's result from each (part, worker)'s runs (`unary_ladder`)."""

    medians = {
        cell: {k: float(np.median([r[k] for r in runs_])) for k in runs_[0]}
        for cell, runs_ in rows.items()
    }

    def rate(part: str, w: int) -> float:
        return medians[(part, w)]["calls_per_s"]

    def mean_over_workers(part: str) -> dict[str, Any]:
        figures = {
            k: round(float(np.mean([medians[(part, w)][k] for w in LADDER_WORKERS])), 3)
            for k in medians[(part, LADDER_WORKERS[0])]
        }
        runs_by_worker = {
            f"worker {w}": [round(r["calls_per_s"], 1) for r in rows[(part, w)]]
            for w in LADDER_WORKERS
        }
        return figures | {"calls_per_s_runs": runs_by_worker}

    def share(part: str, of: str) -> float:
        return float(np.mean([rate(part, w) / rate(of, w) for w in LADDER_WORKERS]))

    def pair_shares(part: str) -> list[float]:
        """Each run's share of the ceiling run just before it on the same core."""
        return [
            row["calls_per_s"] / top["calls_per_s"]
            for w in LADDER_WORKERS
            for top, row in zip(rows[("ceiling", w)], rows[(part, w)], strict=True)
        ]

    def min_max(values: list[float]) -> list[float]:
        return [round(min(values), 3), round(max(values), 3)]

    ceiling, seq = mean_over_workers("ceiling"), mean_over_workers("sequential")
    sequential_share = share("sequential", "ceiling")
    by_worker = {
        f"worker {w}": {
            "ceiling_calls_per_s": round(rate("ceiling", w), 1),
            "audit_floor_calls_per_s": round(rate("audit_floor", w), 1),
            "sequential_calls_per_s": round(rate("sequential", w), 1),
            "sequential_share_of_ceiling": round(rate("sequential", w) / rate("ceiling", w), 3),
            "audit_floor_share_of_ceiling": round(rate("audit_floor", w) / rate("ceiling", w), 3),
        }
        for w in LADDER_WORKERS
    }
    return {
        "ceiling_grpc_plus_flush": ceiling | {"server": FLOOR_SERVER},
        "audit_floor": mean_over_workers("audit_floor")
        | {
            "server": AUDIT_FLOOR_SERVER,
            "share_of_ceiling": round(share("audit_floor", "ceiling"), 3),
            "share_min_max_of_pairs": min_max(pair_shares("audit_floor")),
        },
        "sequential": seq | {"server": OUR_SERVER},
        "sequential_share_of_audit_floor": round(share("sequential", "audit_floor"), 3),
        "sequential_share_of_ceiling": round(sequential_share, 3),
        "server_cpu_us_per_call_beyond_ceiling": round(
            seq["server_cpu_us_per_call"] - ceiling["server_cpu_us_per_call"], 1
        ),
        "share_min_max_of_pairs": min_max(pair_shares("sequential")),
        "by_worker": by_worker,
        "bar": f"at least {UNARY_BAR:.2f} of the ceiling",
        "meets_bar": sequential_share >= UNARY_BAR,
        "concurrent": concurrent,
        "concurrent_speedup_over_sequential": round(
            concurrent["calls_per_s"] / seq["calls_per_s"], 2
        ),
        "command": f"LezClient.check in a loop, {seconds} s per run, {runs} runs on each of "
        f"workers {', '.join(map(str, LADDER_WORKERS))}, alternating ceiling, audit floor "
        "and server, the floors pinned to the worker's core (each figure the mean of the "
        "workers' medians); then "
        f"{CONCURRENT_PROCESSES} processes x {CONCURRENT_THREADS} threads (one client each) "
        f"for {seconds} s (python -m bench.audit_bench --unary-client)",
    }


def run(
    *, plates: int, seed: int, scratch: Path, runs: int, unary_seconds: float,
    work: Path | None = None, parts: tuple[str, ...] = PARTS,
) -> dict[str, Any]:  # fmt: skip
    """The measurements named in `parts` on the bench store of `plates` plates under `scratch`
    (built there if missing, else only read); the servers write under `work` (default
    `scratch/audit-bench`)."""
    from bench.run import Config, ensure_store

    key = build_bench.ensure_key(scratch)
    cfg = Config(
        plates=plates, runs=runs, seed=seed, out=scratch, scratch=scratch, quick=False,
        stream_sizes=(), small_sizes=(), compare_pairs=0, wide_pairs=0, store_sizes=(),
        store_batch_pairs=0, unary_seconds=unary_seconds, unary_threads=1, build_runs=1,
        engine_runs=1, server_workers=2, postgres=False,
    )  # fmt: skip
    extract, store, _ = ensure_store(plates, cfg, key)
    batch = sync_bench.stream_batch(extract, seed)
    requests = sync_bench.unary_requests(batch)
    work = work or scratch / "audit-bench"
    result: dict[str, Any] = {"store_plates": plates}
    if "stream" in parts:
        result["stream"] = stream_overhead(store, key, batch, work / "stream", runs)
    if "unary" in parts:
        result["unary"] = unary_ladder(store, key, requests, work / "unary", runs, unary_seconds)
    return result


def _parts(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise SystemExit(f"--parts: choose among {', '.join(PARTS)} (got {text!r})")
    return parts


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.audit_bench", __doc__)
    p.add_argument("--plates", type=int, default=8_000_000, help="the bench register [8M]")
    p.add_argument("--seed", type=int, default=1, help="the bench register's seed [1]")
    p.add_argument("--runs", type=int, default=5, help="timed runs of each measurement [5]")
    p.add_argument("--unary-seconds", type=float, default=3.0, help="seconds of each unary run [3]")
    p.add_argument(
        "--scratch",
        type=Path,
        default=ROOT / "var" / "bench",
        help="the bench's registers, key and stores (only read when present)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="where the servers write their audit (default SCRATCH/audit-bench)",
    )
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    p.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="which measurements, comma-separated (default: stream,unary)",
    )
    p.add_argument("--unary-client", default=None, help=argparse.SUPPRESS)
    p.add_argument("--requests", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=CONCURRENT_THREADS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.unary_client:
        return _unary_client(a)
    result = run(
        plates=a.plates, seed=a.seed, scratch=a.scratch.resolve(), runs=a.runs,
        unary_seconds=a.unary_seconds, work=a.work.resolve() if a.work else None,
        parts=_parts(a.parts),
    )  # fmt: skip
    result["command"] = "python -m bench.audit_bench " + " ".join(argv or sys.argv[1:])
    text = json.dumps(result, indent=2)
    print(text)
    if a.out is not None:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
