"""A CheckStream's audit: each answered chunk recorded (with each pair's outcome) before its
answer is sent, and a closing record that says how the stream really ended."""

from __future__ import annotations

import base64
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.decision import Outcome
from server.audit import decode_pair_outcomes, encode_pair_outcomes, read_records
from server.config import ServerConfig
from tests.server.conftest import DAY, VEHICLES, ServerThread
from tests.server.helpers import chunk, outcomes, stub
from tests.server.test_audit import served_problems

PLATES = [v.plate for v in VEHICLES] + ["9ZZZ999", "bad plate!!"]


def _records(server: ServerThread) -> list[dict[str, Any]]:
    return [r for _, r in read_records(server.app.config.audit_dir / "audit-w0.jsonl")]


def _stream_records(server: ServerThread) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """(chunk records, closing record or None) of the one stream in the log."""
    recs = [r for r in _records(server) if r["rpc"] == "CheckStream"]
    assert len({r["stream"] for r in recs}) == 1
    chunks = [r for r in recs if r["part"] == "chunk"]
    ends = [r for r in recs if r["part"] == "end"]
    assert len(ends) <= 1
    return chunks, ends[0] if ends else None


def _zone(channel: grpc.Channel) -> str:
    return stub(channel).ServerInfo(pb.ServerInfoRequest()).zones[0].name


def _held_stream(zone: str, chunks: int, release: threading.Event) -> Iterator[pb.CheckChunk]:
    for i in range(chunks):
        yield chunk(PLATES, [DAY] * len(PLATES), zone=zone, chunk_id=i)
    release.wait(30)


def test_each_answered_chunk_has_its_record_with_each_pairs_outcome(
    server: ServerThread, channel: grpc.Channel
) -> None:
    zone = _zone(channel)
    sent = [chunk(PLATES, [DAY] * len(PLATES), zone=zone, chunk_id=i) for i in range(3)]
    answers = list(stub(channel).CheckStream(iter(sent)))
    chunks, closing = _stream_records(server)
    assert closing is not None and closing["status"] == "OK"
    assert closing["hash"] == answers[-1].summary.audit_id
    assert (closing["chunks"], closing["pairs"]) == (3, 3 * len(PLATES))
    assert [c["chunk"] for c in chunks] == [0, 1, 2]
    assert [c["first_index"] for c in chunks] == [0, len(PLATES), 2 * len(PLATES)]
    for rec, answer in zip(chunks, answers[:3], strict=True):
        got = outcomes(answer)
        readable = [o for o in got if o != Outcome.INVALID]  # the bad plate has no key
        assert list(decode_pair_outcomes(rec["pair_outcomes"])) == readable
        assert rec["keys_count"] == len(readable) and rec["pairs"] == len(PLATES)
        assert rec["outcomes"] == {Outcome(o).name: got.count(o) for o in set(got)}
    assert served_problems(server, server.app.config.audit_dir / "audit-w0.jsonl") == []


def test_a_stream_cancelled_by_its_client_is_closed_as_cancelled(
    server: ServerThread, channel: grpc.Channel
) -> None:
    release = threading.Event()
    call = stub(channel).CheckStream(_held_stream(_zone(channel), 2, release))
    got = [next(call), next(call)]
    call.cancel()
    release.set()
    assert len(got) == 2
    _wait_for_closing(server)
    chunks, closing = _stream_records(server)
    assert len(chunks) == 2 and closing is not None
    assert (closing["status"], closing["chunks"], closing["pairs"]) == (
        "CANCELLED",
        2,
        2 * len(PLATES),
    )


def test_a_stream_past_its_deadline_is_closed_as_deadline_exceeded(
    server: ServerThread, channel: grpc.Channel
) -> None:
    release = threading.Event()
    call = stub(channel).CheckStream(_held_stream(_zone(channel), 1, release), timeout=1.0)
    assert len(outcomes(next(call))) == len(PLATES)
    with pytest.raises(grpc.RpcError) as ended:
        next(call)
    release.set()
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    _wait_for_closing(server)
    _, closing = _stream_records(server)
    assert closing is not None and closing["status"] == "DEADLINE_EXCEEDED"


def test_a_stream_cut_by_the_shutdown_grace_period_says_so(base_config: ServerConfig) -> None:
    server = ServerThread(base_config)
    release = threading.Event()
    try:
        with grpc.insecure_channel(server.target) as ch:
            call = stub(ch).CheckStream(_held_stream(_zone(ch), 1, release))
            assert len(outcomes(next(call))) == len(PLATES)
            server.run(server.app.stop(0.3))  # the client never half-closes: cut by the grace
            with pytest.raises(grpc.RpcError):
                next(call)
    finally:
        release.set()
        server.loop.call_soon_threadsafe(server.loop.stop)
        server.thread.join(timeout=10)
        server.loop.close()
    path = Path(base_config.audit_dir) / "audit-w0.jsonl"
    recs = [r for _, r in read_records(path) if r["rpc"] == "CheckStream"]
    assert [(r["part"], r["status"]) for r in recs] == [("chunk", "OK"), ("end", "SHUTDOWN")]


def _wait_for_closing(server: ServerThread) -> None:
    """The closing record is written by the server after the client saw the call end."""
    for _ in range(200):
        if any(r.get("part") == "end" for r in _records(server)):
            return
        time.sleep(0.02)
    raise AssertionError("no closing record")


def test_a_client_sending_one_chunk_per_answer_is_answered_each_time(
    server: ServerThread, channel: grpc.Channel
) -> None:
    """The server reads chunks ahead to decide the next while the last one's record is synced,
    but never holds an answer back waiting for a chunk the client sends only after it."""
    zone = _zone(channel)
    answered = threading.Semaphore(0)

    def lockstep() -> Iterator[pb.CheckChunk]:
        for i in range(4):
            yield chunk(PLATES, [DAY] * len(PLATES), zone=zone, chunk_id=i)
            assert answered.acquire(timeout=20), "no answer to the chunk sent"

    got = []
    for answer in stub(channel).CheckStream(lockstep(), timeout=30):
        got.append(answer)
        answered.release()
    assert [a.chunk_id for a in got[:4]] == [0, 1, 2, 3] and got[-1].summary.pairs == 4 * len(
        PLATES
    )
    chunks, closing = _stream_records(server)
    assert len(chunks) == 4 and closing is not None and closing["status"] == "OK"


@pytest.mark.parametrize("count", [0, 1, 2, 7, 50_001])
def test_pair_outcomes_pack_two_a_byte_and_come_back(count: int) -> None:
    column = bytes(i % 7 for i in range(count))  # every Outcome value
    text = encode_pair_outcomes(column)
    assert text.startswith("nib+b64:")
    assert len(base64.b64decode(text.removeprefix("nib+b64:"))) == (count + 1) // 2
    assert decode_pair_outcomes(text) == column


def test_pair_outcomes_of_older_records_still_read() -> None:
    column = bytes([1, 2, 2, 3, 6])
    older = "zlib+b64:" + base64.b64encode(zlib.compress(column, 1)).decode()
    assert decode_pair_outcomes(older) == column
    with pytest.raises(ValueError, match="packed outcome"):
        decode_pair_outcomes("zlib+b64:not base64!")
    with pytest.raises(ValueError, match="fit a nibble"):
        encode_pair_outcomes(bytes([1, 15]))
