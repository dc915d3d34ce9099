"""`ClientSettings`: every knob of a client with its default, resolved and validated once per
client; and `split_address`, the one reading of a `host:port` server address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from clients.errors import InvalidRequest

BYTES_PER_MIB: Final = 2**20
DEFAULT_SERVER: Final = "127.0.0.1:50051"


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
    own_connection: bool = False
    """Single calls on a connection of this client's own. By default gRPC lets every client of
    a process that reaches the same server with the same settings share one connection, so
    their calls all go to the one worker process that connection landed on; a client that
    must reach a worker of its own (a load test, a caller choosing its worker by
    `ServerInfo.worker`) sets this. A batch's streams always have their own connections."""
    chunk_size: int | None = None
    """Pairs per chunk; None: the smaller of `default_chunk_pairs` and the server's limit."""
    default_chunk_pairs: int = 50_000
    """Each chunk costs the server a fixed part (its audit record and logged keys, made durable
    before its answer, and a round through the event loop): the 500,000-pair batch took 0.182 s
    in 50,000-pair chunks against 0.192 s in 25,000-pair chunks, alternated in one run."""
    window: int = 2
    """Chunks in flight per stream (sent, not answered yet)."""
    max_message_bytes: int = 32 * BYTES_PER_MIB
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
