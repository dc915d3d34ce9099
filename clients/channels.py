"""How a client reaches its servers: the gRPC target and the `ChannelPlan` (target, options and
TLS credentials, worked out once per client) that opens sync or asyncio channels.

Several addresses become one gRPC target with client-side `round_robin`
(`ipv4:127.0.0.1:5001,127.0.0.1:5002`; host names are resolved once to their addresses), so
unary calls and batch streams spread over replicas. A big batch also opens several channels with
`grpc.use_local_subchannel_pool`, so each has its own connection: one server with N worker
processes behind SO_REUSEPORT gets its connections spread over the workers by the kernel (and
the client reopens those that share a worker: `clients.core.spread`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, overload

import grpc
import grpc.aio

from clients.errors import InvalidRequest, file_problem
from clients.settings import ClientSettings, split_address


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _addresses_of(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise InvalidRequest(f"cannot resolve the server name {host!r}") from None
    out: list[str] = []
    for family, *_rest, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            out.append(str(sockaddr[0]))
    return list(dict.fromkeys(out))


def build_target(servers: Sequence[str]) -> tuple[str, str | None]:
    """The gRPC target for the addresses, and the host name to expect in a TLS certificate.

    One address is used as given (gRPC resolves it). Several become an `ipv4:`/`ipv6:` list
    (names resolved once here) for round_robin.
    """
    parsed = [split_address(s) for s in servers]
    if len(parsed) == 1:
        host, port = parsed[0]
        return (f"[{host}]:{port}" if ":" in host else f"{host}:{port}"), None
    names = [h for h, _ in parsed if not _is_ip(h)]
    v4: list[str] = []
    v6: list[str] = []
    for host, port in parsed:
        for ip in [host] if _is_ip(host) else _addresses_of(host, port):
            if ":" in ip:
                v6.append(f"[{ip}]:{port}")
            else:
                v4.append(f"{ip}:{port}")
    if v4:
        return "ipv4:" + ",".join(dict.fromkeys(v4)), (names[0] if names else None)
    return "ipv6:" + ",".join(dict.fromkeys(v6)), (names[0] if names else None)


ChannelOption = tuple[str, Any]
LOCAL_POOL: Final[ChannelOption] = ("grpc.use_local_subchannel_pool", 1)
"""The option that gives a batch channel its own connection (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """What every channel of one client shares, worked out once when the client is made: the
    target (host names resolved once), the channel options and the TLS credentials (PEM files
    read once). `open` makes a sync or asyncio channel from it; batch channels add
    `LOCAL_POOL`."""

    target: str
    options: tuple[ChannelOption, ...]
    credentials: grpc.ChannelCredentials | None

    @classmethod
    def of(cls, settings: ClientSettings) -> ChannelPlan:
        target, name = build_target(settings.servers)
        options: list[ChannelOption] = [
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.enable_retries", 0),  # retries are ours: bounded, RetryInfo-aware
        ]
        override = settings.server_name or name
        if settings.tls and override:
            options.append(("grpc.ssl_target_name_override", override))
        return cls(target, tuple(options), credentials(settings))

    def channel_options(self, *, batch: bool) -> list[ChannelOption]:
        return [*self.options, LOCAL_POOL] if batch else list(self.options)

    @overload
    def open(self, *, batch: bool = ..., aio: Literal[False] = ...) -> grpc.Channel: ...
    @overload
    def open(self, *, batch: bool = ..., aio: Literal[True]) -> grpc.aio.Channel: ...

    def open(self, *, batch: bool = False, aio: bool = False) -> grpc.Channel | grpc.aio.Channel:
        """A new channel (a batch channel, or a client's with `own_connection`: with its own
        connection); asyncio when `aio`."""
        options = self.channel_options(batch=batch)
        creds = self.credentials
        if aio:
            if creds is None:
                return grpc.aio.insecure_channel(self.target, options=options)
            return grpc.aio.secure_channel(self.target, creds, options=options)
        if creds is None:
            return grpc.insecure_channel(self.target, options=options)
        return grpc.secure_channel(self.target, creds, options=options)


def _read_pem(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(file_problem(path, exc, what=f"{what} file")) from None


def credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials (None for plain TCP on loopback)."""
    if not settings.tls:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(settings.ca, "CA certificate"),
        private_key=_read_pem(settings.key, "client key"),
        certificate_chain=_read_pem(settings.cert, "client certificate"),
    )
