"""`lez-server serve` as an operator runs it, with `--log-format json` and `--metrics-address`:
the log is JSON lines that follow each call to its audit record, the endpoint aggregates the
workers, and SIGTERM with a stream open leaves no traceback in the log."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lez.api.v1 import access_pb2 as pb
from server.audit import read_records
from server.calls import REQUEST_ID_KEY
from server.config import ServerConfig
from tests.server.conftest import DAY, VEHICLES
from tests.server.helpers import chunk, stub
from tests.server.test_workers import _wait_serving, _worker_pids
from tests.support.net import free_port

PLATES = [v.plate for v in VEHICLES]


def _start(config: ServerConfig, log: Path, *extra: str) -> tuple[subprocess.Popen[str], str, int]:
    """The server with its log going to the file `log` (a pipe nobody reads while it runs
    would fill and block the server's log writes)."""
    port, metrics_port = free_port(), free_port()
    target = f"127.0.0.1:{port}"
    with log.open("w") as out:  # the child has its own copy of the descriptor
        proc = _popen(config, target, metrics_port, out, extra)
    try:
        _wait_serving(target)
    except BaseException:
        proc.kill()
        proc.wait()
        print(log.read_text())
        raise
    return proc, target, metrics_port


def _popen(
    config: ServerConfig, target: str, metrics_port: int, out: TextIO, extra: tuple[str, ...]
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return subprocess.Popen(
        [
            sys.executable, "-m", "server", "serve",
            "--address", target,
            "--store-root", str(config.store_root),
            "--key-file", str(config.key_file),
            "--audit-dir", str(config.audit_dir),
            "--warm-store", "0",
            "--grace-period-s", "0.5",
            "--log-format", "json",
            "--metrics-address", f"127.0.0.1:{metrics_port}",
            *extra,
        ],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def _samples(metrics_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _calls(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], rpc: str) -> float:
    return sum(v for (name, labels), v in samples.items() if name == "lez_calls_total"
               and dict(labels)["rpc"] == rpc)  # fmt: skip


def _samples_until(
    metrics_port: int, rpc: str, calls: int
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The endpoint's samples once they count `calls` calls of `rpc` (at most 10 s): a unary
    call's metrics follow its answer by a turn of the worker's loop (`server.status`)."""
    deadline = time.monotonic() + 10
    while True:
        samples = _samples(metrics_port)
        if _calls(samples, rpc) >= calls or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)


def _json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for raw in output.splitlines():
        if raw.startswith("lez-server listening on "):  # the one line for a person, stdout
            continue
        lines.append(json.loads(raw))  # every other line is one JSON object
    return lines


def test_json_log_follows_calls_to_the_audit_and_stops_quietly(
    base_config: ServerConfig, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    proc, target, metrics_port = _start(base_config, log)
    more: queue.Queue[pb.CheckChunk | None] = queue.Queue()

    def requests() -> Iterator[pb.CheckChunk]:
        yield chunk(PLATES[:2], [DAY] * 2, zone="Gent")
        while (item := more.get()) is not None:
            yield item

    try:
        with grpc.insecure_channel(target) as ch:
            _, check = stub(ch).Check.with_call(
                pb.CheckRequest(plate="1-abc-234", zone="Gent", date="2025-06-02")
            )
            stream = stub(ch).CheckStream(requests())
            next(stream)
            assert _calls(_samples_until(metrics_port, "Check", 1), "Check") == 1
            proc.send_signal(signal.SIGTERM)  # the stream is still open
            with pytest.raises(grpc.RpcError) as ended:
                list(stream)
            more.put(None)
        proc.wait(timeout=30)
    finally:
        more.put(None)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert "Traceback" not in output and "CancelledError" not in output
    assert proc.returncode == 0
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    lines = _json_lines(output)
    assert not [x for x in lines if x["level"] in ("ERROR", "CRITICAL")]
    calls = {x["request_id"]: x for x in lines if x.get("event") == "call"}
    records = {
        rec["request_id"]: rec for _, rec in read_records(base_config.audit_dir / "audit-w0.jsonl")
    }
    check_id = dict(check.trailing_metadata())[REQUEST_ID_KEY]
    stream_id = dict(stream.initial_metadata())[REQUEST_ID_KEY]
    assert calls[check_id]["audit_id"] == records[check_id]["hash"]
    assert calls[check_id]["code"] == "OK"
    assert calls[stream_id]["code"] == "UNAVAILABLE"
    assert calls[stream_id]["audit_id"] == records[stream_id]["hash"]
    assert records[stream_id]["pairs"] == 2
    for plate in [*PLATES, "1-abc-234"]:
        assert plate not in output


@pytest.mark.slow
def test_metrics_aggregate_the_workers_and_count_restarts(
    base_config: ServerConfig, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    proc, target, metrics_port = _start(
        base_config, log, "--workers", "2", "--restart-backoff-s", "0.1"
    )
    try:
        answered: dict[int, int] = {0: 0, 1: 0}
        deadline = time.monotonic() + 30
        while min(answered.values()) < 3:  # new connections until each worker answered thrice
            assert time.monotonic() < deadline, f"the calls did not reach both workers {answered}"
            options = (("grpc.use_local_subchannel_pool", 1),)
            with grpc.insecure_channel(target, options=options) as ch:
                info = stub(ch).ServerInfo(pb.ServerInfoRequest(), timeout=30)
                answered[info.worker] += 1
        total = sum(answered.values())
        samples = _samples_until(metrics_port, "ServerInfo", total)
        assert _calls(samples, "ServerInfo") == total  # both workers' calls, in one endpoint
        served = [labels for (name, labels), v in samples.items() if name == "lez_snapshot_info"]
        assert len(served) == 1  # both workers serve the one snapshot
        victim = sorted(_worker_pids(proc.pid))[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            samples = _samples(metrics_port)
            restarts = sum(
                v for (name, _), v in samples.items() if name == "lez_worker_restarts_total"
            )
            if restarts == 1:
                break
            assert time.monotonic() < deadline, "the restart was not counted"
            time.sleep(0.1)
        _wait_serving(target)
        # the dead worker's calls still count in the totals
        assert _calls(_samples(metrics_port), "ServerInfo") == total
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    output = log.read_text()
    assert proc.returncode == 0, output
    lines = _json_lines(output)
    where = [x["metrics_dir"] for x in lines if "metrics_dir" in x]
    assert len(where) == 1 and not Path(where[0]).exists(), output  # one directory per run, removed
