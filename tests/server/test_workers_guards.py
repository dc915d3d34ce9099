"""Process safety: a second server on a served port or on a held audit directory is refused with
a message saying what to change; workers stop when their supervisor is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lez.errors import ServerStartRefused
from server.app import serve_forever
from server.config import ServerConfig
from server.guards import LOCK_NAME, ensure_port_free, hold_audit_dir
from tests.server.conftest import ServerThread
from tests.server.test_workers import _wait_serving, _worker_pids
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def _serve_args(config: ServerConfig, address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "server", "serve", "--address", address,
            "--store-root", str(config.store_root), "--key-file", str(config.key_file),
            "--audit-dir", str(config.audit_dir), "--warm-store", "0",
            "--grace-period-s", "1", *extra]  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}


def test_a_served_port_is_refused(base_config: ServerConfig, tmp_path: Path) -> None:
    first = ServerThread(base_config)
    try:
        taken = replace(
            base_config, address=f"127.0.0.1:{first.port}", audit_dir=tmp_path / "other"
        )
        with pytest.raises(ServerStartRefused) as refused:
            asyncio.run(serve_forever(taken))
        assert refused.value.message == (
            f"port {first.port} on 127.0.0.1 is already served by another process; stop that "
            "server, or give this one another --address"
        )
        assert not (tmp_path / "other").exists()  # refused before anything was opened
    finally:
        first.stop()
    ensure_port_free("127.0.0.1", first.port)  # free again once the first server stopped


def test_a_port_held_with_so_reuseport_is_refused() -> None:
    """The workers' own kind of socket: SO_REUSEPORT would let a second server share it."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(ServerStartRefused, match="already served by another process"):
            ensure_port_free("127.0.0.1", other.getsockname()[1])


def test_a_held_audit_directory_is_refused(base_config: ServerConfig) -> None:
    with hold_audit_dir(base_config.audit_dir) as lock:
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(ServerStartRefused) as refused:
            asyncio.run(serve_forever(base_config))  # port 0: only the directory is in use
        assert refused.value.message == (
            f"audit directory {base_config.audit_dir} is in use by another server "
            f"(pid {os.getpid()}); stop that server, or give this one another --audit-dir"
        )
        assert not list(base_config.audit_dir.glob("audit-w*.jsonl"))
    with hold_audit_dir(base_config.audit_dir):  # released with its holder
        pass
    assert (base_config.audit_dir / LOCK_NAME).exists()


def test_an_audit_directory_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ServerStartRefused) as refused, hold_audit_dir(blocker / "audit"):
        pass
    assert refused.value.message == (
        f"cannot use audit directory {blocker / 'audit'}: Not a directory; give --audit-dir a "
        "directory this server can create and write"
    )


@pytest.mark.slow
def test_a_second_server_process_is_refused(base_config: ServerConfig, tmp_path: Path) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    first = subprocess.Popen(
        _serve_args(base_config, target, "--workers", "2"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_serving(target)
        same_port = subprocess.run(
            _serve_args(replace(base_config, audit_dir=tmp_path / "b"), target, "--workers", "2"),
            env=_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert same_port.returncode == 1
        assert f"port {port} on 127.0.0.1 is already served by another process" in (
            same_port.stderr
        )
        same_dir = subprocess.run(
            _serve_args(base_config, f"127.0.0.1:{free_port()}"),
            env=_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert same_dir.returncode == 1
        assert f"audit directory {base_config.audit_dir} is in use by another server (pid " in (
            same_dir.stderr
        )
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)
    assert first.returncode == 0


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.slow
def test_workers_stop_when_the_supervisor_is_killed(base_config: ServerConfig) -> None:
    port = free_port()
    target = f"127.0.0.1:{port}"
    supervisor = subprocess.Popen(
        _serve_args(base_config, target, "--workers", "2"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_serving(target)
        workers = _worker_pids(supervisor.pid)
        assert len(workers) == 2
    finally:
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
    deadline = time.monotonic() + 20
    while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in workers), "workers outlived their supervisor"
    ensure_port_free("127.0.0.1", port)  # nothing serves the port any more
    with hold_audit_dir(base_config.audit_dir):  # and the audit directory is free
        pass


_ORPHAN = """
import os, signal, sys, time
from server.guards import ParentWatch
watch = ParentWatch()
pid = os.fork()
if pid == 0:
    sys.platform = "portable"  # no prctl: the pipe alone must notice
    def stopped(signum, frame):
        open(sys.argv[1], "w").write("stopped")
        os._exit(0)
    signal.signal(signal.SIGTERM, stopped)
    watch.arm(grace_s=30)
    while True:
        time.sleep(1)
print(pid, flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_the_pipe_watch_alone_stops_an_orphaned_worker(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    parent = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN, str(marker)],
        cwd=ROOT,
        env={**_env(), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    time.sleep(0.3)  # the worker has armed its watch
    assert not marker.exists()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(worker) and marker.read_text() == "stopped"
