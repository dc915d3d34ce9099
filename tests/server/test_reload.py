"""Hot reload under load: a new build is picked up, calls in flight finish on their snapshot,
no call fails during the switch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from lez.api.v1 import access_pb2 as pb
from lez.keys import PlateKeyer
from tests.server.conftest import DAY, ServerThread, build_store
from tests.server.helpers import chunk, stub


def test_reload_under_load_without_failures(
    server: ServerThread, channel: grpc.Channel, store_root: Path, keyer: PlateKeyer
) -> None:
    s = stub(channel)
    zone = s.ServerInfo(pb.ServerInfoRequest()).zones[0].name
    first = s.ServerInfo(pb.ServerInfoRequest()).snapshot_id
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                got = s.Check(pb.CheckRequest(plate="1ABC234", zone=zone, date="2025-06-02"))
                seen.add(got.snapshot_id)
                if got.decision.outcome != pb.OUTCOME_ALLOWED:
                    failures.append(f"outcome {got.decision.outcome}")
            except grpc.RpcError as exc:
                failures.append(str(exc.code()))  # type: ignore[attr-defined]

    def slow_stream() -> Iterator[pb.CheckChunk]:
        for i in range(6):
            yield chunk(["1ABC234", "1XYZ987"], [DAY, DAY], zone=zone if i == 0 else "")
            time.sleep(0.1)

    long_call: list[pb.DecisionChunk] = []
    streamer = threading.Thread(target=lambda: long_call.extend(s.CheckStream(slow_stream())))
    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in (*threads, streamer):
        t.start()
    time.sleep(0.15)
    for _ in range(3):
        build_store(store_root, keyer)
        time.sleep(0.25)
    # keep the load on until the last build is being served and a call has seen it
    newest = (store_root / "current").resolve().name
    deadline = time.monotonic() + 10
    while newest not in seen and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in (*threads, streamer):
        t.join(timeout=30)
    assert failures == []
    last = s.ServerInfo(pb.ServerInfoRequest()).snapshot_id
    assert last != first and {first, last} <= seen
    # The stream started before the switches and finished on its own snapshot.
    assert len(long_call) == 7
    assert {m.snapshot_id for m in long_call} == {first}
    assert server.app.holder is not None and server.app.holder.reloads >= 4


def test_the_watch_outlives_a_failed_look(
    store_root: Path, keyer: PlateKeyer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look for a new build that fails with an error the switch does not expect (py-lmdb's
    errors are not OSErrors; a build can be removed while it is opened) must not end the
    watch: the worker would serve its old build forever."""
    import asyncio

    from server import state

    build_store(store_root, keyer)
    holder = state.StoreHolder(store_root, key_id=keyer.key_id, warm=False)
    assert holder.load()
    first = holder.current
    assert first is not None
    real = state.open_served_snapshot
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> state.ServedSnapshot:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the build went away while it was opened")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(state, "open_served_snapshot", flaky)
    build_store(store_root, keyer)

    async def watch_until_switched() -> None:
        task = asyncio.create_task(holder.watch(0.01))
        deadline = time.monotonic() + 10
        while holder.current is first and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()

    try:
        asyncio.run(watch_until_switched())
        assert calls["n"] >= 2 and holder.current is not first
    finally:
        holder.close()
