"""Our side of the bench: the real server in its own processes, driven over gRPC on loopback.

`LezServer` starts `lez-server serve` (plain TCP on 127.0.0.1, N worker processes, its own
audit directory) in a new session, waits for the health service to say SERVING, and stops it
with SIGTERM (SIGKILL of its own process group only if it does not exit).

`stream_batch` is the end-to-end figure: from plates packed as the wire wants them (one bytes
blob with offsets, 2-byte countries, int32 days) to the decision columns back in the client,
through `CheckStream` with the server normalising and keying the plates. It uses the project's
Python client (`clients.LezClient.check_batch`, which spreads chunks over several
connections). `unary` measures `Check` latency from sequential or concurrent callers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.peer_data import Decided, WireBatch

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_audit_dir(directory: Path) -> Path:
    """`directory` emptied of what an earlier bench run's server wrote there, and returned.

    A bench server's audit records are scratch: each run writes gigabytes of them (a 500,000-pair
    stream is a few megabytes of records, and the bench sends hundreds), and kept from run to run
    they filled the disk. A server started here begins a new chain; nothing reads an earlier
    run's records."""
    shutil.rmtree(directory, ignore_errors=True)
    return directory


class LezServer:
    """`lez-server serve` on a loopback port, started and stopped by the bench."""

    def __init__(
        self,
        store: Path,
        key: Path,
        scratch: Path,
        *,
        workers: int = 2,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.store, self.key, self.workers = store, key, workers
        self.extra_args = extra_args
        self.scratch = scratch
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        from clients import LezClient

        self.scratch.mkdir(parents=True, exist_ok=True)
        log = (self.scratch / f"server-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "lez-server"), "serve", "--store-root", str(self.store),
             "--key-file", str(self.key), "--workers", str(self.workers),
             "--address", self.address, "--audit-dir", str(fresh_audit_dir(self.scratch / "audit")),
             "--reload-interval-s", "3600", "--log-level", "WARNING", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        with LezClient([self.address], timeout_s=timeout) as client:
            client.wait_until_serving(timeout=timeout)

    @property
    def pid(self) -> int:
        """The supervisor's process id (its children are the workers)."""
        if self.proc is None:
            raise RuntimeError("the server is not running")
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own session: the server's workers
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> LezServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def batch_seconds(client: Any, rows: Any, zone: str) -> float:
    """Wall seconds of one batch (`BatchRows`) through `client.check_batch`, every pair
    answered."""
    started = time.perf_counter()
    got = client.check_batch(rows, zone=zone)
    seconds = time.perf_counter() - started
    if len(got.outcome) != len(rows.days):
        raise AssertionError(f"{len(got.outcome)} answers for {len(rows.days)} pairs")
    return seconds


class StreamClient:
    """A connected client for CheckStream batches (connections kept open between runs)."""

    def __init__(self, address: str, *, connections: int = 4) -> None:
        from clients import LezClient

        self.client = LezClient([address], connections=connections, batch_timeout_s=600.0)
        self.client.wait_until_serving()

    def pairs(self, batch: WireBatch) -> Any:
        from clients import BatchRows, JoinedPlates

        return BatchRows(
            days=batch.days,
            countries=batch.countries,
            plates=JoinedPlates(batch.data, batch.offsets),
        )

    def prekeyed(self, batch: WireBatch, key_file: Path) -> Any:
        """The batch as a client holding the HMAC key sends it: pseudonymised keys instead of
        plates (`BatchRows.of_keys`), keyed here by the project's own keying; the plates it
        refuses (an invalid plate has no key) are left out, as such a client would."""
        from clients import BatchRows
        from lez.keys import load_key
        from lez.plates import PlateRule

        keyer = load_key(key_file)
        offsets = batch.offsets.astype(np.int64)
        data = np.frombuffer(batch.data, dtype=np.uint8)
        countries = np.frombuffer(batch.countries, dtype=np.uint8).reshape(-1, 2)
        _, rule, keys = keyer.normalise_and_key(data, offsets[:-1], np.diff(offsets), countries)
        ok = rule == PlateRule.OK
        return BatchRows.of_keys(
            keys[ok],
            np.ascontiguousarray(countries[ok]).view("S2").ravel(),
            batch.days[ok],
            key_id=keyer.key_id,
        )

    def seconds(self, pairs: Any, zone: str) -> float:
        """Wall seconds of one batch through this kept client."""
        return batch_seconds(self.client, pairs, zone)

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decide(self, pairs: Any, zone: str, ruleset: str | None = None) -> Decided:
        r = self.client.check_batch(pairs, zone=zone, ruleset=ruleset)
        return Decided(r.outcome, r.reason, r.allowed_until, r.euro)

    def close(self) -> None:
        self.client.close()


WORKER_TRIES = 64
"""Connections a caller tries before giving up on reaching the worker it was asked to use."""


def unary(
    address: str,
    requests: list[tuple[str, str, str]],
    zone: str,
    *,
    threads: int = 1,
    seconds: float = 3.0,
    on_worker: int | None = None,
) -> dict[str, float]:
    """`Check` calls for about `seconds` from `threads` callers (each its own client, on a
    connection of its own).

    `requests` are (plate, country, ISO date) cycled through. Returns p50/p99 latency in ms
    and calls per second over the whole run. `on_worker` (a server that answers `ServerInfo`):
    each caller connects again until that worker serves it (the kernel places a connection on
    a worker by a hash of its ports), so two servers are compared on the same core.
    """
    from clients import LezClient

    def connect() -> LezClient:
        for _ in range(WORKER_TRIES):
            client = LezClient([address], own_connection=True)  # not another client's
            if on_worker is None or client.server_info().worker == on_worker:
                return client
            client.close()
        raise RuntimeError(f"no connection landed on worker {on_worker} in {WORKER_TRIES} tries")

    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop = time.perf_counter() + seconds
    barrier = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def caller(k: int) -> None:
        try:
            with connect() as client:
                client.check(requests[0][0], zone=zone, day=requests[0][2], country=requests[0][1])
                barrier.wait()
                got = latencies[k]
                j = k * 7919
                while time.perf_counter() < stop:
                    plate, country, day = requests[j % len(requests)]
                    t0 = time.perf_counter()
                    client.check(plate, zone=zone, day=day, country=country)
                    got.append(time.perf_counter() - t0)
                    j += 1
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:  # a caller failed before the start: say why
        raise RuntimeError(f"unary bench failed: {errors[0]!r}") from None
    start = time.perf_counter()
    stop = start + seconds
    for w in workers:
        w.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"unary bench failed: {errors[0]!r}")
    flat = np.array([x for lst in latencies for x in lst])
    return {
        "calls": float(len(flat)),
        "calls_per_s": len(flat) / elapsed,
        "p50_ms": float(np.percentile(flat, 50) * 1000),
        "p99_ms": float(np.percentile(flat, 99) * 1000),
        "mean_ms": float(statistics.fmean(flat) * 1000),
    }
