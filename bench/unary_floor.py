"""The ceiling of unary `Check` on this machine: a gRPC server that does no work.

`lez-server` answers a single check in three parts: gRPC itself (grpc.aio on both sides, the
Python client library), the audit flush (one fdatasync per call before the answer completes),
and our own work (keying, lookup, rules, audit record). This module measures the first two
alone, so the bench can show where the time of a call goes:

- `empty`: a grpc.aio server with the service's channel options that returns one fixed,
  realistic `CheckResponse` (health says SERVING, so the real client library connects as usual);
- `flush`: the same, plus what the audit log does to the disk for each call: one ~0.5 KiB line
  written over a pre-zeroed file and fdatasynced before the answer;
- `audit`: the same server keeping the audit promise as the service keeps it, and nothing more:
  each call's record written by the service's own audit log (`server.app.open_audit_log`, its
  defaults: the keyed chain, the key's digest, canonical JSON, checkpoints) and durable before
  the answer (`AuditLog.durable`, flushed in the event loop when no other call is in progress,
  as the service does). The record names the caller, zone, revision and outcome of a single
  check and carries one 16-byte key (the request's plate is not keyed here: minimisation is
  another promise, and a key of the same size costs the record the same).

Run as a process of its own (`python -m bench.unary_floor --port P --mode empty|flush|audit --dir D
[--worker N]`); `FloorServer` starts and stops it. `--worker N` pins it as the service pins its
worker N (`server.affinity.pin_worker`: the same core), so a floor and a worker of the service
are compared on one core: on the bench machine the disk's interrupts go to one core, and a
single check's flush wakes a caller there sooner. Never used by the product.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bench import cli_help
from lez.api.v1 import access_pb2 as pb

if TYPE_CHECKING:
    from server.audit import AuditLog

SERVICE = pb.DESCRIPTOR.services_by_name["AccessService"].full_name
MODES = ("empty", "flush", "audit")
LINE_BYTES = 560
"""About the size of an audit record of one single check."""
FILE_BYTES = 64 << 20


def _response() -> pb.CheckResponse:
    msg = pb.CheckResponse(
        snapshot_id="20261124T000000Z-000001",
        ruleset_revision="2025-12-15",
        zone="Antwerpen",
        date="2026-06-01",
    )
    d = msg.decision
    d.outcome = pb.OUTCOME_ALLOWED
    d.allowed_until, d.euro, d.reason = "2027-12-31", "6d", pb.REASON_MEETS_CRITERIA
    t = d.technical
    t.category, t.fuel, t.first_registration = "M1", "01", "2019-03-01"
    t.max_mass_kg, t.co2_g_km, t.power_kw, t.version_valid_from = 1850, 120, 85, "2019-03-01"
    return msg


class _Floor:
    def __init__(self, mode: str, directory: Path) -> None:
        self.response = _response()
        self.fd = -1
        self.offset = 0
        self.audit: AuditLog | None = None
        self.in_progress = 0
        if mode == "audit":
            self.audit = floor_audit_log(directory / "audit", 0, key_file=directory / "audit.key")
        if mode == "flush":
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "floor-audit.bin"
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            zeros = bytes(1 << 20)
            for start in range(0, FILE_BYTES, len(zeros)):
                os.pwrite(self.fd, zeros, start)
            os.fsync(self.fd)
        self.line = b"x" * (LINE_BYTES - 1) + b"\n"

    async def Check(self, request: pb.CheckRequest, context: Any) -> pb.CheckResponse:
        if self.audit is not None:
            self.in_progress += 1
            try:
                return await self._audited()
            finally:
                self.in_progress -= 1
        if self.fd >= 0:
            os.pwrite(self.fd, self.line, self.offset)
            self.offset = (self.offset + LINE_BYTES) % (FILE_BYTES - LINE_BYTES)
            os.fdatasync(self.fd)
        return self.response

    async def _audited(self) -> pb.CheckResponse:
        """The single check's record, as `AccessService.Check` writes it, durable before the
        answer."""
        from server.audit import KeyBatch

        assert self.audit is not None
        keys = KeyBatch()
        keys.add(FLOOR_KEY)
        recorded = self.audit.append(
            rpc="Check", identity="dev", organisation="local development", roles=FLOOR_ROLES,
            zone=self.response.zone, ruleset_revision=self.response.ruleset_revision,
            snapshot_id=self.response.snapshot_id, pairs=1, outcomes={"ALLOWED": 1}, keys=keys,
            request_id=os.urandom(16).hex(),  # as `server.calls.request_id` makes one
        )  # fmt: skip
        await self.audit.durable(recorded.seq, alone=lambda: self.in_progress <= 1)
        return self.response


FLOOR_KEY = bytes(range(16))
"""The key every `audit` floor record carries (a key's size is all the record's cost sees)."""
FLOOR_ROLES = ("appeals", "desk", "enforcement", "integrator", "monitoring", "operator", "public")
"""The development identity's roles, which the service records for the bench's plain-TCP caller."""


def floor_audit_log(directory: Path, worker: int, key_file: Path | None = None) -> AuditLog:
    """The service's audit log as `lez-server serve` opens it with its defaults
    (`server.app.open_audit_log`), writing in `directory`, keyed by `key_file` (made when
    missing; default `audit.key` in `directory`): the floors' records cost what the service's
    cost."""
    from server.app import open_audit_log
    from server.config import ServerConfig

    config = dataclasses.replace(
        ServerConfig(), audit_dir=directory, audit_key_file=key_file or directory / "audit.key"
    )
    return open_audit_log(config, worker)


async def _serve(port: int, mode: str, directory: Path) -> None:
    from server.app import server_options
    from server.config import ServerConfig

    server = grpc.aio.server(
        options=server_options(ServerConfig(), reuse_port=False),
        maximum_concurrent_rpcs=ServerConfig().max_concurrent_rpcs,
    )
    floor = _Floor(mode, directory)
    check = grpc.unary_unary_rpc_method_handler(
        floor.Check,
        request_deserializer=pb.CheckRequest.FromString,
        response_serializer=pb.CheckResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Check": check}),)
    )
    await serve_until_stopped(server, port)


def floor_credentials(certs: Path) -> grpc.ServerCredentials:
    """Mutual TLS as `lez-server serve --tls-*` sets it up (`server.app.server_credentials`),
    from a folder that `server.certs.write_dev_certs` filled (server.pem, server.key, ca.pem)."""
    from server.app import server_credentials
    from server.config import ServerConfig

    config = dataclasses.replace(
        ServerConfig(),
        tls_cert=certs / "server.pem",
        tls_key=certs / "server.key",
        tls_ca=certs / "ca.pem",
    )
    return server_credentials(config)


async def serve_until_stopped(
    server: grpc.aio.Server, port: int, credentials: grpc.ServerCredentials | None = None
) -> None:
    """What every floor server does around its RPCs: health (SERVING, so the client library
    connects as it does to the service), the loopback `port` (plain, or `localhost:port` with
    `credentials`, as the bench's TLS servers listen), and serving until SIGTERM."""
    checker = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    if credentials is None:
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        server.add_secure_port(f"localhost:{port}", credentials)
    await server.start()
    await checker.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(0.5)


class FloorServer:
    """`python -m bench.unary_floor` on a loopback port, started and stopped by the bench."""

    def __init__(self, mode: str, scratch: Path, worker: int | None = None) -> None:
        """`worker`: pinned to the core of the service's worker of that index."""
        from bench.stream import free_port, fresh_audit_dir

        fresh_audit_dir(scratch / "audit")
        self.mode, self.scratch, self.worker = mode, scratch, worker
        self.address = f"127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FloorServer:
        from clients import LezClient

        port = self.address.rsplit(":", 1)[1]
        cmd = [sys.executable, "-m", "bench.unary_floor", "--port", port, "--mode", self.mode,
               "--dir", str(self.scratch)]  # fmt: skip
        if self.worker is not None:
            cmd += ["--worker", str(self.worker)]
        self.proc = subprocess.Popen(cmd, start_new_session=True)
        with LezClient([self.address]) as client:
            client.wait_until_serving(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.unary_floor", __doc__)
    p.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    p.add_argument(
        "--mode", choices=MODES, required=True,
        help="empty; flush once a call; or audit: the service's audit record a call",
    )  # fmt: skip
    p.add_argument("--dir", type=Path, required=True, help="scratch folder for the flush file")
    p.add_argument(
        "--worker", type=int, default=None,
        help="pin to the core the service pins its worker of this index to (default: not pinned)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.worker is not None:
        from server.affinity import pin_worker

        pin_worker(args.worker)  # before grpc starts its threads: they inherit it
    asyncio.run(_serve(args.port, args.mode, args.dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
