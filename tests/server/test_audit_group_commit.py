"""Group commit: one fdatasync makes every record written before it durable, so calls waiting
together share a flush, and none returns before its own record is on disk."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from server.audit import AuditLog, KeyBatch
from tests.server.test_audit import KEYS


def _append(log: AuditLog, i: int) -> int:
    keys = KeyBatch()
    keys.add(bytes([i % 256]) * 16)
    return log.append(
        rpc="Check", identity="dev", organisation="org", roles=["desk"], zone="Gent",
        ruleset_revision="r1", snapshot_id="s1", pairs=1, outcomes={"ALLOWED": 1}, keys=keys,
    ).seq  # fmt: skip


def _past_first_checkpoint(log: AuditLog) -> int:
    """Write one record and wait until the checkpoint thread has signed it; returns its seq. A
    log checkpoints its first record at once, with a flush of its own that would otherwise land
    among the flushes of the calls a test counts."""
    seq = _append(log, 255)
    deadline = time.monotonic() + 30
    while not log.checkpoints or log._checkpoint_due.is_set():
        assert time.monotonic() < deadline, "the first record was never checkpointed"
        time.sleep(0.005)
    return seq


def _count_syncs(monkeypatch: pytest.MonkeyPatch, log: AuditLog) -> list[int]:
    """Every fdatasync of the log's file, as the highest seq written when it started."""
    real = os.fdatasync
    seen: list[int] = []

    def fdatasync(fd: int) -> None:
        if fd == log._fd:
            seen.append(log._seq)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return seen


def test_threads_waiting_on_a_flush_share_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path, keys=KEYS)
    before = _past_first_checkpoint(log)
    real = os.fdatasync
    in_first, release = threading.Event(), threading.Event()
    syncs: list[int] = []

    def fdatasync(fd: int) -> None:
        if fd == log._fd:
            syncs.append(log._seq)
            if len(syncs) == 1:  # the first flush is slow: the others pile up behind it
                in_first.set()
                release.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    durable: list[int] = []

    def call(i: int) -> None:
        seq = _append(log, i)
        log.sync_through(seq)
        assert log._synced >= seq  # never back before its own record is on disk
        durable.append(seq)

    first = threading.Thread(target=call, args=(0,))
    first.start()
    assert in_first.wait(30)
    others = [threading.Thread(target=call, args=(i,)) for i in range(1, 8)]
    for t in others:
        t.start()
    while log._seq < before + 8:  # all written, waiting on the first flush
        threading.Event().wait(0.01)
    assert durable == []
    release.set()
    for t in [first, *others]:
        t.join(30)
    monkeypatch.undo()
    log.close()
    assert sorted(durable) == list(range(before + 1, before + 9))
    # the second flush carried the seven records that waited
    assert syncs == [before + 1, before + 8]


def test_calls_ready_together_in_an_event_loop_share_one_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(tmp_path, keys=KEYS)
    before = _past_first_checkpoint(log)
    syncs = _count_syncs(monkeypatch, log)

    async def call(i: int) -> int:
        seq = _append(log, i)
        await log.durable(seq)
        assert log._synced >= seq
        return seq

    async def main() -> list[int]:
        return list(await asyncio.gather(*(call(i) for i in range(10))))

    assert sorted(asyncio.run(main())) == list(range(before + 1, before + 11))
    monkeypatch.undo()
    log.close()
    assert syncs == [before + 10]
