"""What the sync and asyncio clients share: settings, the channel plan (target, options and
credentials, worked out once per client), deadlines, the retry policy, and the chunk source that
feeds one batch to several streams.

Several addresses become one gRPC target with client-side `round_robin`
(`ipv4:127.0.0.1:5001,127.0.0.1:5002`; host names are resolved once to their addresses), so
unary calls and batch streams spread over replicas. A big batch also opens several channels with
`grpc.use_local_subchannel_pool`, so each has its own connection: one server with N worker
processes behind SO_REUSEPORT gets its connections spread over the workers by the kernel, and
each stream pulls chunks as it answers them, so a busy worker simply gets fewer. The kernel
places a connection by a hash of its ports, so a few connections may all land on one worker:
before its first batch a client asks each connection which worker answers (`ServerInfo`) and
reopens the ones that share a worker (`crowded`), a few times at most.
"""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal, overload

import grpc
import grpc.aio

from clients.errors import DeadlineExceeded, InvalidRequest, LezClientError, file_problem
from clients.packing import Pairs, iter_pairs
from lez.api.v1 import access_pb2 as pb

MIB: Final = 2**20
DEFAULT_SERVER: Final = "127.0.0.1:50051"
SPREAD_ATTEMPTS: Final = 16
"""Rounds of reopening batch connections that landed on an already used worker process."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """Every knob of a client, with its default. Times in seconds."""

    servers: tuple[str, ...] = (DEFAULT_SERVER,)
    """host:port of each server (replicas); several are balanced with round_robin."""
    ca: Path | None = None
    """CA certificate (PEM) that signs the server's certificate; with cert and key: mTLS."""
    cert: Path | None = None
    """This client's certificate (PEM)."""
    key: Path | None = None
    """This client's private key (PEM)."""
    server_name: str | None = None
    """Name to check in the server certificate when it differs from the address."""
    timeout_s: float | None = 30.0
    """Deadline of one unary call, retries included (None: no deadline)."""
    batch_timeout_s: float | None = None
    """Deadline of a whole batch (None: no deadline)."""
    retries: int = 4
    """Attempts after the first for UNAVAILABLE (server unreachable or store not ready)."""
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0
    backoff_multiplier: float = 2.0
    connections: int = 4
    """Channels (connections) a batch is spread over."""
    chunk_size: int | None = None
    """Pairs per chunk; None: the smaller of `default_chunk_pairs` and the server's limit."""
    default_chunk_pairs: int = 25_000
    window: int = 2
    """Chunks in flight per stream (sent, not answered yet)."""
    max_message_bytes: int = 32 * MIB
    """Largest message sent or received."""

    @classmethod
    def resolve(
        cls,
        servers: Sequence[str] | str | None = None,
        settings: ClientSettings | None = None,
        **overrides: Any,
    ) -> ClientSettings:
        """The validated settings of a client: `settings` (else the defaults), with `servers`
        (a list, or one text with commas) and any field given as a keyword instead."""
        if servers is not None:
            listed = servers.split(",") if isinstance(servers, str) else servers
            overrides["servers"] = tuple(s.strip() for s in listed if s.strip())
        base = settings or cls()
        return (replace(base, **overrides) if overrides else base).validate()

    @property
    def tls(self) -> bool:
        return self.ca is not None or self.cert is not None

    def validate(self) -> ClientSettings:
        if not self.servers:
            raise InvalidRequest("give at least one server address (host:port)")
        for s in self.servers:
            split_address(s)
        if (self.cert is None) != (self.key is None):
            raise InvalidRequest("a client certificate needs both --cert and --key")
        if self.cert is not None and self.ca is None:
            raise InvalidRequest("mutual TLS needs the CA certificate too (--ca)")
        if self.connections < 1 or self.window < 1 or self.retries < 0:
            raise InvalidRequest("connections and window must be positive, retries >= 0")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise InvalidRequest("the chunk size must be positive")
        return self


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; InvalidRequest saying what is expected."""
    text = address.strip()
    for prefix in ("dns:///", "ipv4:", "ipv6:"):
        text = text.removeprefix(prefix)
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidRequest(f"server address {address!r} must be host:port, e.g. 127.0.0.1:50051")
    return host, int(port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int) -> list[str]:
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
        for ip in [host] if _is_ip(host) else _resolve(host, port):
            if ":" in ip:
                v6.append(f"[{ip}]:{port}")
            else:
                v4.append(f"{ip}:{port}")
    if v4:
        return "ipv4:" + ",".join(dict.fromkeys(v4)), (names[0] if names else None)
    return "ipv6:" + ",".join(dict.fromkeys(v6)), (names[0] if names else None)


Option = tuple[str, Any]
LOCAL_POOL: Final[Option] = ("grpc.use_local_subchannel_pool", 1)
"""The option that gives a batch channel its own connection (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class ChannelPlan:
    """What every channel of one client shares, worked out once when the client is made: the
    target (host names resolved once), the channel options and the TLS credentials (PEM files
    read once). `open` makes a sync or asyncio channel from it; batch channels add
    `LOCAL_POOL`."""

    target: str
    options: tuple[Option, ...]
    credentials: grpc.ChannelCredentials | None

    @classmethod
    def of(cls, settings: ClientSettings) -> ChannelPlan:
        target, name = build_target(settings.servers)
        options: list[Option] = [
            ("grpc.lb_policy_name", "round_robin"),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.enable_retries", 0),  # retries are ours: bounded, RetryInfo-aware
        ]
        override = settings.server_name or name
        if settings.tls and override:
            options.append(("grpc.ssl_target_name_override", override))
        return cls(target, tuple(options), credentials(settings))

    def channel_options(self, *, batch: bool) -> list[Option]:
        return [*self.options, LOCAL_POOL] if batch else list(self.options)

    @overload
    def open(self, *, batch: bool = ..., aio: Literal[False] = ...) -> grpc.Channel: ...
    @overload
    def open(self, *, batch: bool = ..., aio: Literal[True]) -> grpc.aio.Channel: ...

    def open(self, *, batch: bool = False, aio: bool = False) -> grpc.Channel | grpc.aio.Channel:
        """A new channel (a batch channel: with its own connection); asyncio when `aio`."""
        options = self.channel_options(batch=batch)
        creds = self.credentials
        if aio:
            if creds is None:
                return grpc.aio.insecure_channel(self.target, options=options)
            return grpc.aio.secure_channel(self.target, creds, options=options)
        if creds is None:
            return grpc.insecure_channel(self.target, options=options)
        return grpc.secure_channel(self.target, creds, options=options)


def crowded(answered_by: Sequence[tuple[int, int]]) -> list[int]:
    """The batch connections to reopen so that they reach as many worker processes as they can.

    `answered_by[i]` is (worker, workers) as connection i's `ServerInfo` answered. While fewer
    workers are reached than could be, every connection that shares a worker with an earlier
    one is reopened (the kernel places the new ones afresh). Empty when the spread is as good as
    it gets, when the server runs one worker, or does not say (an older server answers 0)."""
    reachable = min(len(answered_by), max((n for _, n in answered_by), default=0))
    first: dict[int, int] = {}
    again: list[int] = []
    for i, (worker, _) in enumerate(answered_by):
        if worker in first:
            again.append(i)
        else:
            first[worker] = i
    return again if len(first) < reachable else []


def _read(path: Path | None, what: str) -> bytes | None:
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
        root_certificates=_read(settings.ca, "CA certificate"),
        private_key=_read(settings.key, "client key"),
        certificate_chain=_read(settings.cert, "client certificate"),
    )


class Deadline:
    """The end of a call or batch, as seconds from now (None: no deadline)."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        """Seconds left; raises DeadlineExceeded once none are (gRPC reads a timeout of 0 as
        "no deadline", so an expired deadline must never be passed on)."""
        if self.end is None:
            return None
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("the deadline passed before the answer was complete")
        return left

    def allows(self, delay: float) -> bool:
        """Whether waiting `delay` seconds still leaves time for another attempt."""
        return self.end is None or time.monotonic() + delay < self.end


class Backoff:
    """Exponential backoff with full jitter; a RetryInfo delay from the server wins."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.attempt = 0

    def next_delay(self, err: LezClientError) -> float | None:
        """Seconds to wait before the next attempt, or None when the error is final."""
        s = self.settings
        if not err.retryable or self.attempt >= s.retries:
            return None
        cap = min(s.backoff_max_s, s.backoff_initial_s * s.backoff_multiplier**self.attempt)
        self.attempt += 1
        delay = random.uniform(cap / 2, cap)
        if err.retry_after_s is not None:
            delay = max(delay, err.retry_after_s)
        return delay


@dataclass(slots=True)
class SentChunk:
    """A chunk handed to a stream: its message and where its rows sit in the input."""

    chunk_id: int
    first_index: int
    count: int
    message: pb.CheckChunk


class ChunkSource:
    """Hands out the chunks of one batch to several streams (thread-safe, lazy).

    Chunks a failed stream had sent but not seen answered are given back and handed out again
    first, so a retried batch still answers every row exactly once.
    """

    def __init__(
        self,
        source: Pairs | Iterable[Sequence[object]],
        *,
        zone: str,
        ruleset: str,
        chunk_size: int,
    ) -> None:
        self._parts: Iterator[tuple[Pairs, int, int]] = iter_pairs(source, chunk_size)
        self._zone = zone
        self._ruleset = ruleset
        self._lock = threading.Lock()
        self._retry: deque[SentChunk] = deque()
        self._next_id = 0
        self._next_index = 0
        self.exhausted = False

    def next(self) -> SentChunk | None:
        with self._lock:
            if self._retry:
                return self._retry.popleft()
            if self.exhausted:
                return None
            try:
                pairs, start, stop = next(self._parts)
            except StopIteration:
                self.exhausted = True
                return None
            msg = pairs.chunk(
                start, stop, chunk_id=self._next_id, zone=self._zone, ruleset=self._ruleset
            )
            sent = SentChunk(self._next_id, self._next_index, stop - start, msg)
            self._next_id += 1
            self._next_index += stop - start
            return sent

    def give_back(self, chunks: Iterable[SentChunk]) -> None:
        with self._lock:
            self._retry.extendleft(reversed(list(chunks)))

    @property
    def sent_pairs(self) -> int:
        return self._next_index

    @property
    def chunks(self) -> int:
        return self._next_id
