"""Who is calling and what they may do: identities, roles, zones (finality) and limits.

With mutual TLS the identity is the Common Name of the client certificate, looked up in the
clients file (TOML):

    [[client]]
    identity = "gent-enforcement"     # certificate CN
    organisation = "Stad Gent"
    roles = ["enforcement"]           # public, desk, enforcement, appeals, monitoring,
                                      # integrator, operator
    zones = ["gent"]                  # zone names or ids; absent or empty = every zone
    checks_per_minute = 35            # single checks; 0 = unlimited; absent = the server default
    checks_per_day = 10000            # single checks per Brussels day
    pairs_per_day = 2000000           # pairs of every call; a single check counts one
    concurrent_streams = 4            # CheckStreams open at once, over all workers

The limits are per organisation: entries of one organisation share its counters
(`server.quotas`, shared by the workers and kept across restarts). An entry holding the public
role cannot be unlimited on single checks (the brute force of first-registration dates). Plain
TCP is accepted only from a loopback peer (development); such callers get the identity named by
`dev_identity` from the clients file, or, without a clients file, an unlimited operator
identity for every zone.
"""

from __future__ import annotations

import enum
import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc.aio

from lez.errors import PermissionDenied, Unauthenticated
from server.config import ServerConfig, is_loopback


class Role(enum.IntEnum):
    """Client roles; values equal the proto `Role` enum."""

    PUBLIC = 1
    DESK = 2
    ENFORCEMENT = 3
    APPEALS = 4
    MONITORING = 5
    OPERATOR = 6
    INTEGRATOR = 7


class Rpc(enum.Enum):
    """The calls of AccessService."""

    CHECK = "Check"
    CHECK_STREAM = "CheckStream"
    RECHECK = "Recheck"
    FLEET_STATS = "FleetStats"
    SERVER_INFO = "ServerInfo"
    LOSING_ACCESS = "LosingAccess"


class Purpose(enum.Enum):
    """Why a call consults the register, where one call serves two purposes (DIV-VMM protocol
    section VIII, docs/sources.md#div-vmm-protocol): a `CheckStream` of camera reads is
    enforcement, the same reads evaluated on a later date (`as_of`) warn their owners."""

    ENFORCEMENT = "enforcement"
    COMMUNICATION = "communication"


PURPOSE_ROLES: Final[dict[Purpose, frozenset[Role]]] = {
    Purpose.ENFORCEMENT: frozenset({Role.ENFORCEMENT, Role.OPERATOR}),
    Purpose.COMMUNICATION: frozenset({Role.INTEGRATOR, Role.OPERATOR}),
}
"""Which roles hold which purpose."""

ALLOWED_ROLES: Final[dict[Rpc, frozenset[Role]]] = {
    Rpc.CHECK: frozenset({Role.PUBLIC, Role.DESK, Role.ENFORCEMENT, Role.APPEALS, Role.OPERATOR}),
    # enforcement, or communication with `as_of` (`Identity.require_purpose` on the first chunk)
    Rpc.CHECK_STREAM: PURPOSE_ROLES[Purpose.ENFORCEMENT] | PURPOSE_ROLES[Purpose.COMMUNICATION],
    Rpc.RECHECK: frozenset({Role.APPEALS, Role.OPERATOR}),
    Rpc.FLEET_STATS: frozenset({Role.MONITORING, Role.OPERATOR}),
    Rpc.SERVER_INFO: frozenset(Role),
    Rpc.LOSING_ACCESS: PURPOSE_ROLES[Purpose.COMMUNICATION],
}
"""Which roles may make which call."""

TECHNICAL_ROLES: Final = frozenset({Role.DESK, Role.ENFORCEMENT, Role.APPEALS, Role.OPERATOR})
"""Roles that receive reasons and technical data; the public role sees outcome, euro and
allowed-until only (minimisation, docs/architecture.md#security-and-audit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """A client organisation as the clients file describes it."""

    identity: str
    organisation: str
    roles: frozenset[Role]
    zones: frozenset[str] = frozenset()  # casefolded names or decimal ids; empty = every zone
    checks_per_minute: int = 0  # single checks (Check calls); 0 = unlimited
    checks_per_day: int = 0  # single checks per Brussels day
    pairs_per_day: int = 0  # pairs of every call per Brussels day (a single check counts one)
    concurrent_streams: int = 0  # CheckStreams open at once over all workers

    @property
    def sees_technical(self) -> bool:
        return bool(self.roles & TECHNICAL_ROLES)

    @property
    def role_names(self) -> tuple[str, ...]:
        """The roles in lower case, sorted (as the audit log records them)."""
        return _role_names(self.roles)

    @property
    def public_only(self) -> bool:
        return self.roles == frozenset({Role.PUBLIC})

    def require(self, rpc: Rpc) -> None:
        """Raise PermissionDenied unless one of the roles may make `rpc`."""
        if not self.roles & ALLOWED_ROLES[rpc]:
            held = ", ".join(sorted(r.name.lower() for r in self.roles)) or "none"
            needed = ", ".join(sorted(r.name.lower() for r in ALLOWED_ROLES[rpc]))
            raise PermissionDenied(
                f"{rpc.value} needs one of the roles {needed}; {self.organisation} has {held}"
            )

    def require_purpose(self, purpose: Purpose, rpc: Rpc) -> None:
        """Raise PermissionDenied unless one of the roles holds `purpose` for `rpc`."""
        if not self.roles & PURPOSE_ROLES[purpose]:
            held = ", ".join(sorted(r.name.lower() for r in self.roles)) or "none"
            needed = ", ".join(sorted(r.name.lower() for r in PURPOSE_ROLES[purpose]))
            raise PermissionDenied(
                f"{rpc.value} for {purpose.value} needs one of the roles {needed}; "
                f"{self.organisation} has {held}"
            )

    def require_zone(self, zone_id: int, zone_name: str) -> None:
        """Raise PermissionDenied unless the zone is among the allowed ones (finality)."""
        if self.zones and not ({zone_name.casefold(), str(zone_id)} & self.zones):
            allowed = ", ".join(sorted(self.zones))
            raise PermissionDenied(
                f"{self.organisation} may only consult the zones {allowed}, not {zone_name}"
            )


@functools.lru_cache(maxsize=64)
def _role_names(roles: frozenset[Role]) -> tuple[str, ...]:
    return tuple(sorted(r.name.lower() for r in roles))


def _parse_role(value: str, where: str) -> Role:
    try:
        return Role[value.strip().upper()]
    except KeyError:
        names = ", ".join(r.name.lower() for r in Role)
        raise ValueError(f"{where}: unknown role {value!r}; use one of {names}") from None


def load_clients(path: Path, config: ServerConfig) -> dict[str, Identity]:
    """Read a clients file; raises ValueError naming the entry and field at fault."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"clients file {path}: {exc}") from None
    out: dict[str, Identity] = {}
    for i, entry in enumerate(data.get("client", [])):
        where = f"{path} client #{i + 1}"
        if not isinstance(entry, dict) or not entry.get("identity"):
            raise ValueError(f"{where}: 'identity' (certificate CN) is required")
        ident = str(entry["identity"])
        if ident in out:
            raise ValueError(f"{where}: identity {ident!r} appears twice")
        roles = frozenset(_parse_role(str(r), where) for r in entry.get("roles", []))
        if not roles:
            raise ValueError(f"{where}: 'roles' must list at least one role")
        out[ident] = Identity(
            identity=ident,
            organisation=str(entry.get("organisation", ident)),
            roles=roles,
            zones=frozenset(str(z).casefold() for z in entry.get("zones", [])),
            **_limits(entry, config, roles, where),
        )
    return out


LIMIT_KEYS: Final = {
    "checks_per_minute": "default_checks_per_minute",
    "checks_per_day": "default_checks_per_day",
    "pairs_per_day": "default_pairs_per_day",
    "concurrent_streams": "default_concurrent_streams",
}
"""Clients-file limit keys and the config default each falls back to."""
LEGACY_KEYS: Final = {"calls_per_minute": "checks_per_minute"}
"""Older names of clients-file keys, still read."""
PUBLIC_LIMITED: Final = ("checks_per_minute", "checks_per_day")
"""Limits a public-role entry cannot set to 0 (unlimited)."""


def _limits(
    entry: Mapping[str, Any], config: ServerConfig, roles: frozenset[Role], where: str
) -> dict[str, int]:
    """An entry's limits: its own values, else the config defaults; ValueError naming the key
    for a negative value or an unlimited public role."""
    given = dict(entry)
    for old, new in LEGACY_KEYS.items():
        if old in given and new not in given:
            given[new] = given[old]
    out: dict[str, int] = {}
    for key, default in LIMIT_KEYS.items():
        try:
            value = int(given.get(key, getattr(config, default)))
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key!r} must be a whole number") from None
        if value < 0:
            raise ValueError(f"{where}: {key!r} must be 0 (unlimited) or positive")
        if value == 0 and Role.PUBLIC in roles and key in PUBLIC_LIMITED:
            raise ValueError(
                f"{where}: {key!r} cannot be unlimited for the public role (a first-registration "
                "date could be found by trying them all); give a limit"
            )
        out[key] = value
    return out


def dev_operator(config: ServerConfig) -> Identity:
    """The identity of loopback callers when no clients file is configured: development only,
    every role and no quota (plain TCP is refused off loopback)."""
    return Identity(
        identity=config.dev_identity,
        organisation="local development",
        roles=frozenset(Role),
    )


def _first(auth: Mapping[str, Iterable[bytes]], key: str) -> str | None:
    for value in auth.get(key, ()):
        return value.decode("utf-8", "replace")
    return None


def peer_host(peer: str) -> str:
    """Host part of a gRPC peer string (`ipv4:127.0.0.1:5000`, `ipv6:[::1]:5000`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").split("%")[0]
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "unix":
        return "localhost"
    return rest


class Authenticator:
    """Resolves the caller of a call to an Identity."""

    def __init__(self, config: ServerConfig, clients: dict[str, Identity] | None = None) -> None:
        self.config = config
        if clients is None and config.clients_file is not None:
            clients = load_clients(config.clients_file, config)
        self.clients = clients
        if clients is None:
            self.dev: Identity | None = dev_operator(config)
        else:
            self.dev = clients.get(config.dev_identity)

    def identify(self, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        auth = context.auth_context()
        cn = _first(auth, "x509_common_name")
        if cn is not None:
            if self.clients is None:
                raise Unauthenticated(
                    "the server has no clients file; certificate callers cannot be identified"
                )
            found = self.clients.get(cn)
            if found is None:
                raise Unauthenticated(
                    f"certificate CN {cn!r} is not in the clients file; ask the operator"
                )
            return found
        if self.config.tls:
            raise Unauthenticated("a client certificate is required")
        if not is_loopback(peer_host(context.peer() or "")):
            raise Unauthenticated("plain-TCP calls are accepted from loopback only")
        if self.dev is None:
            raise Unauthenticated(
                f"no clients-file entry for the development identity {self.config.dev_identity!r}"
            )
        return self.dev
