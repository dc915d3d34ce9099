"""Packing helpers and status readers shared by the server tests (a client would hide these)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import grpc
import numpy as np
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lez.api.v1 import access_pb2 as pb
from lez.api.v1 import access_pb2_grpc as pb_grpc


def stub(channel: grpc.Channel) -> pb_grpc.AccessServiceStub:
    return pb_grpc.AccessServiceStub(channel)


def chunk(
    plates: Sequence[str],
    days: Sequence[int],
    *,
    zone: str = "",
    countries: Sequence[str] | None = None,
    chunk_id: int = 0,
    fixed_width: int = 0,
    revision: str = "",
) -> pb.CheckChunk:
    """Pack plates (offsets, or fixed width when `fixed_width`) and days into a CheckChunk."""
    raw = [p.encode() for p in plates]
    if fixed_width:
        col = pb.PlateColumn(
            data=b"".join(r.ljust(fixed_width, b"\0") for r in raw), width=fixed_width
        )
    else:
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in raw])]).astype("<u4")
        col = pb.PlateColumn(data=b"".join(raw), offsets=offsets.tobytes())
    return pb.CheckChunk(
        zone=zone,
        ruleset_revision=revision,
        chunk_id=chunk_id,
        plates=col,
        countries="".join(countries).encode() if countries else b"",
        days=np.asarray(days, dtype="<i4").tobytes(),
    )


def outcomes(msg: pb.DecisionChunk) -> list[int]:
    return list(np.frombuffer(msg.outcome, dtype=np.uint8))


def reasons(msg: pb.DecisionChunk) -> list[int]:
    return list(np.frombuffer(msg.reason, dtype=np.uint8))


def error_reason(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """Status code, ErrorInfo reason and metadata of a failed call."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "the status carries google.rpc details"
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "lez.api.v1"
            return err.code(), info.reason, dict(info.metadata)  # type: ignore[attr-defined]
    raise AssertionError("no ErrorInfo in the status details")


def violations(err: grpc.RpcError) -> dict[str, str]:
    """The BadRequest field violations of a failed call, field -> description."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def retry_after(err: grpc.RpcError) -> float | None:
    """The RetryInfo delay of a failed call in seconds, None when it has none."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


class HeldStream:
    """A CheckStream that sent one chunk, got its answer, and stays open until `end()`."""

    def __init__(self, channel: grpc.Channel, zone: str, day: int) -> None:
        self._done = threading.Event()
        self._responses = stub(channel).CheckStream(self._requests(zone, day))
        self.first = next(self._responses)

    def _requests(self, zone: str, day: int) -> Iterator[pb.CheckChunk]:
        yield chunk(["1ABC234"], [day], zone=zone)
        self._done.wait(30)

    def end(self) -> list[pb.DecisionChunk]:
        """Close the request side; the rest of the answers."""
        self._done.set()
        return list(self._responses)

    def rest(self) -> list[pb.DecisionChunk]:
        """The rest of the answers, the request side left open (the server ends the stream)."""
        try:
            return list(self._responses)
        finally:
            self._done.set()
