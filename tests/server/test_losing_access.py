"""LosingAccess (warning campaigns) and CheckStream's `as_of`: the golden cases of the campaign
register (tests/support/campaign_register.py), keys only and none outside the municipalities,
the communication purpose enforced, every call audited, quotas, the summary's small cells."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.days import from_day, to_day
from lez.keys import PlateKeyer
from server import audit
from server.audit_key_log import named_keys
from server.auth import Identity, Role
from server.config import ServerConfig
from tests.server.conftest import ServerThread, server_config_for, tls_channel, tls_settings
from tests.server.helpers import chunk, error_reason, outcomes, reasons, stub, violations
from tests.support import campaign_register as cr


def identity(*roles: Role, pairs_per_day: int = 0) -> dict[str, Identity]:
    """A clients table whose development (loopback) caller holds `roles`."""
    return {
        "dev": Identity(
            identity="dev",
            organisation="Stad Brussel",
            roles=frozenset(roles),
            pairs_per_day=pairs_per_day,
        )
    }


@pytest.fixture
def campaign_config(tmp_path: Path, key_file: Path, keyer: PlateKeyer) -> ServerConfig:
    root = tmp_path / "store"
    cr.build_campaign_store(root, keyer, filler=25)
    return server_config_for(tmp_path, key_file, root, min_cell_size=3)


def serve(config: ServerConfig, *roles: Role, pairs_per_day: int = 0) -> ServerThread:
    return ServerThread(config, clients=identity(*roles, pairs_per_day=pairs_per_day))


@pytest.fixture
def integrator(campaign_config: ServerConfig) -> Iterator[ServerThread]:
    s = serve(campaign_config, Role.INTEGRATOR)
    yield s
    s.stop()


def request(date: dt.date | str = cr.STEP, **changes: Any) -> pb.LosingAccessRequest:
    msg = pb.LosingAccessRequest(
        zone=cr.ZONE,
        date=date if isinstance(date, str) else date.isoformat(),
        reference_date=cr.REFERENCE.isoformat(),
        nis=list(cr.BRUSSELS_NIS),
    )
    for name, value in changes.items():
        if isinstance(value, list):
            del getattr(msg, name)[:]
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return msg


def call(server: ServerThread, req: pb.LosingAccessRequest) -> list[pb.LosingAccessChunk]:
    with grpc.insecure_channel(server.target) as ch:
        return list(stub(ch).LosingAccess(req))


def listed(chunks: list[pb.LosingAccessChunk], keyer: PlateKeyer) -> dict[str, dt.date]:
    """Plate -> first day lost, of the golden cases listed (filler plates left out)."""
    names = {cr.key_of(keyer, c.plate): c.plate for c in cr.CASES}
    out = {}
    for msg in chunks[:-1]:
        keys = np.frombuffer(msg.keys, dtype=np.uint8).reshape(-1, 16)
        first = np.frombuffer(msg.first_day_lost, dtype="<i4")
        for key, day in zip(keys, first, strict=True):
            plate = names.get(key.tobytes())
            if plate is not None:
                out[plate] = from_day(int(day))
    return out


def all_keys(chunks: list[pb.LosingAccessChunk]) -> set[bytes]:
    return {
        bytes(k.tobytes())
        for msg in chunks[:-1]
        for k in np.frombuffer(msg.keys, dtype=np.uint8).reshape(-1, 16)
    }


def audit_records(config: ServerConfig) -> list[dict[str, object]]:
    return [r for _, r in audit.read_records(config.audit_dir / "audit-w0.jsonl")]


# ---- the golden cases ------------------------------------------------------------------------


@pytest.mark.parametrize(("date", "expected"), [(cr.STEP, cr.LISTED_ON_STEP),
                                                (cr.LATER, cr.LISTED_LATER)])  # fmt: skip
def test_golden_cases(
    integrator: ServerThread, keyer: PlateKeyer, date: dt.date, expected: dict[str, dt.date]
) -> None:
    # listed: allowed today and refused on the date (1LOS*, 1MOV002), with the first day lost
    # (the step's start, the day after an exemption ends, the end of a later exemption); not
    # listed: an exemption covering the date, already refused today, allowed on both days,
    # outside the municipalities or moved out of them
    chunks = call(integrator, request(date))
    assert listed(chunks, keyer) == expected
    closing = chunks[-1]
    assert closing.HasField("summary") and closing.count == 0
    assert closing.summary.vehicles == len(expected) + 25  # the filler cars are listed too
    for msg in chunks[:-1]:
        n = msg.count
        assert len(msg.keys) == 16 * n and len(msg.first_day_lost) == 4 * n
        assert len(msg.reason) == len(msg.category) == len(msg.fuel) == len(msg.euro) == n
        assert set(msg.reason) == {pb.REASON_EURO_BELOW_MINIMUM}
        assert msg.key_id == keyer.key_id and msg.snapshot_id and msg.ruleset_revision


def test_no_key_outside_the_municipalities_leaves(
    integrator: ServerThread, keyer: PlateKeyer
) -> None:
    everything = all_keys(call(integrator, request(cr.LATER, nis=[21004, 21009, cr.OUTSIDE_NIS])))
    assert {cr.key_of(keyer, p) for p in cr.OUTSIDE_PLATES} <= everything  # they exist
    only_brussels = all_keys(call(integrator, request(cr.LATER)))
    assert not {cr.key_of(keyer, p) for p in cr.OUTSIDE_PLATES} & only_brussels
    one = all_keys(call(integrator, request(cr.LATER, nis=[21009])))
    assert one == {cr.key_of(keyer, p) for p in ("1LOS002", "1MOV002", "1GAP001")}


def test_summary_counts_cells_and_suppresses_small_ones(integrator: ServerThread) -> None:
    summary = call(integrator, request())[-1].summary
    assert summary.min_cell_size == 3
    cells = {(c.category, c.fuel, c.euro): c.vehicles for c in summary.cells}
    # 25 filler cars + 1LOS001, 1LOS002, 1MOV002: M1 diesel Euro 6; 1END001 (Euro 4) alone
    assert cells == {("M1", "02", "6"): 28}
    assert (summary.suppressed_cells, summary.suppressed_vehicles) == (1, 1)
    assert summary.vehicles == 29


def test_keys_come_in_chunks_of_the_size_asked(integrator: ServerThread) -> None:
    chunks = call(integrator, request(chunk_size=4))
    assert all(0 < m.count <= 4 for m in chunks[:-1])
    assert sum(m.count for m in chunks[:-1]) == chunks[-1].summary.vehicles == 29


# ---- bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"nis": []}, "nis"),
        ({"nis": [100000]}, "nis"),
        ({"date": ""}, "date"),
        ({"date": "2028-13-01"}, "date"),
        ({"date": "2027-06-01"}, "date"),  # not after the reference day
        ({"reference_date": "yesterday"}, "reference_date"),
        ({"zone": "Atlantis"}, ""),
    ],
)
def test_bad_requests_are_invalid_argument(
    integrator: ServerThread, changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        call(integrator, request(**changes))
    code, _reason, _ = error_reason(failure.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    if field:
        assert field in violations(failure.value)


def test_too_many_nis_codes(campaign_config: ServerConfig) -> None:
    s = ServerThread(replace(campaign_config, max_campaign_nis=2), identity(Role.INTEGRATOR))
    try:
        with pytest.raises(grpc.RpcError) as failure:
            call(s, request(nis=[21004, 21009, 21001]))
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    finally:
        s.stop()


# ---- roles, zones, quotas, audit -------------------------------------------------------------


@pytest.mark.parametrize(
    "role", [Role.PUBLIC, Role.DESK, Role.ENFORCEMENT, Role.APPEALS, Role.MONITORING]
)
def test_roles_without_the_purpose_are_refused_and_audited(
    campaign_config: ServerConfig, role: Role
) -> None:
    s = serve(campaign_config, role)
    try:
        with pytest.raises(grpc.RpcError) as failure:
            call(s, request())
        code, reason, _ = error_reason(failure.value)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
    finally:
        s.stop()
    (refused,) = audit_records(campaign_config)
    assert refused["rpc"] == "LosingAccess" and refused["status"] == "PERMISSION_DENIED"
    assert refused["keys_count"] == 0


def test_operator_may_and_zones_are_enforced(campaign_config: ServerConfig) -> None:
    s = serve(campaign_config, Role.OPERATOR)
    try:
        assert call(s, request())[-1].summary.vehicles == 29
    finally:
        s.stop()
    gent_only = {
        "dev": Identity(
            identity="dev",
            organisation="Stad Gent",
            roles=frozenset({Role.INTEGRATOR}),
            zones=frozenset({"gent"}),
        )
    }
    s = ServerThread(campaign_config, clients=gent_only)
    try:
        with pytest.raises(grpc.RpcError) as failure:
            call(s, request())
        assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    finally:
        s.stop()


def test_the_call_is_audited_with_its_keys_and_purpose(
    integrator: ServerThread, campaign_config: ServerConfig, keyer: PlateKeyer
) -> None:
    chunks = call(integrator, request())
    (rec,) = audit_records(campaign_config)
    assert rec["hash"] == chunks[-1].summary.audit_id
    assert rec["rpc"] == "LosingAccess" and rec["purpose"] == "communication"
    assert rec["zone"] == cr.ZONE and rec["organisation"] == "Stad Brussel"
    assert rec["roles"] == ["integrator"] and rec["status"] == "OK"
    assert rec["keys_count"] == 29 and rec["outcomes"] == {"NOT_ALLOWED": 29}
    logged = named_keys(campaign_config.audit_dir, rec)
    assert {logged[i : i + 16] for i in range(0, len(logged), 16)} == all_keys(chunks)


def test_no_plate_in_answers_logs_or_audit(
    integrator: ServerThread, campaign_config: ServerConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    chunks = call(integrator, request(cr.LATER, nis=[21004, 21009, cr.OUTSIDE_NIS]))
    wire = b"".join(m.SerializeToString() for m in chunks)
    written = b"".join(p.read_bytes() for p in campaign_config.audit_dir.rglob("*") if p.is_file())
    for case in cr.CASES:
        plate = case.plate.encode()
        assert plate not in wire and plate not in written
        assert case.plate not in caplog.text


def test_quota_counts_the_vehicles_examined(campaign_config: ServerConfig) -> None:
    s = serve(campaign_config, Role.INTEGRATOR, pairs_per_day=20)  # 33 residents examined
    try:
        with grpc.insecure_channel(s.target) as ch:
            answers = stub(ch).LosingAccess(request())
            received: list[pb.LosingAccessChunk] = []
            with pytest.raises(grpc.RpcError) as failure:
                received.extend(answers)
        assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
    finally:
        s.stop()
    # the keys that went out before the quota ran out are on record, with how the call ended,
    # and so is the refused rest of the call (a refused attempt: no keys)
    rec, refused = audit_records(campaign_config)
    assert rec["status"] == "RESOURCE_EXHAUSTED" and rec["purpose"] == "communication"
    assert 0 < int(str(rec["keys_count"])) == sum(m.count for m in received) < 29
    assert refused["rpc"] == "LosingAccess" and refused["status"] == "RESOURCE_EXHAUSTED"
    assert refused["keys_count"] == 0
    # the day's count is kept across restarts: a fresh quota file for a fresh day's allowance
    fresh_day = replace(campaign_config, state_dir=campaign_config.audit_dir.parent / "day2")
    s = serve(fresh_day, Role.INTEGRATOR, pairs_per_day=33)
    try:
        assert call(s, request())[-1].summary.vehicles == 29
    finally:
        s.stop()


INTEGRATOR_FILE = """
[[client]]
identity = "brussels-integrator"
organisation = "Brussels letters"
roles = ["integrator"]
zones = ["Brussels"]
"""


def test_integrator_role_in_a_clients_file_over_mutual_tls(
    campaign_config: ServerConfig, cert_dir: Path, tmp_path: Path
) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(INTEGRATOR_FILE)
    s = ServerThread(
        replace(
            campaign_config,
            **tls_settings(cert_dir, clients),
        )
    )
    try:
        with tls_channel(cert_dir, s.port, "brussels-integrator") as ch:
            info = stub(ch).ServerInfo(pb.ServerInfoRequest())
            assert list(info.client.roles) == [pb.ROLE_INTEGRATOR]
            assert list(stub(ch).LosingAccess(request()))[-1].summary.vehicles == 29
            with pytest.raises(grpc.RpcError) as failure:
                stub(ch).Check(pb.CheckRequest(plate="1LOS001", zone=cr.ZONE))
            assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    finally:
        s.stop()


# ---- CheckStream with as_of ------------------------------------------------------------------


def stream(
    server: ServerThread, plates: list[str], day: dt.date, as_of: str
) -> list[pb.DecisionChunk]:
    msg = chunk(plates, [to_day(day)] * len(plates), zone=cr.ZONE)
    msg.as_of = as_of
    with grpc.insecure_channel(server.target) as ch:
        return list(stub(ch).CheckStream(iter([msg])))


def test_as_of_evaluates_reads_on_a_later_date(campaign_config: ServerConfig) -> None:
    plates = ["1LOS001", "1EXE001", "1PET001", "1REF001"]
    s = serve(campaign_config, Role.INTEGRATOR, Role.ENFORCEMENT)
    try:
        today = stream(s, plates, cr.REFERENCE, "")
        later = stream(s, plates, cr.REFERENCE, cr.STEP.isoformat())
        # a read before the exemption's first day, evaluated on the step: the exemption counts
        before_exemption = stream(s, ["1EXE001"], dt.date(2026, 6, 1), cr.STEP.isoformat())
    finally:
        s.stop()
    allowed, refused = pb.OUTCOME_ALLOWED, pb.OUTCOME_NOT_ALLOWED
    assert outcomes(today[0]) == [allowed, allowed, allowed, refused]
    assert outcomes(later[0]) == [refused, allowed, allowed, refused]
    assert reasons(later[0])[0] == pb.REASON_EURO_BELOW_MINIMUM
    assert outcomes(before_exemption[0]) == [allowed]
    assert reasons(before_exemption[0]) == [pb.REASON_REGISTERED_DISABLED_PERSON]
    assert today[0].as_of == today[-1].summary.as_of == ""
    assert later[0].as_of == later[-1].as_of == later[-1].summary.as_of == "2028-01-01"


def test_as_of_uses_the_register_of_the_read_day(campaign_config: ServerConfig) -> None:
    # 1MOV001's holder moved on MOVE_DAY; the version of the read's day is the one decided on
    s = serve(campaign_config, Role.INTEGRATOR)
    try:
        before = stream(s, ["1MOV001"], dt.date(2026, 6, 1), cr.STEP.isoformat())
        assert outcomes(before[0]) == [pb.OUTCOME_NOT_ALLOWED]
        no_version = stream(s, ["1MOV001"], dt.date(2010, 6, 1), cr.STEP.isoformat())
        assert outcomes(no_version[0]) == [pb.OUTCOME_UNKNOWN_PLATE]
    finally:
        s.stop()


def test_as_of_is_the_communication_purpose(campaign_config: ServerConfig) -> None:
    s = serve(campaign_config, Role.ENFORCEMENT)
    try:
        assert outcomes(stream(s, ["1LOS001"], cr.REFERENCE, "")[0]) == [pb.OUTCOME_ALLOWED]
        with pytest.raises(grpc.RpcError) as failure:
            stream(s, ["1LOS001"], cr.REFERENCE, cr.STEP.isoformat())
        assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    finally:
        s.stop()
    s = serve(campaign_config, Role.INTEGRATOR)
    try:
        with pytest.raises(grpc.RpcError) as failure:
            stream(s, ["1LOS001"], cr.REFERENCE, "")  # enforcement is not its purpose
        assert failure.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        stream(s, ["1LOS001"], cr.REFERENCE, cr.STEP.isoformat())
    finally:
        s.stop()
    records = [r for r in audit_records(campaign_config) if r.get("part") != "chunk"]
    assert [r["status"] for r in records] == ["OK", "PERMISSION_DENIED", "PERMISSION_DENIED", "OK"]
    assert records[0]["purpose"] == "enforcement" and records[-1]["purpose"] == "communication"


def test_as_of_is_one_per_stream(integrator: ServerThread) -> None:
    first = chunk(["1LOS001"], [to_day(cr.REFERENCE)], zone=cr.ZONE, chunk_id=0)
    first.as_of = "2028-01-01"
    same = chunk(["1LOS002"], [to_day(cr.REFERENCE)], chunk_id=1)
    same.as_of = "2028-01-01"
    other = chunk(["1LOS002"], [to_day(cr.REFERENCE)], chunk_id=2)
    other.as_of = "2029-01-01"
    with grpc.insecure_channel(integrator.target) as ch:
        answers = list(stub(ch).CheckStream(iter([first, same])))
        assert [outcomes(a) for a in answers[:2]] == [[pb.OUTCOME_NOT_ALLOWED]] * 2
        with pytest.raises(grpc.RpcError) as failure:
            list(stub(ch).CheckStream(iter([first, other])))
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        bad = chunk(["1LOS001"], [to_day(cr.REFERENCE)], zone=cr.ZONE)
        bad.as_of = "June"
        with pytest.raises(grpc.RpcError) as failure:
            list(stub(ch).CheckStream(iter([bad])))
        assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
