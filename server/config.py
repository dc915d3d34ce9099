"""The server's one configuration object, built once from argv and `LEZ_*` environment variables.

Precedence: command-line option, then environment variable, then the default here. Every limit
the server enforces lives in `ServerConfig`; no other module holds a magic number for one.
`validate()` refuses combinations that would be unsafe (plain TCP off loopback) or useless.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final

ENV_PREFIX: Final = "LEZ_"
LOG_FORMATS: Final = ("text", "json")
MIB: Final = 2**20


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """Everything `lez-server serve` needs. Paths are not opened here."""

    address: str = "127.0.0.1:50051"
    """host:port to listen on (port 0 picks a free port; in-process tests only)."""
    workers: int = 1
    """Worker processes sharing the port with SO_REUSEPORT (one per core is the sweet spot)."""
    pin_workers: bool = True
    """With several workers: each worker's event loop and gRPC threads on one core, worker i on
    the i-th allowed core (wrapping round), its streams' compute and audit threads on any core
    (`server.affinity`). Off where clients or other pinned work share the cores."""
    store_root: Path = Path("var/store")
    """Store root written by `lez-loader` (holds `current` -> `builds/<snapshot>`)."""
    key_file: Path = Path("var/keys/hmac.key")
    """HMAC key file; its key id must match the store's."""
    rules_dir: Path | None = None
    """Extra rule-table files (`<revision>.*`) served in addition to the store's revisions."""
    clients_file: Path | None = None
    """TOML file mapping certificate identities to organisations, roles, zones, limits."""
    tls_cert: Path | None = None
    """Server certificate (PEM). With `tls_key` and `tls_ca`: mutual TLS."""
    tls_key: Path | None = None
    """Server private key (PEM)."""
    tls_ca: Path | None = None
    """CA that signs client certificates (PEM); client certificates are required."""
    dev_identity: str = "dev"
    """Identity given to plain-TCP loopback callers (development only)."""
    max_receive_message_bytes: int = 32 * MIB
    """Largest message the server accepts."""
    max_send_message_bytes: int = 32 * MIB
    """Largest message the server sends."""
    max_chunk_pairs: int = 100_000
    """Most pairs in one CheckChunk."""
    max_plate_bytes: int = 32
    """Longest plate (bytes as written, separators included) read from a packed column."""
    max_recheck_items: int = 1_000
    """Most earlier decisions in one RecheckRequest."""
    max_concurrent_rpcs: int = 256
    """Calls in progress per worker before RESOURCE_EXHAUSTED."""
    default_checks_per_minute: int = 35
    """Single checks (`Check` calls) an organisation may make per minute when the clients file
    gives none (0 = unlimited; refused for the public role). 35, as the register API the service
    takes its conventions from (docs/sources.md#woz-api)."""
    default_checks_per_day: int = 10_000
    """Single checks an organisation may make per Brussels day when the clients file gives none
    (0 = unlimited; refused for the public role). 10,000, as that API (docs/sources.md#woz-api)."""
    default_pairs_per_day: int = 0
    """Pairs (of every call; a single check counts one) an organisation may have answered per
    Brussels day when the clients file gives none (0 = unlimited)."""
    default_concurrent_streams: int = 4
    """CheckStreams an organisation may hold open at once over all workers when the clients file
    gives none (0 = unlimited)."""
    state_dir: Path | None = None
    """Where the quota counters shared by the workers live (a SQLite file kept across restarts).
    Default: `state/` beside the audit directory (`state_path`)."""
    max_streams_per_worker: int = 8
    """CheckStreams one worker serves at once; one more is refused at once (OVERLOADED)."""
    max_org_streams_per_worker: int = 4
    """CheckStreams of one organisation one worker serves at once (OVERLOADED beyond), so one
    organisation never holds every stream slot of a worker."""
    max_org_calls_in_flight: int = 32
    """Calls of one organisation (of every kind) in progress at once in one worker (OVERLOADED
    beyond), so one organisation cannot fill `max_concurrent_rpcs`."""
    max_pairs_in_flight: int = 800_000
    """Pairs received and not yet decided in one worker (chunks, rechecks, checks; see
    `server.admission`); work that would pass it is refused at once (OVERLOADED). Bounds the
    memory of work in progress."""
    max_org_pairs_in_flight: int = 400_000
    """Pairs of one organisation received and not yet decided in one worker (OVERLOADED
    beyond)."""
    stream_idle_timeout_s: float = 30.0
    """A CheckStream that sends no chunk for this long is ended (DEADLINE_EXCEEDED)."""
    audit_dir: Path = Path("var/audit")
    """Directory of the hash-chained audit logs (one file per worker)."""
    audit_inline_keys: int = 64
    """Calls with at most this many pairs list their keys in the record; larger ones append
    them to the key log (`server.audit_key_log`) and hold their digest."""
    audit_sync_ms: float = 0.0
    """0: every audit record is synced to disk (fdatasync) before its answer is sent. Above 0:
    records are written before the answer (a killed process loses none) and synced at most this
    many milliseconds later (a power cut may lose that window): about 0.2 ms less per call."""
    audit_preallocate_mb: int = 8
    """The audit file grows ahead of its records by zero-filled chunks of this many MiB, so the
    sync of each record flushes data only, not the file size (about 0.05 ms less per call)."""
    audit_key_file: Path | None = None
    """Audit secret (a different secret from the plate key): keys the audit chain and signs its
    checkpoints. Created (mode 0600) on first start when missing. Default: `audit.key` beside
    the plate key file (`audit_key_path`)."""
    audit_checkpoint_dir: Path | None = None
    """Where signed checkpoints of the audit chain heads go; copy it off the machine. Default:
    `checkpoints/` inside the audit directory (`audit_checkpoint_path`)."""
    audit_checkpoint_records: int = 1000
    """A checkpoint is signed after at most this many records (and when a log is opened or
    closed)."""
    audit_checkpoint_s: float = 60.0
    """A checkpoint is signed at most this many seconds after a record (never on a call's path)."""
    audit_rotate_mb: int = 1024
    """The active audit file is rotated (renamed `audit-w<N>.<first seq>.jsonl`, the chain
    carried into a new file) before it would pass this many MiB; 0: no rotation by size."""
    audit_rotate_daily: bool = True
    """Rotate the active audit file at the first record of each new UTC day."""
    audit_retention_days: int = 0
    """Rotated audit files whose last record is older than this many days are removed (with
    their key logs), after an `AuditRetention` record names them; 0: kept for ever."""
    audit_off: bool = False
    """Record nothing (development and benchmarks only): refused unless plain TCP on
    loopback."""
    reload_interval_s: float = 1.0
    """How often the `current` link of the store root is checked for a new build."""
    warm_store: bool = True
    """Read the store's pages once at load so lookups never fault to disk."""
    grace_period_s: float = 10.0
    """On SIGTERM: how long calls in flight may take to finish."""
    min_cell_size: int = 10
    """FleetStats and LosingAccess summaries: cells with fewer vehicles are suppressed."""
    max_campaign_nis: int = 600
    """Most NIS codes in one LosingAccess request (Belgium has fewer than 600 municipalities)."""
    fleet_rounding_base: int = 10
    """FleetStats: every published count (cells, derived counts, suppressed vehicles) is rounded
    to a multiple of this, so no difference of two answers gives a small cell (docs/fleet.md).
    At least `min_cell_size`."""
    restart_backoff_s: float = 1.0
    """Supervisor: pause before restarting a dead worker (doubled after each quick failure)."""
    restart_stable_s: float = 30.0
    """Supervisor: a worker that ran this long before dying counts as a fresh failure."""
    max_quick_restarts: int = 5
    """Supervisor: a worker that keeps dying within `restart_stable_s` of its start is
    restarted this many times, then the server stops with an error."""
    log_level: str = "INFO"
    """Python logging level name."""
    log_format: str = "text"
    """`text`: one readable line per event (a terminal); `json`: one JSON object per line (a log
    collector), docs/observability.md."""
    metrics_address: str = ""
    """host:port of the Prometheus endpoint (`/metrics`, plain HTTP, all workers aggregated);
    empty: no endpoint."""

    @property
    def audit_key_path(self) -> Path:
        """The audit key file: as given, else `audit.key` beside the plate key file."""
        return self.audit_key_file or self.key_file.parent / "audit.key"

    @property
    def audit_checkpoint_path(self) -> Path:
        """The checkpoint directory: as given, else `checkpoints/` in the audit directory."""
        return self.audit_checkpoint_dir or self.audit_dir / "checkpoints"

    @property
    def state_path(self) -> Path:
        """The shared state directory: as given, else `state/` beside the audit directory."""
        return self.state_dir or self.audit_dir.parent / "state"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def validate(self) -> ServerConfig:
        """Check the combination; returns self. Raises ValueError saying what to change."""
        if ":" not in self.address:
            raise ValueError(f"address {self.address!r} must be host:port")
        try:
            port = self.port
        except ValueError:
            raise ValueError(f"address {self.address!r}: the port is not a number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"address {self.address!r}: port out of range")
        tls_parts = (self.tls_cert, self.tls_key, self.tls_ca)
        if any(p is not None for p in tls_parts) and not all(p is not None for p in tls_parts):
            raise ValueError("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca")
        if not self.tls and not is_loopback(self.host):
            raise ValueError(
                f"plain TCP is only allowed on loopback, not {self.host}; "
                "give --tls-cert/--tls-key/--tls-ca (see `lez-server certs`)"
            )
        positive = (
            "workers",
            "max_receive_message_bytes",
            "max_send_message_bytes",
            "max_chunk_pairs",
            "max_plate_bytes",
            "max_recheck_items",
            "max_concurrent_rpcs",
            "min_cell_size",
            "max_campaign_nis",
            "fleet_rounding_base",
            "max_streams_per_worker",
            "max_org_streams_per_worker",
            "max_org_calls_in_flight",
            "max_pairs_in_flight",
            "max_org_pairs_in_flight",
            "stream_idle_timeout_s",
            "audit_preallocate_mb",
            "audit_checkpoint_records",
            "audit_checkpoint_s",
            "restart_stable_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_quick_restarts < 0 or self.restart_backoff_s < 0:
            raise ValueError("max_quick_restarts and restart_backoff_s must not be negative")
        if self.audit_key_path.resolve() == self.key_file.resolve():
            raise ValueError(
                "--audit-key-file must not be the plate key file: the audit chain needs a secret "
                "of its own (`lez-server audit keygen --out FILE`)"
            )
        if self.audit_rotate_mb < 0 or self.audit_retention_days < 0:
            raise ValueError("audit_rotate_mb and audit_retention_days must not be negative")
        if self.audit_off and (self.tls or not is_loopback(self.host)):
            raise ValueError(
                "--audit-off is for development and benchmarks on loopback only: a server "
                "reachable with TLS records every consultation"
            )
        limits = (
            "default_checks_per_minute",
            "default_checks_per_day",
            "default_pairs_per_day",
            "default_concurrent_streams",
        )
        for name in limits:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (unlimited) or a positive limit")
        if self.fleet_rounding_base < self.min_cell_size:
            raise ValueError(
                "fleet_rounding_base must be at least min_cell_size: a smaller base lets the "
                "difference of two FleetStats answers give a suppressed cell (docs/fleet.md)"
            )
        for name in ("max_pairs_in_flight", "max_org_pairs_in_flight"):
            if getattr(self, name) < self.max_chunk_pairs:
                raise ValueError(f"{name} must hold at least one chunk (max_chunk_pairs)")
        if self.audit_sync_ms < 0:
            raise ValueError("audit_sync_ms must be 0 (sync every record) or a positive window")
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"log_format must be one of {', '.join(LOG_FORMATS)}")
        if self.metrics_address:
            self._validate_metrics_address()
        if self.reload_interval_s <= 0 or self.grace_period_s < 0:
            raise ValueError("reload_interval_s must be positive and grace_period_s >= 0")
        return self

    @property
    def metrics_host(self) -> str:
        return self.metrics_address.rsplit(":", 1)[0].strip("[]")

    @property
    def metrics_port(self) -> int:
        return int(self.metrics_address.rsplit(":", 1)[1])

    def _validate_metrics_address(self) -> None:
        where = f"metrics address {self.metrics_address!r}"
        if ":" not in self.metrics_address:
            raise ValueError(f"{where} must be host:port (or empty for no endpoint)")
        try:
            port = self.metrics_port
        except ValueError:
            raise ValueError(f"{where}: the port is not a number") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"{where}: port out of range")
        if port and port == self.port and self.metrics_host == self.host:
            raise ValueError(f"{where}: the gRPC server listens there; give another port")

    def redacted(self) -> dict[str, str]:
        """The effective configuration for the startup log (no secrets: paths only)."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (cached: asked on every plain-TCP call)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


_TYPES: Final = typing.get_type_hints(ServerConfig)
"""Each field's declared type: what its option's text is read as."""


def _convert(name: str, raw: str) -> Any:
    kind = _TYPES[name]
    if kind == Path | None:
        return Path(raw) if raw else None
    if kind is Path:
        if not raw:
            raise ValueError("a path is required here")
        return Path(raw)
    if kind is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"expected {'a whole' if kind is int else 'a'} number") from None
    return raw


def _help_of(name: str) -> str:
    doc = _FIELD_DOCS.get(name, "")
    zero = zero_meaning(name)
    if zero and "0" not in doc:
        doc = f"{doc} ({zero})"
    default = getattr(ServerConfig(), name)
    if isinstance(default, bool):  # shown as the option takes it: 1|0
        default = int(default)
    return f"{doc} [env {_env_name(name)}; default {default}]"


_ZERO_MEANS: Final = {
    "audit_inline_keys": "0: every call's keys in the key log",
    "grace_period_s": "0: calls in flight are ended at once",
    "restart_backoff_s": "0: restart a dead worker at once",
    "max_quick_restarts": "0: stop the server when a worker dies at once",
}
"""What 0 means for the numeric options that accept it and do not say so in their text."""


def zero_meaning(name: str) -> str:
    """For a numeric option: what 0 means, or that it is refused; "" for other options."""
    kind = _TYPES[name]
    if kind not in (int, float):
        return ""
    if name in _ZERO_MEANS:
        return _ZERO_MEANS[name]
    try:
        replace(ServerConfig(), **{name: kind(0)}).validate()
    except ValueError:
        return "0 is refused"
    return ""  # accepted: the option's own text says what it means (a test holds to this)


def metavar_of(name: str) -> str:
    """The kind of value an option takes, as `--help` names it."""
    kind = _TYPES[name]
    if kind is bool:
        return "1|0"
    if kind is Path or kind == (Path | None):
        return "DIR" if name.endswith(("_dir", "_root")) else "FILE"
    if kind is float:
        return "MS" if name.endswith("_ms") else "SECONDS"
    if kind is int:
        for suffix, unit in (("_bytes", "BYTES"), ("_mb", "MIB"), ("_days", "DAYS")):
            if name.endswith(suffix):
                return unit
        return "N"
    return {
        "address": "HOST:PORT",
        "metrics_address": "HOST:PORT",
        "log_level": "LEVEL",
        "log_format": "text|json",
    }.get(name, "NAME")


_FIELD_DOCS: Final = {
    "address": "host:port to listen on",
    "workers": "worker processes sharing the port (SO_REUSEPORT)",
    "pin_workers": "with several workers, each worker's event loop and gRPC threads on one "
    "core (worker i on the i-th allowed core, wrapping round), its streams' compute and audit "
    "threads on any core; no effect with one worker or one allowed core; turn off (0) where "
    "clients or other pinned work share the cores",
    "store_root": "store root directory written by lez-loader",
    "key_file": "HMAC key file (its key id must match the store)",
    "rules_dir": "extra rule-table files served besides the store's revisions",
    "clients_file": "TOML clients file (identities, roles, zones, limits)",
    "tls_cert": "server certificate PEM (mutual TLS with --tls-key and --tls-ca)",
    "tls_key": "server private key PEM",
    "tls_ca": "CA certificate PEM that signs client certificates",
    "dev_identity": "clients-file identity of plain-TCP loopback callers",
    "max_receive_message_bytes": "largest accepted message in bytes",
    "max_send_message_bytes": "largest sent message in bytes",
    "max_chunk_pairs": "most pairs in one CheckChunk",
    "max_plate_bytes": "longest plate as written in a packed column",
    "max_recheck_items": "most earlier decisions in one Recheck",
    "max_concurrent_rpcs": "calls in progress per worker before RESOURCE_EXHAUSTED",
    "default_checks_per_minute": "single checks per minute per organisation when the clients "
    "file gives none (0 = unlimited)",
    "default_checks_per_day": "single checks per Brussels day per organisation when the clients "
    "file gives none (0 = unlimited)",
    "default_pairs_per_day": "pairs per Brussels day per organisation when the clients file "
    "gives none (0 = unlimited)",
    "default_concurrent_streams": "CheckStreams open at once per organisation over all workers "
    "when the clients file gives none (0 = unlimited)",
    "state_dir": "shared quota counters, kept across restarts (default state/ beside the audit "
    "directory)",
    "max_streams_per_worker": "CheckStreams one worker serves at once (OVERLOADED beyond)",
    "max_org_streams_per_worker": "CheckStreams of one organisation per worker (OVERLOADED beyond)",
    "max_org_calls_in_flight": "calls of one organisation in progress per worker (OVERLOADED "
    "beyond)",
    "max_pairs_in_flight": "pairs received and not yet decided per worker (OVERLOADED beyond)",
    "max_org_pairs_in_flight": "pairs of one organisation not yet decided per worker "
    "(OVERLOADED beyond)",
    "stream_idle_timeout_s": "seconds a CheckStream may send nothing before it is ended",
    "audit_dir": "directory of the hash-chained audit logs",
    "audit_inline_keys": "calls with at most this many pairs list their keys inline",
    "audit_sync_ms": "0: sync each audit record before answering; N: sync within N ms",
    "audit_preallocate_mb": "MiB of zeros the audit file is grown by ahead of its records",
    "audit_key_file": "audit secret (created when missing; default audit.key beside --key-file)",
    "audit_checkpoint_dir": "signed audit checkpoints (default AUDIT_DIR/checkpoints; copy off)",
    "audit_checkpoint_records": "sign an audit checkpoint after at most this many records",
    "audit_checkpoint_s": "sign an audit checkpoint at most this many seconds after a record",
    "audit_rotate_mb": "rotate the audit file before it passes this many MiB (0: never by size)",
    "audit_rotate_daily": "rotate the audit file at the first record of each UTC day (1/0)",
    "audit_retention_days": "remove rotated audit files older than this many days (0: keep)",
    "audit_off": "record no audit (development/benchmarks on loopback only; 1/0)",
    "reload_interval_s": "seconds between checks for a newly published store",
    "warm_store": "read the store once at load (1/0)",
    "grace_period_s": "seconds calls in flight get on SIGTERM",
    "min_cell_size": "FleetStats and LosingAccess summaries' small-cell suppression threshold",
    "max_campaign_nis": "most NIS codes in one LosingAccess request",
    "fleet_rounding_base": "FleetStats counts are rounded to multiples of this (>= min-cell-size)",
    "restart_backoff_s": "pause before restarting a dead worker (doubled per quick failure)",
    "restart_stable_s": "a worker alive this long before dying counts as a fresh failure",
    "max_quick_restarts": "restarts of a worker that keeps dying at once before the server stops",
    "log_level": "logging level (DEBUG, INFO, WARNING)",
    "log_format": "text (a terminal) or json (one object per line, for a log collector)",
    "metrics_address": "host:port of the Prometheus /metrics endpoint (empty: none)",
}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per config field; unset options fall back to LEZ_* then the default."""
    for f in fields(ServerConfig):
        parser.add_argument(
            _option(f.name),
            dest=f.name,
            default=None,
            metavar=metavar_of(f.name),
            help=_help_of(f.name),
        )


def build_config(
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> ServerConfig:
    """Config from parsed options, then `LEZ_*` variables, then defaults; validated."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(ServerConfig):
        raw = getattr(args, f.name, None) if args is not None else None
        if raw is None:
            raw = env.get(_env_name(f.name))
        if raw is not None:
            try:
                values[f.name] = _convert(f.name, str(raw))
            except ValueError as exc:
                raise ValueError(
                    f"{_option(f.name)} / {_env_name(f.name)}: cannot read {raw!r}: {exc}"
                ) from None
    config = replace(ServerConfig(), **values)
    if overrides:
        config = replace(config, **overrides)
    return config.validate()


def parse_serve_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Shortcut used by tests: the `serve` options alone."""
    parser = argparse.ArgumentParser(prog="lez-server serve")
    add_serve_arguments(parser)
    return build_config(parser.parse_args(list(argv)), environ)
