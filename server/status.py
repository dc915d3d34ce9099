"""THE one table from domain errors (`lez.errors`) to gRPC status codes with `google.rpc` details.

Every servicer method is wrapped by `translate_errors`: a `LezError` becomes its status code, a
message that says what to change, a `google.rpc.ErrorInfo` (domain `lez.api.v1`, reason = the
`ErrorReason` name without prefix, metadata such as `size`/`limit`), for a client's mistake
(INVALID_ARGUMENT) a `google.rpc.BadRequest` naming the field at fault, and, where a retry makes
sense, a `google.rpc.RetryInfo`. Request bytes that do not decode are a client's mistake too:
`tolerant_deserializer` turns a parse failure into an `Undecodable` marker that the wrappers
raise as `UndecodableRequest` (grpcio would otherwise answer UNKNOWN before any handler
runs). Anything else becomes INTERNAL with a generic message and a reference to the server
log. Each wrapper also observes its call from start to end (`server.calls`: request id, the
call's log line, metrics). Messages never contain a plate (`lez.errors` guarantees it for
domain errors; unexpected exceptions are never echoed).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn, Protocol, TypeVar, cast, runtime_checkable

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as Message_
from google.rpc import error_details_pb2, status_pb2

from lez import errors
from lez.api.v1 import access_pb2 as pb
from server.calls import REQUEST_ID_KEY, CallObserver, CallRecord, current_call

log = logging.getLogger("lez.server")

DOMAIN: Final = "lez.api.v1"
DETAILS_KEY: Final = "grpc-status-details-bin"


@dataclass(frozen=True, slots=True)
class Mapping:
    """How one error class travels: status code, ErrorReason, retry hint in seconds."""

    code: grpc.StatusCode
    reason: int  # pb.ErrorReason value
    retry_after_s: float | None = None


# THE table. Looked up along the exception's MRO, so subclasses come before their bases only
# where they differ. A test checks every `lez.errors` class resolves to an entry here.
ERROR_TABLE: Final[dict[type[BaseException], Mapping]] = {
    errors.BatchTooLarge: Mapping(
        grpc.StatusCode.INVALID_ARGUMENT, pb.ERROR_REASON_BATCH_TOO_LARGE
    ),
    errors.UnknownZone: Mapping(grpc.StatusCode.INVALID_ARGUMENT, pb.ERROR_REASON_UNKNOWN_ZONE),
    errors.UndecodableRequest: Mapping(
        grpc.StatusCode.INVALID_ARGUMENT, pb.ERROR_REASON_INVALID_REQUEST
    ),
    errors.InvalidRequest: Mapping(
        grpc.StatusCode.INVALID_ARGUMENT, pb.ERROR_REASON_INVALID_REQUEST
    ),
    errors.InvalidPlate: Mapping(grpc.StatusCode.INVALID_ARGUMENT, pb.ERROR_REASON_INVALID_REQUEST),
    errors.UnknownRuleset: Mapping(
        grpc.StatusCode.FAILED_PRECONDITION, pb.ERROR_REASON_UNKNOWN_RULESET
    ),
    errors.KeyMismatch: Mapping(grpc.StatusCode.FAILED_PRECONDITION, pb.ERROR_REASON_KEY_MISMATCH),
    errors.PermissionDenied: Mapping(
        grpc.StatusCode.PERMISSION_DENIED, pb.ERROR_REASON_PERMISSION_DENIED
    ),
    errors.Unauthenticated: Mapping(
        grpc.StatusCode.UNAUTHENTICATED, pb.ERROR_REASON_UNAUTHENTICATED
    ),
    errors.RateLimited: Mapping(
        grpc.StatusCode.RESOURCE_EXHAUSTED, pb.ERROR_REASON_RATE_LIMITED, retry_after_s=60.0
    ),
    errors.Overloaded: Mapping(
        grpc.StatusCode.RESOURCE_EXHAUSTED, pb.ERROR_REASON_OVERLOADED, retry_after_s=1.0
    ),
    errors.StoreNotReady: Mapping(
        grpc.StatusCode.UNAVAILABLE, pb.ERROR_REASON_STORE_NOT_READY, retry_after_s=1.0
    ),
    # a stopping server: not ready to serve, as a store being switched; retry (on a replica)
    errors.AuditClosed: Mapping(
        grpc.StatusCode.UNAVAILABLE, pb.ERROR_REASON_STORE_NOT_READY, retry_after_s=1.0
    ),
    # the audit log failed: this process answers nothing more; retry on another worker
    errors.AuditFailed: Mapping(
        grpc.StatusCode.UNAVAILABLE, pb.ERROR_REASON_STORE_NOT_READY, retry_after_s=1.0
    ),
    errors.ServerStopping: Mapping(
        grpc.StatusCode.UNAVAILABLE, pb.ERROR_REASON_STORE_NOT_READY, retry_after_s=1.0
    ),
    errors.DeadlineExceeded: Mapping(
        grpc.StatusCode.DEADLINE_EXCEEDED, pb.ERROR_REASON_DEADLINE_EXCEEDED
    ),
    # a stream that sent nothing for the idle time: ended like a passed deadline
    errors.StreamIdle: Mapping(
        grpc.StatusCode.DEADLINE_EXCEEDED, pb.ERROR_REASON_DEADLINE_EXCEEDED
    ),
    # Operator-side failures: the caller can do nothing about them.
    errors.StoreFormatMismatch: Mapping(grpc.StatusCode.INTERNAL, pb.ERROR_REASON_INTERNAL),
    errors.StoreCorrupt: Mapping(grpc.StatusCode.INTERNAL, pb.ERROR_REASON_INTERNAL),
    errors.KeyFileError: Mapping(grpc.StatusCode.INTERNAL, pb.ERROR_REASON_INTERNAL),
    errors.AuditKeyError: Mapping(grpc.StatusCode.INTERNAL, pb.ERROR_REASON_INTERNAL),
    errors.ServerStartRefused: Mapping(grpc.StatusCode.INTERNAL, pb.ERROR_REASON_INTERNAL),
    errors.LezError: Mapping(grpc.StatusCode.INTERNAL, pb.ERROR_REASON_INTERNAL),
}

_INTERNAL: Final = Mapping(grpc.StatusCode.INTERNAL, pb.ERROR_REASON_INTERNAL)
MESSAGE_LIMIT: Final = 600
"""Longest status message sent: a message stays far below gRPC's header limits, so a long
value can never turn a client's mistake into RESOURCE_EXHAUSTED."""


def mapping_of(exc: BaseException) -> Mapping:
    """The table entry for an exception (the nearest class in its MRO), INTERNAL otherwise."""
    for cls in type(exc).__mro__:
        found = ERROR_TABLE.get(cls)
        if found is not None:
            return found
    return _INTERNAL


SHUTDOWN: Final = "SHUTDOWN"
"""The audit status of a call the server's shutdown grace period cut off."""


def audit_status(exc: BaseException) -> str:
    """How a call that failed midway ended, for its audit record: the status code's name, or
    SHUTDOWN for one still running at the end of the grace period (`ServerStopping`)."""
    if isinstance(exc, errors.ServerStopping):
        return SHUTDOWN
    if not isinstance(exc, Exception):  # cancelled by the client, or the server stopping
        return grpc.StatusCode.CANCELLED.name
    return mapping_of(exc).code.name


def _metadata_of(exc: BaseException) -> dict[str, str]:
    meta = {"code": getattr(exc, "code", "internal")}
    for attr in ("size", "limit", "rule", "quota"):
        value = getattr(exc, attr, None)
        if value is not None:
            meta[attr] = str(value)
    return meta


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str, status_pb2.Status]:
    """Status code, message and the full `google.rpc.Status` (with details) for an exception."""
    m = mapping_of(exc)
    if isinstance(exc, errors.LezError) and m.reason != pb.ERROR_REASON_INTERNAL:
        message = exc.message
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 3] + "..."
    else:
        ref = secrets.token_hex(6)
        # Frames only: an unexpected exception's message may quote its input (a plate).
        frames = "".join(traceback.format_tb(exc.__traceback__))
        log.error("internal error ref=%s: %s\n%s", ref, type(exc).__name__, frames)
        message = f"internal server error (reference {ref} in the server log)"
    reason_name = pb.ErrorReason.Name(m.reason).removeprefix("ERROR_REASON_")  # type: ignore[arg-type]
    details = []
    info = error_details_pb2.ErrorInfo(reason=reason_name, domain=DOMAIN)
    if m.reason != pb.ERROR_REASON_INTERNAL:
        info.metadata.update(_metadata_of(exc))
    details.append(info)
    if m.code == grpc.StatusCode.INVALID_ARGUMENT:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=str(getattr(exc, "field", "request")), description=message
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    # an error that knows when a retry can succeed (a quota's next window) says so itself
    retry_after_s = getattr(exc, "retry_after_s", m.retry_after_s)
    if retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    if isinstance(exc, errors.RateLimited):
        details.append(
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=exc.quota, description=exc.message
                    )
                ]
            )
        )
    status = status_pb2.Status(code=m.code.value[0], message=message)
    for d in details:
        packed = any_pb2.Any()
        packed.Pack(d)
        status.details.append(packed)
    return m.code, message, status


async def abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    """End the call with the status of `exc` (details in `grpc-status-details-bin`)."""
    code, message, status = to_status(exc)
    trailing: tuple[tuple[str, str | bytes], ...] = ((DETAILS_KEY, status.SerializeToString()),)
    call = current_call()
    if call is not None:  # the request id travels with the error too
        trailing += ((REQUEST_ID_KEY, call.request_id),)
    await context.abort(code, message, trailing_metadata=trailing)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Stands for request bytes that did not parse as `message_name`: the handler wrappers
    raise it as `UndecodableRequest` (INVALID_ARGUMENT)."""

    message_name: str


Message = TypeVar("Message", bound=Message_)


def tolerant_deserializer(message_type: type[Message]) -> Callable[[bytes], Message | Undecodable]:
    """A request deserializer that never raises: a parse failure (grpcio reports a raising
    deserializer as UNKNOWN before any handler runs) becomes an `Undecodable` marker."""
    name = message_type.DESCRIPTOR.name

    def deserialize(raw: bytes) -> Message | Undecodable:
        try:
            return message_type.FromString(raw)
        except DecodeError:
            return Undecodable(name)

    return deserialize


def _decoded(request: object) -> None:
    if isinstance(request, Undecodable):
        raise errors.UndecodableRequest(request.message_name)


async def _decoded_stream(
    requests: AsyncIterator[Any], call: CallRecord | None
) -> AsyncIterator[Any]:
    """The request stream's messages, each checked as it arrives. When the server stops
    (`CallObserver.end_remaining`), a stream waiting for its next message is woken and one
    busy with the last one ends before reading more: with `ServerStopping`, which the handler
    and the wrapper treat as any error (its answers so far audited, then UNAVAILABLE)."""
    iterator = requests.__aiter__()
    while True:
        if call is not None and call.stopping:
            raise _server_stopping()
        if call is not None:
            call.awaiting_input = True
        try:
            request = await iterator.__anext__()
        except StopAsyncIteration:
            return
        except asyncio.CancelledError:
            if call is not None and call.stopping:
                raise _server_stopping() from None
            raise
        finally:
            if call is not None:
                call.awaiting_input = False
        _decoded(request)
        yield request


def _server_stopping() -> errors.ServerStopping:
    return errors.ServerStopping(
        "the server is stopping: this call was still running at the end of its grace period; "
        "retry (on another replica)"
    )


Req = TypeVar("Req")
Resp = TypeVar("Resp")
Self = TypeVar("Self")

UnaryHandler = Callable[[Self, Req, "grpc.aio.ServicerContext[Req, Resp]"], Awaitable[Resp]]
StreamHandler = Callable[[Self, Req, "grpc.aio.ServicerContext[Any, Resp]"], AsyncIterator[Resp]]


def _is_abort(exc: BaseException) -> bool:
    # grpc.aio raises AbortError from context.abort; it must pass through untouched.
    return type(exc).__name__ == "AbortError"


REFUSALS: Final = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
"""Statuses of a refused call: the servicer is told of them (`RefusalHook`) to audit them, and
of attempts over a quota (`RateLimited.attempt`; not of `Overloaded` nor of a stream refused a
slot: refusing load must stay cheap, an audit record is a synced write)."""


@runtime_checkable
class RefusalHook(Protocol):
    """A servicer that records refused calls (`server.audit_refusals`)."""

    def on_refused(
        self, rpc: str, context: grpc.aio.ServicerContext[Any, Any], status: grpc.StatusCode
    ) -> None: ...


async def _abort_or_reraise(
    servicer: object, rpc: str, context: grpc.aio.ServicerContext[Any, Any], exc: BaseException
) -> NoReturn:
    """A domain or unexpected error ends the call through the table, a refusal told to the
    servicer first; an abort, a cancellation or an exit goes on as it came."""
    if _is_abort(exc) or not isinstance(exc, Exception):
        raise exc
    code = mapping_of(exc).code
    over_quota = isinstance(exc, errors.RateLimited) and exc.attempt
    refused = code in REFUSALS or over_quota
    if refused and isinstance(servicer, RefusalHook):
        servicer.on_refused(rpc, context, code)
    await abort(context, exc)


def ended_by(
    exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]
) -> tuple[grpc.StatusCode, str]:
    """The status code a call ends with because of `exc`, and the reason of an error status
    (the `ErrorInfo` reason in lower case; "" for a cancelled call)."""
    if _is_abort(exc):  # aborted by the handler itself with a code of its choosing
        code = context.code()
        found = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
        return found, found.name.lower()
    if not isinstance(exc, Exception):
        return grpc.StatusCode.CANCELLED, ""
    m = mapping_of(exc)
    reason = pb.ErrorReason.Name(m.reason).removeprefix("ERROR_REASON_")  # type: ignore[arg-type]
    return m.code, reason.lower()


def _open_call(
    servicer: object, rpc: str, context: grpc.aio.ServicerContext[Any, Any]
) -> CallRecord | None:
    calls = getattr(servicer, "calls", None)
    return calls.open(rpc, context) if isinstance(calls, CallObserver) else None


def _close_call(
    servicer: object,
    call: CallRecord | None,
    code: grpc.StatusCode,
    reason: str,
    *,
    unary: bool = False,
) -> None:
    """End the call's record: a unary call's after its answer (`CallObserver.end_after_answer`),
    a stream's at once."""
    calls = getattr(servicer, "calls", None)
    if call is None or not isinstance(calls, CallObserver):
        return
    if unary:
        calls.end_after_answer(call, code, reason)
    else:
        calls.end(call, code, reason)


def translate_errors(
    handler: UnaryHandler[Self, Req, Resp],
) -> UnaryHandler[Self, Req, Resp]:
    """Wrap a unary servicer method: exceptions become statuses through the table; the call is
    observed from start to end (`server.calls`)."""

    @functools.wraps(handler)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Req, Resp]
    ) -> Resp:
        call = _open_call(self, handler.__name__, context)
        code, reason = grpc.StatusCode.OK, ""
        try:
            if call is not None:
                await call.announce(context, stream=False)
            _decoded(request)
            return await handler(self, request, context)
        except BaseException as exc:
            code, reason = ended_by(exc, context)
            await _abort_or_reraise(self, handler.__name__, context, exc)
        finally:
            _close_call(self, call, code, reason, unary=True)

    return wrapper


def translate_stream_errors(
    handler: StreamHandler[Self, Req, Resp],
) -> StreamHandler[Self, Req, Resp]:
    """Wrap a response-streaming servicer method the same way; a request stream's messages pass
    through the decode check as they arrive."""

    @functools.wraps(handler)
    async def wrapper(
        self: Self, request: Req, context: grpc.aio.ServicerContext[Any, Resp]
    ) -> AsyncIterator[Resp]:
        call = _open_call(self, handler.__name__, context)
        code, reason = grpc.StatusCode.OK, ""
        try:
            if call is not None:
                await call.announce(context, stream=True)
            _decoded(request)
            if hasattr(request, "__aiter__"):
                request = cast(Req, _decoded_stream(cast(AsyncIterator[Any], request), call))
            async for item in handler(self, request, context):
                yield item
        except BaseException as exc:
            code, reason = ended_by(exc, context)
            await _abort_or_reraise(self, handler.__name__, context, exc)
        finally:
            _close_call(self, call, code, reason)

    return wrapper
