"""Quotas per organisation, shared by the workers and kept across restarts (`server.quotas`).

The counters are checked with an injected clock (windows, RetryInfo, the Brussels day with its
clock changes), across two stores on one directory and across a SIGKILL (as two workers and a
killed worker would use them), and through the server: single checks per minute and per day,
pairs per day, concurrent streams, the public role limited by default, and a brute force of
first-registration dates stopped within the public limit. The multi-worker server with a
restart is in the slow tests at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lez.api.v1 import access_pb2 as pb
from lez.days import BRUSSELS
from lez.errors import RateLimited
from server.audit import read_records
from server.auth import Identity, Role, load_clients
from server.config import ServerConfig
from server.quotas import (
    CHECKS_PER_DAY,
    CHECKS_PER_MINUTE,
    CONCURRENT_STREAMS,
    PAIRS_PER_DAY,
    QuotaStore,
    seconds_to_next_brussels_day,
)
from tests.server.conftest import DAY, ServerThread, make_server
from tests.server.helpers import HeldStream, chunk, error_reason, retry_after, stub

DATE = "2025-06-02"
NOON: float = dt.datetime(2026, 6, 10, 12, 0, 20, tzinfo=BRUSSELS).timestamp()
"""A moment 20 s into a minute, far from midnight in Brussels."""


def _org(**limits: int) -> Identity:
    return Identity(identity="w", organisation="Org", roles=frozenset({Role.DESK}), **limits)


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    """Closes what the test opened (quota stores), failing or not."""
    with contextlib.ExitStack() as s:
        yield s


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_checks_per_minute_window_and_its_retry(
    tmp_path: Path, stack: contextlib.ExitStack
) -> None:
    clock = Clock(NOON)
    quotas = stack.enter_context(QuotaStore(tmp_path, clock=clock))
    who = _org(checks_per_minute=3)
    for _ in range(3):
        quotas.charge_check(who)
    with pytest.raises(RateLimited) as exc:
        quotas.charge_check(who)
    assert exc.value.quota == CHECKS_PER_MINUTE
    assert exc.value.retry_after_s == pytest.approx(40.0)  # to the next minute window
    assert quotas.used("Org", CHECKS_PER_MINUTE) == 3  # the refused call used nothing
    clock.now += 39.9
    with pytest.raises(RateLimited):
        quotas.charge_check(who)
    clock.now += 0.2  # the next minute
    quotas.charge_check(who)
    assert quotas.used("Org", CHECKS_PER_MINUTE) == 1


def test_daily_limit_lasts_until_the_next_brussels_day(
    tmp_path: Path, stack: contextlib.ExitStack
) -> None:
    # the day the clocks go forward in Brussels has 23 hours
    clock = Clock(dt.datetime(2026, 3, 29, 0, 30, tzinfo=BRUSSELS).timestamp())
    quotas = stack.enter_context(QuotaStore(tmp_path, clock=clock))
    who = _org(checks_per_day=2)
    quotas.charge_check(who)
    quotas.charge_check(who)
    with pytest.raises(RateLimited) as exc:
        quotas.charge_check(who)
    assert exc.value.quota == CHECKS_PER_DAY
    assert exc.value.retry_after_s == pytest.approx(22.5 * 3600)
    clock.now = dt.datetime(2026, 3, 29, 23, 59, 59, tzinfo=BRUSSELS).timestamp()
    with pytest.raises(RateLimited) as exc:
        quotas.charge_check(who)
    assert exc.value.retry_after_s == pytest.approx(1.0)
    clock.now += 1.0
    quotas.charge_check(who)  # a new Brussels day


def test_seconds_to_the_next_brussels_day_in_winter_and_summer() -> None:
    winter = dt.datetime(2026, 1, 15, 23, 0, tzinfo=BRUSSELS).timestamp()
    assert seconds_to_next_brussels_day(winter) == pytest.approx(3600)
    autumn_change = dt.datetime(2026, 10, 25, 0, 0, tzinfo=BRUSSELS).timestamp()
    assert seconds_to_next_brussels_day(autumn_change) == pytest.approx(25 * 3600)


def test_pairs_per_day_refuses_what_would_pass_it_and_counts_nothing_then(
    tmp_path: Path, stack: contextlib.ExitStack
) -> None:
    quotas = stack.enter_context(QuotaStore(tmp_path, clock=Clock(NOON)))
    who = _org(pairs_per_day=8)
    quotas.charge_pairs(who, 5)
    with pytest.raises(RateLimited) as exc:
        quotas.charge_pairs(who, 4)
    assert (exc.value.quota, exc.value.limit) == (PAIRS_PER_DAY, 8)
    assert quotas.used("Org", PAIRS_PER_DAY) == 5
    quotas.charge_pairs(who, 3)
    quotas.charge_check(_org(pairs_per_day=9))  # a single check is a pair too
    assert quotas.used("Org", PAIRS_PER_DAY) == 9


def test_counts_are_shared_by_two_stores_and_kept_when_reopened(
    tmp_path: Path, stack: contextlib.ExitStack
) -> None:
    clock = Clock(NOON)
    one, two = QuotaStore(tmp_path, clock=clock), QuotaStore(tmp_path, clock=clock)
    who = _org(checks_per_day=4)
    for store in (one, two, one, two):
        store.charge_check(who)
    with pytest.raises(RateLimited):
        one.charge_check(who)
    with pytest.raises(RateLimited):
        two.charge_check(who)
    one.close()
    two.close()
    again = stack.enter_context(QuotaStore(tmp_path, clock=clock))
    assert again.used("Org", CHECKS_PER_DAY) == 4
    with pytest.raises(RateLimited):
        again.charge_check(who)
    # another organisation has its own counts
    again.charge_check(Identity(identity="x", organisation="Other", roles=frozenset({Role.DESK})))


def test_past_windows_are_pruned(tmp_path: Path, stack: contextlib.ExitStack) -> None:
    clock = Clock(NOON)
    quotas = stack.enter_context(QuotaStore(tmp_path, clock=clock))
    who = _org(checks_per_minute=5, checks_per_day=100)
    for minute in range(10):
        clock.now = NOON + 60 * minute
        quotas.charge_check(who)
    rows = quotas._db.execute("SELECT counter, count(*) FROM usage GROUP BY counter").fetchall()
    assert dict(rows) == {CHECKS_PER_MINUTE: 1, CHECKS_PER_DAY: 1}


_CHILD = """
import sys, time
from pathlib import Path
from server.auth import Identity, Role
from server.quotas import QuotaStore
quotas = QuotaStore(Path(sys.argv[1]))
who = Identity(identity="w", organisation="Org", roles=frozenset({Role.DESK}),
               checks_per_day=1000, concurrent_streams=1)
for _ in range(int(sys.argv[2])):
    quotas.charge_check(who)
with quotas.stream_lease(who):
    print("held", flush=True)
    time.sleep(60)
"""


@contextlib.contextmanager
def _child_holding(state: Path, checks: int) -> Iterator[subprocess.Popen[str]]:
    """A process that charged `checks` single checks and holds a stream lease; SIGKILLed (if
    the body did not) when the body ends."""
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(state), str(checks)], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "held"
            yield child
        finally:
            child.kill()


def test_counts_and_streams_of_a_process_killed_by_sigkill(
    tmp_path: Path, stack: contextlib.ExitStack
) -> None:
    """A worker killed at once keeps its counts; its stream lease goes with it."""
    quotas = stack.enter_context(QuotaStore(tmp_path))
    who = _org(concurrent_streams=1, checks_per_day=1000)
    with _child_holding(tmp_path, checks=7) as child:
        assert quotas.used("Org", CHECKS_PER_DAY) == 7
        with pytest.raises(RateLimited) as exc, quotas.stream_lease(who):
            pass  # the child holds the organisation's one stream
        assert exc.value.quota == CONCURRENT_STREAMS
        assert exc.value.retry_after_s == pytest.approx(1.0)
        os.kill(child.pid, signal.SIGKILL)
        _until_zombie(child.pid)  # dead, not yet reaped by its parent (as a supervisor polls)
        assert quotas.used("Org", CHECKS_PER_DAY) == 7
        with quotas.stream_lease(who):  # the dead holder's lease is reclaimed
            assert quotas.open_streams("Org") == 1
        assert quotas.open_streams("Org") == 0


def _until_zombie(pid: int) -> None:
    stat = Path(f"/proc/{pid}/stat")
    for _ in range(1000):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError("the killed process did not end")


def test_a_new_store_reclaims_the_leases_of_dead_processes(tmp_path: Path) -> None:
    with _child_holding(tmp_path, checks=0) as child:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with QuotaStore(tmp_path) as quotas:
            assert quotas.open_streams("Org") == 0


# ---- limits from the clients file ---------------------------------------------------------

PUBLIC_CLIENT = """
[[client]]
identity = "web"
organisation = "Stad Gent website"
roles = ["public"]
"""


def test_clients_file_defaults_are_the_legal_figures(
    base_config: ServerConfig, tmp_path: Path
) -> None:
    path = tmp_path / "clients.toml"
    path.write_text(PUBLIC_CLIENT)
    web = load_clients(path, base_config)["web"]
    assert (web.checks_per_minute, web.checks_per_day) == (35, 10_000)
    path.write_text(PUBLIC_CLIENT + "checks_per_minute = 5\n")
    assert load_clients(path, base_config)["web"].checks_per_minute == 5
    path.write_text(PUBLIC_CLIENT + "calls_per_minute = 7\n")  # the older key is still read
    assert load_clients(path, base_config)["web"].checks_per_minute == 7


@pytest.mark.parametrize("key", ["checks_per_minute", "checks_per_day"])
def test_the_public_role_cannot_be_unlimited(
    base_config: ServerConfig, tmp_path: Path, key: str
) -> None:
    path = tmp_path / "clients.toml"
    path.write_text(PUBLIC_CLIENT + f"{key} = 0\n")
    with pytest.raises(ValueError, match=f"{key}.*public role"):
        load_clients(path, base_config)
    path.write_text(PUBLIC_CLIENT.replace('"public"', '"desk"') + f"{key} = 0\n")
    assert getattr(load_clients(path, base_config)["web"], key) == 0  # others may be


# ---- through the server -------------------------------------------------------------------


def _server_with(base_config: ServerConfig, tmp_path: Path, clients: str) -> ServerThread:
    path = tmp_path / "clients.toml"
    path.write_text(clients)
    srv = make_server(base_config, clients_file=path, dev_identity="web")
    assert srv.app.quotas is not None
    srv.app.quotas.clock = Clock(NOON)  # mid-minute: the window does not turn during the test
    return srv


def _zone(ch: grpc.Channel) -> str:
    return stub(ch).ServerInfo(pb.ServerInfoRequest()).zones[0].name


def test_brute_force_of_a_first_registration_date_is_stopped_within_the_public_limit(
    base_config: ServerConfig, tmp_path: Path
) -> None:
    """A public caller trying every first-registration date of a plate gets the 35 answers of a
    minute (all 'no match'), then RATE_LIMITED until the next minute: the true date, 100th in
    its order, is never confirmed. Each refused attempt is on the audit record."""
    srv = _server_with(base_config, tmp_path, PUBLIC_CLIENT)
    true_date = dt.date(2003, 1, 1)  # of 1XYZ987 (tests/server/conftest.py)
    guesses = [true_date - dt.timedelta(days=100 - i) for i in range(1, 150)]
    answered: list[int] = []
    refused: list[tuple[grpc.StatusCode, str, float | None]] = []
    try:
        with grpc.insecure_channel(srv.target) as ch:
            zone = _zone(ch)
            for guess in guesses:
                request = pb.CheckRequest(
                    plate="1XYZ987", zone=zone, date=DATE, first_registration=guess.isoformat()
                )
                try:
                    answered.append(stub(ch).Check(request).decision.outcome)
                except grpc.RpcError as err:
                    code, reason, _ = error_reason(err)
                    refused.append((code, reason, retry_after(err)))
    finally:
        srv.stop()
    assert answered == [pb.OUTCOME_COMBINATION_MISMATCH] * 35
    assert len(refused) == len(guesses) - 35
    assert {(c, r) for c, r, _ in refused} == {(grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")}
    assert all(d == pytest.approx(40.0) for _, _, d in refused)  # NOON is 20 s into its minute
    records = [r for _, r in read_records(base_config.audit_dir / "audit-w0.jsonl")]
    over = [r for r in records if r["status"] == "RESOURCE_EXHAUSTED"]
    assert len(over) == len(refused) and {r["organisation"] for r in over} == {"Stad Gent website"}
    state = list(base_config.state_path.iterdir())  # the counters hold organisations, no plate
    assert state and not any(b"1XYZ987" in f.read_bytes() for f in state)


def test_daily_quota_through_the_server_says_when_to_retry(
    base_config: ServerConfig, tmp_path: Path
) -> None:
    clients = PUBLIC_CLIENT.replace('"public"', '"desk"') + "checks_per_day = 2\n"
    srv = _server_with(base_config, tmp_path, clients)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            zone = _zone(ch)
            req = pb.CheckRequest(plate="1ABC234", zone=zone, date=DATE)
            stub(ch).Check(req)
            stub(ch).Check(req)
            with pytest.raises(grpc.RpcError) as exc:
                stub(ch).Check(req)
            code, reason, meta = error_reason(exc.value)
            assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
            assert (meta["quota"], meta["limit"]) == ("checks_per_day", "2")
            assert retry_after(exc.value) == pytest.approx(seconds_to_next_brussels_day(NOON))
            status = rpc_status.from_call(exc.value)  # type: ignore[arg-type]
            assert status is not None
            failure = [d for d in status.details if d.Is(error_details_pb2.QuotaFailure.DESCRIPTOR)]
            assert len(failure) == 1
    finally:
        srv.stop()


def test_pairs_per_day_through_a_stream(base_config: ServerConfig, tmp_path: Path) -> None:
    clients = PUBLIC_CLIENT.replace('"public"', '"enforcement"') + "pairs_per_day = 5\n"
    srv = _server_with(base_config, tmp_path, clients)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            zone = _zone(ch)
            three = chunk(["1ABC234"] * 3, [DAY] * 3, zone=zone)
            out = list(stub(ch).CheckStream(iter([three])))
            assert out[-1].summary.pairs == 3
            with pytest.raises(grpc.RpcError) as exc:
                list(stub(ch).CheckStream(iter([three])))
            assert error_reason(exc.value)[2]["quota"] == "pairs_per_day"
    finally:
        srv.stop()


def test_concurrent_streams_of_an_organisation(base_config: ServerConfig, tmp_path: Path) -> None:
    clients = PUBLIC_CLIENT.replace('"public"', '"enforcement"') + "concurrent_streams = 1\n"
    srv = _server_with(base_config, tmp_path, clients)
    try:
        with grpc.insecure_channel(srv.target) as ch:
            zone = _zone(ch)
            held = HeldStream(ch, zone, DAY)
            with pytest.raises(grpc.RpcError) as exc:
                list(stub(ch).CheckStream(iter([chunk(["1ABC234"], [DAY], zone=zone)])))
            _, reason, meta = error_reason(exc.value)
            assert (reason, meta["quota"]) == ("RATE_LIMITED", "concurrent_streams")
            assert held.end()[-1].summary.pairs == 1
            again = list(stub(ch).CheckStream(iter([chunk(["1ABC234"], [DAY], zone=zone)])))
            assert again[-1].summary.pairs == 1  # the slot came back when the stream ended
        assert srv.app.quotas is not None and srv.app.quotas.open_streams("Stad Gent website") == 0
    finally:
        srv.stop()
    # a stream refused a slot asked nothing yet: load, not an attempt to audit (a synced write)
    records = [r for _, r in read_records(base_config.audit_dir / "audit-w0.jsonl")]
    closing = [r for r in records if r["rpc"] == "CheckStream" and r.get("part") != "chunk"]
    assert [r["status"] for r in closing] == ["OK", "OK"]


def test_processes_opening_a_new_quota_database_together_all_start(tmp_path: Path) -> None:
    """Workers (or replicas sharing a state directory) open the database at the same moment;
    switching a new one to WAL mode must not fail one of them with "database is locked"."""
    code = (
        "import sys, time; from pathlib import Path; from server.quotas import QuotaStore\n"
        "time.sleep(float(sys.argv[2]) - time.time())\n"
        "QuotaStore(Path(sys.argv[1])).close()\n"
    )
    for attempt in range(3):  # new databases each time: the race is at creation
        state = tmp_path / f"state-{attempt}"
        start = str(time.time() + 1.0)
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(state), start], stderr=subprocess.PIPE, text=True
            )
            for _ in range(4)
        ]
        ended = [(p.communicate(timeout=60)[1], p.returncode) for p in procs]
        assert [err for err, code in ended if code != 0] == []
