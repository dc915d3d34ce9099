"""CheckStream: packed columns in, aligned packed results out, summary, limits, deadlines."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer
from lez.plates import as_matrix, countries_matrix, normalise_many
from server import audit
from server.auth import Identity, Role
from server.config import ServerConfig
from tests.server.conftest import DAY, PERMIT_PLATE, UNKNOWN_PLATE, ServerThread, make_server
from tests.server.helpers import chunk, error_reason, outcomes, reasons, stub


def zone_of(channel: grpc.Channel) -> str:
    return stub(channel).ServerInfo(pb.ServerInfoRequest()).zones[0].name


def test_results_map_to_their_input_pairs(channel: grpc.Channel) -> None:
    zone = zone_of(channel)
    single = {
        p: stub(channel).Check(pb.CheckRequest(plate=p, zone=zone, date="2025-06-02")).decision
        for p in ("1ABC234", "1XYZ987", PERMIT_PLATE, UNKNOWN_PLATE)
    }
    plates = [
        "1ABC234",
        "bad$plate",
        "1XYZ987",
        "1-abc-234",
        "",
        PERMIT_PLATE,
        "1XYZ987",
        UNKNOWN_PLATE,
        "1ABC234",
    ]
    days = [DAY] * len(plates)
    days[8] = -(2**31)  # unreadable day on an otherwise fine plate
    chunks = [
        chunk(plates[:5], days[:5], zone=zone, chunk_id=7),
        chunk(plates[5:], days[5:], chunk_id=8, fixed_width=10),
    ]
    answers = list(stub(channel).CheckStream(iter(chunks)))
    assert len(answers) == 3
    a, b, closing = answers
    assert (a.chunk_id, a.first_index, a.count) == (7, 0, 5)
    assert (b.chunk_id, b.first_index, b.count) == (8, 5, 4)
    got = outcomes(a) + outcomes(b)
    why = reasons(a) + reasons(b)
    expect = [
        single["1ABC234"].outcome,
        pb.OUTCOME_INVALID,
        single["1XYZ987"].outcome,
        single["1ABC234"].outcome,
        pb.OUTCOME_INVALID,
        single[PERMIT_PLATE].outcome,
        single["1XYZ987"].outcome,
        single[UNKNOWN_PLATE].outcome,
        pb.OUTCOME_INVALID,
    ]
    assert got == expect
    assert why[1] == pb.REASON_INVALID_PLATE and why[4] == pb.REASON_INVALID_PLATE
    assert why[8] == pb.REASON_INVALID_DAY
    assert why[5] == single[PERMIT_PLATE].reason
    assert len(a.technical.category) == 5 and len(b.allowed_until) == 16
    assert a.snapshot_id == b.snapshot_id == closing.snapshot_id != ""
    assert a.ruleset_revision == closing.ruleset_revision != ""
    s = closing.summary
    assert s.pairs == 9 and s.chunks == 2 and s.audit_id
    counts = {c.outcome: c.count for c in s.outcomes}
    assert counts[pb.OUTCOME_INVALID] == 3
    assert sum(counts.values()) == 9


def test_stream_of_keys_skips_keying(channel: grpc.Channel, keyer: PlateKeyer) -> None:
    plates = ["1ABC234", "1XYZ987", UNKNOWN_PLATE]
    cty = countries_matrix("BE", 3)
    keys = keyer.key_matrix(cty, normalise_many(as_matrix(plates), cty)[0])
    zone = zone_of(channel)
    by_plate = list(stub(channel).CheckStream(iter([chunk(plates, [DAY] * 3, zone=zone)])))
    msg = pb.CheckChunk(
        zone=zone,
        keys=keys.tobytes(),
        key_id=keyer.key_id,
        countries=b"BEBEBE",
        days=np.full(3, DAY, "<i4").tobytes(),
    )
    by_key = list(stub(channel).CheckStream(iter([msg])))
    assert by_key[0].outcome == by_plate[0].outcome
    assert by_key[0].reason == by_plate[0].reason


def test_empty_stream_gets_a_summary(server: ServerThread, channel: grpc.Channel) -> None:
    answers = list(stub(channel).CheckStream(iter([])))
    assert len(answers) == 1 and answers[0].summary.pairs == 0
    # nothing was asked of any revision: the summary and the audit record name the newest
    newest = stub(channel).ServerInfo(pb.ServerInfoRequest()).ruleset_revision
    assert newest and answers[0].ruleset_revision == newest
    records = [r for _, r in audit.read_records(server.app.config.audit_dir / "audit-w0.jsonl")]
    assert [(r["rpc"], r["ruleset_revision"]) for r in records] == [("CheckStream", newest)]


def test_chunk_too_large(channel: grpc.Channel) -> None:
    zone = zone_of(channel)
    big = chunk(["1ABC234"] * 1001, [DAY] * 1001, zone=zone)
    with pytest.raises(grpc.RpcError) as exc:
        list(stub(channel).CheckStream(iter([big])))
    code, reason, meta = error_reason(exc.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BATCH_TOO_LARGE")
    assert meta["limit"] == "1000" and meta["size"] == "1001"


def test_malformed_columns(channel: grpc.Channel) -> None:
    bad = chunk(["1ABC234"], [DAY], zone=zone_of(channel))
    bad.days = b"\x00\x00"
    with pytest.raises(grpc.RpcError) as exc:
        list(stub(channel).CheckStream(iter([bad])))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_stream_unknown_zone_and_revision(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        list(stub(channel).CheckStream(iter([chunk(["1ABC234"], [DAY], zone="atlantis")])))
    assert error_reason(exc.value)[1] == "UNKNOWN_ZONE"
    one = chunk(["1ABC234"], [DAY], zone=zone_of(channel), revision="1999-01")
    with pytest.raises(grpc.RpcError) as exc:
        list(stub(channel).CheckStream(iter([one])))
    assert error_reason(exc.value)[1] == "UNKNOWN_RULESET"


def test_stream_needs_enforcement_role(base_config: ServerConfig) -> None:
    clients = {"dev": Identity(identity="dev", organisation="Desk", roles=frozenset({Role.DESK}))}
    srv = make_server(base_config, clients=clients)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            with pytest.raises(grpc.RpcError) as exc:
                list(stub(ch).CheckStream(iter([chunk(["1ABC234"], [DAY], zone="1")])))
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    finally:
        srv.stop()


def test_deadline_is_honoured(channel: grpc.Channel) -> None:
    zone = zone_of(channel)

    def slow() -> Iterator[pb.CheckChunk]:
        yield chunk(["1ABC234"], [DAY], zone=zone)
        time.sleep(1.0)
        yield chunk(["1ABC234"], [DAY])

    with pytest.raises(grpc.RpcError) as exc:
        list(stub(channel).CheckStream(slow(), timeout=0.3))
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    # The server is fine afterwards.
    assert stub(channel).ServerInfo(pb.ServerInfoRequest(), timeout=5).snapshot_id
