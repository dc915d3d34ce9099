"""`AsyncLezClient`: the asyncio Python client of AccessService (`grpc.aio`).

    async with AsyncLezClient(["127.0.0.1:50051"]) as client:
        answer = await client.check("1-ABC-234", zone="Gent")
        result = await client.check_batch(pairs, zone="Antwerpen")
        async for part in client.stream_batch(rows, zone="Gent"): ...

Same behaviour as `LezClient` (retries, deadlines, round_robin, several connections per batch,
results aligned with the input), with tasks instead of threads: both drive `clients.core`, and
this module only does the asyncio I/O, the sleeping and the tasks (one per stream). Channels
are created on first use inside the running event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar, Unpack

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2_grpc

from clients import request_builders
from clients.batch_rows import BatchInput
from clients.campaign import CampaignResult
from clients.core.base_client import BaseClient
from clients.core.batch import BatchOptions, BatchRun, InputOrder
from clients.core.campaign import CampaignRun
from clients.core.health import ServingWait
from clients.core.retry import Attempts
from clients.core.spread import SpreadProbes, WorkerAnswer, worker_answer
from clients.core.streams import Progress, StreamCall, StreamItem
from clients.decisions import CheckAnswer, RecheckAnswer, RecheckItem
from clients.request_builders import CheckOptions, FleetOptions
from clients.result_columns import BatchResult, ResultChunk
from lez.api.v1 import access_pb2 as pb
from lez.api.v1 import access_pb2_grpc as pb_grpc

Answer = TypeVar("Answer")


class AsyncLezClient(BaseClient):
    """Asyncio client. Give server addresses (`host:port`) or a `ClientSettings`."""

    def _open_channels(self) -> None:
        self._channel: grpc.aio.Channel | None = None  # opened inside the event loop
        self._stub: Any = None  # the generated stub's types describe the sync API
        self._batch_channels: list[grpc.aio.Channel] = []

    def _opened(self) -> grpc.aio.Channel:
        """The client's channel, opened on first use inside the running event loop."""
        if self._channel is None:
            self._channel = self._plan.open(batch=self.settings.own_connection, aio=True)
        return self._channel

    @property
    def stub(self) -> Any:
        if self._stub is None:
            self._stub = pb_grpc.AccessServiceStub(self._opened())
        return self._stub

    async def close(self) -> None:
        for channel in self._batch_channels:
            await channel.close(None)
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
        self, method: Callable[..., Awaitable[Answer]], request: Any, timeout: float | None
    ) -> Answer:
        attempts = Attempts.of_call(self.settings, timeout)
        while True:
            try:
                return await method(request, timeout=attempts.timeout())
            except grpc.RpcError as failure:
                await asyncio.sleep(attempts.wait_after(failure))

    async def wait_until_serving(self, timeout: float = 30.0, poll_s: float = 0.1) -> None:
        """Wait until health says SERVING; raises ServerUnavailable."""
        health: Any = health_pb2_grpc.HealthStub(self._opened())
        wait = ServingWait(timeout, poll_s)
        while wait.waiting():
            try:
                answer = await health.Check(
                    request_builders.health_request(), timeout=wait.call_timeout_s
                )
                if wait.serving(answer):
                    return
            except grpc.RpcError as failure:
                wait.failed(failure)
            await asyncio.sleep(poll_s)
        raise wait.gave_up()

    async def check(
        self,
        plate: str | None = None,
        *,
        timeout: float | None = None,
        **options: Unpack[CheckOptions],
    ) -> CheckAnswer:
        """One plate (or key) on one day (default today, Europe/Brussels) in one zone; the
        options are `CheckOptions`."""
        request = request_builders.check_request(plate, options)
        answer: pb.CheckResponse = await self._call(self.stub.Check, request, timeout)
        return CheckAnswer.from_check_response(answer)

    async def recheck(
        self, items: Iterable[RecheckItem], *, key_id: str = "", timeout: float | None = None
    ) -> RecheckAnswer:
        """Re-evaluate earlier decisions on the current snapshot (appeals)."""
        request = request_builders.recheck_request(items, key_id)
        return RecheckAnswer.from_pb(await self._call(self.stub.Recheck, request, timeout))

    async def server_info(self, *, timeout: float | None = None) -> pb.ServerInfoResponse:
        """Snapshot, revisions, zones, code lists, and this client's identity and limits."""
        request = request_builders.server_info_request()
        info: pb.ServerInfoResponse = await self._call(self.stub.ServerInfo, request, timeout)
        self._chunk_limit.learn(info)
        return info

    async def fleet_stats(
        self,
        group_by: Sequence[str],
        *,
        timeout: float | None = None,
        **options: Unpack[FleetOptions],
    ) -> pb.FleetStatsResponse:
        """Fleet composition by `nis`, `fuel`, `euro` and/or `category` on a day."""
        request = request_builders.fleet_request(group_by, options)
        return await self._call(self.stub.FleetStats, request, timeout)

    async def losing_access(
        self,
        zone: str,
        date: dt.date | str,
        nis: Iterable[int],
        *,
        reference_date: dt.date | str | None = None,
        ruleset: str | None = None,
        chunk_size: int | None = None,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> CampaignResult:
        """Warning campaigns: as `LezClient.losing_access`."""
        request = request_builders.losing_access_request(
            zone, date, nis, reference_date=reference_date, ruleset=ruleset, chunk_size=chunk_size
        )
        run = CampaignRun(self.settings, timeout, progress)
        while True:
            try:
                async for answer in self.stub.LosingAccess(request, timeout=run.timeout()):
                    run.receive(answer)
                return run.result()
            except grpc.RpcError as failure:
                await asyncio.sleep(run.wait_after(failure))

    async def chunk_size(self) -> int:
        """Pairs per chunk: the setting, else the default capped by the server's limit."""
        if self._chunk_limit.needs_server_info:
            await self.server_info()
        return self._chunk_limit.size()

    async def _channels(self, n: int) -> list[grpc.aio.Channel]:
        while len(self._batch_channels) < n:
            self._batch_channels.append(self._plan.open(batch=True, aio=True))
        if self._worker_spread.wanted(n):
            await self._spread(n)
        return self._batch_channels[:n]

    async def _spread(self, n: int) -> None:
        """Reopen batch connections that share a worker process, as `SpreadProbes` says."""
        channels = self._batch_channels
        probes = SpreadProbes(n)
        try:
            for probe_round in probes.rounds():
                for probe in probe_round:
                    if probe.reopen:
                        await channels[probe.connection].close(None)
                        channels[probe.connection] = self._plan.open(batch=True, aio=True)
                # asked at once: their connection set-ups and TLS handshakes overlap
                answers = await asyncio.gather(
                    *(self._worker_of(channels[probe.connection]) for probe in probe_round)
                )
                for probe, answer in zip(probe_round, answers, strict=True):
                    probes.record(probe.connection, answer)
        except grpc.RpcError:
            return  # best effort: an older server, or no ServerInfo for this role

    async def _worker_of(self, channel: grpc.aio.Channel) -> WorkerAnswer:
        stub: Any = pb_grpc.AccessServiceStub(channel)
        request = request_builders.server_info_request()
        return worker_answer(await stub.ServerInfo(request, timeout=self.settings.timeout_s))

    async def _unordered(
        self, rows: BatchInput, options: BatchOptions
    ) -> tuple[BatchRun, AsyncIterator[ResultChunk]]:
        """A batch's core and its result chunks in the order they come."""
        size = options.get("chunk_size") or await self.chunk_size()
        run = BatchRun(self.settings, rows, options, chunk_size=size)
        return run, _run_streams(run, await self._channels(run.streams))

    async def stream_batch(
        self, pairs: BatchInput, **options: Unpack[BatchOptions]
    ) -> AsyncIterator[ResultChunk]:
        """Decide a batch, yielding result chunks in input order; the options are
        `BatchOptions`."""
        order = InputOrder()
        _run, parts = await self._unordered(pairs, options)
        async for part in parts:
            for ready in order.add(part):
                yield ready

    async def check_batch(self, pairs: BatchInput, **options: Unpack[BatchOptions]) -> BatchResult:
        """Decide a batch; the result's columns are aligned with the input rows."""
        run, parts = await self._unordered(pairs, options)
        return run.collected([part async for part in parts])


# One batch over several streams, one task each; the `BatchRun` decides everything else.


async def _run_streams(
    run: BatchRun, channels: list[grpc.aio.Channel]
) -> AsyncIterator[ResultChunk]:
    """The result chunks of all streams of `run`, in the order they come."""
    queue: asyncio.Queue[StreamItem] = asyncio.Queue(maxsize=run.queue_size)
    tasks = [asyncio.create_task(_stream(run, queue, channel)) for channel in channels]
    results = run.results
    try:
        while results.running and results.failure is None:
            part = results.take(await queue.get())
            if part is not None:
                yield part
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        run.finished()
    results.raise_failure()


async def _stream(
    run: BatchRun, queue: asyncio.Queue[StreamItem], channel: grpc.aio.Channel
) -> None:
    """One stream: its calls one after another, then its end marker on `queue`."""
    stub: Any = pb_grpc.AccessServiceStub(channel)
    stream = run.stream()
    try:
        for call in stream.calls():
            try:
                await _one_call(run, queue, stub.CheckStream(timeout=stream.timeout()), call)
            except grpc.RpcError as failure:
                await asyncio.sleep(stream.wait_after(call, failure))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        await queue.put(exc)
        return
    await queue.put(None)


async def _one_call(
    run: BatchRun, queue: asyncio.Queue[StreamItem], rpc: Any, call: StreamCall
) -> None:
    """One CheckStream call: a writer task keeps `run.window` chunks in flight while the
    answers are read, checked and queued."""
    slots = asyncio.Semaphore(run.window)

    async def writer() -> None:
        await slots.acquire()
        await rpc.write(call.first_message())
        while True:
            await slots.acquire()
            message = call.next_message()
            if message is None:
                await rpc.done_writing()
                return
            await rpc.write(message)

    writing = asyncio.create_task(writer())
    try:
        while (answer := await rpc.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
            part = call.receive(answer)
            if part is not None:
                await queue.put(part)
                slots.release()
        call.finish()
        await writing
    finally:
        if not writing.done():
            writing.cancel()
        await asyncio.gather(writing, return_exceptions=True)
        rpc.cancel()
