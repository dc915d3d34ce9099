"""The floor of a `CheckStream` batch's time on this machine: gRPC servers that decide nothing.

`lez-server` answers a batch in three parts: moving the chunks and their answers (the Python
client library's threaded client, grpc.aio in the servers, the loopback), deciding each chunk
(keying, lookup, rules, encoding) and its audit record. This module measures the first alone,
as the bench's unary floor (`bench.unary_floor`) does for single checks:

- `python -m bench.stream_floor --port P --workers 2` starts 2 processes on one port (the
  service's channel options, SO_REUSEPORT, as `lez-server serve --workers 2`), each answering
  `ServerInfo` (which worker, so the client spreads its connections as it does with the
  service), health (SERVING) and `CheckStream`: every chunk gets at once an answer of the size
  the service sends an enforcement caller (every result column, the technical ones too, all
  zeros: ALLOWED is not claimed, the client only checks sizes and order), and the stream ends
  with a summary;
- `python -m bench.stream_floor --measure` times a 500,000-pair batch of the bench's camera mix
  (`bench.sync_bench.stream_batch`), pre-keyed and from plate strings, against it and against
  `lez-server serve --workers 2` on the bench's store, alternated, through the same client
  (`--out bench/results/stream-floor.json`). It needs the bench's register, store and HMAC key
  under `--scratch`: `make bench` leaves them for 8,000,000 plates; for a quick try, make a
  small set with `lez-loader keygen --key var/bench/hmac.key`, `lez-loader synth --plates
  200000 --seed 1 --out var/bench/register-200000-1` and `lez-loader build
  var/bench/register-200000-1/extract.csv --key var/bench/hmac.key --out
  var/bench/store-200000-1`, then pass `--plates 200000`.

With `--audit DIR` the floor also does what the service's audit promise asks of a stream, and
nothing else: each chunk's record (its keys, 16 bytes a pair, and each pair's outcome) written
by the service's own audit log (`server.app.open_audit_log`, its defaults) on audit threads and
durable before the chunk's answer, the next chunk read meanwhile, as the service pipelines them,
and a closing record durable before the summary. Chunks of plates are not keyed here: their
records carry keys of the same size. What the floor with TLS and the audit costs beyond the plain
floor is what those two promises cost a transport that does no work.

What the batch costs beyond this floor is the service's own work; a bar below the floor cannot
be met by any decision code. Never used by the product.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from bench import cli_help
from bench.report import stats
from bench.unary_floor import floor_audit_log, floor_credentials, serve_until_stopped
from lez.api.v1 import access_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = "20261205T000000Z-floor"
REVISION = "floor"


def _pairs(chunk: pb.CheckChunk) -> int:
    """The pairs a chunk carries, as the service counts them (its days or instants column)."""
    if chunk.days:
        return len(chunk.days) // 4
    return len(chunk.instants) // 8


def _answer(chunk: pb.CheckChunk, first_index: int, n: int) -> bytes:
    """An answer of the size the service sends an enforcement caller (every result column, the
    technical ones too), all zeros, written to wire bytes as the service writes its own
    (`server.chunk_wire`)."""
    from server import chunk_wire

    fields = {
        "chunk_id": chunk.chunk_id, "first_index": first_index, "count": n,
        "outcome": bytes(n), "allowed_until": bytes(4 * n), "euro": bytes(n),
        "reason": bytes(n), "derived": bytes(n), "notes": bytes(n),
        "snapshot_id": SNAPSHOT, "ruleset_revision": REVISION,
    }  # fmt: skip
    technical = {
        "category": bytes(n), "fuel": bytes(n), "first_registration": bytes(4 * n),
        "max_mass_kg": bytes(4 * n), "co2_g_km": bytes(2 * n), "power_kw": bytes(2 * n),
    }  # fmt: skip
    return chunk_wire.decision_chunk(fields, technical)


def _summary(answered: int, chunks: int) -> pb.DecisionChunk:
    return pb.DecisionChunk(
        first_index=answered, snapshot_id=SNAPSHOT, ruleset_revision=REVISION,
        summary=pb.BatchSummary(pairs=answered, chunks=chunks, audit_id="floor"),
    )  # fmt: skip


class _FloorAudit:
    """The records a stream's audit writes, through the service's own audit log set up with the
    service's defaults: one per chunk (its keys and each pair's outcome), one closing record."""

    def __init__(self, directory: Path, worker: int) -> None:
        from server.service import AUDIT_THREADS

        self.log = floor_audit_log(directory, worker)
        self.threads = ThreadPoolExecutor(AUDIT_THREADS, thread_name_prefix="floor-audit")
        self._keys_of_size: dict[int, bytes] = {}

    def keys(self, chunk: pb.CheckChunk, n: int) -> bytes:
        """The chunk's keys; for plates (not keyed here), random keys of the same size."""
        if chunk.WhichOneof("subject") == "keys":
            return chunk.keys
        if n not in self._keys_of_size:
            self._keys_of_size[n] = os.urandom(16 * n)
        return self._keys_of_size[n]

    def record(self, stream: str, part: str, index: int, first: int, n: int, keys: bytes) -> None:
        """Write one record and return once it is durable (on an audit thread)."""
        from server.audit import KeyBatch

        batch = KeyBatch()
        batch.add(keys)
        appended = self.log.append(
            rpc="CheckStream", identity="bench-client", organisation="Bench city",
            roles=["enforcement"], zone="Antwerpen", ruleset_revision=REVISION,
            snapshot_id=SNAPSHOT, pairs=n, outcomes={"ALLOWED": n}, keys=batch,
            purpose="enforcement", pair_outcomes=bytes(n) if part == "chunk" else None,
            extra={"stream": stream, "part": part, "chunk": index, "first_index": first},
        )  # fmt: skip
        self.log.sync_through(appended.seq)

    def close(self) -> None:
        """Let the records being written land, then close the log (its last checkpoint)."""
        self.threads.shutdown(wait=True)
        self.log.close()


class _Floor:
    """The floor's two RPCs (grpc answers the others UNIMPLEMENTED)."""

    def __init__(self, worker: int, workers: int, audit: _FloorAudit | None = None) -> None:
        self.worker, self.workers, self.audit = worker, workers, audit

    async def ServerInfo(self, request: pb.ServerInfoRequest, context: Any) -> Any:
        return pb.ServerInfoResponse(snapshot_id=SNAPSHOT, worker=self.worker, workers=self.workers)

    async def CheckStream(
        self, request_iterator: AsyncIterator[pb.CheckChunk], context: Any
    ) -> AsyncIterator[pb.DecisionChunk | bytes]:
        if self.audit is not None:
            async for message in self._audited(request_iterator, self.audit):
                yield message
            return
        answered = chunks = 0
        async for chunk in request_iterator:
            n = _pairs(chunk)
            yield _answer(chunk, answered, n)
            answered += n
            chunks += 1
        yield _summary(answered, chunks)

    async def _audited(
        self, request_iterator: AsyncIterator[pb.CheckChunk], audit: _FloorAudit
    ) -> AsyncIterator[pb.DecisionChunk | bytes]:
        """As the service pipelines a stream: chunks read ahead by a task of their own, chunk
        k's answer sent once its record is durable, and before waiting for a chunk that has
        not arrived."""
        from server.service import READ_AHEAD

        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[pb.CheckChunk | None] = asyncio.Queue(maxsize=READ_AHEAD)

        async def read() -> None:
            async for chunk in request_iterator:
                await arrived.put(chunk)
            await arrived.put(None)

        reader = loop.create_task(read())
        stream = os.urandom(8).hex()
        answered = chunks = 0
        pending: tuple[asyncio.Future[None], bytes] | None = None
        try:
            while True:
                if pending is not None and arrived.empty():
                    await pending[0]
                    yield pending[1]
                    pending = None
                chunk = await arrived.get()
                if chunk is None:
                    break
                n = _pairs(chunk)
                recorded = loop.run_in_executor(
                    audit.threads, audit.record, stream, "chunk", chunks, answered, n,
                    audit.keys(chunk, n),
                )  # fmt: skip
                if pending is not None:
                    await pending[0]
                    yield pending[1]
                pending = (recorded, _answer(chunk, answered, n))
                answered += n
                chunks += 1
            if pending is not None:
                await pending[0]
                yield pending[1]
            await loop.run_in_executor(
                audit.threads, audit.record, stream, "end", chunks, 0, answered, b""
            )
            yield _summary(answered, chunks)
        finally:
            reader.cancel()


async def _serve(
    port: int, worker: int, workers: int, tls: Path | None, audit: Path | None
) -> None:
    from server.app import server_options
    from server.config import ServerConfig
    from server.service import serialized_response

    config = ServerConfig()
    server = grpc.aio.server(
        options=server_options(config, reuse_port=True),
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    records = _FloorAudit(audit, worker) if audit is not None else None
    floor = _Floor(worker, workers, records)
    handlers = {  # responses as the service sends them: its serializer passes wire bytes on
        "ServerInfo": grpc.unary_unary_rpc_method_handler(
            floor.ServerInfo,
            request_deserializer=pb.ServerInfoRequest.FromString,
            response_serializer=serialized_response,
        ),
        "CheckStream": grpc.stream_stream_rpc_method_handler(
            floor.CheckStream,
            request_deserializer=pb.CheckChunk.FromString,
            response_serializer=serialized_response,
        ),
    }
    service = pb.DESCRIPTOR.services_by_name["AccessService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    credentials = floor_credentials(tls) if tls is not None else None
    try:
        await serve_until_stopped(server, port, credentials)
    finally:
        if records is not None:
            records.close()


def _worker(port: int, worker: int, workers: int, tls: Path | None, audit: Path | None) -> None:
    asyncio.run(_serve(port, worker, workers, tls, audit))


def serve(port: int, workers: int, tls: Path | None = None, audit: Path | None = None) -> None:
    """`workers` processes on `port` until SIGTERM (then each is stopped); with mutual TLS
    when `tls` names a folder of development certificates (`floor_credentials`), with the
    stream's audit records written under `audit` when given."""
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_worker, args=(port, i, workers, tls, audit)) for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    while not stopped and all(p.is_alive() for p in procs):
        time.sleep(0.2)
    for proc in procs:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join(timeout=10)


def measure(plates: int, seed: int, runs: int, scratch: Path) -> dict[str, Any]:
    """The bench's 500,000-pair batch, pre-keyed and from plate strings, against the floor and
    against `lez-server serve --workers 2` on the bench's store (plain TCP, the audit on, as in
    the bench's comparison), alternated run by run: median and min-max of `runs` after a
    warm-up, one long-lived client with 4 connections for each server."""
    from bench import sync_bench
    from bench.stream import LezServer, StreamClient, free_port

    extract = scratch / f"register-{plates}-{seed}" / "extract.csv"
    store = scratch / f"store-{plates}-{seed}"
    key = scratch / "hmac.key"
    if not extract.exists() or not store.exists():
        raise SystemExit(
            f"{extract} or {store} is missing: run make bench first, or make a small set as "
            "`python -m bench.stream_floor --help` says"
        )
    batch = sync_bench.stream_batch(extract, seed).slice(500_000)
    port = free_port()
    floor = subprocess.Popen(
        [sys.executable, "-m", "bench.stream_floor", "--port", str(port), "--workers", "2"],
        cwd=ROOT, start_new_session=True,
    )  # fmt: skip
    service = LezServer(store, key, scratch / "stream-floor")
    clients: dict[str, StreamClient] = {}
    try:
        service.start()
        clients = {
            "floor": StreamClient(f"127.0.0.1:{port}"),
            "service": StreamClient(service.address),
        }
        any_client = clients["floor"]
        shapes = {
            "from_plates": any_client.pairs(batch),
            "pre_keyed": any_client.prekeyed(batch, key),
        }
        times: dict[str, dict[str, list[float]]] = {
            shape: {server: [] for server in clients} for shape in shapes
        }
        for shape, rows in shapes.items():
            for client in clients.values():
                client.client.check_batch(rows, zone="Antwerpen")  # warm-up
            for run in range(runs):
                order = list(clients.items())
                for server, client in order if run % 2 == 0 else order[::-1]:
                    start = time.perf_counter()
                    client.client.check_batch(rows, zone="Antwerpen")
                    times[shape][server].append(time.perf_counter() - start)
    finally:
        for client in clients.values():
            client.close()
        service.stop()
        os.killpg(floor.pid, signal.SIGTERM)
        floor.wait(timeout=30)

    result: dict[str, Any] = {}
    for shape, rows in shapes.items():
        floor_fig, service_fig = stats(times[shape]["floor"]), stats(times[shape]["service"])
        result[shape] = {
            "pairs": len(rows.days),
            "floor": floor_fig,
            "service": service_fig,
            "service_beyond_floor_s": round(service_fig["median_s"] - floor_fig["median_s"], 4),
        }
    return {
        "what": "the bench's 500,000-pair batch against gRPC servers that decide nothing (2 "
        "processes on one port, every chunk answered at once with result columns of the "
        "service's size) and against lez-server serve --workers 2 on the bench store (plain "
        "TCP, each chunk's audit record synced before its answer), alternated, through the "
        "Python client with 4 connections",
        "command": f"python -m bench.stream_floor --measure --plates {plates} --runs {runs}",
        **result,
    }


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.stream_floor", __doc__)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--port", type=int, help="serve the floor on this loopback port")
    mode.add_argument(
        "--measure", action="store_true", help="time the bench's batch against it and the service"
    )
    p.add_argument("--workers", type=int, default=2, help="processes serving the port [2]")
    p.add_argument(
        "--tls",
        type=Path,
        metavar="CERTS",
        help="with --port: serve mutual TLS on localhost:PORT with the development certificates "
        "in this folder (server.pem, server.key, ca.pem; server.certs.write_dev_certs)",
    )
    p.add_argument(
        "--audit",
        type=Path,
        metavar="DIR",
        help="with --port: write each stream's audit records under DIR (the service's audit "
        "log and defaults), each chunk's durable before its answer",
    )
    p.add_argument("--plates", type=int, default=8_000_000, help="the bench register [8M]")
    p.add_argument("--seed", type=int, default=1, help="the bench register's seed [1]")
    p.add_argument("--runs", type=int, default=7, help="timed batches of each shape [7]")
    p.add_argument(
        "--scratch",
        type=Path,
        default=ROOT / "var" / "bench",
        help="the bench's scratch folder (register, store, HMAC key) [var/bench]",
    )
    p.add_argument("--out", type=Path, help="with --measure: write the figures to this JSON")
    a = p.parse_args(argv)
    if a.measure and (a.tls or a.audit):
        p.error("--tls and --audit serve a floor (with --port); --measure times the plain one")
    if a.measure:
        from bench import report

        res = measure(a.plates, a.seed, a.runs, a.scratch)
        res["machine"] = report.machine()
        res["conditions"] = report.conditions(a.scratch)
        res["commit"] = report.commit()
        res["date"] = report.now()
        if a.out:
            report.write_json(a.out, res)
        for name in ("from_plates", "pre_keyed"):
            r = res[name]
            print(
                f"{name} ({r['pairs']:,} pairs): floor {r['floor']['median_s']} s "
                f"({r['floor']['min_s']}-{r['floor']['max_s']}), service "
                f"{r['service']['median_s']} s ({r['service']['min_s']}-{r['service']['max_s']})"
            )
        return 0
    serve(a.port, a.workers, a.tls, a.audit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
