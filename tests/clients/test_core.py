"""The client core (`clients.core`) without a server: the retry policy, the spreading plan, the
chunk limit and source, the check of stream answers, the results of a batch's streams and the
assembly of a batch. Both clients drive these; the tests with a live server are
test_client.py and test_spread.py."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from clients import BatchRows, ClientSettings, ProtocolError, ServerUnavailable
from clients.core.batch import BatchRun, InputOrder
from clients.core.chunks import ChunkLimit, ChunkSource
from clients.core.retry import Attempts, Deadline
from clients.core.spread import SPREAD_ATTEMPTS, Probe, SpreadProbes, WorkerSpread
from clients.core.streams import BatchTally, StreamAttempts, StreamCall, StreamResults
from clients.errors import DETAILS_KEY, DeadlineExceeded, InvalidRequest
from clients.result_columns import ResultChunk
from lez.api.v1 import access_pb2 as pb

SETTINGS = ClientSettings(retries=2, backoff_initial_s=0.1, backoff_max_s=0.15)


class _Failure(grpc.RpcError):
    """A failed call as grpc raises it: a status code, details and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, retry_after_s: float | None = None) -> None:
        self._code = code
        self._trailing: list[tuple[str, bytes]] = []
        if retry_after_s is not None:
            status = status_pb2.Status(code=code.value[0], message="not ready")
            retry = error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(nanos=int(retry_after_s * 1e9))
            )
            status.details.add().Pack(retry)
            self._trailing.append((DETAILS_KEY, status.SerializeToString()))

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        # as grpc gives them: the status message, also in the Status of the trailing metadata
        return "not ready" if self._trailing else ""

    def trailing_metadata(self) -> list[tuple[str, bytes]]:
        return self._trailing


UNAVAILABLE = _Failure(grpc.StatusCode.UNAVAILABLE)


# ---- retry ------------------------------------------------------------------------------------


def test_attempts_back_off_exponentially_then_give_up() -> None:
    attempts = Attempts.of_call(SETTINGS, timeout=None)
    first, second = attempts.wait_after(UNAVAILABLE), attempts.wait_after(UNAVAILABLE)
    assert 0.05 <= first <= 0.1 and 0.075 <= second <= 0.15  # [cap / 2, cap], cap capped
    with pytest.raises(ServerUnavailable):
        attempts.wait_after(UNAVAILABLE)  # `retries` = 2 used up


def test_attempts_do_not_retry_a_final_error() -> None:
    attempts = Attempts.of_call(SETTINGS, timeout=None)
    with pytest.raises(InvalidRequest):
        attempts.wait_after(_Failure(grpc.StatusCode.INVALID_ARGUMENT))


def test_retry_info_wins_over_the_backoff() -> None:
    attempts = Attempts.of_call(SETTINGS, timeout=None)
    assert attempts.wait_after(_Failure(grpc.StatusCode.UNAVAILABLE, retry_after_s=0.5)) == 0.5


def test_attempts_never_wait_past_the_deadline() -> None:
    attempts = Attempts.of_call(SETTINGS, timeout=0.01)  # shorter than any backoff delay
    with pytest.raises(ServerUnavailable):
        attempts.wait_after(UNAVAILABLE)
    with pytest.raises(DeadlineExceeded):
        Deadline(0).remaining()  # never passed on to gRPC as "no deadline"
    assert Deadline(None).remaining() is None


# ---- spreading --------------------------------------------------------------------------------


def _spread(connections: int, answer: Any) -> list[Probe]:
    """Run a SpreadProbes plan; `answer(probe, n)` is the worker of the n-th probe."""
    probes = SpreadProbes(connections)
    taken: list[Probe] = []
    for probe_round in probes.rounds():
        for probe in probe_round:
            taken.append(probe)
            probes.record(probe.connection, answer(probe, len(taken)))
    return taken


def test_spreading_asks_all_then_reopens_only_the_crowded() -> None:
    # three connections on worker 0 of 2: a round reopens both crowded ones; the first
    # reopened one reaches worker 1, and then the spread is as good as it gets
    taken = _spread(3, lambda probe, n: (1, 2) if n == 4 else (0, 2))
    reopened = [Probe(1, True), Probe(2, True)]
    assert taken == [Probe(0, False), Probe(1, False), Probe(2, False), *reopened]


def test_spreading_gives_up_after_bounded_rounds() -> None:
    taken = _spread(2, lambda probe, n: (0, 2))
    assert len(taken) == 2 + SPREAD_ATTEMPTS
    assert all(p == Probe(1, True) for p in taken[2:])


def test_spreading_once_per_connection_count_and_only_on_one_address() -> None:
    spread = WorkerSpread(servers=1)
    assert [spread.wanted(n) for n in (1, 4, 4, 2, 6)] == [False, True, False, False, True]
    assert not WorkerSpread(servers=2).wanted(4)


# ---- chunks -----------------------------------------------------------------------------------


def test_chunk_limit_asks_the_server_once_unless_set() -> None:
    limit = ChunkLimit(ClientSettings())
    assert limit.needs_server_info
    limit.learn(pb.ServerInfoResponse(client=pb.ClientInfo(max_chunk_pairs=1000)))
    assert not limit.needs_server_info and limit.size() == 1000
    limit.learn(pb.ServerInfoResponse())  # 0: the server sets no limit
    assert limit.size() == ClientSettings().default_chunk_pairs
    fixed = ChunkLimit(ClientSettings(chunk_size=7))
    assert not fixed.needs_server_info and fixed.size() == 7


def test_chunk_source_hands_given_back_chunks_out_first() -> None:
    rows = [("1ABC234", "BE", 20_000)] * 5
    source = ChunkSource(iter(rows), zone="Gent", ruleset="", chunk_size=2)
    first, second = source.next(), source.next()
    assert first is not None and second is not None
    assert (first.first_index, second.first_index, second.count) == (0, 2, 2)
    source.give_back([first, second])
    again = [source.next() for _ in range(4)]
    assert [c.chunk_id if c else None for c in again] == [0, 1, 2, None]
    assert (source.sent_pairs, source.chunks) == (5, 3)


# ---- one stream's answers ---------------------------------------------------------------------


def _answer(chunk_id: int, rows: int, **fields: Any) -> pb.DecisionChunk:
    return pb.DecisionChunk(
        chunk_id=chunk_id,
        count=rows,
        outcome=bytes([1]) * rows,
        allowed_until=np.zeros(rows, "<i4").tobytes(),
        euro=bytes(rows),
        snapshot_id="snap",
        ruleset_revision="rev",
        **fields,
    )


def _call(rows: int = 6, chunk_size: int = 3) -> tuple[StreamCall, BatchTally]:
    source = ChunkSource([("1ABC234", "BE", 20_000)] * rows, zone="Gent", ruleset="", chunk_size=3)
    first = source.next()
    assert first is not None
    tally = BatchTally()
    return StreamCall(first, source, tally), tally


def test_stream_answers_are_checked_and_tallied() -> None:
    call, tally = _call()
    assert call.next_message() is not None and call.next_message() is None  # 2 chunks in all
    part = call.receive(_answer(0, 3))
    assert isinstance(part, ResultChunk) and (part.first_index, part.count) == (0, 3)
    second = call.receive(_answer(1, 3))
    assert second is not None and second.first_index == 3
    summary = pb.DecisionChunk(summary=pb.BatchSummary(audit_id="a1"))
    assert call.receive(summary) is None
    call.finish()
    assert (tally.audit_ids, tally.snapshot_ids, tally.revision) == (["a1"], ["snap"] * 2, "rev")


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ([_answer(1, 3)], "out of order"),
        ([_answer(0, 2)], "2 rows for 3 pairs"),
        ([_answer(0, 3), _answer(1, 3)], "not sent"),
    ],
)
def test_a_wrong_answer_is_a_protocol_error(answers: list[pb.DecisionChunk], problem: str) -> None:
    call, _ = _call()
    with pytest.raises(ProtocolError, match=problem):
        for answer in answers:
            call.receive(answer)


def test_a_call_may_not_end_with_chunks_unanswered() -> None:
    call, _ = _call()
    with pytest.raises(ProtocolError, match="before every chunk"):
        call.finish()


def test_a_failed_stream_call_gives_its_chunks_to_the_next() -> None:
    source = ChunkSource([("1ABC234", "BE", 20_000)] * 6, zone="Gent", ruleset="", chunk_size=2)
    stream = StreamAttempts(source, BatchTally(), Attempts.of_call(SETTINGS, timeout=None))
    calls = stream.calls()
    failed = next(calls)
    failed.next_message()  # two chunks sent, none answered
    assert stream.wait_after(failed, UNAVAILABLE) > 0
    retried = next(calls)
    assert [c.chunk_id for c in retried.pending] == [0]
    assert retried.next_message() is not None and [c.chunk_id for c in retried.pending] == [0, 1]
    # the retried call ended well (chunk 2 was not taken: the batch stopped): no third call
    assert next(calls, None) is None


# ---- a batch's results ------------------------------------------------------------------------


def _chunk(first: int, outcomes: list[int]) -> ResultChunk:
    n = len(outcomes)
    zeros = np.zeros(n, np.uint8)
    return ResultChunk(
        first_index=first,
        outcome=np.array(outcomes, np.uint8),
        reason=zeros,
        allowed_until=np.zeros(n, np.int32),
        euro=zeros,
        derived=zeros,
        notes=zeros,
        decided_day=np.zeros(n, np.int32),
        snapshot_id="snap",
        revision="rev",
    )


def test_stream_results_stop_at_the_first_failure() -> None:
    reported: list[int] = []
    results = StreamResults(streams=2, progress=reported.append)
    assert results.take(_chunk(0, [1, 1])) is not None
    failure = ServerUnavailable("down")
    assert results.take(failure) is None and results.failure is failure
    assert results.take(_chunk(2, [1])) is None  # after a failure: dropped, not reported
    results.take(None)
    assert results.running == 0 and reported == [2]
    with pytest.raises(ServerUnavailable):
        results.raise_failure()


def test_draining_counts_ends_only() -> None:
    results = StreamResults(streams=2, progress=None)
    results.drain(_chunk(0, [1]))
    results.drain(None)
    results.drain(ServerUnavailable("down"))
    assert results.running == 0 and results.failure is None


def test_a_batch_uses_no_more_streams_than_chunks_and_assembles_in_input_order() -> None:
    rows = BatchRows.of(["1ABC234"] * 5, None, [20_000] * 5)
    run = BatchRun(ClientSettings(connections=4), rows, {"zone": "Gent"}, chunk_size=2)
    assert run.streams == 3
    unlimited = BatchRun(ClientSettings(connections=4), iter([]), {"zone": "Gent"}, chunk_size=2)
    assert unlimited.streams == 4  # tuples are read lazily: their count is not known
    while run.source.next() is not None:
        pass
    result = run.collected([_chunk(4, [6]), _chunk(0, [1, 2]), _chunk(2, [3, 3])])
    assert result.outcome.tolist() == [1, 2, 3, 3, 6]
    assert result.summary.pairs == 5 and result.summary.chunks == 3
    assert result.summary.outcomes == {
        "ALLOWED": 1,
        "NOT_ALLOWED": 1,
        "UNKNOWN_PLATE": 2,
        "INVALID": 1,
    }


def test_input_order_holds_chunks_back_until_their_turn() -> None:
    order = InputOrder()
    assert order.add(_chunk(2, [1])) == []
    ready = order.add(_chunk(0, [1, 1]))
    assert [c.first_index for c in ready] == [0, 2]
