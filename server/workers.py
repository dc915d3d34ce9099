"""Pre-fork worker processes sharing one port, and their supervisor.

Following grpc's `examples/python/multiprocessing`: the supervisor reserves the port with an
SO_REUSEPORT socket, then forks N workers *before any gRPC object exists*; each worker builds
its own `grpc.aio` server with `grpc.so_reuseport`, opens LMDB after the fork, and serves. The
Linux kernel spreads *connections* over the workers (one long stream stays on one worker, so a
client spreads a big batch over several connections). A worker that dies is restarted after
`restart_backoff_s`, doubled for each time in a row it died within `restart_stable_s` of its
start; after `max_quick_restarts` such restarts the server stops with exit status 1 instead of
burning the machine on a worker that cannot start (its error is in the log). SIGTERM/SIGINT to
the supervisor is passed to the workers, which stop gracefully within `grace_period_s`;
stragglers are killed after that.

Before forking, the supervisor refuses a port another process serves and an audit directory
another server holds, and creates the audit key if it is missing (`server.guards`,
`server.audit_keys`); it holds the audit directory's lock for its life. A worker stops by
itself when its supervisor dies (`guards.ParentWatch`).

Metrics (`server.metrics`): with a `metrics_address`, the supervisor gives the server run a
fresh multiprocess directory before forking, serves the aggregate of its workers there from
its own loop (no thread in a process that forks), marks each worker that exits as dead, counts
the restarts, and removes the directory when it stops.

Each worker's event loop and gRPC threads run on a core of their own (`server.affinity`,
`pin_workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from server.affinity import pin_worker
from server.audit_keys import ensure_audit_key_file
from server.config import ServerConfig
from server.guards import ParentWatch, ensure_port_free, hold_audit_dir

if TYPE_CHECKING:
    from server.metrics import MetricsEndpoint, SupervisorMetrics

log = logging.getLogger("lez.server")

KILL_MARGIN_S: Final = 5.0
"""Extra time after the grace period before a worker that has not exited is killed."""
POLL_S: Final = 0.2


@contextlib.contextmanager
def reserve_port(host: str, port: int) -> Iterator[int]:
    """Bind (not listen) an SO_REUSEPORT socket so the port stays ours; yields the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0:
        raise RuntimeError("SO_REUSEPORT is not available on this system")
    try:
        sock.bind((host, port))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def _run_worker(
    config: ServerConfig, index: int, watch: ParentWatch, endpoint: MetricsEndpoint | None
) -> None:
    """Body of a forked worker: its own event loop, gRPC server and LMDB reader."""
    from server.app import serve_forever

    if endpoint is not None:  # the supervisor's: this process must not hold its port
        endpoint.detach()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    code = 0
    if config.pin_workers:  # before any thread of the worker exists: they inherit it
        pin_worker(index)
    watch.arm(grace_s=config.grace_period_s + KILL_MARGIN_S)
    try:
        asyncio.run(serve_forever(config, worker=index, reuse_port=True))
    except BaseException:
        log.exception("worker %d failed", index)
        code = 1
    finally:
        logging.shutdown()
        os._exit(code)


class Supervisor:
    """Forks, watches and restarts the workers; stops them on SIGTERM."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.children: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}  # worker index -> when it was (re)started
        self.quick_failures: dict[int, int] = {}  # worker index -> deaths in a row soon after start
        self.restart_at: dict[int, float] = {}  # worker index -> when to restart it
        self.stopping = False
        self.failed = False
        self.watch: ParentWatch | None = None
        self.metrics_dir: Path | None = None
        self.metrics: SupervisorMetrics | None = None
        self.endpoint: MetricsEndpoint | None = None

    def _spawn(self, config: ServerConfig, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        assert self.watch is not None
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            _run_worker(config, index, self.watch, self.endpoint)
        self.children[pid] = index
        self.started[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, pid)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the process exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        ensure_port_free(self.config.host, self.config.port)
        if ensure_audit_key_file(self.config.audit_key_path):
            log.warning(
                "created the audit key %s: keep a copy of it off this machine, "
                "`lez-server verify-audit` needs it",
                self.config.audit_key_path,
            )
        self.watch = ParentWatch()
        with (
            hold_audit_dir(self.config.audit_dir),
            reserve_port(self.config.host, self.config.port) as port,
            self._metrics(),
        ):
            config = replace(self.config, address=f"{self.config.host}:{port}")
            print(
                f"lez-server listening on {config.address} with {config.workers} workers",
                flush=True,
            )
            for index in range(config.workers):
                self._spawn(config, index)
            while not self.stopping:
                self._reap(config)
                self._restart_due(config)
                if self.endpoint is not None:
                    self.endpoint.handle_pending(POLL_S)
                else:
                    time.sleep(POLL_S)
            self._stop_all()
            self.watch.close()
            return 1 if self.failed else 0

    @contextlib.contextmanager
    def _metrics(self) -> Iterator[None]:
        """With a metrics address: a fresh multiprocess directory for this run, and the
        endpoint serving the workers' aggregate; both gone when the server stops."""
        if not self.config.metrics_address:
            yield
            return
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="lez-metrics-"))
        try:
            from server import metrics

            metrics.enable_multiprocess(self.metrics_dir)  # before any metric exists
            self.metrics = metrics.SupervisorMetrics()
            self.endpoint = metrics.MetricsEndpoint(
                self.config.metrics_host, self.config.metrics_port, metrics.exposition_registry()
            )
            log.info(
                "metrics of all workers at http://%s:%d/metrics",
                self.config.metrics_host,
                self.endpoint.port,
                extra={"fields": {"metrics_dir": str(self.metrics_dir)}},
            )
            yield
        finally:
            if self.endpoint is not None:
                self.endpoint.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _exited(self, pid: int) -> None:
        if self.metrics_dir is not None:
            from server.metrics import worker_exited

            worker_exited(pid)

    def _reap(self, config: ServerConfig) -> None:
        """Collect dead workers and schedule their restarts (or give up on one that cannot
        start)."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            index = self.children.pop(pid, None)
            self._exited(pid)
            if index is None:
                continue
            log.error("worker %d (pid %d) died with status %d", index, pid, status)
            if self.stopping:
                continue
            lived = time.monotonic() - self.started.get(index, 0.0)
            quick = self.quick_failures.get(index, 0) + 1 if lived < config.restart_stable_s else 1
            self.quick_failures[index] = quick
            if quick > config.max_quick_restarts:
                log.error(
                    "worker %d died %d times in a row within %.0f s of starting: stopping the "
                    "server; the worker's error is logged above",
                    index,
                    quick,
                    config.restart_stable_s,
                )
                self.failed = self.stopping = True
                return
            delay = min(config.restart_backoff_s * 2 ** (quick - 1), config.restart_stable_s)
            self.restart_at[index] = time.monotonic() + delay

    def _restart_due(self, config: ServerConfig) -> None:
        now = time.monotonic()
        for index, due in list(self.restart_at.items()):
            if self.stopping:
                return
            if due <= now:
                del self.restart_at[index]
                self._spawn(config, index)
                if self.metrics is not None:
                    self.metrics.worker_restarts.labels(str(index)).inc()

    def _stop_all(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.grace_period_s + KILL_MARGIN_S
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.children.pop(pid, None)
            else:
                time.sleep(POLL_S / 4)
        for pid in list(self.children):
            log.error("worker pid %d did not stop in time: killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
