"""`lez-server health`: ask a server's `grpc.health.v1` service, for container probes.

Kubernetes' own gRPC probe cannot present a client certificate, and a production server
accepts only mutual TLS, so the probes run this command inside the container (an `exec`
probe, or Docker's HEALTHCHECK) with a certificate of its own (the CA must sign it; it needs
no entry in the clients file, since the health service asks for no role).

- readiness (default): exit 0 when the server answers SERVING for `lez.api.v1.AccessService`
  (a store is loaded), else 1;
- liveness (`--live`): exit 0 when the server answers at all, SERVING or NOT_SERVING (a
  replica waiting for its first store is alive, only not ready), else 1.

Exit 2 for a usage error. Options fall back to `LEZ_PROBE_*` environment variables, so an
image can set them once (docs/operations.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Final

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lez.api.v1 import access_pb2 as pb

SERVICE: Final = pb.DESCRIPTOR.services_by_name["AccessService"].full_name
ENV_PREFIX: Final = "LEZ_PROBE_"
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

_OPTIONS: Final = (
    ("address", "host:port of the server", "127.0.0.1:50051"),
    ("tls_ca", "CA certificate PEM that signs the server's certificate (mutual TLS)", None),
    ("tls_cert", "the probe's client certificate PEM", None),
    ("tls_key", "the probe's client key PEM", None),
    ("server_name", "name to expect in the server certificate (default: the host)", None),
    ("timeout", "seconds to wait for the answer", "3"),
)


def add_health_parser(sub: Any) -> None:
    """The `health` subcommand of `lez-server`."""
    p = sub.add_parser(
        "health",
        help="ask a server's grpc.health.v1 service (container probes)",
        description=(
            "Exit 0 when the server answers SERVING for lez.api.v1.AccessService (a store is "
            "loaded), 1 otherwise; with --live, 0 when it answers at all. 2 for usage errors. "
            "Each option falls back to a LEZ_PROBE_* environment variable."
        ),
        epilog="example: lez-server health --address 127.0.0.1:50051 --tls-ca ca.pem "
        "--tls-cert probe.pem --tls-key probe.key --server-name lez-server",
    )
    for name, what, default in _OPTIONS:
        env = ENV_PREFIX + name.upper()
        p.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            default=os.environ.get(env, default),
            metavar="SECONDS" if name == "timeout" else "VALUE",
            help=f"{what} [env {env}; default {default}]",
        )
    p.add_argument(
        "--live",
        action="store_true",
        help="liveness: any answer (SERVING or NOT_SERVING) is success",
    )


def _channel(args: argparse.Namespace) -> grpc.Channel:
    tls = (args.tls_ca, args.tls_cert, args.tls_key)
    if not any(tls):
        return grpc.insecure_channel(args.address)
    if not all(tls):
        raise ValueError("mutual TLS needs all of --tls-ca, --tls-cert and --tls-key")
    ca, cert, key = (Path(p).read_bytes() for p in tls)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.address, credentials, options=options)


def run(args: argparse.Namespace) -> int:
    """Ask once; print the status (or why there is none) and return the exit code."""
    try:
        timeout = float(args.timeout)
        channel = _channel(args)
    except (ValueError, OSError) as exc:
        print(f"lez-server health: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        print(f"lez-server health: {args.address}: no answer ({code})", file=sys.stderr)
        return EXIT_FAILED
    finally:
        channel.close()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"{args.address}: {status}")
    if args.live or answer.status == health_pb2.HealthCheckResponse.SERVING:
        return EXIT_OK
    return EXIT_FAILED
