"""Faults against the audit: a worker SIGKILLed in the middle of a CheckStream, and a supervisor
SIGKILLed under load. Afterwards every answered pair and every answered call has its record,
and every audit file verifies (multi-process: slow)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer
from server.__main__ import main
from server.audit import read_series
from server.audit_find import find_consultations, plate_key
from server.audit_key_log import named_keys
from server.config import ServerConfig
from tests.server.conftest import DAY, build_store
from tests.server.helpers import chunk, outcomes, stub
from tests.server.test_workers import _wait_serving
from tests.server.test_workers_guards import _env, _gone, _serve_args
from tests.support.net import free_port

pytestmark = pytest.mark.slow

STREAM_PLATES = 300  # pairs a chunk
FILLER = 2_000  # plates in the store besides the test vehicles


@pytest.fixture
def big_config(tmp_path: Path, keyer: PlateKeyer, base_config: ServerConfig) -> ServerConfig:
    root = tmp_path / "big-store"
    build_store(root, keyer, extra_plates=FILLER)
    return replace(base_config, store_root=root)


def _chunks(zone: str, count: int, hold: threading.Event | None = None) -> Iterator[pb.CheckChunk]:
    """`count` chunks of distinct filler plates, then (with `hold`) the stream stays open."""
    for c in range(count):
        plates = [f"X{(c * STREAM_PLATES + i) % FILLER:07d}" for i in range(STREAM_PLATES)]
        yield chunk(plates, [DAY] * STREAM_PLATES, zone=zone, chunk_id=c)
    if hold is not None:
        hold.wait(60)


def _start(config: ServerConfig, log: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    target = f"127.0.0.1:{free_port()}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _serve_args(config, target, "--workers", "2", "--log-level", "INFO", *extra),
            env=_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    _wait_serving(target, timeout=60)
    return proc, target


def _worker_pid(log: Path, index: int) -> int:
    """The pid of worker `index`, from the supervisor's log (its latest start)."""
    started = re.findall(rf"worker {index} started \(pid (\d+)\)", log.read_text())
    assert started, log.read_text()
    return int(started[-1])


def _verify_all(config: ServerConfig, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = main(
        ["verify-audit", str(config.audit_dir), "--audit-key-file", str(config.audit_key_path)]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def _stream_records(config: ServerConfig, worker: int) -> dict[str, list[dict[str, Any]]]:
    """Stream id -> its records, in order, from one worker's series."""
    streams: dict[str, list[dict[str, Any]]] = {}
    for _, rec in read_series(config.audit_dir, f"audit-w{worker}"):
        if rec["rpc"] == "CheckStream":
            streams.setdefault(str(rec["stream"]), []).append(rec)
    return streams


def _keys_of(config: ServerConfig, rec: dict[str, Any]) -> bytes:
    if "keys_file" in rec:
        return named_keys(config.audit_dir, rec)
    return b"".join(bytes.fromhex(k) for k in rec["keys"])


def test_a_worker_killed_mid_stream_loses_no_answered_pair(
    big_config: ServerConfig, keyer: PlateKeyer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "server.log"
    proc, target = _start(big_config, log)
    answered: list[pb.DecisionChunk] = []
    hold = threading.Event()
    try:
        with grpc.insecure_channel(target) as ch:
            info = stub(ch).ServerInfo(pb.ServerInfoRequest())
            worker, zone = info.worker, info.zones[0].name
            victim = _worker_pid(log, worker)
            with pytest.raises(grpc.RpcError):  # the stream dies with its worker
                for answer in stub(ch).CheckStream(_chunks(zone, 8, hold)):
                    answered.append(answer)
                    if len(answered) == 5:  # mid-stream: answers out, more chunks coming
                        os.kill(victim, signal.SIGKILL)
        hold.set()
        deadline = time.monotonic() + 30  # the supervisor restarts the worker
        while _worker_pid(log, worker) == victim and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _worker_pid(log, worker) != victim
        # the restarted worker reopened the series (a torn record is dropped then) and signed
        # a checkpoint of it: the answered chunks' records are covered
        checkpoints = big_config.audit_dir / "checkpoints" / f"audit-w{worker}.checkpoints.jsonl"
        while time.monotonic() < deadline and not (
            checkpoints.exists() and checkpoints.stat().st_size > 0
        ):
            time.sleep(0.1)
        _wait_serving(target)
    finally:
        hold.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert 5 <= len(answered) <= 8 and all(a.HasField("summary") is False for a in answered)
    (records,) = _stream_records(big_config, worker).values()
    chunks = [r for r in records if r["part"] == "chunk"]
    assert not [r for r in records if r["part"] == "end"]  # killed: no closing record
    assert len(chunks) >= len(answered)  # every answered chunk, maybe one more never sent
    for rec, answer, sent in zip(chunks, answered, _chunks(zone, 8), strict=False):
        assert rec["first_index"] == answer.first_index and rec["pairs"] == STREAM_PLATES
        plates = bytes(sent.plates.data).decode()
        expected = b"".join(
            plate_key(keyer, plates[i * 8 : i * 8 + 8]) for i in range(STREAM_PLATES)
        )
        assert _keys_of(big_config, rec) == expected  # each answered pair's key is on record
        assert rec["outcomes"] == {"ALLOWED": len(outcomes(answer))}
    out = _verify_all(big_config, capsys)
    assert f"audit-w{worker}.jsonl: intact" in out
    someone = bytes(next(_chunks(zone, 1)).plates.data)[:8].decode()
    found = find_consultations(big_config.audit_dir, plate_key(keyer, someone))
    assert found and found[0].ended == "no closing record (its worker stopped mid-stream)"


def test_a_supervisor_killed_under_load_loses_no_answered_call(
    big_config: ServerConfig, keyer: PlateKeyer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "server.log"
    proc, target = _start(big_config, log)
    workers = {_worker_pid(log, 0), _worker_pid(log, 1)}
    answered: Counter[str] = Counter()  # plate -> answered Check calls
    stream_answers: list[pb.DecisionChunk] = []
    stop, hold = threading.Event(), threading.Event()

    def checks(plate: str) -> None:
        with grpc.insecure_channel(target) as ch:
            zone = stub(ch).ServerInfo(pb.ServerInfoRequest()).zones[0].name
            while not stop.is_set():
                try:
                    stub(ch).Check(pb.CheckRequest(plate=plate, zone=zone, date="2025-06-02"))
                except grpc.RpcError:
                    return
                answered[plate] += 1

    def stream() -> None:
        with grpc.insecure_channel(target) as ch:
            zone = stub(ch).ServerInfo(pb.ServerInfoRequest()).zones[0].name
            try:
                for answer in stub(ch).CheckStream(_chunks(zone, 3, hold)):
                    stream_answers.append(answer)
            except grpc.RpcError:
                return

    plates = [f"X{i:07d}" for i in range(FILLER - 6, FILLER)]
    callers = [threading.Thread(target=checks, args=(p,)) for p in plates]
    callers.append(threading.Thread(target=stream))
    for t in callers:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while (sum(answered.values()) < 200 or len(stream_answers) < 3) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the supervisor only
        proc.wait()
        deadline = time.monotonic() + 30  # its workers stop gracefully (grace period 1 s)
        while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in workers), "workers outlived their supervisor"
    finally:
        stop.set()
        hold.set()
        for t in callers:
            t.join(timeout=30)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert sum(answered.values()) >= 200 and len(stream_answers) == 3
    for plate, calls in answered.items():
        found = find_consultations(big_config.audit_dir, plate_key(keyer, plate))
        checks_found = [c for c in found if c.rpc == "Check"]
        assert len(checks_found) >= calls, plate  # every answered call (one more not answered)
        assert len(checks_found) <= calls + 1
    streams = [recs for w in (0, 1) for recs in _stream_records(big_config, w).values()]
    (records,) = streams
    assert [r["part"] for r in records] == ["chunk"] * 3 + ["end"]
    assert records[-1]["status"] == "SHUTDOWN"  # cut by the grace period, and said so
    assert records[-1]["pairs"] == 3 * STREAM_PLATES
    _verify_all(big_config, capsys)
    assert sys.executable  # the workers were this interpreter's
