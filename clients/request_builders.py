"""Every request message the clients send, built in one place from the caller's values:
`Check`, `Recheck`, `FleetStats`, `ServerInfo`, the health check, and the `CheckChunk` of a
batch slice. The sync and asyncio clients only send what these return.

`CheckOptions` is the one definition of what a single check takes besides the plate (the
clients' `check` methods take it as keywords), so both clients and the request agree on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypedDict

from grpc_health.v1 import health_pb2

from clients.batch_rows import COUNTRY_BYTES, BatchRows
from clients.day_input import date_text, instant_text
from clients.decisions import RecheckItem
from clients.enum_names import outcome_value, reason_value
from lez.api.v1 import access_pb2 as pb
from lez.days import NO_INSTANT
from lez.plates import BELGIUM

ALL_SERVICES: Final = ""
"""The health service name that stands for the whole server."""


class _CheckZone(TypedDict):
    zone: str


class CheckOptions(_CheckZone, total=False):
    """What a single check takes besides the plate, as keywords.

    `zone` (name or id, required); `day` (a date, aware datetime, or ISO text; default today,
    Europe/Brussels); `instant` (the moment of a read: an aware datetime or ISO 8601 text with
    its offset; the server derives the Brussels day and uses the hour); `country` (default
    BE); `first_registration` (the public checker's combination check); `ruleset` (pin a rule
    revision); `key` and `key_id` (a pseudonymised key instead of the plate, with the id of the
    HMAC key that made it).
    """

    day: dt.date | str | None
    instant: dt.datetime | str | None
    country: str
    first_registration: dt.date | str | None
    ruleset: str | None
    key: bytes | None
    key_id: str


def checked_options(options: Mapping[str, object], spec: Any, call: str) -> None:
    """TypeError, as Python gives for a signature, when keyword options given as
    `**options: Unpack[spec]` miss a required one or name one `spec` does not know."""
    unknown = sorted(set(options) - spec.__required_keys__ - spec.__optional_keys__)
    if unknown:
        raise TypeError(f"{call}() got an unexpected keyword argument {unknown[0]!r}")
    missing = sorted(spec.__required_keys__ - set(options))
    if missing:
        raise TypeError(f"{call}() missing required keyword argument {missing[0]!r}")


def check_request(plate: str | None, options: CheckOptions) -> pb.CheckRequest:
    """The CheckRequest of a plate (or of `options["key"]`) with the caller's options."""
    checked_options(options, CheckOptions, "check")
    request = pb.CheckRequest(
        country=options.get("country") or BELGIUM,
        zone=options["zone"],
        date=date_text(options.get("day")),
        first_registration=date_text(options.get("first_registration")),
        ruleset_revision=options.get("ruleset") or "",
        key_id=options.get("key_id", ""),
        instant=instant_text(options.get("instant")),
    )
    key = options.get("key")
    if key is not None:
        request.key = key
    else:
        request.plate = plate or ""
    return request


def earlier_decision(item: RecheckItem) -> pb.EarlierDecision:
    """The proto form of an earlier decision to re-evaluate."""
    msg = pb.EarlierDecision(
        country=item.country,
        zone=item.zone,
        date=date_text(item.date),
        outcome=outcome_value(item.outcome),  # type: ignore[arg-type]
        reason=reason_value(item.reason) if item.reason else 0,  # type: ignore[arg-type]
        euro=item.euro or "",
        snapshot_id=item.snapshot_id,
        ruleset_revision=item.revision,
    )
    if item.key is not None:
        msg.key = item.key
    else:
        msg.plate = item.plate or ""
    return msg


def recheck_request(items: Iterable[RecheckItem], key_id: str) -> pb.RecheckRequest:
    return pb.RecheckRequest(decisions=[earlier_decision(i) for i in items], key_id=key_id)


class FleetOptions(TypedDict, total=False):
    """What a fleet count takes besides its dimensions: `day` (default today, Brussels) and
    `nis` (municipalities to count; default all)."""

    day: dt.date | str | None
    nis: Sequence[int]


def fleet_request(group_by: Sequence[str], options: FleetOptions) -> pb.FleetStatsRequest:
    """Group by dimension names (`nis`, `fuel`, `euro`, `category`) on a day."""
    checked_options(options, FleetOptions, "fleet_stats")
    dimensions = [int(pb.Dimension.Value("DIMENSION_" + g.strip().upper())) for g in group_by]
    return pb.FleetStatsRequest(
        group_by=dimensions,  # type: ignore[arg-type]
        date=date_text(options.get("day")),
        nis=list(options.get("nis", ())),
    )


def losing_access_request(
    zone: str,
    date: dt.date | str,
    nis: Iterable[int],
    *,
    reference_date: dt.date | str | None = None,
    ruleset: str | None = None,
    chunk_size: int | None = None,
) -> pb.LosingAccessRequest:
    """Who, among the holders of the `nis` municipalities, will lose access to `zone` by
    `date` (allowed on `reference_date`, default today in Brussels)."""
    return pb.LosingAccessRequest(
        zone=zone,
        date=date_text(date),
        reference_date=date_text(reference_date),
        nis=[int(n) for n in nis],
        ruleset_revision=ruleset or "",
        chunk_size=chunk_size or 0,
    )


def server_info_request() -> pb.ServerInfoRequest:
    return pb.ServerInfoRequest()


def health_request() -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=ALL_SERVICES)


def chunk_request(
    rows: BatchRows,
    start: int,
    stop: int,
    *,
    chunk_id: int,
    zone: str,
    ruleset: str,
    as_of: str = "",
) -> pb.CheckChunk:
    """The CheckChunk of rows [start, stop). `as_of` (an evaluation date, ISO text) goes on
    every chunk: each stream's first chunk must carry it, and the server accepts it again."""
    msg = pb.CheckChunk(
        zone=zone,
        ruleset_revision=ruleset,
        as_of=as_of,
        chunk_id=chunk_id,
        countries=rows.countries[COUNTRY_BYTES * start : COUNTRY_BYTES * stop],
    )
    instants = rows.instants[start:stop] if rows.instants is not None else None
    if instants is not None:
        msg.instants = instants.astype("<i8").tobytes()
        msg.instant_unit = pb.INSTANT_UNIT_MILLISECONDS
    if instants is None or (instants == NO_INSTANT).any():  # some rows are given by day
        msg.days = rows.days[start:stop].astype("<i4").tobytes()
    if rows.keys is not None:
        msg.keys = rows.keys[start:stop].tobytes()
        msg.key_id = rows.key_id
    else:
        assert rows.plates is not None
        data, offsets = rows.plates.slice(start, stop)
        msg.plates.CopyFrom(pb.PlateColumn(data=data, offsets=offsets))
    return msg
