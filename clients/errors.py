"""Client exceptions and the one table that maps a gRPC status back to them.

The server sends every error of a whole call as a gRPC status code with a `google.rpc.ErrorInfo`
(domain `lez.api.v1`, `reason` = an `ErrorReason` name without its prefix), sometimes a
`RetryInfo` (when to retry) and a `QuotaFailure`. `from_rpc_error` turns that into one of the
exceptions below, which mirror the `lez.errors` classes (`InvalidRequest`, `BatchTooLarge`,
`UnknownZone`, ...), so callers catch domain errors, not gRPC ones (httpx's
`map_httpcore_exceptions` does the same for transport errors). Without an ErrorInfo (the server
is unreachable, a proxy answered, grpc itself refused a message) the status code alone decides.

Only `ServerUnavailable` and `StoreNotReady` (both UNAVAILABLE) are retried by the clients.
This module imports nothing from the server: only `lez.api` and the standard gRPC status helpers.

`file_problem` is the one wording of a local file that cannot be opened (TLS files, batch and
recheck CSV files): which file, and what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from lez.api.v1 import access_pb2 as pb

DOMAIN: Final = "lez.api.v1"
DETAILS_KEY: Final = "grpc-status-details-bin"
"""The trailing metadata key of the `google.rpc.Status` (read by `rpc_status.from_call`)."""


class LezClientError(Exception):
    """Base of every error the client raises. `code` mirrors `lez.errors.LezError.code`."""

    code = "lez_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: grpc.StatusCode | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_after_s = retry_after_s


class InvalidRequest(LezClientError):
    """The request is malformed as a whole (INVALID_ARGUMENT)."""

    code = "invalid_request"


class BatchTooLarge(InvalidRequest):
    """A chunk or message over a server limit; `size` and `limit` when the server gave them."""

    code = "batch_too_large"

    @property
    def size(self) -> int | None:
        return _int_or_none(self.metadata.get("size"))

    @property
    def limit(self) -> int | None:
        return _int_or_none(self.metadata.get("limit"))


class UnknownZone(InvalidRequest):
    """No loaded rule revision knows the zone."""

    code = "unknown_zone"


class UnknownRuleset(LezClientError):
    """The pinned rule revision is not loaded (FAILED_PRECONDITION)."""

    code = "unknown_ruleset"


class KeyMismatch(LezClientError):
    """Keys sent were made with another HMAC key than the store's (FAILED_PRECONDITION)."""

    code = "key_mismatch"


class PermissionDenied(LezClientError):
    """The caller's role or zones do not allow this call."""

    code = "permission_denied"


class Unauthenticated(LezClientError):
    """No usable client identity (certificate missing or unknown to the server)."""

    code = "unauthenticated"


class RateLimited(LezClientError):
    """The caller's quota is used up; `retry_after_s` says when to try again."""

    code = "rate_limited"


class Overloaded(LezClientError):
    """The server is at its concurrency or message-size limit; retry later or send less."""

    code = "overloaded"


class StoreNotReady(LezClientError):
    """The server has no store loaded yet (UNAVAILABLE, retried)."""

    code = "store_not_ready"
    retryable = True


class ServerUnavailable(LezClientError):
    """No server answered at the address(es) given (UNAVAILABLE, retried)."""

    code = "unavailable"
    retryable = True


class DeadlineExceeded(LezClientError):
    """The deadline passed before the answer was complete."""

    code = "deadline_exceeded"


class Cancelled(LezClientError):
    """The call was cancelled (by the caller, or the server shutting down)."""

    code = "cancelled"


class InternalError(LezClientError):
    """The server failed; its log holds the details (the message quotes a reference)."""

    code = "internal"


class ProtocolError(LezClientError):
    """The server's answer does not fit the contract (wrong row counts, missing summary)."""

    code = "protocol_error"


# THE table: ErrorReason (from ErrorInfo) -> exception class. A test checks it is total over
# the proto's ErrorReason enum.
REASON_TABLE: Final[dict[int, type[LezClientError]]] = {
    pb.ERROR_REASON_UNSPECIFIED: LezClientError,
    pb.ERROR_REASON_INVALID_REQUEST: InvalidRequest,
    pb.ERROR_REASON_BATCH_TOO_LARGE: BatchTooLarge,
    pb.ERROR_REASON_UNKNOWN_ZONE: UnknownZone,
    pb.ERROR_REASON_UNKNOWN_RULESET: UnknownRuleset,
    pb.ERROR_REASON_PERMISSION_DENIED: PermissionDenied,
    pb.ERROR_REASON_UNAUTHENTICATED: Unauthenticated,
    pb.ERROR_REASON_RATE_LIMITED: RateLimited,
    pb.ERROR_REASON_OVERLOADED: Overloaded,
    pb.ERROR_REASON_STORE_NOT_READY: StoreNotReady,
    pb.ERROR_REASON_KEY_MISMATCH: KeyMismatch,
    pb.ERROR_REASON_DEADLINE_EXCEEDED: DeadlineExceeded,
    pb.ERROR_REASON_INTERNAL: InternalError,
}

# Without ErrorInfo, the status code alone: grpc's own errors (connection refused, message too
# large, concurrency limit) and answers of proxies.
STATUS_TABLE: Final[dict[grpc.StatusCode, type[LezClientError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.FAILED_PRECONDITION: UnknownRuleset,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.UNAVAILABLE: ServerUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNIMPLEMENTED: ProtocolError,
}

_DEFAULT_MESSAGES: Final[dict[type[LezClientError], str]] = {
    ServerUnavailable: "the server cannot be reached",
    DeadlineExceeded: "the server did not answer within the deadline",
    Cancelled: "the call was cancelled",
    Overloaded: "the server refused the call: it is busy or the message is too large",
    Unauthenticated: "the server did not accept this client's identity",
}


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _status_details(err: grpc.RpcError) -> status_pb2.Status | None:
    """The `google.rpc.Status` sent in the trailing metadata (`grpc-status-details-bin`), read by
    grpc's own `rpc_status.from_call`; None when there is none, when it does not parse, or when
    it contradicts the call's own status code or message (not this call's details, then)."""
    # grpc raises errors that are Calls; grpc.aio's AioRpcError has the same methods
    call = cast(grpc.Call, err)
    try:
        status: status_pb2.Status | None = rpc_status.from_call(call)
    except Exception:  # undecodable, inconsistent, or an error object without the call's fields
        return None
    return status


def _code_of(err: grpc.RpcError) -> grpc.StatusCode:
    getter = getattr(err, "code", None)
    code = getter() if callable(getter) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _details_text(err: grpc.RpcError) -> str:
    getter = getattr(err, "details", None)
    text = getter() if callable(getter) else None
    return text if isinstance(text, str) else ""


def from_rpc_error(err: grpc.RpcError) -> LezClientError:
    """The client exception for a failed call (ErrorInfo reason first, then the status code)."""
    code = _code_of(err)
    message = _details_text(err)
    status = _status_details(err)
    reason: int | None = None
    metadata: dict[str, str] = {}
    retry_after: float | None = None
    if status is not None:
        message = status.message or message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == DOMAIN:
                    reason = error_reason_value(info.reason)
                    metadata = dict(info.metadata)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.ToNanoseconds() / 1e9
    cls = REASON_TABLE.get(reason, LezClientError) if reason is not None else None
    if cls is None or cls is LezClientError:
        cls = STATUS_TABLE.get(code, InternalError)
    if cls is ServerUnavailable and message:
        # grpc's own transport text ("failed to connect to all addresses; last error: ...")
        message = f"the server cannot be reached ({_first_line(message)})"
    if not message:
        message = _DEFAULT_MESSAGES.get(cls, f"the call failed ({code.name})")
    return cls(message, status=code, metadata=metadata, retry_after_s=retry_after)


def error_reason_value(name: str) -> int | None:
    """The ErrorReason number of a reason name sent without its prefix (None if unknown)."""
    try:
        return int(pb.ErrorReason.Value("ERROR_REASON_" + name.strip().upper()))
    except ValueError:
        return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def file_problem(path: Path, exc: OSError, *, what: str = "file", writing: bool = False) -> str:
    """One readable line for a local file that cannot be opened: `what` it is, its path, and
    the problem (never the file's content)."""
    verb = "write" if writing else "read"
    if isinstance(exc, FileNotFoundError):
        if writing:
            return f"cannot write {what} {path}: its directory does not exist"
        return f"{what} not found: {path}"
    if isinstance(exc, PermissionError):
        return f"cannot {verb} {what} {path}: permission denied"
    if isinstance(exc, IsADirectoryError):
        return f"{what} {path} is a directory, not a file"
    return f"cannot {verb} {what} {path}: {exc.strerror or type(exc).__name__}"
