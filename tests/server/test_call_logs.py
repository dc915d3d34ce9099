"""One JSON log line per call, with a request id that is also in the response metadata and the
call's audit record; no plate in any line; a stopping server ends running calls quietly."""

from __future__ import annotations

import io
import json
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from server.audit import read_records
from server.auth import Identity, Role
from server.calls import REQUEST_ID_KEY, is_sane_request_id, request_id
from server.config import ServerConfig
from server.logs import JsonFormatter
from tests.server.conftest import DAY, VEHICLES, ServerThread, make_server
from tests.server.helpers import chunk, stub
from tests.server.test_audit import served_problems

PLATES = [v.plate for v in VEHICLES] + ["1-ABC-234"]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Everything logged while the test runs, as the JSON format writes it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(old_level)


def call_lines(log: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    return [line for line in lines if line.get("event") == "call"]


def sent_id(call: Any, *, stream: bool = False) -> str:
    """The request id the server sent: a stream's in its initial metadata, a unary call's (or
    an error's) in the trailing metadata."""
    metadata = dict(call.initial_metadata() if stream else call.trailing_metadata())
    return str(metadata[REQUEST_ID_KEY])


def test_request_ids_join_log_metadata_and_audit(
    server: ServerThread, json_log: io.StringIO
) -> None:
    given = "client-trace-0123456789abcdef"
    with grpc.insecure_channel(server.target) as ch:
        _, plain = stub(ch).Check.with_call(
            pb.CheckRequest(plate=PLATES[0], zone="Gent", date="2025-06-02")
        )
        _, traced = stub(ch).Check.with_call(
            pb.CheckRequest(plate=PLATES[1], zone="Gent", date="2025-06-02"),
            metadata=((REQUEST_ID_KEY, given),),
        )
        stream = stub(ch).CheckStream(iter([chunk(PLATES[:3], [DAY] * 3, zone="Gent")]))
        answers = list(stream)
        _, info = stub(ch).ServerInfo.with_call(pb.ServerInfoRequest())
    server.settle()  # the last call's line follows its answer
    sent = [sent_id(plain), sent_id(traced), sent_id(stream, stream=True), sent_id(info)]
    assert sent[1] == given  # a sane id from the caller is kept
    assert len(set(sent)) == 4  # the others are new, one per call
    lines = call_lines(json_log)
    by_id = {line["request_id"]: line for line in lines}
    assert set(sent) <= by_id.keys()
    records = {
        rec["request_id"]: rec
        for _, rec in read_records(server.app.config.audit_dir / "audit-w0.jsonl")
    }
    for rid, rpc in zip(sent[:3], ("Check", "Check", "CheckStream"), strict=True):
        line, rec = by_id[rid], records[rid]
        assert line["rpc"] == rec["rpc"] == rpc
        assert line["code"] == "OK" and line["level"] == "INFO"
        assert line["audit_id"] == rec["hash"]  # the log names the audit record...
        assert line["pairs"] == rec["pairs"]  # ...and agrees with it
        assert line["outcomes"] == rec["outcomes"]
        assert line["role"] == "operator"
    assert answers[-1].summary.audit_id == by_id[sent[2]]["audit_id"]
    assert by_id[sent[3]]["rpc"] == "ServerInfo"  # not audited, logged all the same
    assert served_problems(server, server.app.config.audit_dir / "audit-w0.jsonl") == []
    for plate in PLATES:
        assert plate not in json_log.getvalue()


def test_refused_and_failed_calls_are_logged_with_their_request_id(
    base_config: ServerConfig, json_log: io.StringIO
) -> None:
    public = Identity(identity="dev", organisation="web", roles=frozenset({Role.PUBLIC}))
    srv = make_server(base_config, clients={"dev": public})
    try:
        with grpc.insecure_channel(srv.target) as ch:
            with pytest.raises(grpc.RpcError) as denied:
                list(stub(ch).CheckStream(iter([chunk(PLATES[:1], [DAY], zone="Gent")])))
            with pytest.raises(grpc.RpcError) as invalid:  # the public role needs the date
                stub(ch).Check(pb.CheckRequest(plate=PLATES[3], zone="Gent"))
    finally:
        srv.stop()
    denied_id = sent_id(denied.value)  # a stream's error: initial and trailing metadata agree
    assert denied_id == sent_id(denied.value, stream=True)
    invalid_id = sent_id(invalid.value)
    by_id = {line["request_id"]: line for line in call_lines(json_log)}
    assert by_id[denied_id]["code"] == "PERMISSION_DENIED"
    assert by_id[denied_id]["reason"] == "permission_denied"
    assert by_id[denied_id]["role"] == "none"
    assert by_id[invalid_id]["code"] == "INVALID_ARGUMENT"
    assert by_id[invalid_id]["role"] == "public"
    refused = [
        rec
        for _, rec in read_records(base_config.audit_dir / "audit-w0.jsonl")
        if rec["status"] == "PERMISSION_DENIED"
    ]
    assert [rec["request_id"] for rec in refused] == [denied_id]
    for plate in PLATES:
        assert plate not in json_log.getvalue()


@pytest.mark.parametrize(
    "given",
    [
        "1-ABC-234",  # a plate is never taken as a request id
        "1ABC234.-.-.-.-.-.-.-.-.-",  # nor one padded with separators
        "short",
        "x" * 65,
        "has space in it 0123456789",
        'quote"0123456789abcdef',
    ],
)
def test_insane_request_ids_are_replaced(given: str) -> None:
    assert not is_sane_request_id(given)
    made = request_id(((REQUEST_ID_KEY, given),))
    assert made != given and is_sane_request_id(made)


def test_sane_request_ids_are_kept() -> None:
    for given in ("0123456789abcdef", "4bf92f3577b34da6a3ce929d0e0e4736", "req_2026-12-04:0001"):
        assert request_id((("other", "x"), (REQUEST_ID_KEY, given))) == given


def test_stopping_ends_a_running_stream_with_unavailable(
    base_config: ServerConfig, json_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    srv = make_server(replace(base_config, grace_period_s=0.2))
    more: queue.Queue[pb.CheckChunk | None] = queue.Queue()

    def requests() -> Iterator[pb.CheckChunk]:
        yield chunk(PLATES[:2], [DAY] * 2, zone="Gent")
        while (item := more.get()) is not None:
            yield item

    with grpc.insecure_channel(srv.target) as ch:
        stream = stub(ch).CheckStream(requests())
        first = next(stream)
        assert first.first_index == 0
        stopper = threading.Thread(target=srv.stop)
        stopper.start()
        with pytest.raises(grpc.RpcError) as ended:
            list(stream)
        more.put(None)
        stopper.join(timeout=30)
    # grpc's and ours (the asyncio logger also carries grpc's poller noise of the other
    # in-process servers of the test session; tests/server/test_observability_process.py reads
    # a real server's whole log)
    errors = [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith(("grpc", "lez"))
    ]
    assert errors == [], [r.getMessage() for r in errors]
    assert "CancelledError" not in json_log.getvalue()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "stopping" in (ended.value.details() or "")
    line = next(x for x in call_lines(json_log) if x["rpc"] == "CheckStream")
    assert line["code"] == "UNAVAILABLE" and line["pairs"] == 2
    records = [rec for _, rec in read_records(base_config.audit_dir / "audit-w0.jsonl")]
    # the answered chunk's record, then the closing one: cut off by the stop
    assert [(r["rpc"], r["part"], r["pairs"], r["status"]) for r in records] == [
        ("CheckStream", "chunk", 2, "OK"),
        ("CheckStream", "end", 2, "SHUTDOWN"),
    ]
