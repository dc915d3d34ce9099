"""`LezClient`: the synchronous Python client of AccessService.

    with LezClient(["127.0.0.1:50051"]) as client:
        answer = client.check("1-ABC-234", zone="Gent", day=dt.date(2026, 10, 20))
        result = client.check_batch(rows, zone="Antwerpen")   # rows: (plate, country, day)

Unary calls retry UNAVAILABLE (bounded, exponential backoff with jitter, RetryInfo honoured)
within one deadline. A batch is cut into chunks and spread over several streams, one per
channel (`ClientSettings.connections`); each stream keeps `window` chunks in flight, so faster
workers take more. Results are aligned with the input by row index whatever the order in which
chunks come back; a stream that fails with UNAVAILABLE gives its unanswered chunks back and
reconnects. Errors are `clients.errors` exceptions, never raw `grpc.RpcError`.

What to send, when to retry, which connections to reopen and how answers are checked and
assembled is decided by `clients.core`; this module only does the blocking I/O, the sleeping
and the threads (one per stream).
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar, Unpack

import grpc
from grpc_health.v1 import health_pb2_grpc

from clients import request_builders
from clients.batch_rows import BatchInput
from clients.campaign import CampaignResult
from clients.core.base_client import BaseClient
from clients.core.batch import BatchOptions, BatchRun, in_input_order
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
THREAD_JOIN_S: Final = 5.0
"""How long closing a batch waits for each of its stream threads."""


class LezClient(BaseClient):
    """Synchronous client. Give server addresses (`host:port`) or a `ClientSettings`."""

    def _open_channels(self) -> None:
        self._channel = self._plan.open(batch=self.settings.own_connection)
        self._stub = pb_grpc.AccessServiceStub(self._channel)
        self._batch_channels: list[grpc.Channel] = []
        self._lock = threading.Lock()

    # -- lifecycle --

    def close(self) -> None:
        for channel in self._batch_channels:
            channel.close()
        self._batch_channels.clear()
        self._channel.close()

    def __enter__(self) -> LezClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --

    def _call(self, method: Callable[..., Answer], request: Any, timeout: float | None) -> Answer:
        attempts = Attempts.of_call(self.settings, timeout)
        while True:
            try:
                return method(request, timeout=attempts.timeout())
            except grpc.RpcError as failure:
                time.sleep(attempts.wait_after(failure))

    def wait_until_serving(self, timeout: float = 30.0, poll_s: float = 0.1) -> None:
        """Block until health says SERVING (a store is loaded); raises ServerUnavailable."""
        health = health_pb2_grpc.HealthStub(self._channel)
        wait = ServingWait(timeout, poll_s)
        while wait.waiting():
            try:
                if wait.serving(
                    health.Check(request_builders.health_request(), timeout=wait.call_timeout_s)
                ):
                    return
            except grpc.RpcError as failure:
                wait.failed(failure)
            time.sleep(poll_s)
        raise wait.gave_up()

    # -- unary calls --

    def check(
        self,
        plate: str | None = None,
        *,
        timeout: float | None = None,
        **options: Unpack[CheckOptions],
    ) -> CheckAnswer:
        """One plate (or pseudonymised `key` with its `key_id`) on one day (default today,
        Europe/Brussels) in one zone; the options are `CheckOptions`."""
        answer = self._call(
            self._stub.Check, request_builders.check_request(plate, options), timeout
        )
        return CheckAnswer.from_check_response(answer)

    def recheck(
        self, items: Iterable[RecheckItem], *, key_id: str = "", timeout: float | None = None
    ) -> RecheckAnswer:
        """Re-evaluate earlier decisions on the current snapshot (appeals)."""
        answer = self._call(
            self._stub.Recheck, request_builders.recheck_request(items, key_id), timeout
        )
        return RecheckAnswer.from_pb(answer)

    def server_info(self, *, timeout: float | None = None) -> pb.ServerInfoResponse:
        """Snapshot, revisions, zones, code lists, and this client's identity and limits."""
        info = self._call(self._stub.ServerInfo, request_builders.server_info_request(), timeout)
        self._chunk_limit.learn(info)
        return info

    def fleet_stats(
        self,
        group_by: Sequence[str],
        *,
        timeout: float | None = None,
        **options: Unpack[FleetOptions],
    ) -> pb.FleetStatsResponse:
        """Fleet composition by `nis`, `fuel`, `euro` and/or `category` on a day."""
        return self._call(
            self._stub.FleetStats, request_builders.fleet_request(group_by, options), timeout
        )

    def losing_access(
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
        """Warning campaigns: the keys of the vehicles of the `nis` municipalities allowed in
        `zone` on `reference_date` (default today, Brussels) that will not be allowed on `date`,
        with the reason and first day lost, and the server's summary. `progress` is called with
        the vehicles of each chunk received; `timeout` bounds the whole call (default
        `ClientSettings.batch_timeout_s`)."""
        request = request_builders.losing_access_request(
            zone, date, nis, reference_date=reference_date, ruleset=ruleset, chunk_size=chunk_size
        )
        run = CampaignRun(self.settings, timeout, progress)
        while True:
            try:
                for answer in self._stub.LosingAccess(request, timeout=run.timeout()):
                    run.receive(answer)
                return run.result()
            except grpc.RpcError as failure:
                time.sleep(run.wait_after(failure))

    # -- batches --

    def chunk_size(self) -> int:
        """Pairs per chunk: the setting, else the default capped by the server's limit."""
        if self._chunk_limit.needs_server_info:
            self.server_info()
        return self._chunk_limit.size()

    def _channels(self, n: int) -> list[grpc.Channel]:
        with self._lock:
            while len(self._batch_channels) < n:
                self._batch_channels.append(self._plan.open(batch=True))
            if self._worker_spread.wanted(n):
                self._spread(n)
            return self._batch_channels[:n]

    def _spread(self, n: int) -> None:
        """Reopen batch connections that share a worker process, as `SpreadProbes` says."""
        channels = self._batch_channels
        probes = SpreadProbes(n)
        try:
            for probe_round in probes.rounds():
                for probe in probe_round:
                    if probe.reopen:
                        channels[probe.connection].close()
                        channels[probe.connection] = self._plan.open(batch=True)
                asked = [channels[probe.connection] for probe in probe_round]
                for probe, answer in zip(probe_round, self._workers_of(asked), strict=True):
                    probes.record(probe.connection, answer)
        except grpc.RpcError:
            return  # best effort: an older server, or no ServerInfo for this role

    def _workers_of(self, channels: list[grpc.Channel]) -> list[WorkerAnswer]:
        """Which worker answers on each channel, asked of all at once (their connection set-ups
        and TLS handshakes overlap)."""
        request = request_builders.server_info_request()
        calls = [
            pb_grpc.AccessServiceStub(channel).ServerInfo.future(
                request, timeout=self.settings.timeout_s
            )
            for channel in channels
        ]
        return [worker_answer(call.result()) for call in calls]

    def _batch_run(self, rows: BatchInput, options: BatchOptions) -> BatchRun:
        size = options.get("chunk_size") or self.chunk_size()
        return BatchRun(self.settings, rows, options, chunk_size=size)

    def _unordered(self, run: BatchRun) -> Iterator[ResultChunk]:
        """The result chunks of `run` in the order they come (channels opened on first use)."""
        yield from _ThreadedBatch(run, self._channels(run.streams)).unordered()

    def stream_batch(
        self, pairs: BatchInput, **options: Unpack[BatchOptions]
    ) -> Iterator[ResultChunk]:
        """Decide a batch, yielding result chunks in input order (memory stays bounded).

        `pairs`: `BatchRows` (columns, plates or pre-pseudonymised keys) or any iterable of
        (plate, country, day) tuples, read lazily chunk by chunk; the options are
        `BatchOptions`.
        """
        return in_input_order(self._unordered(self._batch_run(pairs, options)))

    def check_batch(self, pairs: BatchInput, **options: Unpack[BatchOptions]) -> BatchResult:
        """Decide a batch; the result's columns are aligned with the input rows."""
        run = self._batch_run(pairs, options)
        return run.collected(self._unordered(run))


class _ThreadedBatch:
    """One batch over several streams, one thread each, which `stop` when one fails; the
    `BatchRun` decides everything else."""

    def __init__(self, run: BatchRun, channels: list[grpc.Channel]) -> None:
        self.run = run
        self.channels = channels
        self.stop = threading.Event()
        self.queue: queue.Queue[StreamItem] = queue.Queue(maxsize=run.queue_size)
        self._calls: list[Any] = []  # the calls in flight, cancelled on stop
        self._lock = threading.Lock()

    def unordered(self) -> Iterator[ResultChunk]:
        threads = [
            threading.Thread(target=self._stream, args=(ch,), daemon=True, name=f"lez-batch-{i}")
            for i, ch in enumerate(self.channels)
        ]
        for thread in threads:
            thread.start()
        results = self.run.results
        try:
            while results.running:
                part = results.take(self.queue.get())
                if results.failure is not None and not self.stop.is_set():
                    self._abort()
                if part is not None:
                    yield part
        finally:
            if results.running:
                self._abort()
                while results.running:
                    results.drain(self.queue.get())
            for thread in threads:
                thread.join(timeout=THREAD_JOIN_S)
            self.run.finished()
        results.raise_failure()

    def _abort(self) -> None:
        self.stop.set()
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()

    def _stream(self, channel: grpc.Channel) -> None:
        stub = pb_grpc.AccessServiceStub(channel)
        stream = self.run.stream()
        try:
            for call in stream.calls():
                if self.stop.is_set():
                    break
                try:
                    self._one_call(stub, call, stream.timeout())
                except grpc.RpcError as failure:
                    if self.stop.is_set():
                        break
                    time.sleep(stream.wait_after(call, failure))
        except BaseException as exc:
            self.queue.put(exc)
            return
        self.queue.put(None)

    def _one_call(
        self, stub: pb_grpc.AccessServiceStub, call: StreamCall, timeout: float | None
    ) -> None:
        slots = threading.Semaphore(self.run.window)
        closed = threading.Event()

        def requests() -> Iterator[pb.CheckChunk]:
            slots.acquire()
            yield call.first_message()
            while True:
                slots.acquire()
                if closed.is_set() or self.stop.is_set():
                    return
                message = call.next_message()
                if message is None:
                    return
                yield message

        rpc = stub.CheckStream(requests(), timeout=timeout)
        with self._lock:
            self._calls.append(rpc)
        try:
            for answer in rpc:
                part = call.receive(answer)
                if part is not None:
                    self.queue.put(part)
                    slots.release()
            call.finish()
        finally:
            closed.set()
            slots.release()
            rpc.cancel()  # type: ignore[no-untyped-call]
            with self._lock:
                self._calls.remove(rpc)
