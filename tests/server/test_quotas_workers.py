"""Quotas of a real two-worker server: counted once over both workers, kept when the whole
server is killed (SIGKILL) and started again, and a killed worker's stream slot given back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from server.config import ServerConfig
from tests.server.conftest import DAY
from tests.server.helpers import HeldStream, chunk, error_reason, stub
from tests.server.test_workers import _wait_serving, _worker_pids
from tests.support.net import free_port

CLIENTS = """
[[client]]
identity = "dev"
organisation = "Stad Gent"
roles = ["desk", "enforcement"]
checks_per_minute = 0
checks_per_day = {per_day}
concurrent_streams = 1
"""
PER_DAY = 6


def _serve(config: ServerConfig, clients: Path, target: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
    return subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--address", target, "--workers", "2",
         "--store-root", str(config.store_root), "--key-file", str(config.key_file),
         "--audit-dir", str(config.audit_dir), "--clients-file", str(clients),
         "--warm-store", "0", "--grace-period-s", "1", "--restart-backoff-s", "0.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _one_per_worker(target: str, timeout: float = 60.0) -> dict[int, grpc.Channel]:
    """A connection to each worker: separate connections until both answered (the kernel
    places them; the second worker may still be starting when the first serves)."""
    found: dict[int, grpc.Channel] = {}
    deadline = time.monotonic() + timeout
    while len(found) < 2 and time.monotonic() < deadline:
        ch = grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        worker = stub(ch).ServerInfo(pb.ServerInfoRequest(), timeout=10).worker
        if worker in found:
            ch.close()
            time.sleep(0.05)
        else:
            found[worker] = ch
    if len(found) < 2:
        for ch in found.values():
            ch.close()
        raise AssertionError("both workers did not answer")
    return found


def _kill_server(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the supervisor and its workers (nothing gets to stop gracefully)."""
    workers = _worker_pids(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in workers):
        time.sleep(0.05)


@pytest.mark.slow
def test_quotas_hold_across_two_workers_a_kill_and_a_restart(
    base_config: ServerConfig, tmp_path: Path
) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS.format(per_day=PER_DAY))
    target = f"127.0.0.1:{free_port()}"
    proc = _serve(base_config, clients, target)
    try:
        _wait_serving(target)
        channels = _one_per_worker(target)
        zone = stub(channels[0]).ServerInfo(pb.ServerInfoRequest()).zones[0].name
        request = pb.CheckRequest(plate="1ABC234", zone=zone, date="2025-06-02")
        answered, refused = 0, 0
        for i in range(2 * PER_DAY):  # alternately on each worker
            try:
                stub(channels[i % 2]).Check(request)
                answered += 1
            except grpc.RpcError as err:
                _, reason, meta = error_reason(err)
                assert (reason, meta["quota"]) == ("RATE_LIMITED", "checks_per_day")
                refused += 1
        assert (answered, refused) == (PER_DAY, PER_DAY)  # not twice the limit with 2 workers

        # one stream slot for the organisation, over both workers
        held = HeldStream(channels[0], zone, DAY)
        one = chunk(["1ABC234"], [DAY], zone=zone)
        with pytest.raises(grpc.RpcError) as exc:
            list(stub(channels[1]).CheckStream(iter([one])))
        assert error_reason(exc.value)[2]["quota"] == "concurrent_streams"
        # the worker holding it is killed: its slot comes back
        holder = next(pid for pid in _worker_pids(proc.pid) if _serves(pid, channels, 0))
        os.kill(holder, signal.SIGKILL)
        with pytest.raises(grpc.RpcError):
            held.end()
        assert list(stub(channels[1]).CheckStream(iter([one])))[-1].summary.pairs == 1
        for ch in channels.values():
            ch.close()

        _kill_server(proc)
        proc = _serve(base_config, clients, target)  # same state directory beside the audit
        _wait_serving(target)
        for worker, ch in _one_per_worker(target).items():
            with ch, pytest.raises(grpc.RpcError) as exc:
                stub(ch).Check(request)
            assert error_reason(exc.value)[2]["quota"] == "checks_per_day", worker
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)


def _serves(pid: int, channels: dict[int, grpc.Channel], worker: int) -> bool:
    """Whether process `pid` is the worker numbered `worker` (its command line does not say;
    the audit file it holds open does)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        targets = [os.readlink(fd) for fd in fds.iterdir()]
    except OSError:
        return False
    return any(t.endswith(f"audit-w{worker}.jsonl") for t in targets)
