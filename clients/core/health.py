"""Waiting for a server to say SERVING (a store is loaded): `ServingWait` polls the standard
gRPC health service until then or until the wait's time is up, and keeps the last failure to
say why it gave up.
"""

from __future__ import annotations

import time
from typing import Final

import grpc
from grpc_health.v1 import health_pb2

from clients.errors import LezClientError, ServerUnavailable, from_rpc_error

POLL_TIMEOUT_FACTOR: Final = 10
"""A health call may take this many poll intervals before it counts as failed."""


class ServingWait:
    """One wait for SERVING: `waiting()` while time is left, `serving(answer)` after each
    answer, `failed(error)` after each failed call, `gave_up()` the exception at the end."""

    def __init__(self, timeout_s: float, poll_s: float) -> None:
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.call_timeout_s = poll_s * POLL_TIMEOUT_FACTOR
        self._end = time.monotonic() + timeout_s
        self._last: LezClientError | None = None

    def waiting(self) -> bool:
        return time.monotonic() < self._end

    @staticmethod
    def serving(answer: health_pb2.HealthCheckResponse) -> bool:
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def failed(self, failure: grpc.RpcError) -> None:
        self._last = from_rpc_error(failure)

    def gave_up(self) -> ServerUnavailable:
        why = f" ({self._last.message})" if self._last else ""
        return ServerUnavailable(
            f"the server did not report SERVING within {self.timeout_s:.0f} s{why}"
        )
