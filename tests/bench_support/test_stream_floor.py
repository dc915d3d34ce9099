"""The stream floor answers a batch as the service shapes its answers, so the client takes it as
it takes the service's, and the floor's time is the transport's alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.stream import free_port
from clients import LezClient
from clients.errors import ServerUnavailable

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_floor_answers_every_pair_of_a_batch_and_names_its_workers() -> None:
    """Every pair answered in input order with a summary, and each process says which of the 2
    it is (the client spreads its batch connections by that)."""
    port = free_port()
    floor = subprocess.Popen(
        [sys.executable, "-m", "bench.stream_floor", "--port", str(port), "--workers", "2"],
        cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    try:
        with LezClient([f"127.0.0.1:{port}"], chunk_size=1000, connections=2) as client:
            client.wait_until_serving(timeout=60)
            reads = [(f"1-ABC-{i % 1000:03d}", "BE", "2026-10-20") for i in range(4500)]
            result = client.check_batch(reads, zone="Antwerpen")
            answers = [client.server_info() for _ in range(8)]
    finally:
        os.killpg(floor.pid, signal.SIGTERM)
        floor.wait(timeout=30)
    assert result.summary.pairs == 4500 and result.summary.chunks == 5
    assert len(result.outcome) == 4500 and not np.any(result.outcome)
    assert {(info.worker, info.workers) for info in answers} <= {(0, 2), (1, 2)}


@pytest.mark.slow
def test_the_tls_floor_serves_a_certified_client_and_refuses_one_without(tmp_path: Path) -> None:
    """With `--tls` the floor asks for a client certificate as `lez-server --tls-*` does, so
    its time is the transport's with the service's TLS set-up."""
    from bench.audit_bench import floor_server

    with floor_server(tmp_path, tls=True) as settings:
        servers = settings["servers"]
        certified = {k: v for k, v in settings.items() if k not in ("servers", "pid")}
        with LezClient(servers, chunk_size=1000, connections=2, **certified) as client:
            result = client.check_batch([("1-ABC-123", "BE", "2026-10-20")] * 2500, zone="Z")
        assert result.summary.pairs == 2500 and len(result.outcome) == 2500
        anonymous = LezClient(servers, ca=certified["ca"], timeout_s=5)
        with anonymous, pytest.raises(ServerUnavailable):  # the handshake fails: no certificate
            anonymous.server_info()


def test_the_tls_floor_figure_is_the_floor_difference_added_to_the_service() -> None:
    from bench.audit_bench import _tls_floor

    got = _tls_floor(
        {"floor_plain": [0.050, 0.060, 0.070], "floor_tls": [0.065, 0.070, 0.080],
         "plain_no_audit": [0.140, 0.150, 0.160]}
    )  # fmt: skip
    assert got == {"seconds": 0.01, "ratio": 1.167, "service_ratio_if_only_tls": 1.067}


@pytest.mark.slow
def test_the_audited_floor_records_every_chunk_and_each_stream_s_end(tmp_path: Path) -> None:
    """With `--audit` the floor writes, through the service's audit log, one record per chunk
    holding the chunk's keys (16 bytes a pair) and each pair's outcome, and one closing record
    per stream, in files that verify: the work the audit promise asks of a stream."""
    from bench.audit_bench import floor_server
    from server.audit import decode_pair_outcomes, read_records
    from server.audit_keys import load_audit_keys
    from server.audit_verify import verify_file

    with (
        floor_server(tmp_path, tls=False, audit=True) as settings,
        LezClient(settings["servers"], chunk_size=1000, connections=2) as client,
    ):
        client.wait_until_serving(timeout=60)
        result = client.check_batch([("1-ABC-123", "BE", "2026-10-20")] * 4500, zone="Z")
    assert result.summary.pairs == 4500
    audit = tmp_path / "audit"
    keys = load_audit_keys(audit / "audit.key")
    files = sorted(audit.glob("audit-w*.jsonl"))
    assert files and all(verify_file(path, keys).intact for path in files)
    records = [rec for path in files for _, rec in read_records(path)]
    chunks = [r for r in records if r.get("part") == "chunk"]
    ends = [r for r in records if r.get("part") == "end"]
    assert sum(r["pairs"] for r in chunks) == 4500 and len(chunks) == result.summary.chunks
    assert all(r["keys_count"] == r["pairs"] for r in chunks)
    assert all(len(decode_pair_outcomes(r["pair_outcomes"])) == r["pairs"] for r in chunks)
    by_stream = {e["stream"]: e["pairs"] for e in ends}
    assert sum(by_stream.values()) == 4500
    for stream, pairs in by_stream.items():
        assert sum(r["pairs"] for r in chunks if r["stream"] == stream) == pairs


def test_the_promises_floor_is_the_floor_difference_added_to_the_service() -> None:
    from bench.audit_bench import _promises_floor

    got = _promises_floor(
        {"floor_plain": [0.050, 0.060, 0.070], "floor_tls_audit": [0.075, 0.080, 0.090],
         "plain_no_audit": [0.140, 0.150, 0.160], "tls_audit": [0.160, 0.172, 0.180]}
    )  # fmt: skip
    assert got == {
        "seconds": 0.02, "ratio": 1.333, "service_ratio_if_only_promises": 1.133,
        "service_beyond_promises_s": 0.002,
    }  # fmt: skip


def test_the_processor_time_parts_are_differences_of_the_medians() -> None:
    from bench.audit_bench import _processor_time

    cpu = {
        "plain_no_audit": [0.250, 0.260, 0.270], "plain_audit": [0.280, 0.275, 0.290],
        "tls_audit": [0.300, 0.310, 0.305], "floor_plain": [0.1, 0.1, 0.1],
    }  # fmt: skip
    times = {"plain_no_audit": [0.13, 0.14, 0.15]}
    got = _processor_time(times, cpu)
    assert got["cpu_ms"]["plain_no_audit"] == 260.0 and got["cores_busy_plain"] == 1.86
    assert (got["audit_cpu_ms"], got["tls_cpu_ms"], got["cpu_ratio"]) == (20.0, 25.0, 1.173)


def test_a_process_tree_s_cpu_counts_every_thread() -> None:
    """A thread that computed and ended is counted in its process's processor time, to well
    under a clock tick (the process's CPU-time clock, not the 10 ms ticks of /proc stat)."""
    import threading

    from bench.process_cpu import tree_cpu_seconds

    before = tree_cpu_seconds(os.getpid())
    spent: list[float] = []

    def work() -> None:
        import time

        start = time.thread_time()
        while time.thread_time() - start < 0.05:
            pass
        spent.append(time.thread_time() - start)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert tree_cpu_seconds(os.getpid()) - before >= spent[0] * 0.9


def test_the_floor_s_serving_options_are_refused_with_measure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.stream_floor import main

    with pytest.raises(SystemExit) as refused:
        main(["--measure", "--audit", "somewhere"])
    assert refused.value.code == 2 and "with --port" in capsys.readouterr().err


@pytest.mark.slow
def test_the_audited_unary_floor_records_each_call_before_answering_it(tmp_path: Path) -> None:
    """`bench.unary_floor --mode audit` writes, through the service's audit log, one record per
    call with one key, the shape of the service's single-check record, in a file that verifies:
    the unary ladder's measure of what the audit promise alone costs a call."""
    from bench.unary_floor import FloorServer
    from server.audit import read_records
    from server.audit_keys import load_audit_keys
    from server.audit_verify import verify_file

    with FloorServer("audit", tmp_path) as floor, LezClient([floor.address]) as client:
        answers = [client.check("1-ABC-123", zone="Antwerpen", day="2026-10-20") for _ in range(7)]
    assert all(a.outcome == "ALLOWED" for a in answers)
    keys = load_audit_keys(tmp_path / "audit.key")
    (path,) = sorted((tmp_path / "audit").glob("audit-w*.jsonl"))
    assert verify_file(path, keys).intact
    records = [rec for _, rec in read_records(path)]
    assert len(records) == 7
    assert all(
        r["rpc"] == "Check" and r["keys_count"] == 1 and len(r["keys"]) == 1 for r in records
    )
    assert len({r["request_id"] for r in records}) == 7


def test_a_bench_server_starts_on_an_audit_directory_emptied_of_earlier_runs(
    tmp_path: Path,
) -> None:
    """Bench runs left their servers' audit records behind, gigabytes a run, until the disk was
    full: each bench server's audit directory starts empty."""
    from bench.stream import fresh_audit_dir

    audit = tmp_path / "audit"
    (audit / "rotated").mkdir(parents=True)
    (audit / "audit-w0.jsonl").write_text("{}\n")
    (audit / "rotated" / "audit-w0.1.jsonl").write_text("{}\n")
    assert fresh_audit_dir(audit) == audit
    assert not audit.exists()
    assert fresh_audit_dir(tmp_path / "never-made") == tmp_path / "never-made"
