"""The Python clients of the LEZ access-decision service: `LezClient` (sync), `AsyncLezClient`
(asyncio), their value types and exceptions. The `lez` command line is `clients.cli`; `make run`
is `clients.demo`.

Both clients drive one I/O-free core (`clients.core`). Batches go in as `BatchRows` (or tuples)
and come back as `ResultChunk`s or a `BatchResult`; a single check answers a `CheckAnswer`.

`clients` imports only `lez.api` (the wire contract), `lez.days` (day numbers, Brussels days),
`lez.plates` (plate conventions) and `lez.version` (the package version) from the project,
never `server`, `loader`, `lez.store` or `bench`; it installs without their dependencies
(`pip install lez-access`; the server and the loader are the extras `[server]`, `[loader]`).
"""

from clients.aio import AsyncLezClient
from clients.batch_rows import BatchRows, JoinedPlates
from clients.campaign import CampaignCell, CampaignResult, CampaignSummary, LosingRows
from clients.core.batch import BatchOptions
from clients.decisions import CheckAnswer, RecheckAnswer, RecheckItem, RecheckResult, TechnicalData
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
from clients.request_builders import CheckOptions, FleetOptions
from clients.result_columns import BatchResult, BatchSummary, DecisionColumns, ResultChunk
from clients.settings import ClientSettings
from clients.sync import LezClient

__all__ = [
    "AsyncLezClient",
    "BatchOptions",
    "BatchResult",
    "BatchRows",
    "BatchSummary",
    "BatchTooLarge",
    "CampaignCell",
    "CampaignResult",
    "CampaignSummary",
    "Cancelled",
    "CheckAnswer",
    "CheckOptions",
    "ClientSettings",
    "DeadlineExceeded",
    "DecisionColumns",
    "FleetOptions",
    "InternalError",
    "InvalidRequest",
    "JoinedPlates",
    "KeyMismatch",
    "LezClient",
    "LezClientError",
    "LosingRows",
    "Overloaded",
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
