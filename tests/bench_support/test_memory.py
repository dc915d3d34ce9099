"""The bench's memory sampler sees a child's own memory apart from what it maps from files."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench import memory

ALLOCATE = (
    "import sys, time\n"
    "block = bytearray(64 * 1024 * 1024)\n"  # 64 MiB, zeroed: anonymous and resident
    "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
    "time.sleep(30)\n"
)


def test_sampler_reports_a_childs_own_memory() -> None:
    child = subprocess.Popen([sys.executable, "-c", ALLOCATE], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        assert child.pid in memory.children(os.getpid())
        _, peaks = memory.sample_while(lambda: [child.pid], lambda: time.sleep(0.2))
        report = memory.worker_report(peaks, limit_mib=32.0)
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    assert peaks.samples >= 1
    assert report["max_own_mib"] >= 64.0
    assert report["workers"][0]["mapped_mib"] > 0  # the interpreter's own files
    assert report["within_limit"] is False  # 64 MiB is over a 32 MiB limit


def test_a_gone_process_reads_as_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert memory.rollup_kib(child.pid) == {}
