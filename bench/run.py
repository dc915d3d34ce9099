"""The bench: daily volumes end to end, peers side by side, scaling curves, in one run.

    python -m bench.run --plates 8000000 --runs 5 --out bench/results     # make bench
    python -m bench.run --quick --out var/bench-quick                      # make bench-quick

What it does, in order (every figure: median of `--runs` runs, with min and max, after a
warm-up; all on this machine, in this run):

1. Generates or reuses (under `var/bench/`, git-ignored) the synthetic register
   (`lez-loader synth`), the HMAC key and the store (`lez-loader build`), and the peers' copy
   of the same register versions (`bench.peer_data`).
2. Starts `lez-server serve` (2 worker processes, loopback) and measures `CheckStream` of
   100,000, 500,000 and 1,000,000 pairs with the realistic camera mix (`bench.workload`), end
   to end through the Python client with keying on the server, plus smaller batches for the
   batch-size curve; unary `Check` from one sequential client and from concurrent clients; the
   decisions of a wide sample (every zone, days 2016-2027) for the equality checks. Then the
   500,000-pair stream again with 1 worker process.
3. DuckDB (in-process, 2 threads) on plain plates and with HMAC keys computed in SQL, and
   PostgreSQL (a private server started here), on the same 500,000-pair batch and rules
   (`bench.sqlrules`, generated from the compiled revision); each peer's decisions are compared
   with ours on the whole batch and on the wide sample.
4. Per-pair cost against store size (registers of 1M to 16M plates, each its own server).
5. The engine alone on one core (`bench.engine_bench`, zones Antwerpen and Brussels).
6. The loader build (`bench.build_bench`).
7. The warning campaign (`bench.campaign_bench`): `LosingAccess` for the Brussels zone's
   municipalities on the main store, end to end through the client.
8. The audit's cost (`bench.audit_bench`): the 500,000-pair stream with mutual TLS and the
   audit against plain TCP with the audit off; the unary ladder (the gRPC-plus-one-flush
   ceiling, one sequential caller, 32 callers from 2 client processes); `audit find` over
   synthetic days of audit at 1.5 M pairs a day (`bench.audit_find_bench`).
9. The daily sync (`bench.sync_bench`): a day of the DIV feed applied and published, a day end
   to end from the stand-in over HTTPS, serving while a day lands, 30 daily layers against a
   fresh build, compaction.
10. Reads with a time (`bench.instants_bench`): the 500,000-pair stream (100,000 with
   `--quick`) with an instants column against the same stream with days, alternating runs.
11. Writes `results.json`, `README-table.md` and `scaling.png` to `--out` (and, for a full run
   into the default folder, the README's table).

Exit status 1 when a peer decides differently from the service (results are written first).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench import (
    audit_bench,
    audit_find_bench,
    build_bench,
    campaign_bench,
    cli_help,
    instants_bench,
    memory,
    pair_breakdown,
    report,
    sync_bench,
)
from bench.peer_data import (
    SELECTION_VERSION,
    Decided,
    PeerRegister,
    WireBatch,
    peer_register,
    wire_batch,
)
from bench.stream import LezServer, StreamClient, free_port, unary
from bench.unary_floor import FloorServer
from bench.workload import Item, batch_from_plates, read_plates
from clients.settings import ClientSettings
from lez.days import from_day
from lez.keys import load_key
from lez.rules import Revision, load_catalog_dir
from lez.store import pages
from lez.store.reader import current_build
from lez.vehicle import FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ZONE = "Antwerpen"  # the workload's mix is Antwerp's (docs/sources.md#reference-data)
ENGINE_ZONES = ("Antwerpen", "Brussels")
ENGINE_PAIRS = 1_000_000
DAY_FROM, DAY_TO = dt.date(2026, 10, 19), dt.date(2026, 10, 25)  # one week, sent days later
WIDE_FROM, WIDE_TO = dt.date(2016, 1, 1), dt.date(2027, 12, 31)  # every rule period, zone starts
FIELDS = ("outcome", "reason", "allowed_until", "euro")
DEFAULT_OUT = ROOT / "bench" / "results"
WORKER_OWN_MIB_LIMIT = 150.0
"""A worker's own memory (beyond the shared store map) during the largest stream, at most."""
SIMPLIFIED_RULES = ROOT / "bench" / "rules-simplified"
"""A bench-only rule revision (not legal rules): one zone, one euro minimum per fuel. The service
serves it beside the store's revisions and the bench pins it; DuckDB runs it as SQL too, so the
cost of the rules shows apart from the engine (bench/README.md#duckdb-at-its-best)."""


@dataclass(frozen=True, slots=True)
class Config:
    plates: int
    runs: int
    seed: int
    out: Path
    scratch: Path
    quick: bool
    stream_sizes: tuple[int, ...]
    small_sizes: tuple[int, ...]
    compare_pairs: int
    wide_pairs: int
    store_sizes: tuple[int, ...]
    store_batch_pairs: int
    unary_seconds: float
    unary_threads: int
    build_runs: int
    engine_runs: int
    server_workers: int
    postgres: bool


def parse(argv: list[str] | None) -> Config:
    p = cli_help.parser(
        "python -m bench.run",
        __doc__,
        epilog="A full run keeps about 11 GiB under --scratch and refuses to start when the disk "
        "cannot hold about 12 GiB there (less what it holds already); the quick run needs 1 GiB.",
    )
    p.add_argument(
        "--plates",
        type=int,
        default=8_000_000,
        help="plates of the main register (default 8,000,000)",
    )
    p.add_argument(
        "--runs", type=int, default=5, help="timed runs per figure, after a warm-up (default 5)"
    )
    p.add_argument(
        "--seed", type=int, default=1, help="seed of the generated register and batches (default 1)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="results folder; the default one also rewrites the README's table (a full run only)",
    )
    p.add_argument(
        "--scratch",
        type=Path,
        default=ROOT / "var" / "bench",
        help="folder of the registers, stores and servers' files, reused between runs "
        "(default var/bench)",
    )
    p.add_argument("--quick", action="store_true", help="small register, few runs (about 4 min)")
    p.add_argument("--no-postgres", action="store_true", help="leave PostgreSQL out")
    p.add_argument(
        "--store-sizes",
        default=None,
        help="comma-separated plates of the store-size curve (default 1M,2M,4M,8M,16M)",
    )
    p.add_argument(
        "--build-runs",
        type=int,
        default=None,
        help="timed loader builds (default 3; 1 with --quick)",
    )
    a = p.parse_args(argv)
    if a.quick:
        plates = 200_000 if a.plates == 8_000_000 else a.plates
        stores: tuple[int, ...] = (50_000, plates)
        return Config(
            plates=plates, runs=min(a.runs, 2), seed=a.seed, out=a.out, scratch=a.scratch,
            quick=True, stream_sizes=(100_000,), small_sizes=(1_000, 10_000),
            compare_pairs=100_000, wide_pairs=5_000, store_sizes=stores,
            store_batch_pairs=50_000, unary_seconds=1.0, unary_threads=8,
            build_runs=a.build_runs or 1, engine_runs=3, server_workers=2,
            postgres=not a.no_postgres,
        )  # fmt: skip
    stores = (
        tuple(int(float(x)) for x in a.store_sizes.split(","))
        if a.store_sizes
        else (1_000_000, 2_000_000, 4_000_000, a.plates, 2 * a.plates)
    )
    return Config(
        plates=a.plates, runs=a.runs, seed=a.seed, out=a.out, scratch=a.scratch, quick=False,
        stream_sizes=(100_000, 500_000, 1_000_000), small_sizes=(1_000, 10_000),
        compare_pairs=500_000, wide_pairs=20_000, store_sizes=tuple(sorted(set(stores))),
        store_batch_pairs=500_000, unary_seconds=3.0, unary_threads=8,
        build_runs=a.build_runs or 3, engine_runs=7, server_workers=2,
        postgres=not a.no_postgres,
    )  # fmt: skip


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---- data ----------------------------------------------------------------------------------


AUDIT_WINDOW_MS = 2
"""The alternative audit durability measured beside the default (sync every record)."""


def unary_figure(
    address: str, requests: list[tuple[str, str, str]], threads: int, cfg: Config
) -> dict[str, Any]:
    """Unary `Check` from `threads` callers: p50, p99 and calls/s over `cfg.runs` runs."""
    log(f"unary Check, {threads} caller(s), {cfg.runs} x {cfg.unary_seconds} s")
    unary(address, requests, ZONE, threads=threads, seconds=0.5)  # warm-up
    per = [
        unary(address, requests, ZONE, threads=threads, seconds=cfg.unary_seconds)
        for _ in range(cfg.runs)
    ]
    return {
        "callers": threads,
        "command": f"LezClient.check(plate, zone={ZONE!r}, day=..., country=...) "
        f"in a loop, {threads} thread(s), one client each, {cfg.unary_seconds} s per run",
        **{
            k: {
                "median": round(float(np.median([r[k] for r in per])), 3),
                "min": round(min(r[k] for r in per), 3),
                "max": round(max(r[k] for r in per), 3),
            }
            for k in ("p50_ms", "p99_ms", "calls_per_s")
        },
        "runs": len(per),
    }


_AS_PUBLISHED: set[Path] = set()


def _as_published(build: Path) -> None:
    """Leave a reused build out of the page cache as the loader leaves a new one, so the servers
    read it in huge pages (`lez.store.pages`); an earlier run's loader may have cached it in
    small pages. Once a run: after that the servers' own reads have cached it as they would."""
    if build not in _AS_PUBLISHED:
        _AS_PUBLISHED.add(build)
        pages.drop_cached(build / "data.mdb")


def ensure_store(plates: int, cfg: Config, key: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(extract, store root, store facts) for a register size, built once and then reused.

    The facts are the build's own report (`lez-loader build --json`), kept in a stamp beside the
    store. A reused store's build time is an earlier run's: it is reported as
    `build_seconds_cached` with the date of that build (`build_seconds_cached_from`), never as
    `build_seconds`, which only a build in this run gives.
    """
    extract = build_bench.ensure_register(plates, cfg.seed, cfg.scratch)
    store = cfg.scratch / f"store-{plates}-{cfg.seed}"
    stamp = store / "bench-build.json"
    keyer = load_key(key)
    if stamp.exists():
        info = json.loads(stamp.read_text())
        if (
            info.get("key_id") == keyer.key_id
            and info.get("extract_bytes") == extract.stat().st_size
            and info.get("selection") == SELECTION_VERSION
            and info.get("format_version") == FORMAT_VERSION
        ):
            mtime = dt.datetime.fromtimestamp(stamp.stat().st_mtime, dt.UTC)
            info["store_reused"] = True
            info["build_seconds_cached"] = info.pop("build_seconds", None)
            info["build_seconds_cached_from"] = info.pop("built_at", None) or mtime.isoformat(
                timespec="seconds"
            )
            _as_published(current_build(store))
            return extract, store, info
    built = build_bench.build_once(extract, key, store)
    info = {
        "key_id": keyer.key_id,
        "extract_bytes": extract.stat().st_size,
        "selection": SELECTION_VERSION,
        "format_version": FORMAT_VERSION,
        "plates": built["plates"],
        "versions": built["versions"],
        "rows_read": built["rows_read"],
        "store_bytes": built["store_bytes"],
        "build_seconds": built["seconds"],
        "built_at": report.now(),
    }
    stamp.write_text(json.dumps(info, indent=2) + "\n")
    return extract, store, info | {"store_reused": False}


def make_wire(
    register: Any, n: int, seed: int, day_from: dt.date, day_to: dt.date
) -> tuple[WireBatch, np.ndarray]:
    b = batch_from_plates(register, n, seed, day_from=day_from, day_to=day_to)
    return wire_batch(b.plates, b.countries, b.days), b.kinds


# ---- equality ------------------------------------------------------------------------------


def compare(ours: Decided, peer: Decided, kinds: np.ndarray, days: np.ndarray) -> dict[str, Any]:
    """Field-by-field equality of a peer's decisions with ours (no plates in the report)."""
    bad = np.zeros(len(kinds), dtype=np.bool_)
    per_field = {}
    for f in FIELDS:
        diff = getattr(ours, f) != getattr(peer, f)
        per_field[f] = int(diff.sum())
        bad |= diff
    rows = np.flatnonzero(bad)[:10]
    return {
        "pairs": len(kinds),
        "equal": not bad.any(),
        "mismatches": int(bad.sum()),
        "by_field": per_field,
        "examples": [
            {
                "row": int(i),
                "kind": Item(int(kinds[i])).name,
                "day": from_day(int(days[i])).isoformat(),
                "ours": [int(getattr(ours, f)[i]) for f in FIELDS],
                "peer": [int(getattr(peer, f)[i]) for f in FIELDS],
            }
            for i in rows
        ],
    }


def us_per_pair(s: dict[str, Any], n: int) -> dict[str, float]:
    return {
        "median": round(s["median_s"] / n * 1e6, 3),
        "min": round(s["min_s"] / n * 1e6, 3),
        "max": round(s["max_s"] / n * 1e6, 3),
    }


def stream_figure(
    client: StreamClient, batch: WireBatch, runs: int, ruleset: str | None = None
) -> tuple[dict[str, Any], Any]:
    return rows_figure(client, client.pairs(batch), len(batch), runs, ruleset)


def rows_figure(
    client: StreamClient, rows: Any, n: int, runs: int, ruleset: str | None = None
) -> tuple[dict[str, Any], Any]:
    """The stream figure of `n` batch rows as the client sends them (plates or keys)."""
    s, res = report.timed(lambda: client.decide(rows, ZONE, ruleset), runs)
    return {
        "pairs": n,
        "seconds": s,
        "pairs_per_s": round(n / s["median_s"]),
        "us_per_pair": us_per_pair(s, n),
    }, res


# ---- phases --------------------------------------------------------------------------------


def phase_service(
    cfg: Config, store: Path, key: Path, register: Any, revision: Revision, res: dict[str, Any]
) -> dict[str, Any]:
    """Our figures on the main store; returns the batches and our decisions for the peers."""
    biggest = max((*cfg.stream_sizes, cfg.compare_pairs))
    log(f"workload: {biggest:,} pairs {DAY_FROM}..{DAY_TO}, zone {ZONE}")
    full, kinds = make_wire(register, biggest, cfg.seed, DAY_FROM, DAY_TO)
    counts = np.bincount(kinds, minlength=len(Item))
    res["workload"] = {
        "zone": ZONE,
        "days": [DAY_FROM.isoformat(), DAY_TO.isoformat()],
        "mix_of_largest_batch": {k.name.lower(): int(counts[k]) for k in Item},
        "note": "batches of other sizes are prefixes of the largest one",
    }
    wide = {}
    for zone in revision.zones:
        wb, wk = make_wire(register, cfg.wide_pairs, cfg.seed + 1000 + zone.id, WIDE_FROM, WIDE_TO)
        wide[zone.id] = (wb, wk)
    out: dict[str, Any] = {"compare": full.slice(cfg.compare_pairs), "kinds": kinds}
    simplified = load_catalog_dir(SIMPLIFIED_RULES).get()
    with LezServer(
        store, key, cfg.scratch / "server", workers=cfg.server_workers,
        extra_args=("--rules-dir", str(SIMPLIFIED_RULES)),
    ) as server:  # fmt: skip
        client = StreamClient(server.address)
        try:
            stream: list[dict[str, Any]] = []
            batch_curve: list[dict[str, Any]] = []
            for n in sorted({*cfg.small_sizes, *cfg.stream_sizes, cfg.compare_pairs}):
                runs = cfg.runs if n >= 100_000 else max(cfg.runs, 10)
                log(f"CheckStream {n:,} pairs x {runs}")
                if n == max(cfg.stream_sizes):
                    (fig, got), peaks = memory.sample_while(
                        lambda: memory.children(server.pid),
                        partial(stream_figure, client, full.slice(n), runs),
                    )
                    res["memory_per_worker"] = {
                        "pairs": n,
                        **memory.worker_report(peaks, WORKER_OWN_MIB_LIMIT),
                    }
                else:
                    fig, got = stream_figure(client, full.slice(n), runs)
                fig["command"] = (
                    f"LezClient.check_batch(<{n:,} packed pairs>, zone={ZONE!r}) against "
                    f"lez-server serve --workers {cfg.server_workers} (loopback, plain TCP)"
                )
                batch_curve.append(fig)
                if n in cfg.stream_sizes:
                    stream.append(fig)
                if n == cfg.compare_pairs:
                    out["ours_compare"] = got
                    out["ours_compare_fig"] = fig
            log(f"CheckStream {cfg.compare_pairs:,} pairs x {cfg.runs}, simplified rules")
            fig, got = stream_figure(client, out["compare"], cfg.runs, simplified.id)
            fig["command"] = (
                f"LezClient.check_batch(<{cfg.compare_pairs:,} packed pairs>, zone={ZONE!r}, "
                f"ruleset={simplified.id!r}) (bench-only simplified rules, {SIMPLIFIED_RULES.name})"
            )
            out["ours_simplified"], out["ours_simplified_fig"] = got, fig
            prekeyed = client.prekeyed(out["compare"], key)
            keyed = len(prekeyed.days)
            log(f"CheckStream {keyed:,} pre-keyed pairs x {cfg.runs}")
            fig, _ = rows_figure(client, prekeyed, keyed, cfg.runs)
            fig["command"] = (
                f"LezClient.check_batch(BatchRows.of_keys(<the same batch's {keyed:,} keyable "
                f"plates, keyed by the client>), zone={ZONE!r})"
            )
            out["ours_prekeyed_fig"] = fig
            out["simplified_revision"] = simplified
            res["stream"] = stream
            res["scaling"]["batch_size"] = [
                {
                    "pairs": f["pairs"],
                    "us_per_pair": f["us_per_pair"],
                    "seconds": f["seconds"],
                    "command": f["command"],
                }
                for f in batch_curve
            ]
            res["scaling"]["batch_store_plates"] = cfg.plates
            res["scaling"]["workers"] = [
                {"workers": cfg.server_workers, "seconds": out["ours_compare_fig"]["seconds"]}
            ]
            res["scaling"]["workers_batch_pairs"] = cfg.compare_pairs
            out["wide"] = {}
            for zid, (wb, wk) in wide.items():
                out["wide"][zid] = (wb, wk, client.decide(client.pairs(wb), str(zid)))
        finally:
            client.close()
        sample = full.slice(min(len(full), 20_000))
        cty = np.frombuffer(sample.countries, dtype="S2").astype(str)
        requests = [
            (
                sample.data[int(sample.offsets[i]) : int(sample.offsets[i + 1])].decode(),
                cty[i],
                from_day(int(sample.days[i])).isoformat(),
            )
            for i in range(len(sample))
        ]
        res["unary"] = {
            "sequential": unary_figure(server.address, requests, 1, cfg),
            "concurrent": unary_figure(server.address, requests, cfg.unary_threads, cfg),
        }
    log(f"unary Check with audit records synced within {AUDIT_WINDOW_MS} ms instead of each")
    with LezServer(
        store, key, cfg.scratch / "server", extra_args=("--audit-sync-ms", str(AUDIT_WINDOW_MS))
    ) as server:
        windowed = unary_figure(server.address, requests, 1, cfg)
        windowed["server_option"] = f"--audit-sync-ms {AUDIT_WINDOW_MS}"
        res["unary"]["sequential_audit_window"] = windowed
    for mode, what in (("empty", "does no work"), ("flush", "only flushes one record a call")):
        log(f"unary ceiling: a gRPC server with the same options that {what}")
        with FloorServer(mode, cfg.scratch / "floor") as floor:
            fig = unary_figure(floor.address, requests, 1, cfg)
            fig["server"] = f"python -m bench.unary_floor --mode {mode}"
            res["unary"][f"ceiling_{mode}"] = fig
    log(f"CheckStream {cfg.compare_pairs:,} pairs with 1 worker process")
    with LezServer(store, key, cfg.scratch / "server", workers=1) as server:
        client = StreamClient(server.address)
        try:
            fig, _ = stream_figure(client, out["compare"], cfg.runs)
        finally:
            client.close()
        log(f"CheckStream {cfg.compare_pairs:,} pairs, 1 worker, 1 connection, and its stages")
        single = StreamClient(server.address, connections=1)
        try:
            serial, _ = stream_figure(single, out["compare"], cfg.runs)
        finally:
            single.close()
    res["stream_breakdown"] = pair_breakdown.breakdown(
        store, key, out["compare"], ZONE, chunk_pairs=ClientSettings().default_chunk_pairs,
        runs=cfg.runs, end_to_end_s=serial["seconds"]["median_s"],
    )  # fmt: skip
    res["stream_breakdown"]["end_to_end"] = serial
    res["scaling"]["workers"].insert(0, {"workers": 1, "seconds": fig["seconds"]})
    for w in res["scaling"]["workers"]:
        w["command"] = (
            f"LezClient.check_batch(<{cfg.compare_pairs:,} packed pairs>, zone={ZONE!r}) "
            f"against lez-server serve --workers {w['workers']}"
        )
    return out


def phase_instants(cfg: Config, extract: Path, store: Path, key: Path, res: dict[str, Any]) -> None:
    """The stream with an instants column against days (`bench.instants_bench`)."""
    pairs = 100_000 if cfg.quick else 500_000
    log(f"CheckStream {pairs:,} pairs: instants against days x {2 * cfg.runs}")
    res["instants"] = instants_bench.measure(
        store, key, extract, pairs, 2 * cfg.runs, cfg.scratch / "instants", seed=cfg.seed
    )


def phase_duckdb(
    cfg: Config, preg: PeerRegister, revision: Revision, key: Path, ours: dict[str, Any],
    res: dict[str, Any],
) -> None:  # fmt: skip
    import duckdb

    from bench.peers_duckdb import DuckPeer

    log("DuckDB: loading the register")
    peer = DuckPeer(preg.path, revision, load_key(key), threads=2)
    zone_id = revision.zone(ZONE).id
    cmp = res["comparison_500k"]
    eq = res["equality"]
    batch: WireBatch = ours["compare"]

    def run(keyed: bool) -> Decided:
        return peer.decide(batch, zone_id, keyed=keyed)

    try:
        hmac_ok = peer.check_hmac(["1ABC234", "ABC123", "LENA12", "1ABC23"])
        for keyed, name in ((False, "duckdb_plain"), (True, "duckdb_hmac")):
            log(f"DuckDB {name}: {cfg.compare_pairs:,} pairs x {cfg.runs}")
            s, got = report.timed(partial(run, keyed), cfg.runs)
            cmp[name] = {
                "seconds": s,
                "pairs_per_s": round(len(batch) / s["median_s"]),
                "ratio_to_ours": round(
                    s["median_s"] / cmp["ours_stream"]["seconds"]["median_s"], 3
                ),
                "load_s": round(peer.load_hmac_s if keyed else peer.load_plain_s, 3),
                "version": duckdb.__version__,
                "threads": 2,
                "command": "DuckDB :memory:, threads=2: register the batch (Arrow over the packed "
                "columns), run bench.sqlrules.decision_sql, fetch Arrow, reorder"
                + ("; keys = HMAC-SHA256 composed from sha256() in SQL" if keyed else ""),
            }
            if keyed:
                cmp[name]["hmac_sql_equals_lez_keys"] = hmac_ok
            kinds = ours["kinds"][: len(batch)]
            eq[name] = {"batch": compare(ours["ours_compare"], got, kinds, batch.days)}
            for zid, (wb, wk, mine) in ours["wide"].items():
                theirs = peer.decide(wb, zid, keyed=keyed)
                eq[name][f"wide_zone_{zid}"] = compare(mine, theirs, wk, wb.days)
        simplified: Revision = ours["simplified_revision"]
        simple_zone = simplified.zone(ZONE).id
        log(f"DuckDB duckdb_simplified: {cfg.compare_pairs:,} pairs x {cfg.runs}")
        s, got = report.timed(
            lambda: peer.decide(batch, simple_zone, keyed=False, revision=simplified), cfg.runs
        )
        ours_simple = cmp["ours_stream_simplified"]["seconds"]["median_s"]
        cmp["duckdb_simplified"] = {
            "seconds": s,
            "pairs_per_s": round(len(batch) / s["median_s"]),
            "ratio_to_ours": round(s["median_s"] / ours_simple, 3),
            "ratio_to": "ours_stream_simplified",
            "version": duckdb.__version__,
            "threads": 2,
            "command": f"as duckdb_plain, with the bench-only simplified revision {simplified.id}",
        }
        kinds = ours["kinds"][: len(batch)]
        eq["duckdb_simplified"] = {
            "batch": compare(ours["ours_simplified"], got, kinds, batch.days)
        }
    finally:
        peer.close()


def phase_postgres(
    cfg: Config, preg: PeerRegister, revision: Revision, ours: dict[str, Any], res: dict[str, Any]
) -> None:
    from bench.peers_postgres import PLAN_NOTE, PgPeer, PgServer, pg_bin_dir

    cmp = res["comparison_500k"]
    if not cfg.postgres:
        cmp["postgres"] = {"skipped": "--no-postgres"}
        return
    try:
        server = PgServer(cfg.scratch / "pg", free_port())
    except Exception as exc:
        cmp["postgres"] = {"skipped": f"PostgreSQL unavailable: {exc}"}
        return
    log(f"PostgreSQL: starting a private server ({pg_bin_dir()})")
    try:
        server.start()
    except Exception as exc:
        log(f"PostgreSQL did not start: {exc}")
        cmp["postgres"] = {"skipped": f"PostgreSQL did not start: {exc}"}
        server.stop()
        return
    try:
        start = time.perf_counter()
        peer = PgPeer(server, preg.path, revision)
        load_s = time.perf_counter() - start
        zone_id = revision.zone(ZONE).id
        batch = ours["compare"]
        log(f"PostgreSQL: {cfg.compare_pairs:,} pairs x {cfg.runs}")
        s, got = report.timed(lambda: peer.decide(batch, zone_id), cfg.runs)
        cmp["postgres"] = {
            "seconds": s,
            "pairs_per_s": round(len(batch) / s["median_s"]),
            "ratio_to_ours": round(s["median_s"] / cmp["ours_stream"]["seconds"]["median_s"], 3),
            "load_s": round(load_s, 3),
            "load_stages_s": {k: round(v, 3) for k, v in peer.load_s.items()},
            "version": server.version(),
            "plan": PLAN_NOTE,
            "command": "psycopg: TRUNCATE; COPY batch FROM STDIN (csv); ANALYZE; "
            "COPY (bench.sqlrules.decision_sql, nested skeleton) TO STDOUT; parse; reorder",
        }
        kinds = ours["kinds"][: len(batch)]
        eq = res["equality"]
        eq["postgres"] = {"batch": compare(ours["ours_compare"], got, kinds, batch.days)}
        for zid, (wb, wk, mine) in ours["wide"].items():
            eq["postgres"][f"wide_zone_{zid}"] = compare(mine, peer.decide(wb, zid), wk, wb.days)
        peer.close()
    finally:
        server.stop()


def phase_store_sizes(cfg: Config, key: Path, res: dict[str, Any]) -> None:
    curve = []
    for plates in cfg.store_sizes:
        log(f"store size {plates:,}: register and store")
        extract, store, info = ensure_store(plates, cfg, key)
        register = read_plates(extract)
        batch, _ = make_wire(register, cfg.store_batch_pairs, cfg.seed + 7, DAY_FROM, DAY_TO)
        del register
        with LezServer(store, key, cfg.scratch / "server", workers=cfg.server_workers) as server:
            client = StreamClient(server.address)
            try:
                log(f"store size {plates:,}: CheckStream {len(batch):,} x {cfg.runs}")
                fig, _ = stream_figure(client, batch, cfg.runs)
            finally:
                client.close()
        curve.append(
            {
                "plates": plates,
                "store_plates": info["plates"],
                "store_versions": info["versions"],
                "seconds": fig["seconds"],
                "us_per_pair": fig["us_per_pair"],
                "command": f"LezClient.check_batch(<{len(batch):,} packed pairs drawn from this "
                f"register>, zone={ZONE!r}) against lez-server serve --workers "
                f"{cfg.server_workers} on the {plates:,}-plate store",
            }
        )
    res["scaling"]["store_size"] = curve
    res["scaling"]["store_batch_pairs"] = cfg.store_batch_pairs
    if len(curve) >= 2:
        lo, hi = curve[0]["us_per_pair"]["median"], curve[-1]["us_per_pair"]["median"]
        res["scaling"]["store_size_ratio_largest_to_smallest"] = round(hi / lo, 3)
        # the register size the service is sized for (8M in `make bench`) against the smallest
        main_size = max(p for p in cfg.store_sizes if p <= cfg.plates)
        if main_size > curve[0]["plates"]:
            at_main = next(p for p in curve if p["plates"] == main_size)
            res["scaling"]["store_size_ratio_main_to_smallest"] = {
                "from_plates": curve[0]["plates"],
                "to_plates": main_size,
                "ratio": round(at_main["us_per_pair"]["median"] / lo, 3),
            }


def phase_engine(cfg: Config, res: dict[str, Any]) -> None:
    """`bench.engine_bench` per zone, each in a process of its own (it pins itself to one
    core, which this process and the servers it starts must not inherit)."""
    zones: dict[str, Any] = {}
    for zone in ENGINE_ZONES:
        args = ["--pairs", str(ENGINE_PAIRS), "--runs", str(cfg.engine_runs), "--zone", zone]
        log(f"engine alone, one core: {ENGINE_PAIRS:,} pairs x {cfg.engine_runs}, zone {zone}")
        done = subprocess.run(
            [sys.executable, "-m", "bench.engine_bench", *args],
            check=True, cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
        zones[zone] = json.loads(done.stdout) | {
            "command": "python -m bench.engine_bench " + " ".join(args)
        }
    res["engine"] = {
        "what": "lez.rules.evaluate on a synthetic chunk already in memory (records, days, "
        "registrations), one core, median of the runs after two warm-ups",
        "zones": zones,
    }


def phase_build(cfg: Config, extract: Path, key: Path, res: dict[str, Any]) -> None:
    """`bench.build_bench` by its command line (each build a fresh process into a fresh store;
    the peak memory of each build is that process's own, from `wait4`)."""
    log(f"loader build of the {cfg.plates:,}-plate extract x {cfg.build_runs}")
    out = cfg.scratch / "build-bench"
    subprocess.run(
        [sys.executable, "-m", "bench.build_bench", "--plates", str(cfg.plates),
         "--seed", str(cfg.seed), "--runs", str(cfg.build_runs),
         "--scratch", str(cfg.scratch), "--out", str(out)],
        check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    got = json.loads((out / "build.json").read_text())
    res["loader_build"] = {
        "command": f"python -m bench.build_bench --plates {cfg.plates} --runs {cfg.build_runs} "
        f"(lez-loader build of the {cfg.plates:,}-plate extract into a fresh store per run)",
        "seconds": got["seconds"] | {"runs": got["runs"]},
        "median_run": got["median_run"],
        "note": "no warm-up run: each build is a fresh process into a fresh store; peak RSS is "
        "the median run's own (wait4 on that build process)",
    }


def phase_audit(cfg: Config, res: dict[str, Any]) -> None:
    """The audit's cost on the main store, and `audit find` over synthetic days of audit."""
    log("audit: 500k-pair stream with mutual TLS and the audit vs plain TCP without; unary ladder")
    res["audit"] = audit_bench.run(
        plates=cfg.plates, seed=cfg.seed, scratch=cfg.scratch, runs=cfg.runs,
        unary_seconds=cfg.unary_seconds,
    )  # fmt: skip
    days = 3 if cfg.quick else 30
    argv = ["--days", str(days), "--runs", str(min(cfg.runs, 3)), "--dir",
            str(cfg.scratch / "audit-find")]  # fmt: skip
    log(f"audit find over {days} days of synthetic audit at 1.5 M pairs a day")
    res["audit"]["find"] = audit_find_bench.run(audit_find_bench.parse(argv))


def phase_campaign(cfg: Config, store: Path, key: Path, res: dict[str, Any]) -> None:
    """`bench.campaign_bench` on the main store (its own server)."""
    log(f"warning campaign: LosingAccess for zone {campaign_bench.ZONE}'s municipalities")
    res["campaign"] = campaign_bench.measure(store, key, cfg.scratch / "server", cfg.runs) | {
        "command": f"python -m bench.campaign_bench --store {store} --key {key} --runs {cfg.runs}"
    }


def phase_sync(cfg: Config, res: dict[str, Any]) -> None:
    """The daily sync's figures (`bench.sync_bench`) on the same register."""
    log("daily sync: a day applied, end to end over HTTPS, serving during a sync, layers")
    days = 3 if cfg.quick else 30
    argv = ["--plates", str(cfg.plates), "--days", str(days), "--runs", str(cfg.runs),
            "--compact-runs", "1" if cfg.quick else "3", "--serving-runs", "2",
            "--seed", str(cfg.seed), "--scratch", str(cfg.scratch)]  # fmt: skip
    res["mutations"] = sync_bench.run(sync_bench.parse(argv)) | {
        "command": "python -m bench.sync_bench " + " ".join(argv)
    }


FULL_RUN_BYTES = 12 << 30
"""What a full run keeps and writes under its scratch folder at most: the registers and stores
of 1M to 16M plates, the peers' copy, the sync's bases and layers, and the servers' audit
records (about 11 GiB after a full run at 8M plates on the bench machine)."""
QUICK_RUN_BYTES = 1 << 30


def require_disk_space(scratch: Path, needed: int, free: int | None = None) -> None:
    """Refuse to start when the scratch folder's disk cannot hold a run: `needed` bytes, less
    what the folder already holds (its registers and stores are reused)."""
    held = sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file() and not f.is_symlink())
    free = shutil.disk_usage(scratch).free if free is None else free
    short = needed - held - free
    if short > 0:
        raise SystemExit(
            f"the bench needs about {needed / 2**30:.0f} GiB under {scratch} ({held / 2**30:.1f} "
            f"GiB there already) and the disk has {free / 2**30:.1f} GiB free: free "
            f"{short / 2**30:.1f} GiB more, or point --scratch at a larger disk"
        )


def main(argv: list[str] | None = None) -> int:
    cfg = parse(argv)
    t0 = time.perf_counter()
    cfg.scratch.mkdir(parents=True, exist_ok=True)
    require_disk_space(cfg.scratch, QUICK_RUN_BYTES if cfg.quick else FULL_RUN_BYTES)
    res: dict[str, Any] = {
        "bench": "lez access service, issue 6",
        "date": report.now(),
        "commit": report.commit(),
        "machine": report.machine(),
        "conditions_at_start": report.conditions(cfg.scratch),
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {
            "plates": cfg.plates,
            "runs": cfg.runs,
            "seed": cfg.seed,
            "quick": cfg.quick,
            "server_workers": cfg.server_workers,
            "zone": ZONE,
        },
        "scaling": {},
        "comparison_500k": {},
        "equality": {},
    }
    key = build_bench.ensure_key(cfg.scratch)
    log(f"register of {cfg.plates:,} plates, key and store (reused when present)")
    extract, store, info = ensure_store(cfg.plates, cfg, key)
    res["register"] = {"extract": str(extract.relative_to(ROOT)) if extract.is_relative_to(ROOT)
                       else str(extract), **info}  # fmt: skip
    log("peers' copy of the register")
    preg = peer_register(extract, key, cfg.scratch / f"peers-{cfg.plates}-{cfg.seed}")
    if preg.versions != info["versions"] or preg.plates != info["plates"]:
        raise SystemExit(
            f"peer register ({preg.versions} versions, {preg.plates} plates) differs from the "
            f"store ({info['versions']}, {info['plates']}): the peers would not see the same data"
        )
    revision = load_catalog_dir(ROOT / "rules").get()
    res["config"]["ruleset_revision"] = revision.id
    register = read_plates(extract)
    ours = phase_service(cfg, store, key, register, revision, res)
    del register
    phase_instants(cfg, extract, store, key, res)
    cmp = res["comparison_500k"]
    cmp["pairs"] = cfg.compare_pairs
    cmp["zone"] = ZONE
    cmp["ours_stream"] = {
        "seconds": ours["ours_compare_fig"]["seconds"],
        "pairs_per_s": ours["ours_compare_fig"]["pairs_per_s"],
        "command": ours["ours_compare_fig"]["command"],
    }
    cmp["ours_stream_prekeyed"] = ours["ours_prekeyed_fig"]
    cmp["ours_stream_simplified"] = {
        "seconds": ours["ours_simplified_fig"]["seconds"],
        "pairs_per_s": ours["ours_simplified_fig"]["pairs_per_s"],
        "command": ours["ours_simplified_fig"]["command"],
    }
    phase_duckdb(cfg, preg, revision, key, ours, res)
    phase_postgres(cfg, preg, revision, ours, res)
    eq = res["equality"]
    eq["wide"] = {"pairs_per_zone": cfg.wide_pairs, "days": [WIDE_FROM.isoformat(),
                                                            WIDE_TO.isoformat()]}  # fmt: skip
    checks = [c for peer in eq.values() if isinstance(peer, dict) for c in peer.values()
              if isinstance(c, dict) and "equal" in c]  # fmt: skip
    eq["all_equal"] = bool(checks) and all(c["equal"] for c in checks)
    del ours
    phase_store_sizes(cfg, key, res)
    phase_engine(cfg, res)
    phase_build(cfg, extract, key, res)
    phase_audit(cfg, res)
    phase_campaign(cfg, store, key, res)
    phase_sync(cfg, res)
    end = report.machine()["load_average_at_start"]
    res["load_average_at_end"] = end
    res["conditions_at_end"] = report.conditions(cfg.scratch)
    if res["machine"]["load_average_at_start"][0] > 0.5:
        res["noisy"] = (
            "other work was running on the machine (load average "
            f"{res['machine']['load_average_at_start'][0]} before the bench started, on "
            f"{res['machine']['cpus']} CPUs): absolute figures are noisy; ratios within the run "
            "are more reliable"
        )
    res["total_seconds"] = round(time.perf_counter() - t0, 1)
    cfg.out.mkdir(parents=True, exist_ok=True)
    report.write_json(cfg.out / "results.json", res)
    (cfg.out / "README-table.md").write_text(report.readme_table(res))
    if not cfg.quick and cfg.out.resolve() == DEFAULT_OUT.resolve():
        report.splice_readme(ROOT / "README.md", report.readme_table(res))
    charted = report.chart(res, cfg.out / "scaling.png")
    log(f"done in {res['total_seconds']} s: {cfg.out}/results.json, README-table.md"
        + (", scaling.png" if charted else " (no matplotlib: no chart)"))  # fmt: skip
    print((cfg.out / "README-table.md").read_text())
    if not eq["all_equal"]:
        log("PEERS DECIDE DIFFERENTLY: see equality in results.json")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
