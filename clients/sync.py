"""`LezClient`: the synchronous Python client of AccessService.

    with LezClient(["127.0.0.1:50051"]) as client:
        d = client.check("1-ABC-234", zone="Gent", day=dt.date(2026, 10, 20))
        result = client.check_batch(rows, zone="Antwerpen")   # rows: (plate, country, day)

Unary calls retry UNAVAILABLE (bounded, exponential backoff with jitter, RetryInfo honoured)
within one deadline. A batch is cut into chunks and spread over several streams, one per
channel (`ClientSettings.connections`); each stream keeps `window` chunks in flight, so faster
workers take more. Results are aligned with the input by row index whatever the order in which
chunks come back; a stream that fails with UNAVAILABLE gives its unanswered chunks back and
reconnects. Errors are `clients.errors` exceptions, never raw `grpc.RpcError`.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
import numpy.typing as npt
from grpc_health.v1 import health_pb2, health_pb2_grpc

from clients.errors import LezClientError, ProtocolError, ServerUnavailable, from_rpc_error
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
    date_text,
    summarise,
    unpack_chunk,
)
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


class LezClient:
    """Synchronous client. Give server addresses (`host:port`) or a `ClientSettings`."""

    def __init__(
        self,
        servers: Sequence[str] | str | None = None,
        *,
        settings: ClientSettings | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = ClientSettings.resolve(servers, settings, **overrides)
        self._plan = ChannelPlan.of(self.settings)
        self._channel = self._plan.open()
        self._stub = pb_grpc.AccessServiceStub(self._channel)
        self._batch_channels: list[grpc.Channel] = []
        self._spread_over = 1  # batch connections already spread over the workers
        # the server's max_chunk_pairs once ServerInfo answered (0: no limit); None: not asked
        self._max_chunk: int | None = None
        self._lock = threading.Lock()

    # -- lifecycle --

    def close(self) -> None:
        for ch in self._batch_channels:
            ch.close()
        self._batch_channels.clear()
        self._channel.close()

    def __enter__(self) -> LezClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --

    def _call(self, method: Callable[..., T], request: Any, timeout: float | None) -> T:
        deadline = Deadline(self.settings.timeout_s if timeout is None else timeout)
        backoff: Backoff | None = None
        while True:
            try:
                return method(request, timeout=deadline.remaining())
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                backoff = backoff or Backoff(self.settings)
                delay = backoff.next_delay(err)
                if delay is None or not deadline.allows(delay):
                    raise err from None
                time.sleep(delay)

    def wait_until_serving(self, timeout: float = 30.0, poll_s: float = 0.1) -> None:
        """Block until health says SERVING (a store is loaded); raises ServerUnavailable."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        end = time.monotonic() + timeout
        last: LezClientError | None = None
        while time.monotonic() < end:
            try:
                got = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=poll_s * 10)
                if got.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                last = from_rpc_error(exc)
            time.sleep(poll_s)
        raise ServerUnavailable(
            f"the server did not report SERVING within {timeout:.0f} s"
            + (f" ({last.message})" if last else "")
        )

    # -- unary calls --

    def check(
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
        """One plate (or pseudonymised `key` with its `key_id`) on one day (default today,
        Europe/Brussels) in one zone."""
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
        resp = self._call(self._stub.Check, request, timeout)
        return Decision.from_pb(
            resp.decision,
            snapshot_id=resp.snapshot_id,
            revision=resp.ruleset_revision,
            zone=resp.zone,
            date=resp.date,
        )

    def recheck(
        self, items: Iterable[RecheckItem], *, key_id: str = "", timeout: float | None = None
    ) -> RecheckAnswer:
        """Re-evaluate earlier decisions on the current snapshot (appeals)."""
        request = pb.RecheckRequest(decisions=[i.to_pb() for i in items], key_id=key_id)
        return RecheckAnswer.from_pb(self._call(self._stub.Recheck, request, timeout))

    def server_info(self, *, timeout: float | None = None) -> pb.ServerInfoResponse:
        """Snapshot, revisions, zones, code lists, and this client's identity and limits."""
        info = self._call(self._stub.ServerInfo, pb.ServerInfoRequest(), timeout)
        self._max_chunk = int(info.client.max_chunk_pairs)
        return info

    def fleet_stats(
        self,
        group_by: Sequence[str],
        *,
        day: dt.date | str | None = None,
        nis: Sequence[int] = (),
        timeout: float | None = None,
    ) -> pb.FleetStatsResponse:
        """Fleet composition by `nis`, `fuel`, `euro` and/or `category` on a day."""
        request = fleet_request(group_by, day=day, nis=nis)
        return self._call(self._stub.FleetStats, request, timeout)

    # -- batches --

    def chunk_size(self) -> int:
        """Pairs per chunk: the setting, else the default capped by the server's limit."""
        if self.settings.chunk_size is not None:
            return self.settings.chunk_size
        if self._max_chunk is None:
            self.server_info()
        limit = self._max_chunk or self.settings.default_chunk_pairs
        return min(self.settings.default_chunk_pairs, limit)

    def _channels(self, n: int) -> list[grpc.Channel]:
        with self._lock:
            while len(self._batch_channels) < n:
                self._batch_channels.append(self._plan.open(batch=True))
            if n > self._spread_over and len(self.settings.servers) == 1:
                self._spread_over = n
                self._spread(n)
            return self._batch_channels[:n]

    def _spread(self, n: int) -> None:
        """Reopen batch connections that share a worker process (see `transport.crowded`):
        ask every connection once, then only the reopened ones, for SPREAD_ATTEMPTS rounds."""
        channels = self._batch_channels
        try:
            answered_by = [self._worker_of(ch) for ch in channels[:n]]
            for _ in range(SPREAD_ATTEMPTS):
                redo = crowded(answered_by)
                if not redo:
                    return
                for i in redo:
                    channels[i].close()
                    channels[i] = self._plan.open(batch=True)
                    answered_by[i] = self._worker_of(channels[i])
        except grpc.RpcError:
            return  # best effort: an older server, or no ServerInfo for this role

    def _worker_of(self, channel: grpc.Channel) -> tuple[int, int]:
        info = pb_grpc.AccessServiceStub(channel).ServerInfo(
            pb.ServerInfoRequest(), timeout=self.settings.timeout_s
        )
        return int(info.worker), int(info.workers)

    def stream_batch(
        self,
        pairs: Pairs | Iterable[Sequence[object]],
        *,
        zone: str,
        ruleset: str | None = None,
        chunk_size: int | None = None,
        connections: int | None = None,
        timeout: float | None = None,
        progress: Progress | None = None,
    ) -> Iterator[ResultChunk]:
        """Decide a batch, yielding result chunks in input order (memory stays bounded).

        `pairs`: a `Pairs` (columns, plates or pre-pseudonymised keys) or any iterable of
        (plate, country, day) tuples, read lazily chunk by chunk.
        """
        run = _BatchRun(self, pairs, zone, ruleset, chunk_size, connections, timeout, progress)
        return run.ordered()

    def check_batch(
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
        run = _BatchRun(self, pairs, zone, ruleset, chunk_size, connections, timeout, progress)
        collector = BatchCollector()
        for part in run.unordered():
            collector.add(part)
        return collector.result(run.summary([p.outcome for p in collector.parts]))


def check_request(
    plate: str | None,
    *,
    zone: str,
    day: dt.date | str | None,
    country: str,
    first_registration: dt.date | str | None,
    ruleset: str | None,
    key: bytes | None,
    key_id: str,
) -> pb.CheckRequest:
    request = pb.CheckRequest(
        country=country or "BE",
        zone=zone,
        date=date_text(day),
        first_registration=date_text(first_registration),
        ruleset_revision=ruleset or "",
        key_id=key_id,
    )
    if key is not None:
        request.key = key
    else:
        request.plate = plate or ""
    return request


def fleet_request(
    group_by: Sequence[str], *, day: dt.date | str | None, nis: Sequence[int]
) -> pb.FleetStatsRequest:
    dims = [int(pb.Dimension.Value("DIMENSION_" + g.strip().upper())) for g in group_by]
    return pb.FleetStatsRequest(
        group_by=dims,  # type: ignore[arg-type]
        date=date_text(day),
        nis=list(nis),
    )


class _BatchRun:
    """One batch over several streams (threads), with per-stream retry."""

    def __init__(
        self,
        client: LezClient,
        pairs: Pairs | Iterable[Sequence[object]],
        zone: str,
        ruleset: str | None,
        chunk_size: int | None,
        connections: int | None,
        timeout: float | None,
        progress: Progress | None,
    ) -> None:
        s = client.settings
        self.client = client
        self.size = chunk_size or client.chunk_size()
        self.streams = connections or s.connections
        if isinstance(pairs, Pairs):
            # no point in more streams than chunks
            self.streams = max(1, min(self.streams, -(-len(pairs) // self.size)))
        self.source = ChunkSource(pairs, zone=zone, ruleset=ruleset or "", chunk_size=self.size)
        self.deadline = Deadline(s.batch_timeout_s if timeout is None else timeout)
        self.progress = progress
        self.window = s.window
        self.results: queue.Queue[ResultChunk | BaseException | None] = queue.Queue(
            maxsize=self.streams * self.window * 2
        )
        self.stop = threading.Event()
        self.audit_ids: list[str] = []
        self.snapshots: list[str] = []
        self.revision = ""
        self.started = time.perf_counter()
        self.seconds = 0.0
        self._calls: list[Any] = []
        self._lock = threading.Lock()

    def unordered(self) -> Iterator[ResultChunk]:
        channels = self.client._channels(self.streams)
        threads = [
            threading.Thread(target=self._stream, args=(ch,), daemon=True, name=f"lez-batch-{i}")
            for i, ch in enumerate(channels)
        ]
        for t in threads:
            t.start()
        running = len(threads)
        failure: BaseException | None = None
        try:
            while running:
                item = self.results.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    running -= 1
                    if failure is None:
                        failure = item
                        self._abort()
                elif failure is None:
                    if self.progress is not None:
                        self.progress(item.count)
                    yield item
        finally:
            if running:
                self._abort()
                while running:
                    left = self.results.get()
                    if left is None or isinstance(left, BaseException):
                        running -= 1
            for t in threads:
                t.join(timeout=5)
            self.seconds = time.perf_counter() - self.started
        if failure is not None:
            raise failure

    def ordered(self) -> Iterator[ResultChunk]:
        order = InputOrder()
        for part in self.unordered():
            yield from order.add(part)

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

    def _abort(self) -> None:
        self.stop.set()
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()

    def _stream(self, channel: grpc.Channel) -> None:
        stub = pb_grpc.AccessServiceStub(channel)
        backoff = Backoff(self.client.settings)
        try:
            while not self.stop.is_set():
                pending: deque[SentChunk] = deque()
                first = self.source.next()
                if first is None:  # nothing (left) to send: open no call
                    break
                pending.append(first)
                try:
                    self._one_call(stub, pending)
                    break
                except grpc.RpcError as exc:
                    if self.stop.is_set():
                        break
                    err = from_rpc_error(exc)
                    self.source.give_back(pending)
                    delay = backoff.next_delay(err)
                    if delay is None or not self.deadline.allows(delay):
                        raise err from None
                    time.sleep(delay)
        except BaseException as exc:
            self.results.put(exc)
            return
        self.results.put(None)

    def _one_call(self, stub: pb_grpc.AccessServiceStub, pending: deque[SentChunk]) -> None:
        slots = threading.Semaphore(self.window)
        closed = threading.Event()

        def requests() -> Iterator[pb.CheckChunk]:
            slots.acquire()
            yield pending[0].message
            while True:
                slots.acquire()
                if closed.is_set() or self.stop.is_set():
                    return
                sent = self.source.next()
                if sent is None:
                    return
                pending.append(sent)
                yield sent.message

        call = stub.CheckStream(requests(), timeout=self.deadline.remaining())
        with self._lock:
            self._calls.append(call)
        try:
            for msg in call:
                if msg.HasField("summary"):
                    with self._lock:
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
                with self._lock:
                    self.snapshots.append(msg.snapshot_id)
                    self.revision = msg.ruleset_revision
                self.results.put(part)
                slots.release()
            if pending:
                raise ProtocolError("the stream ended before every chunk was answered")
        finally:
            closed.set()
            slots.release()
            call.cancel()  # type: ignore[no-untyped-call]
            with self._lock:
                self._calls.remove(call)
