"""The Python client against an in-process server on port 0 (real channel): unary calls, batch
alignment with invalid and duplicate items, chunking, pre-keyed batches, several addresses,
retries on UNAVAILABLE, deadlines and the error mapping."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest

from clients import (
    AsyncLezClient,
    BatchRows,
    ClientSettings,
    DeadlineExceeded,
    KeyMismatch,
    LezClient,
    RecheckItem,
    ServerUnavailable,
    UnknownRuleset,
    UnknownZone,
)
from clients import errors as cerr
from clients.batch_rows import pack_plates
from clients.channels import build_target
from clients.enum_names import OUTCOME_NAMES, REASON_NAMES
from lez.api.v1 import access_pb2 as pb
from lez.days import DAY_OPEN, from_day
from lez.keys import PlateKeyer
from server.audit import read_records
from server.config import ServerConfig
from tests.clients.conftest import ZONE, start_server
from tests.server.conftest import DAY, PERMIT_PLATE, UNKNOWN_PLATE, ServerThread
from tests.support.net import free_port

DATE = from_day(DAY)


def test_check_answers_with_readable_fields(client: LezClient) -> None:
    d = client.check("1-abc-234", zone=ZONE, day=DATE)
    assert (d.outcome, d.reason, d.open_ended, d.euro) == ("ALLOWED", "MEETS_CRITERIA", True, "6")
    assert d.allowed_until is None and d.date == DATE and d.zone == ZONE
    assert d.snapshot_id and d.revision and d.technical is not None
    assert d.technical.category == "M1"
    permit = client.check(PERMIT_PLATE, zone=ZONE, day=DATE)
    assert permit.outcome == "ALLOWED" and permit.reason == "LOCAL_PERMIT"
    assert permit.allowed_until is not None and permit.allowed_until > DATE
    assert client.check("1XYZ987", zone=ZONE, day=DATE).outcome == "NOT_ALLOWED"
    assert client.check(UNKNOWN_PLATE, zone=ZONE, day=DATE).outcome == "UNKNOWN_PLATE"
    bad = client.check("#", zone=ZONE, day=DATE)
    assert (bad.outcome, bad.reason) == ("INVALID", "INVALID_PLATE")
    mismatch = client.check("1ABC234", zone=ZONE, day=DATE, first_registration="1990-01-01")
    assert mismatch.outcome == "COMBINATION_MISMATCH"


def test_default_day_is_today_in_brussels(client: LezClient) -> None:
    from zoneinfo import ZoneInfo

    d = client.check("1ABC234", zone=ZONE)
    assert d.date == dt.datetime.now(ZoneInfo("Europe/Brussels")).date()


def test_server_info_recheck_and_fleet(client: LezClient) -> None:
    info = client.server_info()
    assert ZONE in [z.name for z in info.zones]
    assert info.client.max_chunk_pairs == 1000
    answer = client.recheck(
        [RecheckItem(plate=PERMIT_PLATE, zone=ZONE, date=DATE, outcome="NOT_ALLOWED")]
    )
    (r,) = answer.results
    assert r.outcome_changed and r.current.outcome == "ALLOWED"
    assert "REGISTRATION_ADDED" in r.changes
    stats = client.fleet_stats(["fuel"], day=DATE)
    assert stats.min_cell_size > 0 and stats.snapshot_id == answer.snapshot_id


def test_batch_is_aligned_with_invalid_and_duplicate_items(client: LezClient) -> None:
    rows: list[tuple[object, object, object]] = [
        ("1ABC234", "BE", DATE),
        ("#", "BE", DATE),  # bad plate
        ("1XYZ987", "BE", DAY),  # day number
        ("1ABC234", "BE", DATE),  # duplicate
        ("1XYZ987", "BEL", DATE),  # bad country
        ("1ABC234", "BE", "not a date"),  # bad day
        (UNKNOWN_PLATE, None, DATE.isoformat()),
        ("1xyz-987", "be", DATE),
    ]
    result = client.check_batch(rows * 3, zone=ZONE, chunk_size=3)
    expected = [
        ("ALLOWED", "MEETS_CRITERIA"),
        ("INVALID", "INVALID_PLATE"),
        ("NOT_ALLOWED", "EURO_BELOW_MINIMUM"),
        ("ALLOWED", "MEETS_CRITERIA"),
        ("INVALID", "INVALID_COUNTRY"),
        ("INVALID", "INVALID_DAY"),
        ("UNKNOWN_PLATE", "NOT_IN_REGISTER"),
        ("NOT_ALLOWED", "EURO_BELOW_MINIMUM"),
    ] * 3
    got = list(zip(result.outcome_names(), result.reason_names(), strict=True))
    assert got == expected
    assert result.summary.pairs == 24 and result.summary.chunks == 8
    assert result.summary.outcomes["INVALID"] == 9
    assert len(result.summary.audit_ids) >= 1


def test_stream_batch_yields_in_input_order_over_several_streams(client: LezClient) -> None:
    n = 5_000
    plates = np.array(["1ABC234", "1XYZ987", "#"] * (n // 3) + ["1ABC234"] * (n % 3))
    days = np.full(n, DAY, dtype=np.int32)
    parts = list(
        client.stream_batch(
            BatchRows.of(plates, None, days), zone=ZONE, chunk_size=400, connections=3
        )
    )
    assert [p.first_index for p in parts] == list(range(0, n, 400))
    outcomes = np.concatenate([p.outcome for p in parts])
    expect = {"1ABC234": 1, "1XYZ987": 2, "#": 6}
    assert outcomes.tolist() == [expect[str(p)] for p in plates]


def test_chunk_size_defaults_to_the_server_limit(client: LezClient) -> None:
    assert client.chunk_size() == 1000
    result = client.check_batch([("1ABC234", "BE", DATE)] * 2500, zone=ZONE)
    assert result.summary.chunks == 3 and (result.outcome == 1).all()


def test_numpy_bytes_and_packed_plates(client: LezClient) -> None:
    plates = np.array([b"1ABC234", b"1-XYZ-987", b"#"], dtype="S10")
    r = client.check_batch(
        BatchRows.of(plates, np.array(["BE", "BE", "BE"]), np.full(3, DAY)), zone=ZONE
    )
    assert r.outcome_names() == ["ALLOWED", "NOT_ALLOWED", "INVALID"]
    packed = pack_plates(["1ABC234", "1ELE001"])
    r2 = client.check_batch(BatchRows.of(packed, None, [DATE, DATE]), zone=ZONE)
    assert r2.reason_names() == ["MEETS_CRITERIA", "ZERO_EMISSION"]
    assert r2.allowed_until.tolist() == [DAY_OPEN, DAY_OPEN]


def test_pre_keyed_batch(client: LezClient, client_keyer: PlateKeyer) -> None:
    from lez.plates import as_matrix, normalise_many

    plates = ["1ABC234", "1XYZ987", UNKNOWN_PLATE, "1ABC234"]
    countries = np.full((len(plates), 2), list(b"BE"), dtype=np.uint8)
    norm, _ = normalise_many(as_matrix(plates), countries)
    keys = client_keyer.key_matrix(countries, norm)
    pairs = BatchRows.of_keys(keys, None, [DATE] * 4, key_id=client_keyer.key_id)
    r = client.check_batch(pairs, zone=ZONE)
    assert r.outcome_names() == ["ALLOWED", "NOT_ALLOWED", "UNKNOWN_PLATE", "ALLOWED"]
    d = client.check(key=bytes(keys[1]), key_id=client_keyer.key_id, zone=ZONE, day=DATE)
    assert d.outcome == "NOT_ALLOWED"
    with pytest.raises(KeyMismatch):
        client.check_batch(BatchRows.of_keys(keys, None, [DATE] * 4, key_id="other"), zone=ZONE)


def test_errors_map_to_client_exceptions(client: LezClient) -> None:
    with pytest.raises(UnknownZone) as zone_err:
        client.check("1ABC234", zone="Atlantis", day=DATE)
    assert zone_err.value.status == grpc.StatusCode.INVALID_ARGUMENT
    assert "Atlantis" in zone_err.value.message and "1ABC234" not in zone_err.value.message
    with pytest.raises(UnknownRuleset):
        client.check("1ABC234", zone=ZONE, day=DATE, ruleset="1999-01-01")
    with pytest.raises(UnknownZone):
        client.check_batch([("1ABC234", "BE", DATE)], zone="Atlantis")
    with pytest.raises(cerr.BatchTooLarge) as big:
        client.check_batch([("1ABC234", "BE", DATE)] * 1001, zone=ZONE, chunk_size=1001)
    assert (big.value.size, big.value.limit) == (1001, 1000)


def test_error_table_is_total_over_error_reasons() -> None:
    for name, value in pb.ErrorReason.items():
        assert value in cerr.REASON_TABLE, name
        assert cerr.error_reason_value(name.removeprefix("ERROR_REASON_")) == value
    retried = {c for c in cerr.REASON_TABLE.values() if c.retryable}
    assert retried == {cerr.StoreNotReady}
    assert cerr.STATUS_TABLE[grpc.StatusCode.UNAVAILABLE].retryable


def test_outcome_and_reason_names_are_dense() -> None:
    assert [pb.Outcome.Value("OUTCOME_" + n) for n in OUTCOME_NAMES] == list(
        range(len(OUTCOME_NAMES))
    )
    assert [pb.Reason.Value("REASON_" + n) for n in REASON_NAMES] == list(range(len(REASON_NAMES)))


class _Sleeps:
    """Stands in for `time.sleep`: records what this thread asks for, without sleeping (other
    threads, such as an in-process server's, sleep as usual)."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.real = time.sleep
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        if threading.get_ident() == self.thread:
            self.delays.append(seconds)
        else:
            self.real(seconds)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> _Sleeps:
    recorder = _Sleeps()
    monkeypatch.setattr("clients.sync.time.sleep", recorder)  # the same as time.sleep
    return recorder


class _Counted:
    """Wraps a stub method and counts the attempts made through it."""

    def __init__(self, method: Any) -> None:
        self.method = method
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.method(*args, **kwargs)


def test_server_down_fails_fast_after_bounded_retries(
    sleeps: _Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    with LezClient([f"127.0.0.1:{port}"], retries=2, backoff_initial_s=0.01) as c:
        attempts = _Counted(c._stub.Check)
        monkeypatch.setattr(c._stub, "Check", attempts)
        with pytest.raises(ServerUnavailable):
            c.check("1ABC234", zone=ZONE, day=DATE)
    assert attempts.calls == 3  # the first and `retries` more, then it gives up
    # exponential backoff with jitter: each wait in [cap / 2, cap], cap 0.01 s then 0.02 s
    assert len(sleeps.delays) == 2
    assert 0.005 <= sleeps.delays[0] <= 0.01 and 0.01 <= sleeps.delays[1] <= 0.02


def test_retry_on_unavailable_until_the_server_comes_up(
    client_config: ServerConfig, client_keyer: PlateKeyer, tmp_path: Path
) -> None:
    port = free_port()
    box: dict[str, ServerThread] = {}

    def later() -> None:
        time.sleep(0.4)
        box["s"] = start_server(client_config, client_keyer, tmp_path, address=f"127.0.0.1:{port}")

    th = threading.Thread(target=later)
    th.start()
    try:
        with LezClient(
            [f"127.0.0.1:{port}"], retries=30, backoff_initial_s=0.05, backoff_max_s=0.2
        ) as c:
            assert c.check("1ABC234", zone=ZONE, day=DATE).outcome == "ALLOWED"
            r = c.check_batch([("1XYZ987", "BE", DATE)] * 10, zone=ZONE)
            assert (r.outcome == 2).all()
    finally:
        th.join()
        if "s" in box:
            box["s"].stop()


def test_store_not_ready_is_retried_with_retry_info(
    client_config: ServerConfig, tmp_path: Path, sleeps: _Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = ServerThread(replace(client_config, store_root=tmp_path / "nothing"))
    try:
        with LezClient([empty.target], retries=1, backoff_initial_s=0.01) as c:
            attempts = _Counted(c._stub.Check)
            monkeypatch.setattr(c._stub, "Check", attempts)
            with pytest.raises(cerr.StoreNotReady) as err:
                c.check("1ABC234", zone=ZONE, day=DATE)
            assert err.value.retry_after_s == pytest.approx(1.0)
            assert attempts.calls == 2
            # waited as RetryInfo said, not the far shorter backoff (at most 0.01 s)
            assert sleeps.delays == [err.value.retry_after_s]
    finally:
        empty.stop()


def test_deadline_is_a_client_exception(client: LezClient) -> None:
    # A deadline that is over before the call starts (gRPC does not enforce one under a
    # millisecond: a 1e-6 s timeout that reaches it is often answered in time).
    with pytest.raises(DeadlineExceeded):
        client.check("1ABC234", zone=ZONE, day=DATE, timeout=0)
    with pytest.raises(DeadlineExceeded):
        client.check_batch([("1ABC234", "BE", DATE)] * 5000, zone=ZONE, timeout=0)
    # and gRPC's own DEADLINE_EXCEEDED (a deadline that passes during a call) maps to it too
    assert cerr.STATUS_TABLE[grpc.StatusCode.DEADLINE_EXCEEDED] is DeadlineExceeded


def test_several_addresses_round_robin(
    client_config: ServerConfig, client_keyer: PlateKeyer, tmp_path: Path
) -> None:
    a = start_server(client_config, client_keyer, tmp_path / "a")
    b = start_server(client_config, client_keyer, tmp_path / "b")
    try:
        target, _ = build_target([a.target, b.target])
        assert target == f"ipv4:{a.target},{b.target}"
        with LezClient([a.target, b.target], connections=2) as c:
            for _ in range(6):
                assert c.check("1ABC234", zone=ZONE, day=DATE).outcome == "ALLOWED"
            r = c.check_batch([("1ABC234", "BE", DATE)] * 4000, zone=ZONE, chunk_size=500)
            assert len(r) == 4000 and (r.outcome == 1).all()
        served = [len(list(read_records(s.app.audit.path))) if s.app.audit else 0 for s in (a, b)]
        assert all(served), f"both replicas answered: {served} records"
    finally:
        a.stop()
        b.stop()


def test_async_client(live_server: ServerThread, client_keyer: PlateKeyer) -> None:
    async def go() -> None:
        async with AsyncLezClient([live_server.target]) as c:
            d = await c.check("1XYZ987", zone=ZONE, day=DATE)
            assert d.outcome == "NOT_ALLOWED"
            rows = [("1ABC234", "BE", DATE), ("#", "BE", DATE), ("1XYZ987", "BE", DATE)] * 700
            r = await c.check_batch(rows, zone=ZONE, connections=3)
            assert r.outcome.tolist() == [1, 6, 2] * 700
            firsts = [p.first_index async for p in c.stream_batch(rows, zone=ZONE, chunk_size=500)]
            assert firsts == list(range(0, 2100, 500))
            with pytest.raises(UnknownZone):
                await c.check_batch(rows, zone="Atlantis")
            info = await c.server_info()
            assert info.key_id == client_keyer.key_id

    asyncio.run(go())


def _server_info_without_chunk_limit(counter: list[int]) -> Any:
    def answer(request: pb.ServerInfoRequest, timeout: float | None = None) -> Any:
        counter.append(1)
        return pb.ServerInfoResponse()  # client.max_chunk_pairs 0: the server sets no limit

    return answer


def test_chunk_size_asks_the_server_once_even_without_a_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    with LezClient(["127.0.0.1:9"]) as c:  # nothing listens: ServerInfo is scripted
        monkeypatch.setattr(c._stub, "ServerInfo", _server_info_without_chunk_limit(asked))
        assert [c.chunk_size() for _ in range(3)] == [c.settings.default_chunk_pairs] * 3
    assert len(asked) == 1


def test_async_chunk_size_asks_the_server_once_even_without_a_limit() -> None:
    asked: list[int] = []
    answer = _server_info_without_chunk_limit(asked)

    async def server_info(request: pb.ServerInfoRequest, timeout: float | None = None) -> Any:
        return answer(request, timeout)

    async def go() -> list[int]:
        async with AsyncLezClient(["127.0.0.1:9"]) as c:
            c._stub = SimpleNamespace(ServerInfo=server_info)
            return [await c.chunk_size() for _ in range(3)]

    assert asyncio.run(go()) == [ClientSettings().default_chunk_pairs] * 3
    assert len(asked) == 1


def test_unknown_or_missing_keywords_are_type_errors_as_before() -> None:
    # the options are `**options: Unpack[...]`: a typo must not pass silently
    with LezClient(["127.0.0.1:9"]) as c:  # nothing listens: every call fails before I/O
        with pytest.raises(TypeError, match="unexpected keyword argument 'dayy'"):
            c.check("1ABC234", zone=ZONE, dayy=DATE)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="missing required keyword argument 'zone'"):
            c.check("1ABC234")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="unexpected keyword argument 'zones'"):
            c.check_batch([], zone=ZONE, chunk_size=10, zones=[ZONE])  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="unexpected keyword argument 'date'"):
            c.fleet_stats(["fuel"], date=DATE)  # type: ignore[call-arg]
