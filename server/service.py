"""The AccessService servicer: a thin translation between proto messages and the domain.

Each call: identify the caller (`auth`), admit it under the worker's caps on work in flight
(`admission`: refused at once when over), check role, zone and the organisation's quotas
(`quotas`, shared by the workers), lease the current store (`state`), ask the pipeline
(`pipeline.answer_chunk`, `pipeline.answer_single`) or the domain (`lez.fleet`,
`lez.recheck`, `lez.campaign`), write the audit record (`audit`) and only then complete the
answer. Nothing is computed here beyond moving values between messages and domain types.
Errors travel through the one table in `status`. Plates are never logged or echoed.

`add_access_service` registers the servicer with request deserializers that never raise
(`status.tolerant_deserializer`), and every request's strings are bounded (`check_text_lengths`)
before use, so a malformed request is INVALID_ARGUMENT, never INTERNAL or UNKNOWN.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, cast

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from lez import campaign, codes, fleet, recheck
from lez.api.v1 import access_pb2 as pb
from lez.api.v1 import access_pb2_grpc as pb_grpc
from lez.data_quality import DataQuality
from lez.days import (
    DAY_OPEN,
    DAY_UNKNOWN,
    SECOND_UNKNOWN,
    brussels_day_second,
    format_day,
    format_instant,
    parse_day,
    parse_instant,
    today_brussels,
)
from lez.decision import Outcome, Reason
from lez.errors import (
    BatchTooLarge,
    DeadlineExceeded,
    InvalidRequest,
    LezError,
    echo,
)
from lez.keys import PlateKeyer
from lez.rules import Revision, RuleCatalog, Verdict, Zone
from lez.store import KeyedRecords, KeyLookups, Snapshot, StoreMeta
from lez.vehicle import U16_UNKNOWN, U32_UNKNOWN, empty
from lez.version import VERSION
from server import chunk_wire, pipeline
from server.admission import Admission, idle_limited
from server.affinity import run_anywhere
from server.audit import Appended, AuditWriter, KeyBatch
from server.audit_refusals import RefusalAudit
from server.auth import Authenticator, Identity, Purpose, Role, Rpc
from server.calls import CallObserver, CallRecord, current_call
from server.config import ServerConfig
from server.metrics import ServerMetrics
from server.quotas import QuotaStore
from server.state import ServedSnapshot, StoreHolder
from server.status import (
    SHUTDOWN,
    audit_status,
    tolerant_deserializer,
    translate_errors,
    translate_stream_errors,
)

log = logging.getLogger("lez.server")

SERVER_VERSION: Final = VERSION
CODE_LISTS: Final = (("euro", codes.EURO), ("category", codes.CATEGORY), ("fuel", codes.FUEL))
NO_VEHICLE: Final = empty(1)[0]
"""A record of unknown values: the technical data of an answer without a vehicle version."""
TEXT_LIMIT: Final = 64
"""Longest string a request field may hold (zones, dates, countries, revisions, key ids)."""
PLATE_TEXT_LIMIT: Final = 256
"""Longest `plate` string; longer than the store's plate limit but shorter is INVALID_PLATE."""
SNAPSHOT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What a snapshot id may look like to be looked up as a build directory (no path)."""
GENERATED_SNAPSHOT: Final = re.compile(r"(\d{8}T\d{6}Z)-[0-9a-f]{6}")
"""A snapshot id as `lez.store.writer.new_snapshot_id` makes it: its UTC build time, sortable."""
AUDIT_THREADS: Final = 4
"""Threads that write and sync stream chunks' audit records (per worker process)."""
READ_AHEAD: Final = 2
"""Chunks of a stream read ahead of the one being decided."""
DATE_TEXTS: Final = 4096
"""Days whose ISO text answers remember (`_date_text`): about eleven years of days."""
PENDING_RECORD_S: Final = 5.0
"""How long a failing stream waits for its last chunk's record before its closing record."""
PROBE_TURNS: Final = 2
"""Loop turns a stream waits, after its requests ended, for a termination to cancel it."""
DEADLINE_SLACK_S: Final = 0.05
"""A stream terminated this close to its deadline was ended by it (gRPC's core fires the
deadline by its own clock, a little before `time_remaining` reaches 0)."""
TERMINATION_WAIT_S: Final = 0.05
"""How long a stream whose requests ended near its deadline or during the shutdown waits for
the termination that likely ended them."""


def check_text_lengths(message: Message, path: str = "") -> None:
    """Every string of a request (nested messages included) within its limit; InvalidRequest
    naming the field otherwise. Never echoes the value: it may be a plate. Only the string and
    message fields are read (`_text_fields`): a stream chunk's byte columns, a megabyte, are
    neither copied nor serialised (0.24 to 0.75 ms a 50,000-pair chunk when they were, 2 us
    now: `python -m bench.single_paths`)."""
    strings, messages, flat = _text_fields(message.DESCRIPTOR)
    if flat and message.ByteSize() <= TEXT_LIMIT:
        return  # a single check's request: no string holds more characters than it has bytes
    for desc in strings:
        limit = PLATE_TEXT_LIMIT if desc.name == "plate" else TEXT_LIMIT
        value = getattr(message, desc.name)
        repeated = desc.is_repeated
        for i, text in enumerate(value if repeated else (value,)):
            if len(text) > limit:
                where = f"{path}{desc.name}" + (f"[{i}]" if repeated else "")
                raise InvalidRequest(
                    f"{where} holds {len(text)} characters; at most {limit}", field=where
                )
    for desc in messages:
        where = f"{path}{desc.name}"
        if not desc.is_repeated:
            if message.HasField(desc.name):
                check_text_lengths(getattr(message, desc.name), f"{where}.")
        else:
            for i, item in enumerate(getattr(message, desc.name)):
                check_text_lengths(item, f"{where}[{i}].")


@functools.cache
def _text_fields(
    descriptor: Descriptor,
) -> tuple[tuple[FieldDescriptor, ...], tuple[FieldDescriptor, ...], bool]:
    """A message type's string fields and message fields (what `check_text_lengths` reads), and
    whether it is flat (no nested or repeated field: its size is cheap to take, and a small one
    holds no long string). No request has a map field; one added is refused here, loudly, until
    the check reads it."""
    fields = descriptor.fields
    maps = [f.name for f in fields if f.message_type and f.message_type.GetOptions().map_entry]
    if maps:
        raise TypeError(f"{descriptor.name}: check_text_lengths does not read map fields {maps}")
    strings = tuple(f for f in fields if f.type == FieldDescriptor.TYPE_STRING)
    messages = tuple(f for f in fields if f.type == FieldDescriptor.TYPE_MESSAGE)
    flat = not messages and not any(f.is_repeated for f in fields)
    return strings, messages, flat


def _enum_value(kind: type[Outcome] | type[Reason], value: int, where: str) -> int:
    """A proto3 (open) enum number the domain knows; InvalidRequest naming the field otherwise."""
    if value not in kind._value2member_map_:
        raise InvalidRequest(f"{where} is {value}, not a known {kind.__name__}", field=where)
    return value


def add_access_service(service: AccessService, server: grpc.aio.Server) -> None:
    """Register the servicer like the generated `add_AccessServiceServicer_to_server`, with
    request deserializers that turn undecodable bytes into INVALID_ARGUMENT (`status`), and a
    response serializer that passes on the wire bytes a servicer wrote itself (a stream's
    decision chunks, `server.chunk_wire`).

    The handlers are derived from the contract's service descriptor, so a method added to the
    proto is registered here too (or refused at start if its call shape is not served)."""
    descriptor = pb.DESCRIPTOR.services_by_name["AccessService"]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in descriptor.methods:
        if method.client_streaming and not method.server_streaming:
            raise TypeError(f"{method.name}: client-streaming methods are not served")
        make = (
            grpc.stream_stream_rpc_method_handler
            if method.client_streaming
            else grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make(
            getattr(service, method.name),
            request_deserializer=tolerant_deserializer(getattr(pb, method.input_type.name)),
            response_serializer=serialized_response,
        )
    server.add_generic_rpc_handlers((_AcceptingHandler(descriptor.full_name, handlers, service),))


def serialized_response(response: Message | bytes) -> bytes:
    """A response's wire bytes: a message serialised, or bytes a servicer already wrote
    (`server.chunk_wire`) passed on as they are."""
    return response if isinstance(response, bytes) else response.SerializeToString()


class _AcceptingHandler(grpc.GenericRpcHandler):  # type: ignore[type-arg]  # generic in stubs only
    """The service's method handlers by path, looked up in each call's own task as grpc.aio
    accepts it, before its request is read: that task is counted among the calls in progress
    (`AccessService.accept`), which a call's audit flush asks about (`AccessService._alone`).
    Calls accepted while a flush held the event loop are counted before any of them runs, so
    a burst is seen as one and its flushes are shared. (In place of grpc's registered-method
    lookup: one sequential caller made 669 calls/s before and 674 after, `python -m
    bench.ab_servers --old f305d5a --rounds 9`.)"""

    def __init__(
        self,
        name: str,
        handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]],
        service: AccessService,
    ) -> None:
        self.by_path = {f"/{name}/{method}": handler for method, handler in handlers.items()}
        self.accept = service.accept

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self.by_path.get(handler_call_details.method)
        if handler is not None:
            task = asyncio.current_task()
            if task is not None:
                self.accept(task)
        return handler


def resolve_zone(catalog: Revision | RuleCatalog, text: str) -> Zone:
    """The zone named by id or name in a revision (or the catalog's newest); UnknownZone lists
    the known ones."""
    if not text.strip():
        raise InvalidRequest("a zone is required; ServerInfo lists the zones", field="zone")
    return catalog.zone(text)


def known_snapshot(served: ServedSnapshot, text: str, field: str) -> None:
    """Refuse a snapshot id the server cannot have served ("" is none given): known are the
    builds its store holds (the current one and those kept) and ids of the generated form
    (`20261020T031500Z-a1b2c3`, its build time) no later than the current snapshot's, which
    name a build since removed. InvalidRequest otherwise (a typo, a value meant for another
    field), quoting the value only through `echo`."""
    if not text or text == served.meta.snapshot_id:
        return
    current = served.meta.snapshot_id
    if SNAPSHOT_NAME.fullmatch(text) and text not in (".", ".."):
        if (served.build.parent / text / "data.mdb").is_file():
            return
        stamp = GENERATED_SNAPSHOT.fullmatch(text)
        if stamp and _built_by(stamp[1], served.meta.built_at):
            return
    raise InvalidRequest(
        f"{field}: {echo(text)} is not a snapshot this server has served (its current snapshot "
        f"is {current}; a snapshot id is what an answer printed, e.g. 20261020T031500Z-a1b2c3)",
        field=field,
    )


def _built_by(stamp: str, built_at: str) -> bool:
    """Whether a snapshot id's build time (`20261020T031500Z`) is no later than the current
    snapshot's `built_at` (ISO 8601; when unreadable, any time is taken as possible)."""
    try:
        made = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:  # not a time (month 13): no build made it
        return False
    try:
        built = dt.datetime.fromisoformat(built_at)
    except ValueError:
        return True
    return made <= (built if built.tzinfo else built.replace(tzinfo=dt.UTC))


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
    except ValueError as exc:  # says what is wrong: the form, the calendar or the range
        raise InvalidRequest(f"{field}: {exc}", field=field) from None


def _code_text(lst: codes.CodeList, ident: int) -> str:
    found = lst.by_id.get(int(ident))
    return found.code if found is not None else ""


@functools.lru_cache(maxsize=DATE_TEXTS)
def _date_text(day: int) -> str:
    """A day's ISO date in an answer ("" when unknown or open); remembered, as few days recur."""
    return "" if day in (DAY_UNKNOWN, DAY_OPEN) else format_day(day)


def _positive(value: int, unknown: int) -> int:
    return 0 if value == unknown else int(value)


def _single_check(
    item: pb.CheckRequest | pb.EarlierDecision,
    day: int,
    key_id: str,
    claimed: int | None,
    second: int = SECOND_UNKNOWN,
) -> pipeline.SingleCheck:
    """The pipeline's question for a unary item given as plate or key."""
    which = item.WhichOneof("subject")
    return pipeline.SingleCheck(
        plate=item.plate if which == "plate" else None,
        key=item.key if which == "key" else None,
        key_id=key_id,
        country=item.country,
        day=day,
        claimed_first_registration=claimed,
        second=second,
    )


def _day_and_second(request: pb.CheckRequest) -> tuple[int, int]:
    """The day of a Check and the second of that Brussels day: from `instant` when given (the
    server derives the Brussels day, so every client gets the same day for the same read;
    `date` must then be empty or that day), else from `date` with the hour unknown."""
    if not request.instant:
        return _day_or_invalid(request.date, None), SECOND_UNKNOWN
    try:
        instant = parse_instant(request.instant)
    except ValueError as exc:
        raise InvalidRequest(f"instant: {exc}", field="instant") from None
    if not pipeline.EARLIEST_INSTANT <= instant < pipeline.LATEST_INSTANT:
        return DAY_UNKNOWN, SECOND_UNKNOWN  # decided as INVALID_DAY
    day, second = brussels_day_second(instant)
    if request.date and _day_or_invalid(request.date, DAY_UNKNOWN) != day:
        raise InvalidRequest(
            "date must be empty or the Europe/Brussels day of the instant", field="date"
        )
    return day, second


def _technical(msg: pb.Decision, verdict: Verdict, record: np.void | None) -> None:
    """Fill the technical part of a decision message (callers that see it)."""
    known = record if record is not None else NO_VEHICLE
    row = dict(zip(known.dtype.names or (), known.item(), strict=True))  # one read of the row
    msg.reason = verdict.reason  # type: ignore[assignment]
    msg.derived = verdict.derived
    msg.notes = verdict.notes
    tech = msg.technical
    tech.category = _code_text(codes.CATEGORY, verdict.category)
    tech.fuel = _code_text(codes.FUEL, int(row["fuel"]))
    tech.first_registration = _date_text(int(row["first_registration"]))
    tech.max_mass_kg = _positive(int(row["max_mass"]), U32_UNKNOWN)
    tech.co2_g_km = _positive(int(row["co2"]), U16_UNKNOWN)
    tech.power_kw = _positive(int(row["power_kw"]), U16_UNKNOWN)
    tech.version_valid_from = _date_text(int(row["valid_from"])) if record is not None else ""
    msg.technical.SetInParent()  # present even when every field is empty


def fill_decision(
    msg: pb.Decision, verdict: Verdict, record: np.void | None, who: Identity
) -> None:
    """Write one decision into `msg` (a response's own field: no copy of a built message);
    `record` is the vehicle version it was decided on."""
    allowed = verdict.outcome == Outcome.ALLOWED
    # docs/rules.md#public-checker: vehicle data only where plate, country and first
    # registration match; a mismatch must not tell a guesser anything about the vehicle.
    mismatch = verdict.outcome == Outcome.COMBINATION_MISMATCH
    msg.SetInParent()
    msg.outcome = verdict.outcome  # type: ignore[assignment]
    msg.allowed_until = _date_text(verdict.allowed_until) if allowed else ""
    msg.open_ended = allowed and verdict.allowed_until == DAY_OPEN
    msg.euro = "" if mismatch else _code_text(codes.EURO, verdict.euro)
    if who.sees_technical and mismatch:
        msg.reason = verdict.reason  # type: ignore[assignment]
    elif who.sees_technical:
        _technical(msg, verdict, record)


def decision_message(verdict: Verdict, record: np.void | None, who: Identity) -> pb.Decision:
    """One decision as a message of its own (`fill_decision`)."""
    msg = pb.Decision()
    fill_decision(msg, verdict, record, who)
    return msg


def _decision_chunk(
    answers: pipeline.ChunkAnswers, chunk_id: int, first_index: int, tally: _StreamTally
) -> bytes:
    """A chunk's `DecisionChunk`, as the wire bytes gRPC sends (`server.chunk_wire`)."""
    fields = {
        "chunk_id": chunk_id,
        "first_index": first_index,
        "snapshot_id": tally.snapshot_id,
        "ruleset_revision": tally.revision_name,
        "as_of": tally.as_of_text,
        **answers.columns,
    }
    return chunk_wire.decision_chunk(fields, answers.technical)


def _fleet_cell(dimensions: list[fleet.Dimension], cell: fleet.FleetCell) -> pb.FleetCell:
    msg = pb.FleetCell(vehicles=cell.vehicles)
    for dimension, value in zip(dimensions, cell.values, strict=True):
        if dimension == fleet.Dimension.NIS:
            msg.nis = value
        elif dimension == fleet.Dimension.FUEL:
            msg.fuel = fleet.code_text(dimension, value)
        elif dimension == fleet.Dimension.EURO:
            msg.euro = fleet.code_text(dimension, value)
            msg.euro_derived = cell.euro_derived
        else:
            msg.category = fleet.code_text(dimension, value)
    return msg


@dataclass(slots=True)
class _StreamTally:
    """What a CheckStream has answered so far: for the next chunk, the summary and the audit."""

    snapshot_id: str
    stream_id: str = field(default_factory=lambda: secrets.token_hex(8))
    """Names the stream in each of its audit records (its chunks' and its closing one)."""
    zone: Zone | None = None
    revision: Revision | None = None
    context: pipeline.AnswerContext | None = None
    as_of: int | None = None  # the evaluation date the first chunk asked for
    purpose: Purpose | None = None  # known from the first chunk
    answered: int = 0  # items decided so far: the first index of the next chunk
    chunks: int = 0  # chunks decided so far: the number of the next one
    sent: int = 0  # chunks whose answer was sent
    sent_pairs: int = 0
    counts: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(pipeline.OUTCOMES, dtype=np.int64)
    )

    @property
    def revision_name(self) -> str:
        return self.revision.id if self.revision is not None else ""

    @property
    def as_of_text(self) -> str:
        return "" if self.as_of is None else format_day(self.as_of)

    def reserve(self, answers: pipeline.ChunkAnswers) -> None:
        """A chunk was decided (its record is being written): number the next one after it."""
        self.answered += answers.count
        self.chunks += 1

    def add(self, answers: pipeline.ChunkAnswers) -> None:
        """A chunk's answer is being sent."""
        self.counts += answers.outcome_counts  # the keys are in each chunk's own record
        self.sent += 1
        self.sent_pairs += answers.count


@dataclass(slots=True)
class _PendingChunk:
    """A decided chunk whose audit record is being written; its answer goes once it is."""

    recorded: asyncio.Future[None]
    answers: pipeline.ChunkAnswers
    message: bytes  # the DecisionChunk's wire bytes

    async def answer(self, tally: _StreamTally) -> bytes:
        await self.recorded  # no answer before its record is durable
        tally.add(self.answers)
        return self.message


_END: Final = object()


class _ChunkReader:
    """Reads a stream's chunks ahead in a task of its own (at most `READ_AHEAD`), so the
    servicer can see whether the next chunk is already there."""

    def __init__(self, requests: AsyncIterator[pb.CheckChunk]) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=READ_AHEAD)
        self.task = asyncio.get_running_loop().create_task(self._read(requests))

    async def _read(self, requests: AsyncIterator[pb.CheckChunk]) -> None:
        try:
            async for chunk in requests:
                await self._queue.put(chunk)
        except Exception as exc:  # an undecodable chunk: raised where it is taken
            await self._queue.put(exc)
            return
        await self._queue.put(_END)

    def empty(self) -> bool:
        return self._queue.empty()

    async def next(self) -> pb.CheckChunk | None:
        """The next chunk; None when the client has sent them all."""
        item = await self._queue.get()
        if isinstance(item, Exception):
            raise item
        if item is _END:
            return None
        assert isinstance(item, pb.CheckChunk)
        return item

    def stop(self) -> None:
        self.task.cancel()


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
        quotas: QuotaStore,
        admission: Admission,
        audit: AuditWriter,
        worker: int = 0,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.config = config
        self.worker = worker  # this process's index among the server's workers
        self.holder = holder
        self.keyer = keyer
        self.auth = auth
        self.quotas = quotas
        self.admission = admission
        self.audit = audit
        self.refusals = RefusalAudit(audit, auth, holder)
        self.stopping = False
        """Set when the server starts its graceful stop: a stream cut off after that was cut
        by the shutdown grace period, not by its client."""
        self.open_streams: set[asyncio.Task[Any]] = set()
        """The tasks of the streams in progress: the server waits for them to write their
        closing records before closing the audit log."""
        self.calls = CallObserver(metrics, worker)  # request ids, call log lines, metrics
        self.in_progress = 0  # calls accepted and not done (`accept`)
        # One compute thread per worker: chunk k is evaluated while chunk k+1 is received.
        # Both on any core, though a worker's event loop is pinned (`server.affinity`).
        self.executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="lez-chunk", initializer=run_anywhere
        )
        # Stream chunks' audit records are written and synced here, off the compute thread.
        self.audit_executor = ThreadPoolExecutor(
            max_workers=AUDIT_THREADS, thread_name_prefix="lez-audit", initializer=run_anywhere
        )

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.audit_executor.shutdown(wait=False, cancel_futures=True)

    # -- shared steps --

    def on_refused(
        self, rpc: str, context: grpc.aio.ServicerContext[Any, Any], status: grpc.StatusCode
    ) -> None:
        """A call ended UNAUTHENTICATED or PERMISSION_DENIED (`status.RefusalHook`): audit it."""
        call = current_call()
        self.refusals.record(rpc, context, status, request_id=call.request_id if call else "")

    def _enter(self, rpc: Rpc, context: grpc.aio.ServicerContext[Any, Any]) -> Identity:
        """The caller, allowed to make `rpc` and admitted among its organisation's calls in
        flight on this worker (counted until the call is done, however it ends)."""
        who = self.auth.identify(context)
        call = current_call()
        if call is not None:
            call.identified(who, rpc)
        who.require(rpc)
        self.admission.enter_call(who.organisation)

        def leave(_: object) -> None:
            self.admission.leave_call(who.organisation)

        context.add_done_callback(cast("grpc.aio.DoneCallback[Any, Any]", leave))
        _check_deadline(context)
        return who

    def accept(self, task: asyncio.Task[Any]) -> None:
        """Count a call's task among the calls in progress until it is done."""
        self.in_progress += 1
        task.add_done_callback(self._call_done)

    def _call_done(self, _: asyncio.Task[Any]) -> None:
        self.in_progress -= 1

    def _alone(self) -> bool:
        """No call but the asking one is in progress on this worker (accepted and not done),
        so its audit flush has no one to share with. (A counter: walking a set of the calls'
        tasks took 1.5% of a worker's samples under one sequential caller, py-spy.)"""
        return self.in_progress <= 1

    def _context(
        self, served: ServedSnapshot, revision: Revision, zone: Zone, as_of: int | None = None
    ) -> pipeline.AnswerContext:
        return pipeline.AnswerContext(
            revision=revision,
            zone_id=zone.id,
            keyer=self.keyer,
            store_key_id=served.meta.key_id,
            max_plate_bytes=self.config.max_plate_bytes,
            max_chunk_pairs=self.config.max_chunk_pairs,
            as_of=as_of,
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
        purpose: Purpose | None = None,
        pair_outcomes: bytes | None = None,
        extra: Mapping[str, Any] | None = None,
        call: CallRecord | None = None,
        final: bool = True,
    ) -> Appended:
        """Write a call's record (not yet durable: `audit.durable` or `audit.sync_through`
        before answering). `call`: the call it belongs to (by default the running task's; give
        it on another thread); `final`: the record that sums the call up for its log line (a
        stream's chunk records are not)."""
        call = call if call is not None else current_call()
        appended = self.audit.append(
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
            purpose=purpose.value if purpose is not None else "",
            request_id=call.request_id if call is not None else "",
            pair_outcomes=pair_outcomes,
            extra=extra,
        )
        if call is not None and final:
            call.answered(
                zone=zone,
                snapshot_id=meta.snapshot_id,
                pairs=pairs,
                outcomes=outcomes,
                audit_id=appended.audit_id,
            )
        return appended

    # -- Check --

    @translate_errors
    async def Check(
        self, request: pb.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        who = self._enter(Rpc.CHECK, context)
        check_text_lengths(request)
        with self.admission.work(who.organisation, 1), self.holder.lease() as served:
            revision = served.catalog.get(request.ruleset_revision or None)
            zone = resolve_zone(revision, request.zone)
            who.require_zone(zone.id, zone.name)
            day, second = _day_and_second(request)
            claimed: int | None = None
            if request.first_registration:
                claimed = _required_day(request.first_registration, "first_registration")
            elif who.public_only:
                raise InvalidRequest(
                    "the public checker needs the first-registration date of the vehicle",
                    field="first_registration",
                )
            check = _single_check(request, day, request.key_id, claimed, second)
            self.quotas.charge_check(who)  # a well-formed question in the caller's zones
            answer = pipeline.answer_single(
                served.reader.key_lookups, self._context(served, revision, zone), check
            )
            # Built and serialised before the flush: the processor idles during the fdatasync,
            # and on the bench's virtual machine what runs after it runs on cold caches
            # (measured: one decision 24 us warm, 110 us after a 0.8 ms sleep), so as little as
            # possible follows it. The lease and the pairs in flight end with the work, before
            # the flush; the call's metrics and log line follow the answer
            # (`CallObserver.end_after_answer`).
            response = pb.CheckResponse(
                snapshot_id=served.meta.snapshot_id,
                ruleset_revision=revision.id,
                zone=zone.name,
                date=_date_text(day),
                instant=format_instant(parse_instant(request.instant)) if request.instant else "",
            )
            fill_decision(response.decision, answer.verdict, answer.record, who)
            answer_bytes = response.SerializeToString()  # `serialized_response` passes it on
            keys = KeyBatch()
            keys.add(answer.audit_key)
            recorded = self._audit(
                Rpc.CHECK,
                who,
                zone=zone.name,
                revision=revision.id,
                meta=served.meta,
                pairs=1,
                outcomes={Outcome(answer.verdict.outcome).name: 1},
                keys=keys,
            )
        # no answer before its record is on disk (shared with the calls in progress)
        await self.audit.durable(recorded.seq, alone=self._alone)
        return answer_bytes

    # -- CheckStream --

    def _open_stream(
        self, served: ServedSnapshot, tally: _StreamTally, chunk: pb.CheckChunk, who: Identity
    ) -> pipeline.AnswerContext:
        """The stream's revision and zone, named by its first chunk; later chunks keep them."""
        if tally.context is not None and tally.revision is not None and tally.zone is not None:
            if chunk.zone and resolve_zone(tally.revision, chunk.zone).id != tally.zone.id:
                raise InvalidRequest("a stream is for one zone; open another stream", field="zone")
            if chunk.as_of and _required_day(chunk.as_of, "as_of") != tally.as_of:
                raise InvalidRequest(
                    "a stream has one evaluation date (as_of); open another stream", field="as_of"
                )
            return tally.context
        if chunk.as_of:
            tally.as_of = _required_day(chunk.as_of, "as_of")
        tally.purpose = Purpose.ENFORCEMENT if tally.as_of is None else Purpose.COMMUNICATION
        who.require_purpose(tally.purpose, Rpc.CHECK_STREAM)
        tally.revision = served.catalog.get(chunk.ruleset_revision or None)
        tally.zone = resolve_zone(tally.revision, chunk.zone)
        who.require_zone(tally.zone.id, tally.zone.name)
        tally.context = self._context(served, tally.revision, tally.zone, tally.as_of)
        return tally.context

    def _answer_chunk(
        self, served: ServedSnapshot, context: pipeline.AnswerContext, chunk: pb.CheckChunk,
        technical: bool,
    ) -> pipeline.ChunkAnswers:  # fmt: skip
        """Runs on the compute thread."""
        with served.reader.snapshot() as snap:
            return pipeline.answer_chunk(snap, context, chunk, technical=technical)

    def _record_chunk(
        self, who: Identity, served: ServedSnapshot, tally: _StreamTally,
        answers: pipeline.ChunkAnswers, index: int, first_index: int, call: CallRecord | None,
    ) -> None:  # fmt: skip
        """Runs on an audit thread: write the chunk's record (its keys and each pair's outcome)
        and make it durable, so the answer can be sent when it returns. The compute thread is
        meanwhile free for the next chunk of another stream, and streams finishing chunks
        together share a flush."""
        keys = KeyBatch()
        keys.add(answers.audit_keys)
        recorded = self._audit(
            Rpc.CHECK_STREAM,
            who,
            zone=tally.zone.name if tally.zone else "",
            revision=tally.revision_name,
            meta=served.meta,
            pairs=answers.count,
            outcomes=outcome_names(answers.outcome_counts),
            keys=keys,
            purpose=tally.purpose,
            pair_outcomes=answers.audit_outcomes,
            call=call,  # this thread does not see the call's context
            final=False,
            extra={
                "stream": tally.stream_id,
                "part": "chunk",
                "chunk": index,
                "first_index": first_index,
            },
        )
        if self.audit.sync_window_s <= 0:
            self.audit.sync_through(recorded.seq)

    async def _still_running(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """After the request stream ended: raise CancelledError if it ended because the call
        was terminated (deadline, shutdown grace period, client gone) rather than half-closed.

        grpc.aio ends the request iterator the same way in both cases; the termination then
        cancels the handler's task at its next await (a loop turn, at most a few ms when the
        loop is busy). So yield to the loop, longer when a deadline or the shutdown makes a
        termination likely."""
        for _ in range(PROBE_TURNS):
            await asyncio.sleep(0)
        remaining = context.time_remaining()
        if self.stopping or (remaining is not None and remaining <= DEADLINE_SLACK_S):
            await asyncio.sleep(TERMINATION_WAIT_S)

    def _stream_ended(self, exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """How a stream that did not finish normally ended, for its closing record."""
        if isinstance(exc, Exception):
            return audit_status(exc)
        if self.stopping:
            return SHUTDOWN
        remaining = context.time_remaining()
        if remaining is not None and remaining <= DEADLINE_SLACK_S:
            return grpc.StatusCode.DEADLINE_EXCEEDED.name
        return grpc.StatusCode.CANCELLED.name

    def _close_stream(
        self, who: Identity, served: ServedSnapshot, tally: _StreamTally, status: str
    ) -> Appended:
        """The stream's closing record: how it ended, and its totals (the keys and each pair's
        outcome are in its chunks' records)."""
        return self._audit(
            Rpc.CHECK_STREAM,
            who,
            zone=tally.zone.name if tally.zone else "",
            revision=tally.revision_name,
            meta=served.meta,
            pairs=tally.sent_pairs,
            outcomes=outcome_names(tally.counts),
            keys=KeyBatch(),
            status=status,
            purpose=tally.purpose,
            extra={"stream": tally.stream_id, "part": "end", "chunks": tally.sent},
        )

    def _stream_summary(self, tally: _StreamTally, audit_id: str) -> pb.DecisionChunk:
        summary = pb.BatchSummary(
            pairs=tally.answered,
            chunks=tally.chunks,
            outcomes=[
                pb.OutcomeCount(outcome=i, count=int(c))  # type: ignore[arg-type]
                for i, c in enumerate(tally.counts)
                if c
            ],
            audit_id=audit_id,
            as_of=tally.as_of_text,
        )
        return pb.DecisionChunk(
            first_index=tally.answered,
            snapshot_id=tally.snapshot_id,
            ruleset_revision=tally.revision_name,
            summary=summary,
            as_of=tally.as_of_text,
        )

    @translate_stream_errors
    async def CheckStream(
        self,
        request_iterator: AsyncIterator[pb.CheckChunk],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DecisionChunk | bytes]:
        """Chunks are read ahead by a reader task (at most `READ_AHEAD`), so while chunk k's
        audit record is being synced chunk k+1 is already being decided; chunk k's answer is
        sent once its record is durable, and before waiting for a chunk that has not arrived
        (a client that sends one chunk at a time is never kept waiting)."""
        who = self._enter(Rpc.CHECK_STREAM, context)
        loop = asyncio.get_running_loop()
        org = who.organisation
        idle_s = self.config.stream_idle_timeout_s
        task = asyncio.current_task()
        with contextlib.ExitStack() as cleanup:
            if task is not None:
                self.open_streams.add(task)
                cleanup.callback(self.open_streams.discard, task)
            cleanup.enter_context(self.admission.stream(org))
            cleanup.enter_context(self.quotas.stream_lease(who))
            served = cleanup.enter_context(self.holder.lease())
            tally = _StreamTally(snapshot_id=served.meta.snapshot_id)
            chunks = _ChunkReader(idle_limited(request_iterator, idle_s))
            call = current_call()
            if call is not None:  # a stopping server wakes the task that waits for the client
                call.task = chunks.task
            cleanup.callback(chunks.stop)
            pending: _PendingChunk | None = None
            try:
                while True:
                    if pending is not None and chunks.empty():  # answer before waiting
                        yield await pending.answer(tally)
                        pending = None
                    chunk = await chunks.next()
                    if chunk is None:
                        break
                    _check_deadline(context)
                    check_text_lengths(chunk)
                    answer_context = self._open_stream(served, tally, chunk, who)
                    n = pipeline.admit_chunk(chunk, answer_context)
                    with self.admission.work(org, n):  # refused load is not charged
                        self.quotas.charge_pairs(who, n)
                        answers = await loop.run_in_executor(
                            self.executor, self._answer_chunk, served, answer_context, chunk,
                            who.sees_technical,
                        )  # fmt: skip
                    if pending is not None:  # its record was synced while this was decided
                        yield await pending.answer(tally)
                        pending = None
                    first_index, index = tally.answered, tally.chunks
                    recorded = loop.run_in_executor(
                        self.audit_executor, self._record_chunk, who, served, tally, answers,
                        index, first_index, call,
                    )  # fmt: skip
                    message = _decision_chunk(answers, chunk.chunk_id, first_index, tally)
                    pending = _PendingChunk(recorded, answers, message)
                    tally.reserve(answers)
                if pending is not None:
                    yield await pending.answer(tally)
                    pending = None
                await self._still_running(context)
            except BaseException as exc:
                if pending is not None:  # its record is being written: let it land first
                    await asyncio.wait([pending.recorded], timeout=PENDING_RECORD_S)
                    landed = pending.recorded.done() and not pending.recorded.cancelled()
                    if (
                        landed
                        and pending.recorded.exception() is None
                        and isinstance(exc, Exception)
                    ):
                        # the call is still open (a bad next chunk, a stop): the client gets
                        # the answer that is on record before the error
                        yield await pending.answer(tally)
                if tally.chunks:  # chunks were recorded: say how the stream ended
                    try:
                        ended = self._close_stream(
                            who, served, tally, self._stream_ended(exc, context)
                        )
                        if self.audit.sync_window_s <= 0:
                            self.audit.sync_through(ended.seq)
                    except (LezError, OSError):
                        log.exception("CheckStream: the closing audit record was not written")
                raise
            if tally.revision is None:  # an empty stream asked nothing of any revision
                tally.revision = served.catalog.get(None)  # its record names the newest
            closing = self._close_stream(who, served, tally, "OK")
            if self.audit.sync_window_s <= 0:
                await loop.run_in_executor(
                    self.audit_executor, self.audit.sync_through, closing.seq
                )
            yield self._stream_summary(tally, closing.audit_id)

    # -- Recheck --

    def _recheck_one(
        self,
        lookups: KeyLookups,
        served: ServedSnapshot,
        index: int,
        item: pb.EarlierDecision,
        zone: Zone,
        key_id: str,
        who: Identity,
    ) -> tuple[pb.RecheckResult, pipeline.SingleAnswer]:
        """Today's answer for one earlier decision, with what changed since."""
        newest = served.catalog.get(None)
        earlier_rules: Revision | None = None
        pinned = item.ruleset_revision
        if pinned and pinned != newest.id and pinned in served.catalog.revisions:
            earlier_rules = served.catalog.get(pinned)
        check = _single_check(item, _day_or_invalid(item.date, DAY_UNKNOWN), key_id, None)
        now = pipeline.answer_single(
            lookups, self._context(served, newest, zone), check, also_under=earlier_rules
        )
        current = decision_message(now.verdict, now.record, who)
        outcome = _enum_value(Outcome, int(item.outcome), f"decisions[{index}].outcome")
        reason = _enum_value(Reason, int(item.reason), f"decisions[{index}].reason")
        earlier = recheck.EarlierAnswer(
            outcome=Outcome(outcome), reason=Reason(reason), euro=item.euro
        )
        under_earlier = now.verdict_under_other_revision
        changes = recheck.classify_changes(
            earlier,
            now.verdict,
            current.euro,
            under_earlier.outcome if under_earlier is not None else None,
            same_rules=pinned == newest.id,
            same_register=item.snapshot_id == served.meta.snapshot_id,
        )
        result = pb.RecheckResult(
            index=index,
            previous_outcome=earlier.outcome.value,  # type: ignore[arg-type]
            previous_reason=earlier.reason.value,  # type: ignore[arg-type]
            current=current,
            outcome_changed=earlier.outcome != now.verdict.outcome,
            changes=[int(c) for c in changes],  # type: ignore[misc]
        )
        return result, now

    @translate_errors
    async def Recheck(
        self, request: pb.RecheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        who = self._enter(Rpc.RECHECK, context)
        items = list(request.decisions)
        if not items:
            raise InvalidRequest("a recheck needs at least one earlier decision", field="decisions")
        if len(items) > self.config.max_recheck_items:
            raise BatchTooLarge(
                len(items), self.config.max_recheck_items, "earlier decisions in one recheck"
            )
        check_text_lengths(request)
        with self.admission.work(who.organisation, len(items)), self.holder.lease() as served:
            self.quotas.charge_pairs(who, len(items))
            zones = [resolve_zone(served.catalog, it.zone) for it in items]
            for i, it in enumerate(items):
                known_snapshot(served, it.snapshot_id, f"decisions[{i}].snapshot_id")
            for z in {z.id: z for z in zones}.values():
                who.require_zone(z.id, z.name)
            results: list[pb.RecheckResult] = []
            counts = np.zeros(pipeline.OUTCOMES, dtype=np.int64)
            keys = KeyBatch()
            pair_outcomes: list[int] = []  # aligned with `keys`
            lookups = served.reader.key_lookups
            for i, (item, zone) in enumerate(zip(items, zones, strict=True)):
                result, now = self._recheck_one(lookups, served, i, item, zone, request.key_id, who)
                keys.add(now.audit_key)
                if now.audit_key:
                    pair_outcomes.append(int(now.verdict.outcome))
                counts[now.verdict.outcome] += 1
                results.append(result)
            newest_name = served.catalog.get(None).id
            recorded = self._audit(
                Rpc.RECHECK,
                who,
                zone=",".join(sorted({z.name for z in zones})),
                revision=newest_name,
                meta=served.meta,
                pairs=len(items),
                outcomes=outcome_names(counts),
                keys=keys,
                pair_outcomes=bytes(pair_outcomes),
            )
            answer_bytes = pb.RecheckResponse(  # built before the flush, sent after it
                results=results,
                snapshot_id=served.meta.snapshot_id,
                ruleset_revision=newest_name,
                mutation_watermark=served.meta.mutation_watermark,
            ).SerializeToString()  # as `Check`'s answer: nothing but the flush after the work
        # no answer before its record is on disk (shared with the calls in progress)
        await self.audit.durable(recorded.seq, alone=self._alone)
        return answer_bytes

    # -- FleetStats --

    @translate_errors
    async def FleetStats(
        self, request: pb.FleetStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FleetStatsResponse:
        who = self._enter(Rpc.FLEET_STATS, context)
        check_text_lengths(request)
        dimensions = fleet.dimensions([int(d) for d in request.group_by])
        with self.holder.lease() as served:
            if request.date:
                day = _required_day(request.date, "date")
            else:
                day = parse_day(served.meta.source_date)
            with served.reader.snapshot() as snap:
                counted = fleet.count_fleet(
                    (part.records for part in snap.vehicles_in_parts()),
                    day,
                    dimensions,
                    nis=list(request.nis),
                    min_cell_size=self.config.min_cell_size,
                    rounding_base=self.config.fleet_rounding_base,
                )
            out = pb.FleetStatsResponse(
                cells=[_fleet_cell(dimensions, cell) for cell in counted.cells],
                suppressed_cells=counted.suppressed_cells,
                suppressed_vehicles=counted.suppressed_vehicles,
                min_cell_size=self.config.min_cell_size,
                suppression=counted.suppression,
                snapshot_id=served.meta.snapshot_id,
                ruleset_revision=served.catalog.get(None).id,
                date=format_day(day),
            )
            log.info(
                "FleetStats by %s for %s: %d cells, %d suppressed",
                [pb.Dimension.Name(d) for d in dimensions],  # type: ignore[arg-type]
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
                    calls_per_minute=who.checks_per_minute,
                    pairs_per_day=who.pairs_per_day,
                    max_chunk_pairs=self.config.max_chunk_pairs,
                    max_message_bytes=self.config.max_receive_message_bytes,
                    max_recheck_items=self.config.max_recheck_items,
                ),
                server_version=SERVER_VERSION,
                worker=self.worker,
                workers=self.config.workers,
                data_quality=(
                    data_quality_message(meta.data_quality)
                    if Role.OPERATOR in who.roles and meta.data_quality is not None
                    else None
                ),
            )

    # -- LosingAccess --

    def _campaign_question(
        self, served: ServedSnapshot, request: pb.LosingAccessRequest, who: Identity
    ) -> tuple[campaign.CampaignQuestion, Zone]:
        revision = served.catalog.get(request.ruleset_revision or None)
        zone = resolve_zone(revision, request.zone)
        who.require_zone(zone.id, zone.name)
        if not request.date:
            raise InvalidRequest("a future date is required (YYYY-MM-DD)", field="date")
        reference = (
            _required_day(request.reference_date, "reference_date")
            if request.reference_date
            else today_brussels()
        )
        question = campaign.campaign_question(
            revision,
            zone.id,
            reference_day=reference,
            date=_required_day(request.date, "date"),
            nis=list(request.nis),
            max_nis=self.config.max_campaign_nis,
        )
        return question, zone

    @translate_stream_errors
    async def LosingAccess(
        self, request: pb.LosingAccessRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.LosingAccessChunk]:
        who = self._enter(Rpc.LOSING_ACCESS, context)
        check_text_lengths(request)
        loop = asyncio.get_running_loop()
        rows = min(request.chunk_size or self.config.max_chunk_pairs, self.config.max_chunk_pairs)
        with (
            self.admission.stream(who.organisation),  # a long stream like CheckStream's
            self.quotas.stream_lease(who),
            self.holder.lease() as served,
            served.reader.snapshot() as snap,
        ):
            question, zone = self._campaign_question(served, request, who)
            head = pb.LosingAccessChunk(
                key_id=served.meta.key_id,
                snapshot_id=served.meta.snapshot_id,
                ruleset_revision=question.revision.id,
            )
            tally = campaign.CampaignTally()
            sent = KeyBatch()

            def audit(status: str) -> str:
                """The call's record, durable before the summary goes (a rare call: its one
                flush is taken on the event loop)."""
                recorded = self._audit(
                    Rpc.LOSING_ACCESS,
                    who,
                    zone=zone.name,
                    revision=question.revision.id,
                    meta=served.meta,
                    pairs=tally.examined,
                    outcomes={Outcome.NOT_ALLOWED.name: tally.listed} if tally.listed else {},
                    keys=sent,
                    status=status,
                    purpose=Purpose.COMMUNICATION,
                )
                self.audit.sync_through(recorded.seq)
                return recorded.audit_id

            parts = snap.vehicles_in_parts()
            try:
                while True:
                    _check_deadline(context)
                    part = await loop.run_in_executor(
                        self.executor, _next_losing, parts, snap, question
                    )
                    if part is None:
                        break
                    self.quotas.charge_pairs(who, part.examined)
                    tally.add(part)
                    for start in range(0, len(part), rows):
                        piece = part.rows(start, start + rows)
                        sent.add(piece.keys.tobytes())
                        yield _losing_chunk(head, piece)
            except BaseException as exc:
                if sent.count:  # keys went out: the consultation is on record all the same
                    audit(audit_status(exc))
                raise
            audit_id = audit("OK")
            counted = tally.summary(self.config.min_cell_size)
            closing = pb.LosingAccessChunk()
            closing.CopyFrom(head)
            closing.summary.CopyFrom(
                pb.LosingAccessSummary(
                    vehicles=tally.listed,
                    cells=[_losing_cell(cell) for cell in counted.cells],
                    suppressed_cells=counted.suppressed_cells,
                    suppressed_vehicles=counted.suppressed_vehicles,
                    min_cell_size=self.config.min_cell_size,
                    audit_id=audit_id,
                )
            )
            log.info(
                "LosingAccess for %s in %s: %d of %d vehicles listed",
                who.organisation,
                zone.name,
                tally.listed,
                tally.examined,
            )
            yield closing


def _next_losing(
    parts: Iterator[KeyedRecords], snap: Snapshot, question: campaign.CampaignQuestion
) -> campaign.LosingVehicles | None:
    """The next part of the register answered (on the compute thread); None after the last."""
    part = next(parts, None)
    if part is None:
        return None
    return campaign.losing_in_part(part, snap.registrations_of, question)


def _losing_chunk(
    head: pb.LosingAccessChunk, rows: campaign.LosingVehicles
) -> pb.LosingAccessChunk:
    out = pb.LosingAccessChunk(
        keys=rows.keys.tobytes(),
        reason=rows.reason.tobytes(),
        first_day_lost=np.ascontiguousarray(rows.first_day_lost, dtype="<i4").tobytes(),
        category=rows.category.tobytes(),
        fuel=rows.fuel.tobytes(),
        euro=rows.euro.tobytes(),
        count=len(rows),
    )
    out.MergeFrom(head)
    return out


def _losing_cell(cell: fleet.FleetCell) -> pb.LosingAccessCell:
    category, fuel, euro = (
        fleet.code_text(dimension, value)
        for dimension, value in zip(campaign.CELL_DIMENSIONS, cell.values, strict=True)
    )
    return pb.LosingAccessCell(category=category, fuel=fuel, euro=euro, vehicles=cell.vehicles)


def data_quality_message(figures: Mapping[str, Any]) -> pb.DataQuality:
    """The store meta's `data_quality` (written by the loader with the message's field names)
    as the contract's message."""
    return pb.DataQuality(**DataQuality.from_json(figures).to_json())


def _check_deadline(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded("the deadline passed before the answer was complete")
