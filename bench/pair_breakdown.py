"""Where a pair's time goes on the stream path, stage by stage, so the next optimisation is
chosen from figures.

The same packed batch goes through the code the client and the server run for a `CheckStream`,
in this process, one stage at a time, each timed over the whole batch in chunks of the client's
default size:

| stage | what runs |
|---|---|
| client packing | `clients.request_builders.chunk_request` + `SerializeToString` |
| decode | `CheckChunk.FromString`, `admit_chunk`, the country, day and plate columns |
| normalise and key | `PlateKeyer.normalise_and_key` and the INVALID_* marks (`server.pipeline`) |
| lookup | the versions on the days, the registrations (`vehicles_on`, `registrations_of`) |
| rules | `lez.rules.evaluate` of the revision's zone |
| encode | the result columns and their `DecisionChunk` wire bytes (`server.chunk_wire`) |
| client unpacking | `DecisionChunk.FromString`, `unpack_chunk`, the columns in input order |

Transport (gRPC framing, the loopback, the event loops, waiting) is what the end-to-end time of a
server with one worker and a client with one connection adds to the sum of these stages: the
bench measures that end-to-end time on the same batch in the same run and reports the remainder.
With one worker and one connection nothing runs in parallel except the client packing the next
chunk while the server answers one, so the remainder is a fair estimate of transport.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lez.rules
from bench.peer_data import WireBatch
from clients.batch_rows import BatchRows, JoinedPlates, row_slices
from clients.core.batch import BatchCollector
from clients.request_builders import chunk_request
from clients.result_columns import BatchSummary, unpack_chunk
from lez.api.v1 import access_pb2 as pb
from lez.keys import load_key
from lez.store import open_store
from server import chunk_wire, pipeline
from server.config import ServerConfig

STAGES = (
    "client_packing",
    "decode",
    "normalise_and_key",
    "lookup",
    "rules",
    "encode",
    "client_unpacking",
)


class StageClock:
    """Seconds spent per stage, added up over the chunks of one pass."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.spent[stage] += time.perf_counter() - start


def _rows(batch: WireBatch) -> BatchRows:
    return BatchRows(
        days=batch.days, countries=batch.countries, plates=JoinedPlates(batch.data, batch.offsets)
    )


def one_pass(
    store_root: Path, key_file: Path, batch: WireBatch, zone: str, chunk_pairs: int
) -> dict[str, float]:
    """Seconds per stage for the whole batch, one pass."""
    clock = StageClock()
    keyer = load_key(key_file)
    reader = open_store(store_root, expected_key_id=keyer.key_id)
    config = ServerConfig()
    try:
        with reader.snapshot() as snap:
            revision = lez.rules.load_catalog(snap.ruleset_texts()).get(None)
            context = pipeline.AnswerContext(
                revision=revision,
                zone_id=revision.zone(zone).id,
                keyer=keyer,
                store_key_id=keyer.key_id,
                max_plate_bytes=config.max_plate_bytes,
                max_chunk_pairs=config.max_chunk_pairs,
            )
            collector = BatchCollector()
            first = 0
            for chunk_id, (rows, start, stop) in enumerate(row_slices(_rows(batch), chunk_pairs)):
                with clock("client_packing"):
                    wire = chunk_request(
                        rows, start, stop, chunk_id=chunk_id, zone=zone, ruleset=""
                    ).SerializeToString()
                answer = _server_stages(snap, context, wire, clock)
                with clock("client_unpacking"):
                    msg = pb.DecisionChunk.FromString(answer)
                    collector.add(unpack_chunk(msg, first, stop - start))
                first += stop - start
            with clock("client_unpacking"):
                result = collector.result(_no_summary())
            if len(result.outcome) != len(batch):
                raise RuntimeError("the breakdown lost rows")
    finally:
        reader.close()
    return clock.spent


def _server_stages(
    snap: Any, context: pipeline.AnswerContext, wire: bytes, clock: StageClock
) -> bytes:
    """The server's part of one chunk, stage by stage (`server.pipeline.answer_chunk`'s steps)."""
    with clock("decode"):
        chunk = pb.CheckChunk.FromString(wire)
        n = pipeline.admit_chunk(chunk, context)
        plates = chunk.plates
        spans = pipeline._plate_spans(
            plates.data, plates.offsets, plates.width, n, context.max_plate_bytes
        )
        countries = pipeline._country_matrix(chunk.countries, n)
        days = pipeline._day_column(chunk.days, n)
    with clock("normalise_and_key"):
        items = pipeline._decode_plates(context.keyer, spans, countries, days)
    # The server looks up and decides in one step (`_decide`). The lookup is timed alone first,
    # then the step as a whole; the rules are the difference (the step's lookup reads the pages
    # the first one warmed, as lookups in a running server mostly do).
    before = clock.spent["lookup"]
    with clock("lookup"):
        snap.vehicles_on(items.keys, items.days)
        snap.registrations_of(items.keys)
    lookup_s = clock.spent["lookup"] - before
    start = time.perf_counter()
    decided = pipeline._decide(snap, context.revision, context.zone_id, items)
    clock.spent["rules"] += max(0.0, time.perf_counter() - start - lookup_s)
    with clock("encode"):
        columns, technical = pipeline._result_columns(decided, technical=True)
        return chunk_wire.decision_chunk(columns, technical)


def _no_summary() -> BatchSummary:
    return BatchSummary(
        pairs=0,
        chunks=0,
        outcomes={},
        audit_ids=(),
        snapshot_ids=(),
        revision="",
        seconds=0.0,
        streams=1,
    )


def breakdown(
    store_root: Path,
    key_file: Path,
    batch: WireBatch,
    zone: str,
    *,
    chunk_pairs: int,
    runs: int,
    end_to_end_s: float,
) -> dict[str, Any]:
    """Median seconds per stage over `runs` passes (after a warm-up), per pair in microseconds,
    against a measured end-to-end time of the same batch (one worker, one connection)."""
    one_pass(store_root, key_file, batch, zone, chunk_pairs)  # warm-up: pages, caches
    passes = [one_pass(store_root, key_file, batch, zone, chunk_pairs) for _ in range(runs)]
    n = len(batch)
    stages = {s: statistics.median(p[s] for p in passes) for s in STAGES}
    total_stages = sum(stages.values())
    rest = end_to_end_s - total_stages
    per_pair = {s: round(v / n * 1e6, 3) for s, v in stages.items()}
    per_pair["transport_and_waiting"] = round(rest / n * 1e6, 3)
    return {
        "pairs": n,
        "chunk_pairs": chunk_pairs,
        "runs": runs,
        "us_per_pair": per_pair,
        "share": {s: round(v / end_to_end_s, 3) for s, v in stages.items()}
        | {"transport_and_waiting": round(rest / end_to_end_s, 3)},
        "stages_s": {s: round(v, 4) for s, v in stages.items()},
        "end_to_end_s": round(end_to_end_s, 4),
        "stages_sum_s": round(total_stages, 4),
        "note": "stages timed in one process, one at a time; transport_and_waiting = end-to-end "
        "(one worker, one connection, same batch, same run) minus the stages",
    }


__all__ = ["STAGES", "breakdown", "one_pass"]
