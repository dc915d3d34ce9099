"""One serving process: a `grpc.aio` server with AccessService, health and reflection.

`App` wires config, key, store holder, auth, the shared quotas (`server.quotas`), the
worker's caps on work in flight (`server.admission`) and audit into the servicer (and the
audit of refused calls, `server.audit_refusals`, around it), binds the port (mutual TLS, or
plain TCP on loopback), starts the hot-reload watcher, and reports health:
`grpc.health.v1` says SERVING (for "" and `lez.api.v1.AccessService`) only while a store is
loaded, NOT_SERVING before that and during shutdown. Message size limits and the concurrency
limit come from the config. `stop()` is graceful: health goes NOT_SERVING, new calls are
refused, calls in flight get `grace_period_s` to finish, and the ones still running then are
ended with UNAVAILABLE (`server.calls`), so none is cut off under grpc.

Every call is counted in the process's `ServerMetrics` (`server.metrics`), and the served
snapshot is exported there on every switch. A whole server in one process also serves them at
`metrics_address`; under a supervisor the supervisor serves the aggregate of its workers.

`serve_forever` without SO_REUSEPORT is a whole server in one process: it refuses a port that
another process serves and an audit directory another server holds (`server.guards`), and
holds that directory's lock while it runs. Under a supervisor the supervisor does both.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer, load_key
from server.admission import Admission, Caps
from server.audit import AuditLog, AuditWriter, NoAudit
from server.audit_keys import ensure_audit_key_file, load_audit_keys
from server.auth import Authenticator, Identity
from server.config import MIB, ServerConfig
from server.guards import ensure_port_free, hold_audit_dir
from server.metrics import MetricsEndpoint, ServerMetrics, exposition_registry
from server.quotas import QuotaStore
from server.service import AccessService, add_access_service
from server.state import ServedSnapshot, StoreHolder

log = logging.getLogger("lez.server")

CLOSING_RECORDS_S: Final = 2.0
"""On stop: how long streams cut by the grace period get to write their closing records."""
SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["AccessService"].full_name
STOP_MARGIN_S: Final = 1.0
"""On stop, calls still running at the end of the grace period are ended by the servicer; grpc
waits this much longer for them before cutting them off itself."""
DRAIN_POLL_S: Final = 0.02


def server_options(config: ServerConfig, *, reuse_port: bool) -> list[tuple[str, Any]]:
    """Channel arguments of the server: explicit message limits, SO_REUSEPORT on demand."""
    return [
        ("grpc.max_receive_message_length", config.max_receive_message_bytes),
        ("grpc.max_send_message_length", config.max_send_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]


def open_audit_log(config: ServerConfig, worker: int) -> AuditLog:
    """A worker's audit log as `config` sets it up (its audit key file made when missing, with a
    warning to keep a copy of it)."""
    if ensure_audit_key_file(config.audit_key_path):
        log.warning(
            "created the audit key %s: keep a copy of it off this machine, "
            "`lez-server verify-audit` needs it",
            config.audit_key_path,
        )
    return AuditLog(
        config.audit_dir,
        keys=load_audit_keys(config.audit_key_path),
        worker=worker,
        inline_keys=config.audit_inline_keys,
        sync_window_s=config.audit_sync_ms / 1000,
        preallocate_bytes=config.audit_preallocate_mb * MIB,
        checkpoint_dir=config.audit_checkpoint_path,
        checkpoint_every_records=config.audit_checkpoint_records,
        checkpoint_every_s=config.audit_checkpoint_s,
        rotate_bytes=config.audit_rotate_mb * MIB,
        rotate_daily=config.audit_rotate_daily,
        retention_days=config.audit_retention_days,
    )


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """Mutual TLS: the server's pair plus the CA whose client certificates are required."""
    assert config.tls_cert and config.tls_key and config.tls_ca
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=config.tls_ca.read_bytes(),
        require_client_auth=True,
    )


@dataclass
class App:
    """A running (or ready to start) serving process."""

    config: ServerConfig
    worker: int = 0
    reuse_port: bool = False
    keyer: PlateKeyer | None = None
    clients: dict[str, Identity] | None = None
    port: int = 0
    server: grpc.aio.Server | None = None
    holder: StoreHolder | None = None
    service: AccessService | None = None
    health: Any = None
    audit: AuditWriter | None = None
    quotas: QuotaStore | None = None
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    metrics_endpoint: MetricsEndpoint | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> int:
        """Build everything, bind, start; returns the bound port. Store errors are fatal."""
        config = self.config
        keyer = self.keyer or load_key(config.key_file)
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.holder = StoreHolder(
            config.store_root,
            key_id=keyer.key_id,
            rules_dir=config.rules_dir,
            warm=config.warm_store,
        )
        loaded = await asyncio.to_thread(self.holder.load)
        if not loaded:
            log.warning("no store published under %s yet: NOT_SERVING", config.store_root)
        current = self.holder.current
        self.metrics.serve_snapshot(current.meta if current is not None else None)
        self.audit = open_audit_log(config, self.worker) if not config.audit_off else NoAudit()
        self.audit.on_write = self.metrics.observe_audit_write
        auth = Authenticator(config, self.clients)
        self.quotas = QuotaStore(config.state_path)  # opened after the fork, like the store
        self.service = AccessService(
            config=config,
            holder=self.holder,
            keyer=keyer,
            auth=auth,
            quotas=self.quotas,
            admission=Admission(Caps.of(config)),
            audit=self.audit,
            worker=self.worker,
            metrics=self.metrics,
        )
        self.server = grpc.aio.server(
            options=server_options(config, reuse_port=self.reuse_port),
            maximum_concurrent_rpcs=config.max_concurrent_rpcs,
        )
        add_access_service(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        if config.tls:
            self.port = self.server.add_secure_port(config.address, server_credentials(config))
        else:
            self.port = self.server.add_insecure_port(config.address)
        if self.port == 0:
            raise OSError(f"cannot bind {config.address}")
        await self.server.start()
        if config.metrics_address and not self.reuse_port:  # a whole server in this process
            self.metrics_endpoint = MetricsEndpoint(
                config.metrics_host, config.metrics_port, exposition_registry(self.metrics.registry)
            )
            self.metrics_endpoint.serve_in_thread()
            log.info(
                "metrics at http://%s:%d/metrics", config.metrics_host, self.metrics_endpoint.port
            )
        await self._set_health(self.holder.current)
        self.holder.on_change = self._on_change
        self._tasks.append(asyncio.create_task(self.holder.watch(config.reload_interval_s)))
        log.info(
            "worker %d listening on port %d (%s)",
            self.worker,
            self.port,
            "mutual TLS" if config.tls else "plain TCP, loopback only",
        )
        return self.port

    def _on_change(self, served: ServedSnapshot | None) -> None:
        self.metrics.serve_snapshot(served.meta if served is not None else None)
        self._tasks.append(asyncio.get_running_loop().create_task(self._set_health(served)))

    async def _set_health(self, served: ServedSnapshot | None) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if served is not None
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: NOT_SERVING, refuse new calls, let calls in flight finish within the
        grace period, end the ones still running with UNAVAILABLE."""
        grace = self.config.grace_period_s if grace is None else grace
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        if self.service is not None:
            self.service.stopping = True
        if self.server is not None:
            stopped = asyncio.create_task(self.server.stop(grace + STOP_MARGIN_S))
            if self.service is not None:
                await self._drain(grace)
                ended = self.service.calls.end_remaining()
                if ended:
                    log.info(
                        "worker %d: %d calls still running were told to end", self.worker, ended
                    )
            await stopped
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close()
        if self.service is not None:
            if self.service.open_streams:  # cut by the grace period: let them record how
                await asyncio.wait(self.service.open_streams, timeout=CLOSING_RECORDS_S)
            self.service.close()
        if self.holder is not None:
            self.holder.close()
        if self.audit is not None:
            self.audit.close()
        if self.quotas is not None:
            self.quotas.close()

    async def _drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for the servicer's calls in flight to finish."""
        assert self.service is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.service.calls.running and loop.time() < deadline:
            await asyncio.sleep(min(DRAIN_POLL_S, max(0.0, deadline - loop.time())))

    async def wait(self) -> None:
        assert self.server is not None
        await self.server.wait_for_termination()


async def serve_forever(config: ServerConfig, *, worker: int = 0, reuse_port: bool = False) -> None:
    """Run one serving process until SIGTERM/SIGINT, then stop gracefully."""
    import signal

    with contextlib.ExitStack() as guards:
        if not reuse_port:  # a whole server in this process (a supervisor guards its workers)
            ensure_port_free(config.host, config.port)
            guards.enter_context(hold_audit_dir(config.audit_dir))
        app = App(config, worker=worker, reuse_port=reuse_port)
        await app.start()
        settle_heap()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("worker %d stopping (grace %.1fs)", worker, config.grace_period_s)
        await app.stop()
        await _let_tasks_finish(STOP_MARGIN_S)


def settle_heap() -> None:
    """Once a serving process has started: collect, then move every object alive now (store,
    rule tables, code lists, grpc and module state) out of the garbage collector's sight
    (`gc.freeze`). They live as long as the process, so the full collections that calls'
    garbage triggers from time to time no longer walk them (one took about 17 ms in a bench
    worker, a pause of the event loop)."""
    gc.collect()
    gc.freeze()


async def _let_tasks_finish(timeout_s: float) -> None:
    """Give the tasks grpc still runs after a stop (closing calls) time to end by themselves:
    `asyncio.run` would cancel them, and grpc logs each such cancellation with a traceback."""
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    if pending:
        _, left = await asyncio.wait(pending, timeout=timeout_s)
        if left:
            log.debug("%d tasks still running at exit", len(left))
