"""A big batch from one client reaches both worker processes of one server: SO_REUSEPORT
places each connection by a hash, and the client reopens connections that share a worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from clients import LezClient
from lez.days import from_day
from server.audit import read_records
from server.config import ServerConfig
from tests.clients.conftest import ZONE
from tests.server.conftest import DAY
from tests.support.net import free_port

CONNECTIONS = 2  # left to the kernel alone, both on one worker half of the time


def _two_workers(client_config: ServerConfig, address: str, audit: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "serve",
            "--address",
            address,
            "--workers",
            "2",
            "--store-root",
            str(client_config.store_root),
            "--key-file",
            str(client_config.key_file),
            "--audit-dir",
            str(audit),
            "--warm-store",
            "0",
            "--max-chunk-pairs",
            "1000",
            "--grace-period-s",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_batch_spreads_over_two_workers(client_config: ServerConfig, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    audit = tmp_path / "audit"
    proc = _two_workers(client_config, address, audit)
    try:
        with LezClient([address], connections=CONNECTIONS) as client:
            client.wait_until_serving(timeout=60)
            rows = [("1ABC234", "BE", from_day(DAY)), ("1XYZ987", "BE", DAY)] * 20_000
            result = client.check_batch(rows, zone=ZONE)
            # each worker names itself in ServerInfo; the batch connections reached both
            answered = set(client._workers_of(client._batch_channels))
            assert answered == {(0, 2), (1, 2)}
        assert result.outcome.tolist() == [1, 2] * 20_000
        assert result.summary.streams == CONNECTIONS
        records = [len(list(read_records(audit / f"audit-w{i}.jsonl"))) for i in range(2)]
        assert all(records), f"both workers answered part of the batch: {records}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_clients_with_their_own_connection_reach_both_workers(
    client_config: ServerConfig, tmp_path: Path
) -> None:
    """Clients of one process share one connection by default (gRPC's subchannel pool): while
    one is open, every other lands on its worker. With `own_connection` each has its own, and
    a few of them reach both workers."""
    address = f"127.0.0.1:{free_port()}"
    proc = _two_workers(client_config, address, tmp_path / "audit")
    try:
        with LezClient([address]) as first:
            first.wait_until_serving(timeout=60)
            home = first.server_info().worker
            shared = set()
            for _ in range(12):
                with LezClient([address]) as other:
                    shared.add(other.server_info().worker)
            own = set()
            for _ in range(12):  # each lands on either worker: both, but for 2 in 4,096 runs
                with LezClient([address], own_connection=True) as other:
                    own.add(other.server_info().worker)
        assert shared == {home}
        assert own == {0, 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
