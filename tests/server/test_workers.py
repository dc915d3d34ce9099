"""Two worker processes on one port (SO_REUSEPORT), restart of a dead worker, SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lez.api.v1 import access_pb2 as pb
from lez.keys import generate_key_file
from server.audit import read_records
from server.config import ServerConfig
from tests.server.conftest import DAY
from tests.server.helpers import chunk, stub
from tests.support.net import free_port


def _wait_serving(target: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with grpc.insecure_channel(target) as ch:
                got = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1
                )
                if got.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not become SERVING")


def _worker_pids(parent: int) -> set[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True, check=False
    )
    return {int(x) for x in out.stdout.split()}


def _assert_pinned(workers: set[int]) -> None:
    """Each worker's main thread (and the gRPC threads it started) on a core of its own; the
    compute thread of its stream on every core (`server.affinity`)."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:  # one core: nothing to pin
        assert all(os.sched_getaffinity(pid) == allowed for pid in workers)
        return
    cores = [os.sched_getaffinity(pid) for pid in sorted(workers)]
    assert all(len(c) == 1 for c in cores) and cores[0] != cores[1]
    for pid in workers:
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        assert any(os.sched_getaffinity(t) == allowed for t in threads)  # the compute thread


@pytest.mark.slow
def test_two_workers_share_a_port(base_config: ServerConfig) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--address",
            target,
            "--workers",
            "2",
            "--store-root",
            str(base_config.store_root),
            "--key-file",
            str(base_config.key_file),
            "--audit-dir",
            str(base_config.audit_dir),
            "--warm-store",
            "0",
            "--grace-period-s",
            "2",
            "--restart-backoff-s",
            "0.2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_serving(target)
        pids = _worker_pids(proc.pid)
        waited = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < waited:  # the first may serve before the
            time.sleep(0.1)  # supervisor has forked the second on a loaded machine
            pids = _worker_pids(proc.pid)
        assert len(pids) == 2
        served_by: set[int] = set()
        connections = 0
        # Separate connections until both workers answered (the second may still be binding
        # when the first is SERVING); 48 on one worker has probability 2**-47 once both listen.
        while served_by != {0, 1} and connections < 48:
            connections += 1
            ch = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            with ch:
                info = stub(ch).ServerInfo(pb.ServerInfoRequest())
                out = list(
                    stub(ch).CheckStream(iter([chunk(["1ABC234"], [DAY], zone=info.zones[0].name)]))
                )
                assert out[-1].summary.pairs == 1
                served_by.add(info.worker)
        assert served_by == {0, 1}
        _assert_pinned(pids)
        audit_dir = Path(base_config.audit_dir)
        assert sorted(p.name for p in audit_dir.glob("audit-w*.jsonl")) == [
            "audit-w0.jsonl",
            "audit-w1.jsonl",
        ]
        streams = sum(
            r["rpc"] == "CheckStream" and r["part"] == "end"
            for i in range(2)
            for _, r in read_records(audit_dir / f"audit-w{i}.jsonl")
        )
        assert streams == connections  # every stream closed by the worker that answered it
        # A dead worker is replaced.
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            now = _worker_pids(proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.1)
        assert len(_worker_pids(proc.pid)) == 2 and victim not in _worker_pids(proc.pid)
        _wait_serving(target)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "1ABC234" not in output


@pytest.mark.slow
def test_a_worker_that_cannot_start_stops_the_server(
    base_config: ServerConfig, tmp_path: Path
) -> None:
    """Each worker dies at start (the store was keyed with another plate key): the supervisor
    restarts it with growing pauses a bounded number of times, then exits 1 saying why."""
    other_key = tmp_path / "keys" / "other.key"
    generate_key_file(other_key)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--address", f"127.0.0.1:{free_port()}",
         "--workers", "2", "--store-root", str(base_config.store_root),
         "--key-file", str(other_key), "--audit-dir", str(base_config.audit_dir),
         "--warm-store", "0", "--restart-backoff-s", "0.05", "--max-quick-restarts", "2",
         "--log-level", "WARNING"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "died 3 times in a row" in done.stderr
    assert "stopping the server" in done.stderr
