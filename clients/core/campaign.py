"""One warning campaign (`LosingAccess`), without its I/O: the deadline and retries of the call,
the answer chunks checked and gathered, progress, and the result.

A failed call is tried again (UNAVAILABLE only, as every call) only while no vehicle has been
received: once keys came in, a second call would list them again, so the failure is final.
"""

from __future__ import annotations

import time

import grpc

from clients.campaign import CampaignResult, CampaignSummary, LosingRows, unpack_losing
from clients.core.retry import Attempts, Deadline
from clients.core.streams import Progress
from clients.errors import ProtocolError, from_rpc_error
from clients.settings import ClientSettings
from lez.api.v1 import access_pb2 as pb


class CampaignRun:
    """The answers of one campaign call (and of its retries before any vehicle came in)."""

    def __init__(
        self, settings: ClientSettings, timeout: float | None, progress: Progress | None
    ) -> None:
        seconds = settings.batch_timeout_s if timeout is None else timeout
        self._attempts = Attempts(settings, Deadline(seconds))
        self._progress = progress
        self._parts: list[LosingRows] = []
        self._summary: CampaignSummary | None = None
        self._started = time.perf_counter()

    def timeout(self) -> float | None:
        """The timeout of the next call: what is left of the campaign's deadline."""
        return self._attempts.timeout()

    def receive(self, msg: pb.LosingAccessChunk) -> None:
        """One answer: vehicles, or the closing summary (which must come last)."""
        if self._summary is not None:
            raise ProtocolError("the server answered after the campaign's summary")
        if msg.HasField("summary"):
            self._summary = CampaignSummary.from_pb(msg)
            return
        try:
            rows = unpack_losing(msg)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        self._parts.append(rows)
        if self._progress is not None:
            self._progress(len(rows))

    def wait_after(self, failure: grpc.RpcError) -> float:
        """Seconds to wait before calling again; raises the failure as a client exception when
        it is final (see the module's docstring)."""
        if self._parts:
            raise from_rpc_error(failure) from None
        return self._attempts.wait_after(failure)

    def result(self) -> CampaignResult:
        """Every vehicle received, once the call ended with its summary."""
        summary = self._summary
        if summary is None:
            raise ProtocolError("the campaign ended without its summary")
        rows = LosingRows.joined(self._parts)
        if len(rows) != summary.vehicles:
            raise ProtocolError(
                f"the campaign's summary counts {summary.vehicles} vehicles, "
                f"{len(rows)} were received"
            )
        return CampaignResult(rows, summary, time.perf_counter() - self._started)
