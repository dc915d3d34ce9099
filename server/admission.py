"""Overload shedding in one worker: caps on the work in flight, refused at once, never queued.

Each worker counts what it is doing right now and refuses (`Overloaded`, RESOURCE_EXHAUSTED
with a RetryInfo of about a second) work that would pass a cap, before doing anything for it:

- **streams**: CheckStreams being served by this worker (`max_streams_per_worker`) and of one
  organisation (`max_org_streams_per_worker`), so one organisation never holds every slot;
- **pairs in flight**: pairs received and not yet decided (a stream's chunk from its
  admission to its answer; a recheck's items and a single check until their answer is built,
  before the flush of their audit record, which holds no store and little memory) in the worker
  (`max_pairs_in_flight`) and of one organisation (`max_org_pairs_in_flight`);
- **calls in flight** of one organisation, of every kind (`max_org_calls_in_flight`), below
  gRPC's own per-worker limit (`max_concurrent_rpcs`), so one organisation's calls cannot fill
  it and starve the others;
- **idle streams**: a CheckStream that sends nothing for `stream_idle_timeout_s` is ended
  (`idle_limited`, `StreamIdle`), so streams held open and unused do not keep their slots.

Memory stays bounded: a worker holds at most `max_pairs_in_flight` pairs of work, and a stream
reads its next chunk only after answering the previous one. The counts live in memory, per
worker: they describe this process's load (a dead worker's load dies with it); quotas an
organisation buys are shared across workers in `server.quotas`. Used from the event loop thread
only, so the counts need no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from lez.errors import Overloaded, StreamIdle
from server.config import ServerConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class Caps:
    """The caps of one worker (from `ServerConfig`)."""

    streams: int
    org_streams: int
    org_calls: int
    pairs: int
    org_pairs: int

    @classmethod
    def of(cls, config: ServerConfig) -> Caps:
        return cls(
            streams=config.max_streams_per_worker,
            org_streams=config.max_org_streams_per_worker,
            org_calls=config.max_org_calls_in_flight,
            pairs=config.max_pairs_in_flight,
            org_pairs=config.max_org_pairs_in_flight,
        )


@dataclass(slots=True)
class Admission:
    """What one worker has in flight, and the door that refuses what would pass a cap."""

    caps: Caps
    streams: int = 0
    pairs: int = 0
    org_streams: Counter[str] = field(default_factory=Counter)
    org_calls: Counter[str] = field(default_factory=Counter)
    org_pairs: Counter[str] = field(default_factory=Counter)

    def enter_call(self, organisation: str) -> None:
        """Count a call of the organisation as started (`leave_call` when it ends)."""
        if self.org_calls[organisation] >= self.caps.org_calls:
            raise Overloaded(
                f"{organisation} has {self.caps.org_calls} calls in progress on this worker, "
                "its share; retry in a second",
                limit=self.caps.org_calls,
            )
        self.org_calls[organisation] += 1

    def leave_call(self, organisation: str) -> None:
        _decrement(self.org_calls, organisation, 1)

    @contextlib.contextmanager
    def stream(self, organisation: str) -> Iterator[None]:
        """One stream served for the body."""
        if self.streams >= self.caps.streams:
            raise Overloaded(
                f"this worker serves {self.caps.streams} streams, its most; retry in a second "
                "(a client spreading a batch over fewer streams is served at once)",
                limit=self.caps.streams,
            )
        if self.org_streams[organisation] >= self.caps.org_streams:
            raise Overloaded(
                f"{organisation} has {self.caps.org_streams} streams on this worker, its share; "
                "retry in a second",
                limit=self.caps.org_streams,
            )
        self.streams += 1
        self.org_streams[organisation] += 1
        try:
            yield
        finally:
            self.streams -= 1
            _decrement(self.org_streams, organisation, 1)

    def work(self, organisation: str, pairs: int) -> Work:
        """`pairs` pairs in flight for the body."""
        return Work(self, organisation, pairs)

    def _take_pairs(self, organisation: str, pairs: int) -> None:
        if self.pairs + pairs > self.caps.pairs:
            raise Overloaded(
                f"this worker has {self.pairs:,} pairs in flight and takes at most "
                f"{self.caps.pairs:,}; retry in a second",
                limit=self.caps.pairs,
            )
        if self.org_pairs[organisation] + pairs > self.caps.org_pairs:
            raise Overloaded(
                f"{organisation} has {self.org_pairs[organisation]:,} pairs in flight on this "
                f"worker and its share is {self.caps.org_pairs:,}; retry in a second",
                limit=self.caps.org_pairs,
            )
        self.pairs += pairs
        self.org_pairs[organisation] += pairs

    def _give_back_pairs(self, organisation: str, pairs: int) -> None:
        self.pairs -= pairs
        _decrement(self.org_pairs, organisation, pairs)

    @property
    def idle(self) -> bool:
        """Nothing in flight (tests check every slot comes back)."""
        return not (self.streams or self.pairs or +self.org_calls or +self.org_streams)


class Work:
    """`Admission.work`: the pairs counted in flight from the start of the `with` block to its
    end, however it ends (refused at the start with Overloaded when they would pass a cap). A
    class rather than a generator context manager, as every call enters one (`state.Lease`
    gives the cost of each)."""

    __slots__ = ("_admission", "_organisation", "_pairs")

    def __init__(self, admission: Admission, organisation: str, pairs: int) -> None:
        self._admission, self._organisation, self._pairs = admission, organisation, pairs

    def __enter__(self) -> None:
        self._admission._take_pairs(self._organisation, self._pairs)

    def __exit__(self, *exc: object) -> None:  # only after `__enter__` took them
        self._admission._give_back_pairs(self._organisation, self._pairs)


def _decrement(counts: Counter[str], key: str, by: int) -> None:
    """Lower a count; an organisation with nothing in flight leaves the map (bounded memory)."""
    left = counts[key] - by
    if left > 0:
        counts[key] = left
    else:
        del counts[key]


Item = TypeVar("Item")


async def idle_limited(requests: AsyncIterator[Item], timeout_s: float) -> AsyncIterator[Item]:
    """The messages of a request stream; `StreamIdle` when the next one takes longer than
    `timeout_s` to arrive (the first one included)."""
    iterator = aiter(requests)
    while True:
        try:
            # `asyncio.timeout` waits in this task (`wait_for` would wrap the read in a task of
            # its own, and a stopping server's cancel of this call would then be lost there
            # instead of reaching the request reader, which turns it into `ServerStopping`)
            async with asyncio.timeout(timeout_s):
                item = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise StreamIdle(
                f"the stream sent nothing for {timeout_s:g} s and was ended; open a stream when "
                "there are pairs to send"
            ) from None
        yield item
