"""Group commit: one fdatasync makes every record written before it durable, so calls waiting
together share a flush, and none returns before its own record is on disk."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.days import format_day
from server.audit import AuditLog, KeyBatch
from server.config import ServerConfig
from tests.server.conftest import DAY, VEHICLES, ServerThread
from tests.server.helpers import stub
from tests.server.test_audit import KEYS

DATE = format_day(DAY)


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


def _spy_flushes(monkeypatch: pytest.MonkeyPatch, log: AuditLog) -> list[tuple[int, str]]:
    """Every fdatasync of the log's file: the highest seq written when it started, and the name
    of the thread that made it."""
    real = os.fdatasync
    seen: list[tuple[int, str]] = []

    def fdatasync(fd: int) -> None:
        if fd == log._fd:
            seen.append((log._seq, threading.current_thread().name))
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
    flushes = _spy_flushes(monkeypatch, log)

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
    assert [seq for seq, _ in flushes] == [before + 10]


def test_a_lone_call_flushes_on_the_loop_and_overlapping_calls_on_the_flusher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call with no other in progress flushes in place (no hand-off to a thread and back);
    calls that overlap, or that the caller says are not alone, flush on the flusher thread,
    so the loop can take more calls meanwhile. Each returns only once its record is on disk."""
    log = AuditLog(tmp_path, keys=KEYS)
    _past_first_checkpoint(log)
    flushes = _spy_flushes(monkeypatch, log)

    async def call(i: int, alone: bool) -> None:
        seq = _append(log, i)
        await log.durable(seq, alone=lambda: alone)
        assert log._synced >= seq

    async def main() -> str:
        await call(0, alone=True)
        await call(1, alone=True)
        await call(2, alone=False)  # another call is in progress elsewhere in the process
        await asyncio.gather(*(call(i, alone=False) for i in range(3, 6)))  # overlapping
        first = _append(log, 6)
        _append(log, 7)  # written after `first`: its flush will carry both
        await log.durable(first, alone=lambda: True)
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    monkeypatch.undo()
    log.close()
    threads = [name for _, name in flushes]
    assert threads[:2] == [loop_thread, loop_thread]
    assert len(threads) <= 5  # the three overlapping calls shared one flush
    assert threads[2:] and all(name.startswith("audit-flush") for name in threads[2:])


def test_a_sequential_callers_checks_each_flush_once_on_the_loop_thread(
    server: ServerThread, channel: grpc.Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Check with no other call in progress flushes its record in place, once, before its
    answer (and a later Check finds it on disk, as the audit's own tests check)."""
    audit = server.app.audit
    assert isinstance(audit, AuditLog)
    stub(channel).Check(pb.CheckRequest(plate=VEHICLES[0].plate, zone="1", date=DATE))
    deadline = time.monotonic() + 30
    while audit._checkpoint_due.is_set():  # the first record's checkpoint flushes on its own
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.05)
    flushes = _spy_flushes(monkeypatch, audit)
    for i in range(6):
        plate = VEHICLES[i % len(VEHICLES)].plate
        stub(channel).Check(pb.CheckRequest(plate=plate, zone="1", date=DATE))
    monkeypatch.undo()
    assert [name for _, name in flushes] == [server.thread.name] * 6


def test_concurrent_checks_share_flushes_in_the_server(
    base_config: ServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls that arrive while a flush holds the event loop are counted as they are accepted,
    before any of them runs, so none of them takes itself to be alone: their flushes run on
    the flusher thread and are shared. The flush is slowed so that calls pile up behind it,
    as on a loaded server."""
    real = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        time.sleep(0.01)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    s = ServerThread(base_config)
    try:
        with grpc.insecure_channel(s.target) as channel:
            stub(channel).Check(pb.CheckRequest(plate=VEHICLES[0].plate, zone="1", date=DATE))
            time.sleep(0.2)  # the first record's checkpoint flushes on its own
            assert isinstance(s.app.audit, AuditLog)
            flushes = _spy_flushes(monkeypatch, s.app.audit)
            with ThreadPoolExecutor(12) as pool:
                answers = list(
                    pool.map(
                        lambda i: stub(channel).Check(
                            pb.CheckRequest(
                                plate=VEHICLES[i % len(VEHICLES)].plate, zone="1", date=DATE
                            )
                        ),
                        range(48),
                    )
                )
    finally:
        s.stop()
    assert len(answers) == 48
    assert len(flushes) < 48 / 2
