"""Server-level promises, each held by a test that fails when the promise breaks (each was
checked by planting the bug it guards against once):

- the public checker's answer holds only its allowed fields, on every kind of vehicle;
- every call that takes a zone refuses a zone outside the caller's zones, and answers nothing;
- no answer leaves before its audit record is durable (unary calls and each stream chunk): a
  failing sync means no answer, a blocked sync means no answer yet;
- changing any single field of any kind of audit record is detected by `verify-audit`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer
from server.audit import AuditLog, KeyBatch, read_records, series_files
from server.audit_keys import load_audit_keys
from server.audit_verify import verify
from server.auth import Identity, Role
from server.config import ServerConfig
from tests.server.conftest import (
    DAY,
    UNKNOWN_PLATE,
    VEHICLES,
    ServerThread,
    Vehicle,
    build_store,
    make_server,
)
from tests.server.helpers import chunk, stub

DATE = "2025-06-02"

# ---- the public checker's allow-list ---------------------------------------------------------

PUBLIC_DECISION_FIELDS = frozenset({"outcome", "allowed_until", "open_ended", "euro"})
"""What a public checker may receive about a vehicle (docs/rules.md#public-checker: the euro
norm and the allowed-until date, nothing on a mismatch)."""
PUBLIC_RESPONSE_FIELDS = frozenset(
    {"decision", "snapshot_id", "ruleset_revision", "zone", "date", "instant"}
)
KINDS = (
    *VEHICLES,  # allowed petrol, old diesel, old diesel with a local permit, electric
    Vehicle("1DRV001", euro="", first_registration=dt.date(2012, 5, 1)),  # euro derived
    Vehicle("1DSL002", fuel="02", euro="", first_registration=dt.date(2001, 1, 1)),
    Vehicle("1LPG003", fuel="03", euro="5", first_registration=dt.date(2011, 2, 2)),
    Vehicle("1TRK004", category="N3", fuel="02", euro="6", max_mass=18_000),
    Vehicle("1MOT005", category="L3", euro="", first_registration=dt.date(2004, 4, 4)),
)


def _present(message: Message) -> set[str]:
    return {desc.name for desc, _ in message.ListFields()}


@pytest.fixture
def kinds_config(tmp_path: Path, keyer: PlateKeyer, base_config: ServerConfig) -> ServerConfig:
    root = tmp_path / "kinds-store"
    build_store(root, keyer, vehicles=KINDS)
    return replace(base_config, store_root=root)


def _public_questions(zone: str) -> Iterator[tuple[str, pb.CheckRequest]]:
    """A matching and a mismatching question for every kind of vehicle, an unknown plate, an
    unreadable one, a foreign one."""
    for v in KINDS:
        right = v.first_registration.isoformat()
        yield (
            v.plate,
            pb.CheckRequest(plate=v.plate, zone=zone, date=DATE, first_registration=right),
        )
        yield (
            f"{v.plate} mismatch",
            pb.CheckRequest(plate=v.plate, zone=zone, date=DATE, first_registration="1999-09-09"),
        )
    for label, plate, country in (
        ("unknown", UNKNOWN_PLATE, "BE"),
        ("invalid", "!!", "BE"),
        ("dutch", "AB123C", "NL"),
        ("french", "AB123CD", "FR"),
    ):
        yield (
            label,
            pb.CheckRequest(
                plate=plate, zone=zone, date=DATE, country=country, first_registration="2019-03-01"
            ),
        )


def test_the_public_answer_holds_only_its_allowed_fields(kinds_config: ServerConfig) -> None:
    everyone = make_server(kinds_config)  # the operator identity: sees everything
    public = make_server(
        kinds_config,
        clients={
            "dev": Identity(identity="dev", organisation="citizen", roles=frozenset({Role.PUBLIC}))
        },
    )
    try:
        with (
            grpc.insecure_channel(everyone.target) as full_ch,
            grpc.insecure_channel(public.target) as pub_ch,
        ):
            zone = stub(full_ch).ServerInfo(pb.ServerInfoRequest()).zones[0].name
            seen_by_operator: set[str] = set()
            for label, question in _public_questions(zone):
                full = stub(full_ch).Check(question)
                seen_by_operator |= _present(full.decision)
                got = stub(pub_ch).Check(question)
                assert _present(got) <= PUBLIC_RESPONSE_FIELDS, label
                assert _present(got.decision) <= PUBLIC_DECISION_FIELDS, (
                    label,
                    _present(got.decision) - PUBLIC_DECISION_FIELDS,
                )
                if got.decision.outcome == pb.OUTCOME_COMBINATION_MISMATCH:
                    assert _present(got.decision) == {"outcome"}, label
                else:  # the public answer is the operator's, cut to the allow-list
                    assert got.decision.outcome == full.decision.outcome, label
                    assert got.decision.euro == full.decision.euro, label
        # the questions reach the fields a public caller must not get (else the test proves
        # nothing): reasons, derived bits, technical data
        assert {"reason", "derived", "technical"} <= seen_by_operator
    finally:
        everyone.stop()
        public.stop()


# ---- zones ----------------------------------------------------------------------------------


def _check(ch: grpc.Channel, zone: str) -> list[Any]:
    return [stub(ch).Check(pb.CheckRequest(plate=VEHICLES[0].plate, zone=zone, date=DATE))]


def _check_stream(ch: grpc.Channel, zone: str) -> list[Any]:
    plates = [v.plate for v in VEHICLES]
    return list(stub(ch).CheckStream(iter([chunk(plates, [DAY] * len(plates), zone=zone)])))


def _recheck(ch: grpc.Channel, zone: str) -> list[Any]:
    item = pb.EarlierDecision(plate=VEHICLES[0].plate, zone=zone, date=DATE)
    return [stub(ch).Recheck(pb.RecheckRequest(decisions=[item]))]


def _losing_access(ch: grpc.Channel, zone: str) -> list[Any]:
    request = pb.LosingAccessRequest(zone=zone, date="2030-01-01", reference_date=DATE, nis=[44021])
    return list(stub(ch).LosingAccess(request))  # at least its summary


ZONE_RPCS: dict[str, Callable[[grpc.Channel, str], list[Any]]] = {
    "Check": _check,
    "CheckStream": _check_stream,
    "Recheck": _recheck,
    "LosingAccess": _losing_access,
}


def test_every_rpc_that_takes_a_zone_is_covered() -> None:
    """Each method whose request names a zone is in ZONE_RPCS, so the refusal test covers it."""
    service = pb.DESCRIPTOR.services_by_name["AccessService"]
    takes_zone = set()
    for method in service.methods:
        fields = {f.name for f in method.input_type.fields}
        nested = {
            f.name
            for f in method.input_type.fields
            if f.message_type is not None and "zone" in f.message_type.fields_by_name
        }
        if "zone" in fields or nested:
            takes_zone.add(method.name)
    assert takes_zone == set(ZONE_RPCS)  # a new method that takes a zone needs its caller here


@pytest.mark.parametrize("rpc", sorted(ZONE_RPCS))
def test_a_zone_outside_the_callers_zones_is_refused(base_config: ServerConfig, rpc: str) -> None:
    roles = frozenset({Role.DESK, Role.ENFORCEMENT, Role.APPEALS, Role.INTEGRATOR})
    allowed_in = make_server(
        base_config,
        clients={"dev": Identity(identity="dev", organisation="Stad Gent", roles=roles)},
    )
    try:  # the same caller, with every zone: answered (the refusal below is the zone's)
        with grpc.insecure_channel(allowed_in.target) as ch:
            zones = [z.name for z in stub(ch).ServerInfo(pb.ServerInfoRequest()).zones]
            assert ZONE_RPCS[rpc](ch, zones[0])
    finally:
        allowed_in.stop()
    limited = make_server(
        base_config,
        audit_dir=base_config.audit_dir.with_name("audit-limited"),
        clients={
            "dev": Identity(
                identity="dev",
                organisation="Stad Gent",
                roles=roles,
                zones=frozenset({zones[1].casefold()}),
            )
        },
    )
    try:
        with grpc.insecure_channel(limited.target) as ch:
            assert ZONE_RPCS[rpc](ch, zones[1])  # its own zone
            got: list[Any] = []
            with pytest.raises(grpc.RpcError) as refused:
                for answer in _answers(ch, rpc, zones[0], ZONE_RPCS):
                    got.append(answer)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
            assert got == []
        audit_dir = limited.app.config.audit_dir
        last = [r for _, r in read_records(audit_dir / "audit-w0.jsonl")][-1]
        assert (last["rpc"], last["status"], last["pairs"]) == (rpc, "PERMISSION_DENIED", 0)
    finally:
        limited.stop()


# ---- no answer before its record is durable ----------------------------------------------------


def _fail_audit_syncs(monkeypatch: pytest.MonkeyPatch, log: AuditLog) -> None:
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        if fd == log._fd:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)


CALLS: dict[str, Callable[[grpc.Channel, str], list[Any]]] = {
    "Check": _check,
    "Recheck": _recheck,
    "CheckStream": _check_stream,
}


@pytest.mark.parametrize("rpc", sorted(CALLS))
def test_no_answer_when_the_record_cannot_be_made_durable(
    server: ServerThread, channel: grpc.Channel, monkeypatch: pytest.MonkeyPatch, rpc: str
) -> None:
    zone = stub(channel).ServerInfo(pb.ServerInfoRequest()).zones[0].name
    log = server.app.audit
    assert isinstance(log, AuditLog)
    _fail_audit_syncs(monkeypatch, log)
    got: list[Any] = []
    with pytest.raises(grpc.RpcError) as failed:
        for answer in _answers(channel, rpc, zone):  # a stream's chunks one by one
            got.append(answer)
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert got == []  # not even a stream's first chunk
    monkeypatch.undo()
    with pytest.raises(grpc.RpcError) as later:  # nor any call after it, in this process
        _check(channel, zone)
    assert later.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


@pytest.mark.parametrize("rpc", sorted(CALLS))
def test_no_answer_while_the_record_is_not_yet_durable(
    server: ServerThread, channel: grpc.Channel, monkeypatch: pytest.MonkeyPatch, rpc: str
) -> None:
    zone = stub(channel).ServerInfo(pb.ServerInfoRequest()).zones[0].name
    log = server.app.audit
    assert isinstance(log, AuditLog)
    written = len(list(read_records(log.path)))
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def blocked(fd: int) -> None:  # every path to the disk: in the loop, a thread, a stream's
        if fd == log._fd:
            entered.set()
            release.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", blocked)
    received: list[Any] = []

    def call() -> None:
        for answer in _answers(channel, rpc, zone):
            received.append(answer)

    with ThreadPoolExecutor(1) as pool:
        done: Future[None] = pool.submit(call)
        try:
            assert entered.wait(30), "the call never waited for its record to be durable"
            # the server is inside the sync of this call's record: nothing may have left
            assert received == [] and not done.done()
            assert len(list(read_records(log.path))) == written + 1  # written, not yet synced
        finally:
            release.set()
        done.result(timeout=30)
    assert received


def _answers(
    channel: grpc.Channel,
    rpc: str,
    zone: str,
    calls: dict[str, Callable[[grpc.Channel, str], list[Any]]] | None = None,
) -> Iterator[Any]:
    """The call's answers as they arrive (a stream's chunks one by one)."""
    if rpc != "CheckStream":
        yield from (calls or CALLS)[rpc](channel, zone)
        return
    plates = [v.plate for v in VEHICLES]
    yield from stub(channel).CheckStream(iter([chunk(plates, [DAY] * len(plates), zone=zone)]))


# ---- every field of every record is covered by the chain ----------------------------------------


def _every_kind_of_record(server: ServerThread, channel: grpc.Channel) -> Path:
    """A log holding each kind of record a server writes: Check, a stream's chunks (inline
    keys and sidecar) and closing record, Recheck, a refused call, a retention record."""
    s = stub(channel)
    zone = s.ServerInfo(pb.ServerInfoRequest()).zones[0].name
    _check(channel, zone)
    plates = [v.plate for v in VEHICLES] * 3  # more than inline: a sidecar
    small = [v.plate for v in VEHICLES[:2]]
    list(
        s.CheckStream(
            iter([chunk(plates, [DAY] * len(plates), zone=zone), chunk(small, [DAY] * 2)])
        )
    )
    _recheck(channel, zone)
    log = server.app.audit
    assert isinstance(log, AuditLog)
    server.app.service.refusals.record("Check", _NoCertContext(), grpc.StatusCode.UNAUTHENTICATED)  # type: ignore[union-attr]
    log.record(
        rpc="AuditRetention", identity="(server)", organisation="", roles=(), zone="",
        ruleset_revision="", snapshot_id="", pairs=0, outcomes={}, keys=KeyBatch(),
        extra={"removed_files": ["audit-w0.000000000001.jsonl"], "removed_through_seq": 0},
    )  # fmt: skip
    log.checkpoint()
    return log.path


class _NoCertContext:
    """A call context without a certificate (what a refused stranger looks like)."""

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


def _changed(value: Any) -> Any:
    """A different value of the same JSON type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1") if value else "x"
    if isinstance(value, list):
        return [*value, value[0] if value else "x"]
    if isinstance(value, dict):
        return {**value, "EXTRA": 1}
    raise AssertionError(f"a record field of type {type(value).__name__}")


def test_changing_any_field_of_any_record_is_detected(
    server: ServerThread, channel: grpc.Channel
) -> None:
    path = _every_kind_of_record(server, channel)
    keys = load_audit_keys(server.app.config.audit_key_path)
    assert verify(path, keys) == []
    original = path.read_bytes()
    lines = original.rstrip(b"\0").splitlines()
    records = [json.loads(line) for line in lines]
    kinds = {(r["rpc"], r.get("part", ""), r["status"]) for r in records}
    assert {
        ("Check", "", "OK"),
        ("CheckStream", "chunk", "OK"),
        ("CheckStream", "end", "OK"),
    } <= kinds
    assert {
        ("Recheck", "", "OK"),
        ("Check", "", "UNAUTHENTICATED"),
        ("AuditRetention", "", "OK"),
    } <= kinds
    assert any("keys_file" in r for r in records) and any("pair_outcomes" in r for r in records)
    tried = 0
    for i, rec in enumerate(records):
        for name, value in rec.items():
            forged = dict(rec)
            forged[name] = _changed(value)
            edited = [
                *lines[:i],
                json.dumps(forged, separators=(",", ":")).encode(),
                *lines[i + 1 :],
            ]
            path.write_bytes(b"\n".join(edited) + b"\n")
            assert verify(path, keys) != [], f"record {i + 1} ({rec['rpc']}): {name} changed"
            tried += 1
    path.write_bytes(original)
    assert verify(path, keys) == []
    assert tried >= 8 * 15
    assert series_files(path.parent, "audit-w0") == [path]
