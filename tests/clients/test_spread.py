"""A batch's connections reach different worker processes: `crowded` picks the connections to
reopen, and both clients reopen them until the spread is as good as it gets."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import grpc
import pytest

from clients import AsyncLezClient, LezClient
from clients.core.spread import SPREAD_ATTEMPTS, crowded


@pytest.mark.parametrize(
    ("answered_by", "reopen"),
    [
        ([(0, 2), (0, 2), (0, 2), (0, 2)], [1, 2, 3]),  # all on one of two workers
        ([(0, 2), (1, 2), (0, 2), (1, 2)], []),  # both reached, evenly: good enough
        ([(0, 2), (1, 2), (0, 2), (0, 2)], [3]),  # both reached, 3:1: the third on 0 again
        ([(1, 2), (1, 2), (1, 2), (0, 2)], [2]),  # 3:1 the other way
        ([(0, 2), (1, 2), (0, 2)], []),  # 2:1 is as even as three connections get
        ([(0, 3), (1, 3), (2, 3), (0, 3), (0, 3)], [4]),  # at most two a worker of three
        ([(1, 4), (1, 4), (3, 4)], [1]),  # three of four reachable, two reached
        ([(2, 4), (0, 4)], []),  # two connections on two workers of four
        ([(0, 1), (0, 1)], []),  # one worker: nothing to gain
        ([(0, 0), (0, 0)], []),  # an older server that does not say
        ([], []),
    ],
)
def test_crowded(answered_by: list[tuple[int, int]], reopen: list[int]) -> None:
    assert crowded(answered_by) == reopen


class _Placement:
    """Pretends to be a 2-worker server whose kernel puts the first `crowd` connections on
    worker 0 and alternates after that; counts the connections it saw."""

    def __init__(self, crowd: int) -> None:
        self.crowd = crowd
        self.seen: dict[int, int] = {}
        self.alive: list[object] = []  # closed channels too, so that no id is reused
        self.order = itertools.count()
        self.asked = 0

    def worker_of(self, channel: object) -> tuple[int, int]:
        self.asked += 1
        key = id(channel)
        if key not in self.seen:
            self.alive.append(channel)
            n = next(self.order)
            self.seen[key] = 0 if n < self.crowd else n % 2
        return self.seen[key], 2


def test_sync_client_reopens_connections_that_share_a_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    placement = _Placement(crowd=5)  # the 4 first connections and the first reopened one
    monkeypatch.setattr(
        LezClient, "_workers_of", lambda self, chs: [placement.worker_of(ch) for ch in chs]
    )
    with LezClient(["127.0.0.1:9"]) as client:  # nothing listens: the probe is scripted
        channels = client._channels(4)
        # all 4 asked once; 1, 2 and 3 shared worker 0: reopened and asked again, once; that
        # left 3 on worker 0 and 1 on worker 1, so the third on worker 0 is reopened once more
        assert placement.asked == 4 + 3 + 1
        workers = [placement.worker_of(ch)[0] for ch in channels]
        assert sorted(workers) == [0, 0, 1, 1]
        asked = placement.asked
        assert client._channels(4) == channels  # spread once, not before every batch
        assert placement.asked == asked


def test_spreading_gives_up_after_bounded_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    placement = _Placement(crowd=10**6)  # the kernel never places one on worker 1
    monkeypatch.setattr(
        LezClient, "_workers_of", lambda self, chs: [placement.worker_of(ch) for ch in chs]
    )
    with LezClient(["127.0.0.1:9"]) as client:
        assert len(client._channels(2)) == 2
    # both asked once, then each round reopens and asks again the one crowded connection
    assert placement.asked == 2 + SPREAD_ATTEMPTS * 1
    assert len(placement.seen) == 2 + SPREAD_ATTEMPTS  # connections opened in all


def test_async_spreading_gives_up_after_bounded_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    placement = _Placement(crowd=10**6)

    async def worker_of(self: Any, ch: object) -> tuple[int, int]:
        return placement.worker_of(ch)

    monkeypatch.setattr(AsyncLezClient, "_worker_of", worker_of)

    async def go() -> int:
        async with AsyncLezClient(["127.0.0.1:9"]) as client:
            return len(await client._channels(3))

    assert asyncio.run(go()) == 3
    # all 3 asked once, then each round reopens and asks again the 2 crowded ones
    assert placement.asked == 3 + SPREAD_ATTEMPTS * 2
    assert len(placement.seen) == 3 + SPREAD_ATTEMPTS * 2  # connections opened in all


def test_spreading_is_skipped_when_server_info_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, chs: object) -> list[tuple[int, int]]:
        raise grpc.RpcError()

    monkeypatch.setattr(LezClient, "_workers_of", refuse)
    with LezClient(["127.0.0.1:9"]) as client:
        assert len(client._channels(3)) == 3


def test_async_client_reopens_connections_that_share_a_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    placement = _Placement(crowd=6)

    async def worker_of(self: Any, ch: object) -> tuple[int, int]:
        return placement.worker_of(ch)

    monkeypatch.setattr(AsyncLezClient, "_worker_of", worker_of)

    async def go() -> set[int]:
        async with AsyncLezClient(["127.0.0.1:9"]) as client:
            channels = await client._channels(3)
            return {placement.worker_of(ch)[0] for ch in channels}

    assert asyncio.run(go()) == {0, 1}
