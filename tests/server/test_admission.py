"""Overload shedding (`server.admission`): excess work is refused at once, one organisation
cannot starve another, idle streams are ended, and every slot comes back.

"At once" is shown without timing anything: the excess calls are refused *while* the admitted
streams are still open and waiting, so the refusal cannot have waited for them. The latency
another organisation sees under a flood is measured by `bench/overload_bench.py`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.errors import Overloaded
from server.admission import Admission, Caps
from server.audit import read_records
from server.config import ServerConfig
from tests.server.conftest import DAY, ServerThread, make_server, tls_channel, tls_settings
from tests.server.helpers import HeldStream, chunk, error_reason, stub

CLIENTS = """
[[client]]
identity = "gent-enforcement"
organisation = "Stad Gent"
roles = ["enforcement"]
concurrent_streams = 0

[[client]]
identity = "dev-operator"
organisation = "Operator"
roles = ["operator"]
checks_per_minute = 0
checks_per_day = 0
"""


def _tls_server(
    base_config: ServerConfig, cert_dir: Path, tmp_path: Path, **caps: int
) -> ServerThread:
    clients = tmp_path / "clients.toml"
    clients.write_text(CLIENTS)
    return make_server(
        base_config,
        **tls_settings(cert_dir, clients),
        **caps,
    )


def _zone(ch: grpc.Channel) -> str:
    return stub(ch).ServerInfo(pb.ServerInfoRequest()).zones[0].name


def _refusal(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as exc:
        call()  # type: ignore[operator]
    code, reason, _ = error_reason(exc.value)
    return code, reason


OVERLOADED = (grpc.StatusCode.RESOURCE_EXHAUSTED, "OVERLOADED")


def _until_idle(srv: ServerThread) -> None:
    """Every slot comes back once the calls are done (a call's end is counted by the server
    just after the client has its status, hence the wait)."""
    assert srv.app.service is not None
    admission = srv.app.service.admission
    for _ in range(500):
        if admission.idle:
            return
        time.sleep(0.01)
    raise AssertionError(f"slots still held: {admission}")


def test_many_streams_of_one_organisation_are_refused_while_another_is_served(
    base_config: ServerConfig, cert_dir: Path, tmp_path: Path
) -> None:
    srv = _tls_server(
        base_config, cert_dir, tmp_path, max_streams_per_worker=3, max_org_streams_per_worker=2
    )
    try:
        with (
            tls_channel(cert_dir, srv.port, "gent-enforcement") as flood,
            tls_channel(cert_dir, srv.port, "dev-operator") as other,
        ):
            zone = _zone(flood)
            one = chunk(["1ABC234"], [DAY], zone=zone)
            held = [HeldStream(flood, zone, DAY) for _ in range(2)]  # the organisation's share
            for _ in range(20):  # refused while the admitted ones are still open: not queued
                assert _refusal(lambda: list(stub(flood).CheckStream(iter([one])))) == OVERLOADED
            # the other organisation is served: single checks and a stream of its own
            for _ in range(20):
                got = stub(other).Check(
                    pb.CheckRequest(plate="1ABC234", zone=zone, date="2025-06-02")
                )
                assert got.decision.outcome == pb.OUTCOME_ALLOWED
            held_other = HeldStream(other, zone, DAY)
            # the worker is full now: a stream of anyone is refused
            assert _refusal(lambda: list(stub(other).CheckStream(iter([one])))) == OVERLOADED
            for stream in [*held, held_other]:
                assert stream.end()[-1].summary.pairs == 1
            assert list(stub(flood).CheckStream(iter([one])))[-1].summary.pairs == 1
        _until_idle(srv)
    finally:
        srv.stop()


def test_calls_in_flight_of_one_organisation_are_capped(
    base_config: ServerConfig, cert_dir: Path, tmp_path: Path
) -> None:
    srv = _tls_server(
        base_config, cert_dir, tmp_path, max_org_calls_in_flight=2, max_org_streams_per_worker=4
    )
    try:
        with (
            tls_channel(cert_dir, srv.port, "gent-enforcement") as flood,
            tls_channel(cert_dir, srv.port, "dev-operator") as other,
        ):
            zone = _zone(flood)
            held = [HeldStream(flood, zone, DAY) for _ in range(2)]
            request = pb.CheckRequest(plate="1ABC234", zone=zone, date="2025-06-02")
            assert _refusal(lambda: stub(flood).Check(request)) == OVERLOADED
            assert stub(other).Check(request).decision.outcome == pb.OUTCOME_ALLOWED
            for stream in held:
                stream.end()
            assert stub(flood).Check(request).decision.outcome == pb.OUTCOME_ALLOWED
        _until_idle(srv)
    finally:
        srv.stop()


def test_an_idle_stream_is_ended_and_its_answers_stay_on_record(
    base_config: ServerConfig,
) -> None:
    srv = make_server(base_config, stream_idle_timeout_s=1.0)  # long for a chunk to arrive
    opened = threading.Event()
    try:
        with grpc.insecure_channel(srv.target) as ch:
            zone = _zone(ch)

            def nothing() -> Iterator[pb.CheckChunk]:
                opened.wait(10)  # sends no chunk until the test is over
                yield from ()

            with pytest.raises(grpc.RpcError) as exc:
                list(stub(ch).CheckStream(nothing()))
            assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
            held = HeldStream(ch, zone, DAY)  # one chunk answered, then nothing
            with pytest.raises(grpc.RpcError) as exc:
                held.rest()
            assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
            assert "sent nothing" in exc.value.details()  # type: ignore[attr-defined]
        _until_idle(srv)
    finally:
        opened.set()
        srv.stop()
    records = [r for _, r in read_records(base_config.audit_dir / "audit-w0.jsonl")]
    streams = [r for r in records if r["rpc"] == "CheckStream"]
    # the answered chunk's own record, then the closing record saying how the stream ended
    assert [(r["part"], r["pairs"], r["status"]) for r in streams] == [
        ("chunk", 1, "OK"),
        ("end", 1, "DEADLINE_EXCEEDED"),
    ]


# ---- the caps themselves --------------------------------------------------------------------


def _caps(**kw: int) -> Caps:
    base = {"streams": 4, "org_streams": 2, "org_calls": 3, "pairs": 100, "org_pairs": 60}
    return Caps(**(base | kw))


def test_pairs_in_flight_per_worker_and_per_organisation() -> None:
    door = Admission(_caps())
    with door.work("A", 60):
        with pytest.raises(Overloaded, match="its share is 60"), door.work("A", 1):
            pass
        with door.work("B", 40):
            refused = pytest.raises(Overloaded, match="takes at most 100")
            with refused, door.work("C", 1):
                pass
    assert door.idle and not door.org_pairs  # nothing left, no organisation kept in memory


def test_slots_come_back_when_the_work_fails() -> None:
    door = Admission(_caps())
    with pytest.raises(RuntimeError), door.stream("A"), door.work("A", 10):
        raise RuntimeError("the chunk failed")
    door.enter_call("A")
    door.leave_call("A")
    assert door.idle


@pytest.mark.parametrize("cap", ["max_pairs_in_flight", "max_org_pairs_in_flight"])
def test_a_pairs_cap_that_cannot_hold_one_chunk_is_refused_at_start(cap: str) -> None:
    with pytest.raises(ValueError, match=f"{cap} must hold at least one chunk"):
        ServerConfig(max_chunk_pairs=1000, **{cap: 999}).validate()  # type: ignore[arg-type]
    ServerConfig(max_chunk_pairs=1000, **{cap: 1000}).validate()  # type: ignore[arg-type]
