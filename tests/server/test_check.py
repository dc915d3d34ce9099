"""Check, ServerInfo, FleetStats, Recheck and the error paths, on an in-process server."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lez.api.v1 import access_pb2 as pb
from lez.days import format_day, from_day
from lez.keys import PlateKeyer
from lez.plates import as_matrix, countries_matrix, normalise_many
from server.auth import Identity, Role
from server.config import ServerConfig
from tests.server.conftest import (
    DAY,
    PERMIT_PLATE,
    UNKNOWN_PLATE,
    VEHICLES,
    ServerThread,
    Vehicle,
    build_store,
    make_server,
)
from tests.server.helpers import chunk, error_reason, outcomes, reasons, stub

DATE = format_day(DAY)


def first_zone(channel: grpc.Channel) -> str:
    return stub(channel).ServerInfo(pb.ServerInfoRequest()).zones[0].name


def check(channel: grpc.Channel, plate: str, **kw: str) -> pb.CheckResponse:
    zone = kw.pop("zone", None) or first_zone(channel)
    date = kw.pop("date", DATE)
    return stub(channel).Check(pb.CheckRequest(plate=plate, zone=zone, date=date, **kw))


def test_server_info_and_health(channel: grpc.Channel, server: ServerThread) -> None:
    info = stub(channel).ServerInfo(pb.ServerInfoRequest())
    meta = server.app.holder.current.meta  # type: ignore[union-attr]
    assert info.snapshot_id == meta.snapshot_id
    assert info.key_id == meta.key_id
    assert info.ruleset_revision in info.ruleset_revisions
    assert info.zones and all(z.name for z in info.zones)
    assert {c.name for c in info.code_lists} == {"euro", "category", "fuel"}
    assert info.client.max_chunk_pairs == 1000
    assert pb.ROLE_OPERATOR in info.client.roles
    assert (info.worker, info.workers) == (0, 1)  # an in-process server is one worker
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "lez.api.v1.AccessService"):
        got = health.Check(health_pb2.HealthCheckRequest(service=name))
        assert got.status == health_pb2.HealthCheckResponse.SERVING


def test_check_answers(channel: grpc.Channel) -> None:
    allowed = check(channel, "1-abc-234")
    assert allowed.decision.outcome == pb.OUTCOME_ALLOWED
    assert allowed.snapshot_id and allowed.ruleset_revision
    assert allowed.decision.euro == "6"
    assert allowed.decision.technical.category == "M1"
    old = check(channel, "1XYZ987")
    assert old.decision.outcome == pb.OUTCOME_NOT_ALLOWED
    assert old.decision.reason != pb.REASON_UNSPECIFIED
    unknown = check(channel, UNKNOWN_PLATE)
    assert unknown.decision.outcome == pb.OUTCOME_UNKNOWN_PLATE
    permit = check(channel, PERMIT_PLATE)
    assert permit.decision.outcome == pb.OUTCOME_ALLOWED
    assert permit.decision.reason == pb.REASON_LOCAL_PERMIT


def test_check_bad_items_are_outcomes_not_errors(channel: grpc.Channel) -> None:
    bad_plate = check(channel, "1-AB$-234")
    assert bad_plate.decision.outcome == pb.OUTCOME_INVALID
    assert bad_plate.decision.reason == pb.REASON_INVALID_PLATE
    bad_day = stub(channel).Check(
        pb.CheckRequest(plate="1ABC234", zone=first_zone(channel), date="2025-13-40")
    )
    assert bad_day.decision.outcome == pb.OUTCOME_INVALID
    assert bad_day.decision.reason == pb.REASON_INVALID_DAY
    bad_country = check(channel, "1ABC234", country="B1")
    assert bad_country.decision.reason == pb.REASON_INVALID_COUNTRY


def test_check_with_key(channel: grpc.Channel, keyer: PlateKeyer) -> None:
    norm, _ = normalise_many(as_matrix(["1ABC234"]), countries_matrix("BE", 1))
    key = keyer.key_matrix(countries_matrix("BE", 1), norm)[0].tobytes()
    zone = first_zone(channel)
    got = stub(channel).Check(pb.CheckRequest(key=key, key_id=keyer.key_id, zone=zone, date=DATE))
    assert got.decision.outcome == pb.OUTCOME_ALLOWED
    for bad_country in ("BEL", "B1", "b"):  # refused as for a plate, never cut to 2 letters
        by_key = (
            stub(channel)
            .Check(
                pb.CheckRequest(
                    key=key, key_id=keyer.key_id, zone=zone, date=DATE, country=bad_country
                )
            )
            .decision
        )
        by_plate = check(channel, "1ABC234", country=bad_country).decision
        assert (by_key.outcome, by_key.reason) == (by_plate.outcome, by_plate.reason)
        assert by_key.reason == pb.REASON_INVALID_COUNTRY
    with pytest.raises(grpc.RpcError) as exc:
        stub(channel).Check(pb.CheckRequest(key=key, key_id="other", zone=zone, date=DATE))
    assert error_reason(exc.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "KEY_MISMATCH")


def test_unknown_zone(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        check(channel, "1ABC234", zone="atlantis")
    assert error_reason(exc.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_ZONE")


def test_pinned_unknown_revision(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        check(channel, "1ABC234", ruleset_revision="1999-01")
    code, reason, _ = error_reason(exc.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "UNKNOWN_RULESET")


def test_pinned_known_revision(channel: grpc.Channel) -> None:
    info = stub(channel).ServerInfo(pb.ServerInfoRequest())
    assert len(info.ruleset_revisions) >= 2
    answers: dict[str, list[tuple[int, int, str]]] = {}
    for rev in info.ruleset_revisions:
        answers[rev] = []
        for v in VEHICLES:
            for date in ("2026-06-01", "2028-06-01"):
                got = check(channel, v.plate, ruleset_revision=rev, date=date)
                assert got.ruleset_revision == rev
                d = got.decision
                answers[rev].append((d.outcome, d.reason, d.allowed_until))
    # the pinned revision is the one applied: some answer differs between the revisions
    assert len({tuple(a) for a in answers.values()}) == len(answers)


def test_store_not_ready_then_published(
    base_config: ServerConfig, tmp_path: Path, keyer: PlateKeyer
) -> None:
    empty_root = tmp_path / "empty-store"
    srv = make_server(base_config, store_root=empty_root)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            st = health.Check(health_pb2.HealthCheckRequest(service=""))
            assert st.status == health_pb2.HealthCheckResponse.NOT_SERVING
            with pytest.raises(grpc.RpcError) as exc:
                stub(ch).ServerInfo(pb.ServerInfoRequest())
            assert error_reason(exc.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "STORE_NOT_READY")
            build_store(empty_root, keyer)
            for _ in range(100):
                st = health.Check(health_pb2.HealthCheckRequest(service=""))
                if st.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                import time

                time.sleep(0.05)
            assert st.status == health_pb2.HealthCheckResponse.SERVING
            assert stub(ch).ServerInfo(pb.ServerInfoRequest()).snapshot_id
    finally:
        srv.stop()


def _identity(roles: set[Role], **kw: object) -> dict[str, Identity]:
    return {"dev": Identity(identity="dev", organisation="Test org", roles=frozenset(roles), **kw)}  # type: ignore[arg-type]


def test_permission_denied_by_role(base_config: ServerConfig) -> None:
    srv = make_server(base_config, clients=_identity({Role.MONITORING}))
    try:
        with grpc.insecure_channel(srv.target) as ch:
            with pytest.raises(grpc.RpcError) as exc:
                stub(ch).Check(pb.CheckRequest(plate="1ABC234", zone="1", date=DATE))
            code, reason, _ = error_reason(exc.value)
            assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
            assert "1ABC234" not in exc.value.details()  # type: ignore[attr-defined]
    finally:
        srv.stop()


def test_permission_denied_by_zone(base_config: ServerConfig) -> None:
    srv = make_server(base_config, clients=_identity({Role.DESK}, zones=frozenset({"nowhere"})))
    try:
        with grpc.insecure_channel(srv.target) as ch:
            zone = first_zone(ch)
            with pytest.raises(grpc.RpcError) as exc:
                stub(ch).Check(pb.CheckRequest(plate="1ABC234", zone=zone, date=DATE))
            assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    finally:
        srv.stop()


def test_public_role_is_minimised(base_config: ServerConfig) -> None:
    srv = make_server(base_config, clients=_identity({Role.PUBLIC}))
    try:
        with grpc.insecure_channel(srv.target) as ch:
            zone = first_zone(ch)
            req = pb.CheckRequest(plate="1XYZ987", zone=zone, date=DATE)
            with pytest.raises(grpc.RpcError) as exc:  # the public checker needs the triple
                stub(ch).Check(req)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            req.first_registration = "2003-01-01"
            got = stub(ch).Check(req).decision
            assert got.outcome == pb.OUTCOME_NOT_ALLOWED
            assert got.reason == pb.REASON_UNSPECIFIED
            assert not got.HasField("technical")
            assert got.euro == "3"
    finally:
        srv.stop()


def test_recheck_reports_what_changed(channel: grpc.Channel) -> None:
    zone = first_zone(channel)
    earlier = [
        pb.EarlierDecision(  # refused then; a local permit now applies
            plate=PERMIT_PLATE,
            zone=zone,
            date=DATE,
            outcome=pb.OUTCOME_NOT_ALLOWED,
            reason=pb.REASON_EURO_BELOW_MINIMUM,
            euro="3",
            snapshot_id="20240101T000000Z-0a1b2c",  # a build since removed
        ),
        pb.EarlierDecision(  # unknown then, in the register now
            plate="1ABC234", zone=zone, date=DATE, outcome=pb.OUTCOME_UNKNOWN_PLATE
        ),
        pb.EarlierDecision(  # the euro norm differs now: new vehicle data
            plate="1ABC234",
            zone=zone,
            date=DATE,
            outcome=pb.OUTCOME_ALLOWED,
            reason=pb.REASON_MEETS_CRITERIA,
            euro="5",
        ),
    ]
    got = stub(channel).Recheck(pb.RecheckRequest(decisions=earlier))
    assert got.snapshot_id and got.ruleset_revision
    r0, r1, r2 = got.results
    assert r0.outcome_changed and r0.current.outcome == pb.OUTCOME_ALLOWED
    assert pb.CHANGE_REGISTRATION_ADDED in r0.changes
    assert r1.outcome_changed and pb.CHANGE_PLATE_ADDED in r1.changes
    assert not r2.outcome_changed and list(r2.changes) == [pb.CHANGE_VEHICLE_DATA]


@pytest.mark.parametrize("snapshot_id", ["old", "1ABC234", "20991231T000000Z-0a1b2c", "../x"])
def test_recheck_refuses_a_snapshot_id_it_cannot_have_served(
    channel: grpc.Channel, snapshot_id: str
) -> None:
    earlier = pb.EarlierDecision(
        plate=PERMIT_PLATE,
        zone=first_zone(channel),
        date=DATE,
        outcome=pb.OUTCOME_NOT_ALLOWED,
        snapshot_id=snapshot_id,
    )
    with pytest.raises(grpc.RpcError) as exc:
        stub(channel).Recheck(pb.RecheckRequest(decisions=[earlier]))
    code, reason, _ = error_reason(exc.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    details = exc.value.details() or ""
    assert "decisions[0].snapshot_id" in details and "not a snapshot this server" in details
    assert "1ABC234" not in details
    current = stub(channel).ServerInfo(pb.ServerInfoRequest()).snapshot_id
    known = stub(channel).Recheck(
        pb.RecheckRequest(decisions=[pb.EarlierDecision(
            plate=PERMIT_PLATE, zone=earlier.zone, date=DATE,
            outcome=pb.OUTCOME_NOT_ALLOWED, snapshot_id=current,
        )])
    )  # fmt: skip
    assert known.results[0].outcome_changed


def test_recheck_too_many(base_config: ServerConfig) -> None:
    srv = make_server(base_config, max_recheck_items=1)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            item = pb.EarlierDecision(plate="1ABC234", zone=first_zone(ch), date=DATE)
            with pytest.raises(grpc.RpcError) as exc:
                stub(ch).Recheck(pb.RecheckRequest(decisions=[item, item]))
            code, reason, meta = error_reason(exc.value)
            assert (code, reason, meta["limit"]) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "BATCH_TOO_LARGE",
                "1",
            )
    finally:
        srv.stop()


def test_fleet_stats_suppresses_small_cells(
    base_config: ServerConfig, tmp_path: Path, keyer: PlateKeyer
) -> None:
    root = tmp_path / "fleet"
    build_store(root, keyer, extra_plates=30)
    srv = make_server(base_config, store_root=root, min_cell_size=10)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            got = stub(ch).FleetStats(
                pb.FleetStatsRequest(group_by=[pb.DIMENSION_FUEL, pb.DIMENSION_EURO], date=DATE)
            )
            # 31 petrol euro 6 cars, rounded to a multiple of 10 (docs/fleet.md)
            assert [(c.fuel, c.euro, c.vehicles) for c in got.cells] == [("01", "6", 30)]
            assert got.cells[0].euro_derived == 0  # their norm is in the register
            assert got.suppressed_cells == 2  # the 2 old diesels, the electric car
            assert got.suppressed_vehicles == 0  # 3 vehicles, rounded
            assert got.min_cell_size == 10 and got.snapshot_id
            assert (
                got.suppression == "small cells suppressed (under 10); counts rounded to "
                "multiples of 10"
            )
    finally:
        srv.stop()


def test_fleet_stats_counts_the_effective_euro_norm_and_how_many_were_derived(
    base_config: ServerConfig, tmp_path: Path, keyer: PlateKeyer
) -> None:
    no_norm = tuple(Vehicle(f"1EUR{i:03d}", euro="") for i in range(24))  # petrol, 2019
    root = tmp_path / "fleet"
    build_store(root, keyer, vehicles=VEHICLES + no_norm, extra_plates=10)
    srv = make_server(base_config, store_root=root, min_cell_size=10)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            got = stub(ch).FleetStats(pb.FleetStatsRequest(group_by=[pb.DIMENSION_EURO], date=DATE))
            # euro 6: 1ABC234 and the 10 fillers from DIV; derived from the first registration
            # (2019): the 24 without a norm and the electric car. 36 vehicles, 25 derived.
            euro6 = [c for c in got.cells if c.euro == "6"]
            assert [(c.vehicles, c.euro_derived) for c in euro6] == [(40, 30)]  # rounded
            by_fuel = stub(ch).FleetStats(pb.FleetStatsRequest(group_by=[pb.DIMENSION_FUEL]))
            assert all(c.euro_derived == 0 for c in by_fuel.cells)
    finally:
        srv.stop()


def test_single_check_answers_like_the_stream(channel: grpc.Channel) -> None:
    """Check takes the engine's one-item path; it must answer exactly like CheckStream."""
    s = stub(channel)
    zone = s.ServerInfo(pb.ServerInfoRequest()).zones[0].name
    items = [
        ("1ABC234", "BE", DAY),
        ("1xyz 987", "BE", DAY),
        ("2-DEF-456", "BE", DAY),
        ("1ELE001", "BE", DAY),
        ("9ZZZ999", "BE", DAY),
        ("AB123C", "NL", DAY),
        ("AB123C", "FR", DAY),
        ("bad#plate", "BE", DAY),
        ("1ABC234", "B1", DAY),
    ]
    msgs = list(
        s.CheckStream(
            iter(
                [
                    chunk(
                        [p for p, _, _ in items],
                        [d for _, _, d in items],
                        zone=zone,
                        countries=[c for _, c, _ in items],
                    )
                ]
            )
        )
    )
    lists = {c.name: c for c in s.ServerInfo(pb.ServerInfoRequest()).code_lists}
    euro_codes = {e.id: e.code for e in lists["euro"].entries}
    streamed = list(
        zip(
            outcomes(msgs[0]),
            reasons(msgs[0]),
            np.frombuffer(msgs[0].allowed_until, dtype="<i4").tolist(),
            np.frombuffer(msgs[0].euro, dtype=np.uint8).tolist(),
            np.frombuffer(msgs[0].derived, dtype=np.uint8).tolist(),
            strict=True,
        )
    )
    for (plate, country, day), (outcome, reason, until, euro, derived) in zip(
        items, streamed, strict=True
    ):
        got = s.Check(
            pb.CheckRequest(plate=plate, country=country, zone=zone, date=from_day(day).isoformat())
        ).decision
        assert (got.outcome, got.reason, got.derived) == (outcome, reason, derived), plate
        assert got.euro == euro_codes.get(euro, ""), plate
        if outcome == pb.OUTCOME_ALLOWED:
            assert got.allowed_until == ("" if got.open_ended else format_day(until)), plate


def test_combination_mismatch_reveals_no_vehicle_data(channel: grpc.Channel) -> None:
    s = stub(channel)
    zone = s.ServerInfo(pb.ServerInfoRequest()).zones[0].name
    date = from_day(DAY).isoformat()
    ok = s.Check(
        pb.CheckRequest(plate="1ABC234", zone=zone, date=date, first_registration="2019-03-01")
    ).decision
    assert ok.outcome == pb.OUTCOME_ALLOWED and ok.technical.first_registration == "2019-03-01"
    wrong = s.Check(
        pb.CheckRequest(plate="1ABC234", zone=zone, date=date, first_registration="2019-03-02")
    ).decision
    assert wrong.outcome == pb.OUTCOME_COMBINATION_MISMATCH
    assert not wrong.HasField("technical") and wrong.euro == "" and wrong.allowed_until == ""
    with pytest.raises(grpc.RpcError) as err:
        s.Check(
            pb.CheckRequest(plate="1ABC234", zone=zone, date=date, first_registration="03/2019")
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_a_fleet_rounding_base_under_the_minimum_cell_size_is_refused() -> None:
    """Rounding by less than the minimum cell size lets two answers give a small cell away
    (tests/lez/test_fleet_attack.py)."""
    with pytest.raises(ValueError, match="fleet_rounding_base must be at least min_cell_size"):
        ServerConfig(min_cell_size=10, fleet_rounding_base=5).validate()
    ServerConfig(min_cell_size=10, fleet_rounding_base=10).validate()
