"""`AsyncLezClient`: the asyncio Python client of AccessService (`grpc.aio`).

    async with AsyncLezClient(["127.0.0.1:50051"]) as client:
        d = await client.check("1-ABC-234", zone="Gent")
        result = await client.check_batch(pairs, zone="Antwerpen")
        async for part in client.stream_batch(rows, zone="Gent"): ...

Same behaviour as `LezClient` (retries, deadlines, round_robin, several connections per batch,
results aligned with the input), with tasks instead of threads. Channels are created on first
use inside the running event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.errors import (
    LezClientError,
    ProtocolError,
    ServerUnavailable,
    from_rpc_error,
)
from clients.packing import (
    BatchCollector,
    BatchResult,
    BatchSummary,
    Decision,
    InputOrder,
    Pairs,
    RecheckAnswer,
    RecheckItem,
    ResultChunk,
    summarise,
    unpack_chunk,
)
from clients.sync import check_request, fleet_request
from clients.transport import (
    SPREAD_ATTEMPTS,
    Backoff,
    ChannelPlan,
    ChunkSource,
    ClientSettings,
    Deadline,
    SentChunk,
    crowded,
)
from lez.api.v1 import access_pb2 as pb
from lez.api.v1 import access_pb2_grpc as pb_grpc

T = TypeVar("T")
Progress = Callable[[int], None]


class AsyncLezClient:
    """Asyncio client. Give server addresses (`host:port`) or a `ClientSettings`."""

    def __init__(
        self,
        servers: Sequence[str] | str | None = None,
        *,
        settings: ClientSettings | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = ClientSettings.resolve(servers, settings, **overrides)
        self._plan = ChannelPlan.of(self.settings)  # channels themselves: inside the event loop
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None  # the generated stub's types describe the sync API
        self._batch_channels: list[grpc.aio.Channel] = []
        self._spread_over = 1  # batch connections already spread over the workers
        # the server's max_chunk_pairs once ServerInfo answered (0: no limit); None: not asked
        self._max_chunk: int | None = None

    @property
    def stub(self) -> Any:
        if self._stub is None:
            self._channel = self._plan.open(aio=True)
            self._stub = pb_grpc.AccessServiceStub(self._channel)
        return self._stub

    async def close(self) -> None:
        for ch in self._batch_channels:
            await ch.close(None)
        self._batch_channels.clear()
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
            self._stub = None

    async def __aenter__(self) -> AsyncLezClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(
        self, method: Callable[..., Awaitable[T]], request: Any, timeout: float | None
    ) -> T:
        deadline = Deadline(self.settings.timeout_s if timeout is None else timeout)
        backoff: Backoff | None = None
        while True:
            try:
                return await method(request, timeout=deadline.remaining())
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                backoff = backoff or Backoff(self.settings)
                delay = backoff.next_delay(err)
                if delay is None or not deadline.allows(delay):
                    raise err from None
                await asyncio.sleep(delay)

    async def wait_until_serving(self, timeout: float = 30.0, poll_s: float = 0.1) -> None:
        """Wait until health says SERVING; raises ServerUnavailable."""
        _ = self.stub
        assert self._channel is not None
        stub = health_pb2_grpc.HealthStub(self._channel)
        end = time.monotonic() + timeout
        last: LezClientError | None = None
        while time.monotonic() < end:
            try:
                got = await stub.Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=poll_s * 10
                )
                if got.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = from_rpc_error(exc)
            await asyncio.sleep(poll_s)
        raise ServerUnavailable(
            f"the server did not report SERVING within {timeout:.0f} s"
            + (f" ({last.message})" if last else "")
        )

    async def check(
        self,
        plate: str | None = None,
        *,
        zone: str,
        day: dt.date | str | None = None,
        country: str = "BE",
        first_registration: dt.date | str | None = None,
        ruleset: str | None = None,
        key: bytes | None = None,
        key_id: str = "",
        timeout: float | None = None,
    ) -> Decision:
        """One plate (or key) on one day (default today, Europe/Brussels) in one zone."""
        request = check_request(
            plate,
            zone=zone,
            day=day,
            country=country,
            first_registration=first_registration,
            ruleset=ruleset,
            key=key,
            key_id=key_id,
        )
        resp: pb.CheckResponse = await self._call(self.stub.Check, request, timeout)
        return Decision.from_pb(
            resp.decision,
            snapshot_id=resp.snapshot_id,
            revision=resp.ruleset_revision,
            zone=resp.zone,
            date=resp.date,
        )

    async def recheck(
        self, items: Iterable[RecheckItem], *, key_id: str = "", timeout: float | None = None
    ) -> RecheckAnswer:
        """Re-evaluate earlier decisions on the current snapshot (appeals)."""
        request = pb.RecheckRequest(decisions=[i.to_pb() for i in items], key_id=key_id)
        return RecheckAnswer.from_pb(await self._call(self.stub.Recheck, request, timeout))

    async def server_info(self, *, timeout: float | None = None) -> pb.ServerInfoResponse:
        """Snapshot, revisions, zones, code lists, and this client's identity and limits."""
        info: pb.ServerInfoResponse = await self._call(
            self.stub.ServerInfo, pb.ServerInfoRequest(), timeout
        )
        self._max_chunk = int(info.client.max_chunk_pairs)
        return info

    async def fleet_stats(
        self,
        group_by: Sequence[str],
        *,
        day: dt.date | str | None = None,
        nis: Sequence[int] = (),
        timeout: float | None = None,
    ) -> pb.FleetStatsResponse:
        """Fleet composition by `nis`, `fuel`, `euro` and/or `category` on a day."""
        request = fleet_request(group_by, day=day, nis=nis)
        return await self._call(self.stub.FleetStats, request, timeout)

    async def chunk_size(self) -> int:
        if self.settings.chunk_size is not None:
            return self.settings.chunk_size
        if self._max_chunk is None:
            await self.server_info()
        limit = self._max_chunk or self.settings.default_chunk_pairs
        return min(self.settings.default_chunk_pairs, limit)

    async def _channels(self, n: int) -> list[grpc.aio.Channel]:
        while len(self._batch_channels) < n:
            self._batch_channels.append(self._plan.open(batch=True, aio=True))
        if n > self._spread_over and len(self.settings.servers) == 1:
            self._spread_over = n
            await self._spread(n)
        return self._batch_channels[:n]

    async def _spread(self, n: int) -> None:
        """Reopen batch connections that share a worker process (see `transport.crowded`):
        ask every connection once, then only the reopened ones, for SPREAD_ATTEMPTS rounds."""
        channels = self._batch_channels
        try:
            answered_by = [await self._worker_of(ch) for ch in channels[:n]]
            for _ in range(SPREAD_ATTEMPTS):
                redo = crowded(answered_by)
                if not redo:
                    return
                for i in redo:
                    await channels[i].close(None)
                    channels[i] = self._plan.open(batch=True, aio=True)
                    answered_by[i] = await self._worker_of(channels[i])
        except grpc.RpcError:
            return  # best effort: an older server, or no ServerInfo for this role

    async def _worker_of(self, channel: grpc.aio.Channel) -> tuple[int, int]:
        stub: Any = pb_grpc.AccessServiceStub(channel)
        info = await stub.ServerInfo(pb.ServerInfoRequest(), timeout=self.settings.timeout_s)
        return int(info.worker), int(info.workers)

    async def _run(
        self,
        pairs: Pairs | Iterable[Sequence[object]],
        zone: str,
        ruleset: str | None,
        chunk_size: int | None,
        connections: int | None,
        timeout: float | None,
        progress: Progress | None,
    ) -> _AsyncBatchRun:
        size = chunk_size or await self.chunk_size()
        return _AsyncBatchRun(self, pairs, zone, ruleset, size, connections, timeout, progress)

    async def stream_batch(
        self,
        pairs: Pairs | Iterable[Sequence[object]],
        *,
        zone: str,
        ruleset: str | None = None,
        chunk_size: int | None = None,
        connections: int | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
    ) -> AsyncIterator[ResultChunk]:
        """Decide a batch, yielding result chunks in input order."""
        run = await self._run(pairs, zone, ruleset, chunk_size, connections, timeout, progress)
        order = InputOrder()
        async for part in run.unordered():
            for ready in order.add(part):
                yield ready

    async def check_batch(
        self,
        pairs: Pairs | Iterable[Sequence[object]],
        *,
        zone: str,
        ruleset: str | None = None,
        chunk_size: int | None = None,
        connections: int | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
    ) -> BatchResult:
        """Decide a batch; the result's columns are aligned with the input rows."""
        run = await self._run(pairs, zone, ruleset, chunk_size, connections, timeout, progress)
        collector = BatchCollector()
        async for part in run.unordered():
            collector.add(part)
        return collector.result(run.summary([p.outcome for p in collector.parts]))


class _AsyncBatchRun:
    """One batch over several streams (tasks), with per-stream retry."""

    def __init__(
        self,
        client: AsyncLezClient,
        pairs: Pairs | Iterable[Sequence[object]],
        zone: str,
        ruleset: str | None,
        chunk_size: int,
        connections: int | None,
        timeout: float | None,
        progress: Progress | None,
    ) -> None:
        s = client.settings
        self.client = client
        self.size = chunk_size
        self.streams = connections or s.connections
        if isinstance(pairs, Pairs):
            self.streams = max(1, min(self.streams, -(-len(pairs) // self.size)))
        self.source = ChunkSource(pairs, zone=zone, ruleset=ruleset or "", chunk_size=self.size)
        self.deadline = Deadline(s.batch_timeout_s if timeout is None else timeout)
        self.progress = progress
        self.window = s.window
        self.results: asyncio.Queue[ResultChunk | BaseException | None] = asyncio.Queue(
            maxsize=self.streams * self.window * 2
        )
        self.audit_ids: list[str] = []
        self.snapshots: list[str] = []
        self.revision = ""
        self.started = time.perf_counter()
        self.seconds = 0.0

    async def unordered(self) -> AsyncIterator[ResultChunk]:
        channels = await self.client._channels(self.streams)
        tasks = [asyncio.create_task(self._stream(ch)) for ch in channels]
        running = len(tasks)
        failure: BaseException | None = None
        try:
            while running:
                item = await self.results.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    failure = item
                    break
                else:
                    if self.progress is not None:
                        self.progress(item.count)
                    yield item
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.seconds = time.perf_counter() - self.started
        if failure is not None:
            raise failure

    def summary(self, outcomes: list[npt.NDArray[np.uint8]]) -> BatchSummary:
        return summarise(
            outcomes,
            pairs=self.source.sent_pairs,
            chunks=self.source.chunks,
            audit_ids=self.audit_ids,
            snapshot_ids=self.snapshots,
            revision=self.revision,
            seconds=self.seconds,
            streams=self.streams,
        )

    async def _stream(self, channel: grpc.aio.Channel) -> None:
        stub: Any = pb_grpc.AccessServiceStub(channel)
        backoff = Backoff(self.client.settings)
        try:
            while True:
                pending: deque[SentChunk] = deque()
                first = self.source.next()
                if first is None:  # nothing (left) to send: open no call
                    break
                pending.append(first)
                try:
                    await self._one_call(stub, pending)
                    break
                except grpc.RpcError as exc:
                    err = from_rpc_error(exc)
                    self.source.give_back(pending)
                    delay = backoff.next_delay(err)
                    if delay is None or not self.deadline.allows(delay):
                        raise err from None
                    await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.results.put(exc)
            return
        await self.results.put(None)

    async def _one_call(self, stub: Any, pending: deque[SentChunk]) -> None:
        slots = asyncio.Semaphore(self.window)
        call: Any = stub.CheckStream(timeout=self.deadline.remaining())

        async def writer() -> None:
            await slots.acquire()
            await call.write(pending[0].message)
            while True:
                await slots.acquire()
                sent = self.source.next()
                if sent is None:
                    await call.done_writing()
                    return
                pending.append(sent)
                await call.write(sent.message)

        writing = asyncio.create_task(writer())
        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
                if msg.HasField("summary"):
                    self.audit_ids.append(msg.summary.audit_id)
                    continue
                if not pending:
                    raise ProtocolError("the server answered a chunk that was not sent")
                sent = pending.popleft()
                if msg.chunk_id != sent.chunk_id:
                    raise ProtocolError("the server answered chunks out of order")
                try:
                    part = unpack_chunk(msg, sent.first_index, sent.count)
                except ValueError as exc:
                    raise ProtocolError(str(exc)) from None
                self.snapshots.append(msg.snapshot_id)
                self.revision = msg.ruleset_revision
                await self.results.put(part)
                slots.release()
            if pending:
                raise ProtocolError("the stream ended before every chunk was answered")
            await writing
        finally:
            if not writing.done():
                writing.cancel()
            await asyncio.gather(writing, return_exceptions=True)
            call.cancel()
