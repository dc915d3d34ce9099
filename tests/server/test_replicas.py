"""Three server replicas over one store, as the Kubernetes Deployment runs them (deploy/): a
client spreads its calls over the three with round_robin, one replica is killed under load,
and every call of the client still succeeds (retried on the replicas left)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from clients import LezClient
from clients.errors import LezClientError
from server.audit import read_records
from server.config import ServerConfig
from tests.server.conftest import DAY
from tests.server.test_workers import _wait_serving
from tests.support.net import free_port

ZONE = "Gent"
DATE = dt.date(1970, 1, 1) + dt.timedelta(days=DAY)
REPLICAS = 3


def _start(config: ServerConfig, port: int, audit_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
    return subprocess.Popen(
        [
            sys.executable, "-m", "server", "serve",
            "--address", f"127.0.0.1:{port}",
            "--store-root", str(config.store_root),
            "--key-file", str(config.key_file),
            "--audit-dir", str(audit_dir),
            "--warm-store", "0",
            "--grace-period-s", "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip


def _checks_recorded(audit_dir: Path) -> int:
    """Check records in a replica's audit file, up to a record torn by a kill."""
    count = 0
    try:
        for _, record in read_records(audit_dir / "audit-w0.jsonl"):
            count += record.get("rpc") == "Check"
    except ValueError:
        pass
    return count


class _Load:
    """Callers sharing one client until `stop`: unary checks and batches, counting outcomes."""

    def __init__(self, client: LezClient, callers: int) -> None:
        self.client = client
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.batches = 0
        self.failures: list[str] = []
        self.wrong: list[str] = []
        self.threads = [threading.Thread(target=self._checks) for _ in range(callers)]
        self.threads.append(threading.Thread(target=self._batches))
        for t in self.threads:
            t.start()

    def _checks(self) -> None:
        while not self.stop.is_set():
            try:
                answer = self.client.check("1-ABC-234", zone=ZONE, day=DATE)
            except LezClientError as exc:
                with self.lock:
                    self.failures.append(f"check: {exc}")
                continue
            with self.lock:
                self.ok += 1
                if answer.outcome != "ALLOWED":
                    self.wrong.append(answer.outcome)

    def _batches(self) -> None:
        rows = [("1-ABC-234", "BE", DATE), ("1-XYZ-987", "BE", DATE)] * 1500
        while not self.stop.is_set():
            try:
                result = self.client.check_batch(rows, zone=ZONE, chunk_size=250, connections=3)
            except LezClientError as exc:
                with self.lock:
                    self.failures.append(f"batch: {exc}")
                continue
            with self.lock:
                self.batches += 1
                if result.outcome_names() != ["ALLOWED", "NOT_ALLOWED"] * 1500:
                    self.wrong.append("batch")

    def calls(self) -> int:
        with self.lock:
            return self.ok

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


@pytest.mark.slow
def test_a_replica_killed_under_load_costs_the_client_no_call(
    base_config: ServerConfig, tmp_path: Path
) -> None:
    ports = [free_port() for _ in range(REPLICAS)]
    audit_dirs = [tmp_path / f"audit-{i}" for i in range(REPLICAS)]
    procs = [_start(base_config, p, a) for p, a in zip(ports, audit_dirs, strict=True)]
    targets = [f"127.0.0.1:{p}" for p in ports]
    try:
        for target in targets:
            _wait_serving(target)
        with LezClient(targets, retries=8, backoff_initial_s=0.02, timeout_s=30.0) as client:
            load = _Load(client, callers=4)
            try:
                _wait_for(lambda: load.calls() >= 300 and load.batches >= 1)
                os.kill(procs[0].pid, signal.SIGKILL)
                procs[0].wait(timeout=10)
                at_kill = load.calls()
                batches_at_kill = load.batches
                _wait_for(lambda: load.calls() >= at_kill + 300 and load.batches > batches_at_kill)
            finally:
                load.finish()
        assert load.failures == []
        assert load.wrong == []
        for proc in procs[1:]:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        served = [_checks_recorded(d) for d in audit_dirs]
        assert all(n > 0 for n in served), served  # the calls were spread over all three
        assert sum(served[1:]) >= load.ok - served[0]  # the rest were answered by the others
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _wait_for(condition: object, timeout: float = 120.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the load did not make progress"
        time.sleep(0.05)
