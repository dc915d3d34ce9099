"""`server.affinity`: a worker's main thread pinned to one core, the threads it starts inherit
it, and `run_anywhere` gives a thread every core back. Each case runs on a thread of its own,
so the test process itself is never pinned."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from server import affinity

T = TypeVar("T")


def _on_a_thread(work: Callable[[], T]) -> T:
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    thread.join()
    return results[0]


@pytest.fixture(autouse=True)
def _unpinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(affinity, "_ANYWHERE", None)


def test_a_worker_is_pinned_to_its_core_and_its_helpers_run_anywhere() -> None:
    allowed = os.sched_getaffinity(0)
    cores = sorted(allowed)

    def worker(index: int) -> tuple[int | None, set[int], set[int], set[int]]:
        core = affinity.pin_worker(index)
        mine = os.sched_getaffinity(0)
        inherited = _on_a_thread(lambda: os.sched_getaffinity(0))
        with ThreadPoolExecutor(1, initializer=affinity.run_anywhere) as helpers:
            helper = helpers.submit(os.sched_getaffinity, 0).result()
        return core, mine, inherited, helper

    for index in range(3):
        core, mine, inherited, helper = _on_a_thread(lambda i=index: worker(i))  # type: ignore[misc]
        if len(cores) < 2:  # nothing to pin on one core
            assert core is None and mine == inherited == helper == allowed
            continue
        assert core == cores[index % len(cores)]
        assert mine == inherited == {core}
        assert helper == allowed
    assert os.sched_getaffinity(0) == allowed  # the test's own thread untouched


def test_run_anywhere_leaves_an_unpinned_process_alone() -> None:
    allowed = os.sched_getaffinity(0)
    assert _on_a_thread(lambda: (affinity.run_anywhere(), os.sched_getaffinity(0))[1]) == allowed


def test_a_refused_pin_leaves_the_worker_serving_unpinned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    allowed = os.sched_getaffinity(0)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})

    def refuse(_pid: int, _cores: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    with caplog.at_level("WARNING", logger="lez.server"):
        assert affinity.pin_worker(1) is None
    assert affinity._ANYWHERE is None  # helpers left alone
    assert "worker 1: not pinned to core 1" in caplog.text
    monkeypatch.undo()
    assert os.sched_getaffinity(0) == allowed
