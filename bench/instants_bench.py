"""What reads with a time cost: the same stream sent with an instants column against days.

    lez-loader synth --plates 1000000 --seed 1 --out var/bench/register-1000000-1
    lez-loader keygen --key var/bench/hmac.key
    lez-loader build var/bench/register-1000000-1/extract.csv --key var/bench/hmac.key \
        --out var/bench/store-1m
    python -m bench.instants_bench --store var/bench/store-1m --key var/bench/hmac.key \
        --extract var/bench/register-1000000-1/extract.csv --pairs 500000 --runs 21

(`make bench` runs the same measurement on its own main store, `bench.run` phase 9.)

The workload is `bench.workload`'s camera mix over a week around the end of summer time
(2026-10-20..2026-10-26, zone Gent). Each read gets a moment inside its Brussels day (a random
second, as a camera timestamp, in UTC milliseconds), so the instants stream asks the same
questions as the days stream: the server derives the same days (checked on every pair), plus
the hour.

Two figures, each as alternating A/B runs after a warm-up (days, instants, instants, days, ...),
so drifting load on a shared machine hits both sides alike; the ratio is the median of the
per-pair ratios of the runs (instants / days):

- `stream`: `CheckStream` end to end through the Python client against `lez-server serve`
  (2 workers, loopback), as `bench.run` measures the 500,000-pair stream: the client sends
  8 bytes of instant instead of 4 bytes of day per pair and receives 4 more (the day decided
  on); the server converts the instants (`lez.days.brussels_days_seconds`).
- `pipeline`: the server's work on one chunk in this process (`server.pipeline.answer_chunk`
  on an open snapshot, 50,000-pair chunks), without gRPC: the part the instants change.

The bar (issue: decisions by the hour): the instants stream costs at most 5 % more.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench import cli_help, report
from bench.peer_data import WireBatch, wire_batch
from bench.stream import LezServer
from bench.workload import batch_from_plates, read_plates

ROOT = Path(__file__).resolve().parents[1]
ZONE = "Gent"
DAY_FROM, DAY_TO = dt.date(2026, 10, 20), dt.date(2026, 10, 26)
CHUNK_PAIRS = 50_000
BAR = 1.05


def read_instants(days: npt.NDArray[np.int32], seed: int) -> npt.NDArray[np.int64]:
    """A moment inside each read's Brussels day: ms since the epoch (UTC)."""
    from lez.days import BRUSSELS, from_day

    rng = np.random.default_rng([seed, 0x1A57])
    local = days.astype(np.int64) * 86_400 + rng.integers(0, 86_400, len(days))
    offsets = {}
    for day in np.unique(days).tolist():  # the offset at noon: no switch is near midnight
        noon = dt.datetime.combine(from_day(day), dt.time(12), tzinfo=BRUSSELS)
        delta = noon.utcoffset()
        offsets[day] = int(delta.total_seconds()) if delta is not None else 0
    utc = local - np.vectorize(offsets.__getitem__, otypes=[np.int64])(days)
    ms: npt.NDArray[np.int64] = utc * 1000 + rng.integers(0, 1000, len(days))
    return ms


def _ab(days_run: Callable[[], Any], instants_run: Callable[[], Any], runs: int) -> dict[str, Any]:
    """Alternating timed runs after one warm-up each; seconds per side and the ratio."""
    days_run()
    instants_run()
    times: dict[str, list[float]] = {"days": [], "instants": []}
    for r in range(runs):
        order = [("days", days_run), ("instants", instants_run)]
        for name, run in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    ratios = [i / d for i, d in zip(times["instants"], times["days"], strict=True)]
    return {
        "runs": runs,
        "days_s": {"median": statistics.median(times["days"]), "min": min(times["days"]),
                   "max": max(times["days"])},
        "instants_s": {"median": statistics.median(times["instants"]),
                       "min": min(times["instants"]), "max": max(times["instants"])},
        "ratio_median_of_runs": round(statistics.median(ratios), 4),
        "ratio_of_medians": round(
            statistics.median(times["instants"]) / statistics.median(times["days"]), 4
        ),
        "ratio_of_minimums": round(min(times["instants"]) / min(times["days"]), 4),
    }  # fmt: skip


def stream_figure(
    store: Path, key: Path, scratch: Path, batch: WireBatch, instants: Any, runs: int
) -> dict[str, Any]:
    """CheckStream end to end, days against instants, and the check that both decide alike."""
    from clients import BatchRows, JoinedPlates, LezClient

    plates = JoinedPlates(batch.data, batch.offsets)
    by_day = BatchRows(days=batch.days, countries=batch.countries, plates=plates)
    by_instant = BatchRows(
        days=batch.days, countries=batch.countries, plates=plates, instants=instants
    )
    with LezServer(store, key, scratch, workers=2) as server:
        client = LezClient([server.address], connections=4, batch_timeout_s=600.0)
        try:
            client.wait_until_serving()
            a = client.check_batch(by_day, zone=ZONE)
            b = client.check_batch(by_instant, zone=ZONE)
            same = bool(
                (a.outcome == b.outcome).all()
                and (a.reason == b.reason).all()
                and (a.allowed_until == b.allowed_until).all()
                and (b.decided_day[b.outcome != 6] == batch.days[b.outcome != 6]).all()
            )
            fig = _ab(
                lambda: client.check_batch(by_day, zone=ZONE),
                lambda: client.check_batch(by_instant, zone=ZONE),
                runs,
            )
        finally:
            client.close()
    return fig | {"pairs": len(batch), "same_decisions_and_days": same}


def pipeline_figure(
    store: Path, key: Path, batch: WireBatch, instants: Any, runs: int
) -> dict[str, Any]:
    """`server.pipeline.answer_chunk` on 50,000-pair chunks in this process, days against
    instants (the server's own work, no gRPC)."""
    from lez.api.v1 import access_pb2 as pb
    from lez.keys import load_key
    from lez.rules import load_catalog
    from lez.store import open_store
    from server.pipeline import AnswerContext, answer_chunk

    keyer = load_key(key)
    reader = open_store(store)
    with reader.snapshot() as snap:
        revision = load_catalog(snap.ruleset_texts()).get()
    context = AnswerContext(
        revision=revision, zone_id=revision.zone(ZONE).id, keyer=keyer,
        store_key_id=keyer.key_id, max_plate_bytes=32, max_chunk_pairs=CHUNK_PAIRS,
    )  # fmt: skip
    n = (len(batch) // CHUNK_PAIRS) * CHUNK_PAIRS
    by_day, by_instant = [], []
    for start in range(0, n, CHUNK_PAIRS):
        stop = start + CHUNK_PAIRS
        window = batch.offsets[start : stop + 1]
        first = int(window[0])
        column = pb.PlateColumn(
            data=batch.data[first : int(window[-1])],
            offsets=(window - np.uint32(first)).astype("<u4").tobytes(),
        )
        countries = batch.countries[2 * start : 2 * stop]
        by_day.append(
            pb.CheckChunk(
                plates=column,
                countries=countries,
                days=batch.days[start:stop].astype("<i4").tobytes(),
            )
        )
        by_instant.append(pb.CheckChunk(
            plates=column, countries=countries,
            instants=instants[start:stop].astype("<i8").tobytes(),
            instant_unit=pb.INSTANT_UNIT_MILLISECONDS,
        ))  # fmt: skip
    try:
        with reader.snapshot() as snap:

            def run(chunks: list[pb.CheckChunk]) -> None:
                for chunk in chunks:
                    answer_chunk(snap, context, chunk, technical=True)

            fig = _ab(lambda: run(by_day), lambda: run(by_instant), runs)
    finally:
        reader.close()
    return fig | {"pairs": n, "chunk_pairs": CHUNK_PAIRS}


def measure(
    store: Path, key: Path, extract: Path, pairs: int, runs: int, scratch: Path, seed: int = 1
) -> dict[str, Any]:
    register = read_plates(extract)
    b = batch_from_plates(register, pairs, seed, day_from=DAY_FROM, day_to=DAY_TO)
    batch = wire_batch(b.plates, b.countries, b.days)
    instants = read_instants(batch.days, seed)
    out: dict[str, Any] = {
        "zone": ZONE,
        "days": [DAY_FROM.isoformat(), DAY_TO.isoformat()],
        "bar": f"instants at most {round((BAR - 1) * 100)} % more than days",
    }
    out["pipeline"] = pipeline_figure(store, key, batch, instants, runs)
    out["stream"] = stream_figure(store, key, scratch, batch, instants, runs)
    out["within_bar"] = out["stream"]["ratio_median_of_runs"] <= BAR
    return out


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.instants_bench", __doc__)
    p.add_argument("--store", type=Path, required=True, help="store root (lez-loader build)")
    p.add_argument("--key", type=Path, required=True, help="the store's HMAC key file")
    p.add_argument("--extract", type=Path, required=True, help="the store's extract (plates)")
    p.add_argument("--pairs", type=int, default=500_000)
    p.add_argument("--runs", type=int, default=7, help="timed runs per side, alternating")
    p.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    p.add_argument("--scratch", type=Path, default=ROOT / "var" / "bench" / "instants")
    a = p.parse_args(argv)
    res = {
        "bench": "reads with a time: instants column against days",
        "date": report.now(),
        "commit": report.commit(),
        "machine": report.machine(),
        "command": "python -m bench.instants_bench " + " ".join(argv or sys.argv[1:]),
        **measure(a.store, a.key, a.extract, a.pairs, a.runs, a.scratch),
    }
    text = json.dumps(res, indent=2, default=float)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(text)
    return 0 if res["within_bar"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
