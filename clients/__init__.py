"""The Python clients of the LEZ access-decision service: `LezClient` (sync), `AsyncLezClient`
(asyncio), their value types and exceptions. The `lez` command line is `clients.cli`; `make run`
is `clients.demo`.

`clients` imports only `lez.api` (the wire contract), `lez.days` (day numbers, Brussels days)
and `lez.plates` (plate conventions) from the project, never `server`, `loader` or `lez.store`.
"""

from clients.aio import AsyncLezClient
from clients.errors import (
    BatchTooLarge,
    Cancelled,
    DeadlineExceeded,
    InternalError,
    InvalidRequest,
    KeyMismatch,
    LezClientError,
    Overloaded,
    PermissionDenied,
    ProtocolError,
    RateLimited,
    ServerUnavailable,
    StoreNotReady,
    Unauthenticated,
    UnknownRuleset,
    UnknownZone,
)
from clients.packing import (
    BatchResult,
    BatchSummary,
    Decision,
    PackedPlates,
    Pairs,
    RecheckAnswer,
    RecheckItem,
    RecheckResult,
    ResultChunk,
    TechnicalData,
)
from clients.sync import LezClient
from clients.transport import ClientSettings

__all__ = [
    "AsyncLezClient",
    "BatchResult",
    "BatchSummary",
    "BatchTooLarge",
    "Cancelled",
    "ClientSettings",
    "DeadlineExceeded",
    "Decision",
    "InternalError",
    "InvalidRequest",
    "KeyMismatch",
    "LezClient",
    "LezClientError",
    "Overloaded",
    "PackedPlates",
    "Pairs",
    "PermissionDenied",
    "ProtocolError",
    "RateLimited",
    "RecheckAnswer",
    "RecheckItem",
    "RecheckResult",
    "ResultChunk",
    "ServerUnavailable",
    "StoreNotReady",
    "TechnicalData",
    "Unauthenticated",
    "UnknownRuleset",
    "UnknownZone",
]
