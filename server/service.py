"""The AccessService servicer: a thin translation between proto messages and the domain.

Each call: identify the caller (`auth`), check role, zone and quota, lease the current store
(`state`), run the vectorised pipeline (`pipeline`), write the audit record (`audit`) and only
then complete the answer. Errors travel through the one table in `status`. Plates are never
logged or echoed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt

from lez import codes
from lez.api.v1 import access_pb2 as pb
from lez.api.v1 import access_pb2_grpc as pb_grpc
from lez.days import DAY_OPEN, DAY_UNKNOWN, format_day, parse_day, today_brussels
from lez.decision import Derived, Outcome, Reason
from lez.errors import BatchTooLarge, DeadlineExceeded, InvalidRequest, KeyMismatch
from lez.keys import KEY_BYTES, PlateKeyer
from lez.plates import BELGIUM
from lez.rules import Revision, RuleCatalog, Verdict, Zone
from lez.store import StoreMeta
from lez.vehicle import U16_UNKNOWN, U32_UNKNOWN, empty
from server import pipeline
from server.audit import AuditLog, KeyBatch
from server.auth import Authenticator, Identity, RateLimiter, Rpc
from server.config import ServerConfig
from server.state import ServedSnapshot, StoreHolder
from server.status import audit_status, translate_errors, translate_stream_errors

log = logging.getLogger("lez.server")

SERVER_VERSION: Final = "0.1.0"
CODE_LISTS: Final = (("euro", codes.EURO), ("category", codes.CATEGORY), ("fuel", codes.FUEL))
REGISTRATION_REASONS: Final = frozenset(
    {
        Reason.REGISTERED_DISABLED_PERSON,
        Reason.REGISTERED_OLDTIMER,
        Reason.REGISTERED_TRACTOR_UNDER_130KW,
        Reason.REGISTERED_PRIORITY_VEHICLE,
        Reason.REGISTERED_WHEELCHAIR_LIFT,
        Reason.LOCAL_PERMIT,
        Reason.DAY_PASS,
        Reason.FOREIGN_REGISTERED,
    }
)
NO_DATA_OUTCOMES: Final = frozenset({Outcome.UNKNOWN_PLATE, Outcome.INVALID, Outcome.UNSPECIFIED})
NO_VEHICLE: Final = empty(1)[0]
"""A record of unknown values: the technical data of an answer without a vehicle version."""


def resolve_zone(catalog: Revision | RuleCatalog, text: str) -> Zone:
    """The zone named by id or name in a revision (or the catalog's newest); UnknownZone lists
    the known ones."""
    if not text.strip():
        raise InvalidRequest("a zone is required; ServerInfo lists the zones")
    return catalog.zone(text)


def outcome_names(counts: npt.NDArray[np.int64]) -> dict[str, int]:
    """Outcome counts by name, the ones that occurred only (for the audit record)."""
    return {Outcome(i).name: int(c) for i, c in enumerate(counts) if c}


def _day_or_invalid(text: str, default: int | None) -> int:
    """The day of an ISO date; `default` (today in Brussels when None) when the text is empty;
    DAY_UNKNOWN (becomes INVALID_DAY) when it is not a date."""
    if not text:
        return today_brussels() if default is None else default
    try:
        return parse_day(text)
    except ValueError:
        return DAY_UNKNOWN  # becomes INVALID_DAY


def _required_day(text: str, field: str) -> int:
    """The day of a request field that must hold a date; InvalidRequest naming the field."""
    try:
        return parse_day(text)
    except ValueError:
        raise InvalidRequest(f"{field} must be a date as YYYY-MM-DD") from None


def _code_text(lst: codes.CodeList, ident: int) -> str:
    found = lst.by_id.get(int(ident))
    return found.code if found is not None else ""


def _date_text(day: int) -> str:
    return "" if day in (DAY_UNKNOWN, DAY_OPEN) else format_day(day)


def _positive(value: int, unknown: int) -> int:
    return 0 if value == unknown else int(value)


# ---- the servicer ---------------------------------------------------------------------------


class AccessService(pb_grpc.AccessServiceServicer):
    """Translates AccessService calls to the pipeline, with auth, limits and audit."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        holder: StoreHolder,
        keyer: PlateKeyer,
        auth: Authenticator,
        limiter: RateLimiter,
        audit: AuditLog,
        worker: int = 0,
    ) -> None:
        self.config = config
        self.worker = worker  # this process's index among the server's workers
        self.holder = holder
        self.keyer = keyer
        self.auth = auth
        self.limiter = limiter
        self.audit = audit
        # One compute thread per worker: chunk k is evaluated while chunk k+1 is received.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lez-chunk")

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- shared steps --

    def _enter(self, rpc: Rpc, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        who = self.auth.identify(context)
        who.require(rpc)
        self.limiter.charge_call(who)
        _check_deadline(context)
        return who

    def _revision(self, served: ServedSnapshot, pinned: str) -> Revision:
        return served.catalog.get(pinned or None)

    def _check_key_id(self, key_id: str, served: ServedSnapshot) -> None:
        if key_id != served.meta.key_id:
            raise KeyMismatch(
                f"the keys were made with key id {key_id or '(none given)'}, the store uses "
                f"{served.meta.key_id}; send plates, or keys made with the store's key"
            )

    def _audit(
        self,
        rpc: Rpc,
        who: Identity,
        *,
        zone: str,
        revision: str,
        meta: StoreMeta,
        pairs: int,
        outcomes: Mapping[str, int],
        keys: KeyBatch,
        status: str = "OK",
    ) -> str:
        return self.audit.record(
            rpc=rpc.value,
            identity=who.identity,
            organisation=who.organisation,
            roles=who.role_names,
            zone=zone,
            ruleset_revision=revision,
            snapshot_id=meta.snapshot_id,
            pairs=pairs,
            outcomes=outcomes,
            keys=keys,
            status=status,
        )

    def _decision_msg(self, d: Verdict, rec: np.void | None, who: Identity) -> pb.Decision:
        """One decision as a message; `rec` is the vehicle version it was decided on."""
        allowed = d.outcome == Outcome.ALLOWED
        # docs/rules.md#public-checker: vehicle data only where plate, country and first
        # registration match; a mismatch must not tell a guesser anything about the vehicle.
        mismatch = d.outcome == Outcome.COMBINATION_MISMATCH
        msg = pb.Decision(
            outcome=d.outcome,  # type: ignore[arg-type]
            allowed_until=_date_text(d.allowed_until) if allowed else "",
            open_ended=allowed and d.allowed_until == DAY_OPEN,
            euro="" if mismatch else _code_text(codes.EURO, d.euro),
        )
        if who.sees_technical and mismatch:
            msg.reason = d.reason  # type: ignore[assignment]
        elif who.sees_technical:
            known = rec if rec is not None else NO_VEHICLE
            msg.reason = d.reason  # type: ignore[assignment]
            msg.derived = d.derived
            tech = msg.technical
            tech.category = _code_text(codes.CATEGORY, d.category)
            tech.fuel = _code_text(codes.FUEL, int(known["fuel"]))
            tech.first_registration = _date_text(int(known["first_registration"]))
            tech.max_mass_kg = _positive(int(known["max_mass"]), U32_UNKNOWN)
            tech.co2_g_km = _positive(int(known["co2"]), U16_UNKNOWN)
            tech.power_kw = _positive(int(known["power_kw"]), U16_UNKNOWN)
            tech.version_valid_from = (
                _date_text(int(known["valid_from"])) if rec is not None else ""
            )
            msg.technical.SetInParent()  # present even when every field is empty
        return msg

    def _single_pair(
        self,
        *,
        which: str,
        plate: str,
        key: bytes,
        country: str,
        day: int,
        key_id: str,
        served: ServedSnapshot,
    ) -> pipeline.OnePair:
        """One item given as plate or key (unary calls)."""
        if which == "key":
            self._check_key_id(key_id, served)
            if len(key) != KEY_BYTES:
                raise InvalidRequest(f"a key is {KEY_BYTES} bytes, not {len(key)}")
            return pipeline.decode_one_key(key, country or BELGIUM, day)
        if which != "plate":
            raise InvalidRequest("give a plate or a key")
        return pipeline.decode_one_plate(
            self.keyer, plate, country or BELGIUM, day, self.config.max_plate_bytes
        )

    # -- Check --

    @translate_errors
    async def Check(
        self, request: pb.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckResponse:
        who = self._enter(Rpc.CHECK, context)
        self.limiter.charge_pairs(who, 1)
        with self.holder.lease() as served:
            revision = self._revision(served, request.ruleset_revision)
            rev_name = revision.id
            zone = resolve_zone(revision, request.zone)
            who.require_zone(zone.id, zone.name)
            day = _day_or_invalid(request.date, None)
            claimed: int | None = None
            if request.first_registration:
                claimed = _required_day(request.first_registration, "first_registration")
            elif who.public_only:
                raise InvalidRequest(
                    "the public checker needs the first-registration date of the vehicle"
                )
            which = request.WhichOneof("subject") or ""
            pair = self._single_pair(
                which=which,
                plate=request.plate,
                key=request.key,
                country=request.country,
                day=day,
                key_id=request.key_id,
                served=served,
            )
            with served.reader.snapshot() as snap:
                single = pipeline.evaluate_single(snap, revision, zone.id, pair, claimed)
            decision = self._decision_msg(single.decision, single.record, who)
            keys = KeyBatch()
            keys.add(pair.valid_key())
            self._audit(
                Rpc.CHECK,
                who,
                zone=zone.name,
                revision=rev_name,
                meta=served.meta,
                pairs=1,
                outcomes={Outcome(single.decision.outcome).name: 1},
                keys=keys,
            )
            return pb.CheckResponse(
                decision=decision,
                snapshot_id=served.meta.snapshot_id,
                ruleset_revision=rev_name,
                zone=zone.name,
                date=_date_text(day),
            )

    # -- CheckStream --

    def _compute_chunk(
        self,
        served: ServedSnapshot,
        revision: Any,
        zone_id: int,
        chunk: pb.CheckChunk,
        technical: bool,
    ) -> tuple[dict[str, Any], npt.NDArray[np.int64], bytes]:
        n = pipeline.chunk_size(chunk)
        countries = pipeline.country_matrix(chunk.countries, n)
        days = pipeline.day_column(chunk.days, n)
        which = chunk.WhichOneof("subject")
        if which == "keys":
            pairs = pipeline.decode_keys(chunk.keys, countries, days)
        elif which == "plates":
            p = chunk.plates
            packed = pipeline.plate_column(
                p.data, p.offsets, p.width, n, self.config.max_plate_bytes
            )
            pairs = pipeline.decode_plates(self.keyer, packed, countries, days)
        else:
            raise InvalidRequest("a chunk needs plates or keys")
        with served.reader.snapshot() as snap:
            ev = pipeline.evaluate(snap, revision, zone_id, pairs)
        return (
            pipeline.result_columns(ev, technical=technical),
            ev.outcome_counts(),
            (pairs.valid_keys_bytes()),
        )

    @translate_stream_errors
    async def CheckStream(
        self,
        request_iterator: AsyncIterator[pb.CheckChunk],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DecisionChunk]:
        who = self._enter(Rpc.CHECK_STREAM, context)
        loop = asyncio.get_running_loop()
        with self.holder.lease() as served:
            zone: Zone | None = None
            revision: Any = None
            rev_name = ""
            counts = np.zeros(pipeline.OUTCOMES, dtype=np.int64)
            keys = KeyBatch()
            index = 0
            chunks = 0
            snapshot_id = served.meta.snapshot_id

            def record(status: str) -> str:
                return self._audit(
                    Rpc.CHECK_STREAM,
                    who,
                    zone=zone.name if zone else "",
                    revision=rev_name,
                    meta=served.meta,
                    pairs=index,
                    outcomes=outcome_names(counts),
                    keys=keys,
                    status=status,
                )

            try:
                async for chunk in request_iterator:
                    _check_deadline(context)
                    if zone is None:
                        revision = self._revision(served, chunk.ruleset_revision)
                        rev_name = revision.id
                        zone = resolve_zone(revision, chunk.zone)
                        who.require_zone(zone.id, zone.name)
                    elif chunk.zone and resolve_zone(revision, chunk.zone).id != zone.id:
                        raise InvalidRequest("a stream is for one zone; open another stream")
                    if chunk.WhichOneof("subject") == "keys":
                        self._check_key_id(chunk.key_id, served)
                    n = pipeline.chunk_size(chunk)
                    pipeline.check_chunk_size(n, self.config.max_chunk_pairs)
                    self.limiter.charge_pairs(who, n)
                    cols, chunk_counts, chunk_keys = await loop.run_in_executor(
                        self.executor,
                        self._compute_chunk,
                        served,
                        revision,
                        zone.id,
                        chunk,
                        who.sees_technical,
                    )
                    counts += chunk_counts
                    keys.add(chunk_keys)
                    technical = cols.pop("technical", None)
                    out = pb.DecisionChunk(
                        chunk_id=chunk.chunk_id,
                        first_index=index,
                        snapshot_id=snapshot_id,
                        ruleset_revision=rev_name,
                        **cols,
                    )
                    if technical is not None:
                        out.technical.CopyFrom(pb.TechnicalColumns(**technical))
                    index += n
                    chunks += 1
                    yield out
            except BaseException as exc:
                if index:  # answers already went out: the consultation is on record all the same
                    record(audit_status(exc))
                raise
            if zone is None:  # an empty stream: nothing was asked of any revision
                rev_name = served.catalog.get(None).id
            audit_id = record("OK")
            summary = pb.BatchSummary(
                pairs=index,
                chunks=chunks,
                outcomes=[
                    pb.OutcomeCount(outcome=i, count=int(c))  # type: ignore[arg-type]
                    for i, c in enumerate(counts)
                    if c
                ],
                audit_id=audit_id,
            )
            yield pb.DecisionChunk(
                first_index=index,
                snapshot_id=snapshot_id,
                ruleset_revision=rev_name,
                summary=summary,
            )

    # -- Recheck --

    @translate_errors
    async def Recheck(
        self, request: pb.RecheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RecheckResponse:
        who = self._enter(Rpc.RECHECK, context)
        items = list(request.decisions)
        if not items:
            raise InvalidRequest("a recheck needs at least one earlier decision")
        if len(items) > self.config.max_recheck_items:
            raise BatchTooLarge(
                len(items), self.config.max_recheck_items, "earlier decisions in one recheck"
            )
        self.limiter.charge_pairs(who, len(items))
        with self.holder.lease() as served:
            newest = served.catalog.get(None)
            newest_name = newest.id
            loaded = set(served.catalog.revisions)
            zones = [resolve_zone(served.catalog, it.zone) for it in items]
            for z in {z.id: z for z in zones}.values():
                who.require_zone(z.id, z.name)
            results: list[pb.RecheckResult] = []
            counts = np.zeros(pipeline.OUTCOMES, dtype=np.int64)
            keys = KeyBatch()
            with served.reader.snapshot() as snap:
                for i, (item, zone) in enumerate(zip(items, zones, strict=True)):
                    pair = self._single_pair(
                        which=item.WhichOneof("subject") or "",
                        plate=item.plate,
                        key=item.key,
                        country=item.country,
                        day=_day_or_invalid(item.date, DAY_UNKNOWN),
                        key_id=request.key_id,
                        served=served,
                    )
                    keys.add(pair.valid_key())
                    now = pipeline.evaluate_single(snap, newest, zone.id, pair)
                    counts[now.decision.outcome] += 1
                    then_rules: pipeline.Single | None = None
                    old_rev = item.ruleset_revision
                    if old_rev and old_rev != newest_name and old_rev in loaded:
                        then_rules = pipeline.evaluate_single(
                            snap, served.catalog.get(old_rev), zone.id, pair
                        )
                    results.append(self._recheck_result(i, item, now, then_rules, who))
            self._audit(
                Rpc.RECHECK,
                who,
                zone=",".join(sorted({z.name for z in zones})),
                revision=newest_name,
                meta=served.meta,
                pairs=len(items),
                outcomes=outcome_names(counts),
                keys=keys,
            )
            return pb.RecheckResponse(
                results=results,
                snapshot_id=served.meta.snapshot_id,
                ruleset_revision=newest_name,
                mutation_watermark=served.meta.mutation_watermark,
            )

    def _recheck_result(
        self,
        index: int,
        item: pb.EarlierDecision,
        now: pipeline.Single,
        then_rules: pipeline.Single | None,
        who: Identity,
    ) -> pb.RecheckResult:
        current = self._decision_msg(now.decision, now.record, who)
        old_outcome = Outcome(int(item.outcome))
        old_reason = Reason(int(item.reason))
        new_outcome = Outcome(now.decision.outcome)
        new_reason = Reason(now.decision.reason)
        changes: list[int] = []
        if old_outcome == Outcome.UNKNOWN_PLATE and new_outcome not in NO_DATA_OUTCOMES:
            changes.append(pb.CHANGE_PLATE_ADDED)
        if old_outcome not in NO_DATA_OUTCOMES and new_outcome == Outcome.UNKNOWN_PLATE:
            changes.append(pb.CHANGE_PLATE_REMOVED)
        if new_reason in REGISTRATION_REASONS and old_reason not in REGISTRATION_REASONS:
            changes.append(pb.CHANGE_REGISTRATION_ADDED)
        if old_reason in REGISTRATION_REASONS and new_reason not in REGISTRATION_REASONS:
            changes.append(pb.CHANGE_REGISTRATION_REMOVED)
        corrected = bool(now.decision.derived & Derived.EURO_CORRECTED)
        euro_changed = bool(item.euro) and item.euro.strip().upper() != current.euro
        if corrected and (euro_changed or not item.euro):
            changes.append(pb.CHANGE_EURO_CORRECTED)
        elif euro_changed:
            changes.append(pb.CHANGE_VEHICLE_DATA)
        if then_rules is not None and then_rules.decision.outcome != new_outcome:
            changes.append(pb.CHANGE_RULESET)
        outcome_changed = old_outcome != new_outcome
        if outcome_changed and not changes:
            changes.append(pb.CHANGE_VEHICLE_DATA)
        return pb.RecheckResult(
            index=index,
            previous_outcome=old_outcome.value,  # type: ignore[arg-type]
            previous_reason=old_reason.value,  # type: ignore[arg-type]
            current=current,
            outcome_changed=outcome_changed,
            changes=changes,  # type: ignore[arg-type]
        )

    # -- FleetStats --

    @translate_errors
    async def FleetStats(
        self, request: pb.FleetStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FleetStatsResponse:
        who = self._enter(Rpc.FLEET_STATS, context)
        dims = list(request.group_by)
        if not dims or len(set(dims)) != len(dims) or pb.DIMENSION_UNSPECIFIED in dims:
            raise InvalidRequest("group_by needs one or more distinct dimensions")
        with self.holder.lease() as served:
            if request.date:
                day = _required_day(request.date, "date")
            else:
                day = parse_day(served.meta.source_date)
            min_cell = self.config.min_cell_size
            with served.reader.snapshot() as snap:
                rec = snap.vehicles.records
                on_day = (rec["valid_from"] <= day) & (day < rec["valid_to"])
                if request.nis:
                    on_day &= np.isin(rec["nis"], np.array(list(request.nis), dtype=np.uint32))
                cols = {
                    pb.DIMENSION_NIS: rec["nis"][on_day].astype(np.uint32),
                    pb.DIMENSION_FUEL: rec["fuel"][on_day].astype(np.uint32),
                    pb.DIMENSION_EURO: rec["euro"][on_day].astype(np.uint32),
                    pb.DIMENSION_CATEGORY: rec["category"][on_day].astype(np.uint32),
                }
            stacked = np.stack([cols[d] for d in dims], axis=1)
            cells, counts = (
                np.unique(stacked, axis=0, return_counts=True)
                if len(stacked)
                else (stacked, np.zeros(0, dtype=np.int64))
            )
            keep = counts >= min_cell
            out = pb.FleetStatsResponse(
                suppressed_cells=int((~keep).sum()),
                suppressed_vehicles=int(counts[~keep].sum()),
                min_cell_size=min_cell,
                snapshot_id=served.meta.snapshot_id,
                ruleset_revision=served.catalog.get(None).id,
                date=format_day(day),
            )
            for row, count in zip(cells[keep], counts[keep], strict=True):
                cell = pb.FleetCell(vehicles=int(count))
                for d, value in zip(dims, row, strict=True):
                    if d == pb.DIMENSION_NIS:
                        cell.nis = int(value)
                    elif d == pb.DIMENSION_FUEL:
                        cell.fuel = _code_text(codes.FUEL, int(value))
                    elif d == pb.DIMENSION_EURO:
                        cell.euro = _code_text(codes.EURO, int(value))
                    else:
                        cell.category = _code_text(codes.CATEGORY, int(value))
                out.cells.append(cell)
            log.info(
                "FleetStats by %s for %s: %d cells, %d suppressed",
                [pb.Dimension.Name(d) for d in dims],
                who.organisation,
                len(out.cells),
                out.suppressed_cells,
            )
            return out

    # -- ServerInfo --

    @translate_errors
    async def ServerInfo(
        self, request: pb.ServerInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ServerInfoResponse:
        who = self._enter(Rpc.SERVER_INFO, context)
        with self.holder.lease() as served:
            meta = served.meta
            catalog = served.catalog
            return pb.ServerInfoResponse(
                snapshot_id=meta.snapshot_id,
                snapshot_seq=meta.snapshot_seq,
                source_date=meta.source_date,
                mutation_watermark=meta.mutation_watermark,
                built_at=meta.built_at,
                key_id=meta.key_id,
                ruleset_revisions=list(catalog.revisions),
                ruleset_revision=catalog.get(None).id,
                zones=[
                    pb.ZoneInfo(id=z.id, name=z.name, region=z.region.name) for z in catalog.zones
                ],
                code_lists=[
                    pb.CodeList(
                        name=name,
                        entries=[
                            pb.CodeEntry(id=c.id, code=c.code, label=c.label()) for c in lst.codes
                        ],
                    )
                    for name, lst in CODE_LISTS
                ],
                client=pb.ClientInfo(
                    organisation=who.organisation,
                    roles=sorted(int(r) for r in who.roles),  # type: ignore[misc]
                    zones=sorted(who.zones),
                    calls_per_minute=who.calls_per_minute,
                    pairs_per_day=who.pairs_per_day,
                    max_chunk_pairs=self.config.max_chunk_pairs,
                    max_message_bytes=self.config.max_receive_message_bytes,
                    max_recheck_items=self.config.max_recheck_items,
                ),
                server_version=SERVER_VERSION,
                worker=self.worker,
                workers=self.config.workers,
            )


def _check_deadline(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("the deadline passed before the answer was complete")
