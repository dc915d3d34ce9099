"""Overload shedding under a flood: one organisation's excess work refused at once, another
organisation's single checks unharmed.

A 2-worker server over mutual TLS on a synthetic register (`--plates`, default 100,000),
default caps and quotas. Organisation B (a desk) makes sequential single checks the whole time,
its latency measured per call. Three phases:

1. **quiet**: B alone;
2. **flood**: organisation A (enforcement) starts `--streams` clients at once, each streaming
   `--pairs` pairs in chunks of 50,000 (the issue's 50 clients x 200,000 pairs), from a separate
   process so the load generator does not share B's interpreter; each stream is served or
   refused, and the time to its refusal is recorded;
3. **idle**: A opens `--idle` streams that send nothing (the idle-stream timeout is set to
   `--idle-timeout-s`); they are refused beyond the caps or ended by the timeout.

Printed per phase: B's calls, failures, p50 and p99; A's streams served and refused, with the
median and maximum time to a refusal as the flooding process saw it (its own 50 threads and
their TLS connections slow it), and, measured from outside the flood, probe streams of A every
50 ms on a connected channel: how many were refused and how fast.

    python -m bench.overload_bench [--plates 100000] [--streams 50] [--pairs 200000]
        [--idle 1200] [--seconds 4] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import numpy as np

from bench import cli_help, report
from bench.stream import free_port, fresh_audit_dir
from lez.api.v1 import access_pb2 as pb
from lez.api.v1 import access_pb2_grpc as pb_grpc
from server.certs import write_dev_certs

CHUNK = 50_000
DATE = "2026-06-01"
CLIENTS = """
[[client]]
identity = "gent-enforcement"
organisation = "Flooding organisation"
roles = ["enforcement"]
concurrent_streams = 0

[[client]]
identity = "public-checker"
organisation = "Desk organisation"
roles = ["desk"]
checks_per_minute = 1000000000
checks_per_day = 1000000000
"""


def _parser() -> argparse.ArgumentParser:
    p = cli_help.parser("python -m bench.overload_bench", __doc__)
    p.add_argument("--plates", type=int, default=100_000)
    p.add_argument("--streams", type=int, default=50, help="A's streaming clients at once")
    p.add_argument("--pairs", type=int, default=200_000, help="pairs per stream")
    p.add_argument("--idle", type=int, default=1200, help="A's idle streams")
    p.add_argument("--idle-timeout-s", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=4.0, help="quiet phase length")
    p.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    return p


def _run(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", *argv], check=True, capture_output=True)


def _prepare(work: Path, plates: int) -> tuple[Path, Path, Path]:
    """Key, store and certificates in `work`; returns (key, store, certs)."""
    key, store, certs = work / "hmac.key", work / "store", work / "certs"
    _run("loader", "keygen", "--key", str(key))
    _run("loader", "synth", "--plates", str(plates), "--seed", "7", "--out", str(work / "reg"))
    _run("loader", "build", str(work / "reg" / "extract.csv"), "--key", str(key),
         "--out", str(store))  # fmt: skip
    write_dev_certs(certs, clients=("gent-enforcement", "public-checker"))
    return key, store, certs


def _channel(certs: Path, port: int, client: str) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / f"{client}.key").read_bytes(),
        certificate_chain=(certs / f"{client}.pem").read_bytes(),
    )
    return grpc.secure_channel(
        f"localhost:{port}", creds, options=[("grpc.use_local_subchannel_pool", 1)]
    )


def _chunk(n: int, zone: str, seed: int) -> pb.CheckChunk:
    rng = random.Random(seed)
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    raw = [
        f"1{''.join(rng.choices(letters, k=3))}{rng.randrange(1000):03d}".encode() for _ in range(n)
    ]
    return pb.CheckChunk(
        zone=zone,
        plates=pb.PlateColumn(data=b"".join(raw), width=7),
        days=np.full(n, 20605, dtype="<i4").tobytes(),
    )


def _one_stream(certs: Path, port: int, zone: str, pairs: int, seed: int) -> tuple[str, float]:
    """Stream `pairs` pairs over a connection of its own; ('OK' | status name, seconds from the
    call's start on the connected channel to its end or refusal)."""
    chunks = [_chunk(min(CHUNK, pairs - i), zone, seed + i) for i in range(0, pairs, CHUNK)]
    with _channel(certs, port, "gent-enforcement") as ch:
        grpc.channel_ready_future(ch).result(timeout=60)  # connected: time the call alone
        began = time.perf_counter()
        try:
            for _ in pb_grpc.AccessServiceStub(ch).CheckStream(iter(chunks), timeout=300):
                pass
            return "OK", time.perf_counter() - began
        except grpc.RpcError as err:
            return err.code().name, time.perf_counter() - began


def _flood(certs: str, port: int, zone: str, streams: int, pairs: int, out: Any) -> None:
    results: list[tuple[str, float]] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        got = _one_stream(Path(certs), port, zone, pairs, i * 1_000)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(results)


def _idle(certs: str, port: int, streams: int, hold_s: float, out: Any) -> None:
    """Open idle streams at once from one asyncio client (as one program holding many streams
    would) over a few connections; count how each ended."""
    out.put(asyncio.run(_idle_async(Path(certs), port, streams, hold_s)))


async def _idle_async(certs: Path, port: int, streams: int, hold_s: float) -> list[str]:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca.pem").read_bytes(),
        private_key=(certs / "gent-enforcement.key").read_bytes(),
        certificate_chain=(certs / "gent-enforcement.pem").read_bytes(),
    )
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.secure_channel(f"localhost:{port}", creds, options=options) for _ in range(8)
    ]

    async def nothing() -> AsyncIterator[pb.CheckChunk]:
        await asyncio.sleep(hold_s)
        return
        yield  # an async generator that sends nothing

    async def one(i: int) -> str:
        stub = pb_grpc.AccessServiceStub(channels[i % len(channels)])
        try:
            async for _ in stub.CheckStream(nothing(), timeout=hold_s + 30):
                pass
            return "OK"
        except grpc.aio.AioRpcError as err:
            return str(err.code().name)

    try:
        return list(await asyncio.gather(*(one(i) for i in range(streams))))
    finally:
        for ch in channels:
            await ch.close(None)


def _checks(certs: Path, port: int, zone: str, until: threading.Event) -> tuple[list[float], int]:
    """B's sequential single checks until `until` is set: latencies (s) and failures."""
    latencies, failures = [], 0
    request = pb.CheckRequest(plate="1ABC234", zone=zone, date=DATE)
    with _channel(certs, port, "public-checker") as ch:
        stub = pb_grpc.AccessServiceStub(ch)
        stub.ServerInfo(pb.ServerInfoRequest())
        while not until.is_set():
            began = time.perf_counter()
            try:
                stub.Check(request, timeout=10)
                latencies.append(time.perf_counter() - began)
            except grpc.RpcError:
                failures += 1
    return latencies, failures


def _probe(certs: Path, port: int, zone: str, until: threading.Event) -> list[tuple[str, float]]:
    """During a flood, from outside the flooding process: a one-pair stream of the flooding
    organisation every 50 ms on a connected channel; how each ended and how long it took."""
    got: list[tuple[str, float]] = []
    one = _chunk(1, zone, 0)
    with _channel(certs, port, "gent-enforcement") as ch:
        grpc.channel_ready_future(ch).result(timeout=60)
        stub = pb_grpc.AccessServiceStub(ch)
        while not until.wait(0.05):
            began = time.perf_counter()
            try:
                list(stub.CheckStream(iter([one]), timeout=30))
                got.append(("OK", time.perf_counter() - began))
            except grpc.RpcError as err:
                got.append((err.code().name, time.perf_counter() - began))
    return got


def _latency(latencies: list[float], failures: int) -> dict[str, Any]:
    ms = sorted(x * 1000 for x in latencies)
    return {
        "calls": len(ms),
        "failed": failures,
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 2) if ms else None,
    }


def _phase(
    certs: Path, port: int, zone: str, load: Any, probe: bool = False
) -> tuple[dict[str, Any], Any, list[tuple[str, float]]]:
    """B checks while `load` (a started process putting its result on a queue) runs; with
    `probe`, A's probe streams too."""
    until = threading.Event()
    box: dict[str, Any] = {"probes": []}

    def run() -> None:
        box["got"] = _checks(certs, port, zone, until)

    def run_probe() -> None:
        box["probes"] = _probe(certs, port, zone, until)

    threads = [threading.Thread(target=run)]
    if probe:
        threads.append(threading.Thread(target=run_probe))
    for t in threads:
        t.start()
    result = load()
    until.set()
    for t in threads:
        t.join()
    return _latency(*box["got"]), result, box["probes"]


def _probe_summary(probes: list[tuple[str, float]]) -> dict[str, Any]:
    refused = sorted(t * 1000 for code, t in probes if code == "RESOURCE_EXHAUSTED")
    return {
        "sent": len(probes),
        "refused": len(refused),
        "served": sum(code == "OK" for code, _ in probes),
        "refusal_ms_p50": round(statistics.median(refused), 2) if refused else None,
        "refusal_ms_p99": round(refused[int(0.99 * (len(refused) - 1))], 2) if refused else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    ctx = multiprocessing.get_context("spawn")  # grpc threads do not survive a fork
    with tempfile.TemporaryDirectory(prefix="lez-overload-bench-") as tmp:
        work = Path(tmp)
        key, store, certs = _prepare(work, args.plates)
        (work / "clients.toml").write_text(CLIENTS)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
        server = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--address", f"127.0.0.1:{port}",
             "--workers", "2", "--store-root", str(store), "--key-file", str(key),
             "--audit-dir", str(fresh_audit_dir(work / "audit")),
             "--clients-file", str(work / "clients.toml"),
             "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
             "--tls-ca", str(certs / "ca.pem"),
             "--stream-idle-timeout-s", str(args.idle_timeout_s)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            zone = ""
            for _ in range(300):
                try:
                    with _channel(certs, port, "public-checker") as ch:
                        info = pb_grpc.AccessServiceStub(ch).ServerInfo(
                            pb.ServerInfoRequest(), timeout=1
                        )
                        zone = info.zones[0].name
                        break
                except grpc.RpcError:
                    time.sleep(0.1)
            time.sleep(1.0)  # both workers up

            def quiet() -> None:
                time.sleep(args.seconds)

            def flood() -> list[tuple[str, float]]:
                q = ctx.Queue()
                p = ctx.Process(
                    target=_flood, args=(str(certs), port, zone, args.streams, args.pairs, q)
                )
                p.start()
                got: list[tuple[str, float]] = q.get(timeout=900)
                p.join()
                return got

            def idle() -> list[str]:
                q = ctx.Queue()
                hold = args.idle_timeout_s * 3
                p = ctx.Process(target=_idle, args=(str(certs), port, args.idle, hold, q))
                p.start()
                got: list[str] = q.get(timeout=900)
                p.join()
                return got

            quiet_b, _, _ = _phase(certs, port, zone, quiet)
            flood_b, streams, probes = _phase(certs, port, zone, flood, probe=True)
            idle_b, idled, _ = _phase(certs, port, zone, idle)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    refused = sorted(s for code, s in streams if code == "RESOURCE_EXHAUSTED")
    served = sorted(s for code, s in streams if code == "OK")
    result = {
        "quiet": {"desk_checks": quiet_b},
        "flood": {
            "desk_checks": flood_b,
            "streams_served": len(served),
            "streams_refused": len(refused),
            "streams_other": sorted(c for c, _ in streams if c not in ("OK", "RESOURCE_EXHAUSTED")),
            "refusal_s_median": round(statistics.median(refused), 4) if refused else None,
            "refusal_s_max": round(max(refused), 4) if refused else None,
            "served_stream_s_median": round(statistics.median(served), 3) if served else None,
            "probe_streams": _probe_summary(probes),
        },
        "idle": {
            "desk_checks": idle_b,
            "idle_streams_ended": {name: idled.count(name) for name in sorted(set(idled))},
        },
        "command": "python -m bench.overload_bench "
        f"--plates {args.plates} --streams {args.streams} --pairs {args.pairs} "
        f"--idle {args.idle} --idle-timeout-s {args.idle_timeout_s} --seconds {args.seconds}",
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        report.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
