"""The daily sync's figures: a day applied, a day end to end over HTTPS, serving while a day
lands, 30 daily layers against a fresh build, and compaction.

    python -m bench.sync_bench --plates 8000000 --days 30 --runs 5 --out bench/results/sync.json

Run by `bench.run` (`make bench`); alone it writes one JSON file. Everything under `--scratch`
(git-ignored `var/bench/`): the synthetic register, the HMAC key, a base build made once, the
stand-in's feed (`lez-div generate`, 50,000 changes a day per 8,000,000 plates) and its
certificates. Every scenario starts from a fresh store root whose base build is a hard link of
the one base (a published build is never written again, so sharing its files is safe): no
scenario sees another's layers.

Figures (median, min and max of `--runs` runs unless said):

- `apply_day`: one day of the feed applied and published on the base, measured apart from the
  HTTP fetch: the day's row details are read from the feed files and keyed first (what the
  fetch does), then `loader.sync.apply_fetched` (history, retention over the whole register,
  the layer written, verified and published) is timed.
- `days_sequence`: `--days` days applied one after the other on one root without compaction
  (the per-day time as the cumulative layer grows, and the layer's size at the end).
- `stream_layers`: the 500,000-pair `CheckStream` (2 workers) on the fresh base and on the
  base plus the `--days`-day layer, per-pair cost and their ratio, measured in one run.
- `compaction`: `StoreBuilder.compact` of that layer into a new base.
- `sync_end_to_end`: `lez-loader sync` of one day from the stand-in over mutual TLS, as a
  process, from start to exit (fetch, keying, apply, publish).
- `serving_during_sync`: unary `Check` p99 and the 500,000-pair stream while a server with a
  short reload interval serves the root a sync is publishing to, against the same server
  idle; every call must succeed. Beside it, the same stream next to a process that only spins
  at SCHED_IDLE: on a 2-core machine any work beside the server costs the stream this much,
  whatever its priority, which bounds what a sync on the serving machine can achieve.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench import build_bench, cli_help
from bench.peer_data import WireBatch, wire_batch
from bench.stream import LezServer, StreamClient, unary
from bench.workload import batch_from_plates, read_plates
from lez.days import from_day
from lez.keys import load_key
from lez.store import StoreBuilder, open_store
from lez.store.layout import BUILDS_DIR, CURRENT_LINK

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ZONE = "Antwerpen"
STREAM_PAIRS = 500_000


def log(msg: str) -> None:
    print(f"[sync-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stats(values: list[float], digits: int = 3) -> dict[str, Any]:
    return {
        "median": round(float(np.median(values)), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": len(values),
    }


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---- data ----------------------------------------------------------------------------------


def ensure_base(extract: Path, key: Path, scratch: Path) -> Path:
    """A store root holding one base build of the register (built once, then reused)."""
    root = scratch / f"sync-base-{extract.parent.name}"
    stamp = root / "bench-base.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("key_id") == load_key(key).key_id:
        return root
    shutil.rmtree(root, ignore_errors=True)
    log(f"building the base store {root.name}")
    subprocess.run(
        [str(BIN / "lez-loader"), "build", str(extract), "--key", str(key), "--out", str(root)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    stamp.write_text(json.dumps({"key_id": load_key(key).key_id}) + "\n")
    return root


def fresh_root(base_root: Path, scratch: Path, name: str) -> Path:
    """A new store root whose `current` base build is a hard link of the base root's."""
    base_build = (base_root / CURRENT_LINK).resolve()
    root = scratch / "sync-roots" / name
    shutil.rmtree(root, ignore_errors=True)
    (root / BUILDS_DIR).mkdir(parents=True)
    target = root / BUILDS_DIR / base_build.name
    target.mkdir()
    for f in base_build.iterdir():
        os.link(f, target / f.name)
    (root / CURRENT_LINK).symlink_to(Path(BUILDS_DIR) / base_build.name)
    return root


def ensure_feed(extract: Path, days: int, seed: int, scratch: Path) -> Path:
    feed = scratch / f"feed-{extract.parent.name}-{seed}"
    manifest = feed / "manifest.json"
    if manifest.exists() and len(json.loads(manifest.read_text()).get("days", [])) >= days:
        return feed
    log(f"generating {days} days of the DIV feed for {extract.parent.name}")
    subprocess.run(
        [str(BIN / "lez-div"), "generate", "--extract", str(extract), "--out", str(feed),
         "--days", str(days), "--seed", str(seed)],
        check=True,
    )  # fmt: skip
    return feed


def feed_days(feed: Path) -> list[dt.date]:
    from div_standin.feed import manifest_days, read_manifest

    return manifest_days(read_manifest(feed))


def fetched_day(feed: Path, day: dt.date, key: Path) -> Any:
    """The day as the fetch leaves it (keyed, in a checkpoint object), without HTTP."""
    from div_standin.feed import read_day
    from loader.checkpoint import DayCheckpoint
    from loader.feed import keyed_transactions

    keyer = load_key(key)
    items = [dict(i) for i in read_day(feed, day)]
    state = DayCheckpoint(key_id=keyer.key_id, day=day)
    for item in items:
        state.listed_by_type[str(item["transactionType"])] += 1
    state.add(keyed_transactions(items, day, keyer))
    state.complete = True
    return state


def settings_for(root: Path, key: Path, *, compact: bool) -> Any:
    from loader.feed import FeedSettings
    from loader.sync import SyncSettings

    return SyncSettings(
        store_root=root, key_file=key, feed=FeedSettings(base_url="https://unused"),
        compact=compact,
    )  # fmt: skip


def apply_one(root: Path, state: Any, key: Path, *, compact: bool = False) -> float:
    from loader.sync import apply_fetched

    reader = open_store(root, expected_key_id=load_key(key).key_id)
    try:
        return timed(lambda: apply_fetched(reader, state, settings_for(root, key, compact=compact)))
    finally:
        reader.close()


def layer_facts(root: Path) -> dict[str, Any]:
    build = (root / CURRENT_LINK).resolve()
    reader = open_store(root)
    try:
        meta = reader.meta
    finally:
        reader.close()
    size = sum(f.stat().st_size for f in build.iterdir())
    return {
        "layer_keys": getattr(meta, "layer_keys", None),
        "layer_bytes": size,
        "base_snapshot_id": getattr(meta, "base_snapshot_id", ""),
    }


# ---- phases --------------------------------------------------------------------------------


def phase_apply(base: Path, feed: Path, days: list[dt.date], key: Path, a: Any) -> dict[str, Any]:
    log(f"apply one day on the base, {a.runs} runs")
    state = fetched_day(feed, days[0], key)
    times = []
    for r in range(a.runs):
        root = fresh_root(base, a.scratch, f"apply-{r}")
        times.append(apply_one(root, state, key))
    return {
        "what": f"one day of the feed applied and published on a {a.plates:,}-plate base (history, "
        "retention, layer write, verify, publish); row details keyed beforehand, no HTTP",
        "transactions": len(state.transactions) + len(state.refused),
        "seconds": stats(times),
    }


def phase_sequence(base: Path, feed: Path, days: list[dt.date], key: Path, a: Any) -> Path:
    root = fresh_root(base, a.scratch, "sequence")
    per_day = []
    for i, day in enumerate(days[: a.days]):
        state = fetched_day(feed, day, key)
        per_day.append(apply_one(root, state, key))
        log(f"day {i + 1}/{a.days} {day}: {per_day[-1]:.2f} s")
    a.results["days_sequence"] = {
        "days": len(per_day),
        "seconds_per_day": stats(per_day),
        "first_day_s": round(per_day[0], 3),
        "last_day_s": round(per_day[-1], 3),
        **layer_facts(root),
    }
    return root


def stream_batch(extract: Path, seed: int) -> WireBatch:
    register = read_plates(extract)
    b = batch_from_plates(
        register, STREAM_PAIRS, seed, day_from=dt.date(2026, 10, 19), day_to=dt.date(2026, 10, 25)
    )
    return wire_batch(b.plates, b.countries, b.days)


def stream_seconds(address: str, batch: WireBatch, runs: int) -> list[float]:
    client = StreamClient(address)
    try:
        pairs = client.pairs(batch)
        client.decide(pairs, ZONE)  # warm-up
        return [timed(lambda: client.decide(pairs, ZONE)) for _ in range(runs)]
    finally:
        client.close()


def phase_stream_layers(
    base: Path, layered: Path, batch: WireBatch, key: Path, a: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fresh = fresh_root(base, a.scratch, "stream-fresh")
    rounds: dict[str, list[float]] = {"fresh": [], "layered": []}
    with (
        LezServer(fresh, key, a.scratch / "srv-fresh") as s1,
        LezServer(layered, key, a.scratch / "srv-layered") as s2,
    ):
        # alternate the two servers so drift of the machine hits both alike
        for _ in range(a.runs):
            rounds["fresh"] += stream_seconds(s1.address, batch, 1)
            rounds["layered"] += stream_seconds(s2.address, batch, 1)
    for name, values in rounds.items():
        out[name] = stats(values)
        out[f"{name}_us_per_pair"] = round(float(np.median(values)) / STREAM_PAIRS * 1e6, 3)
    out["ratio_layered_to_fresh"] = round(
        float(np.median(rounds["layered"])) / float(np.median(rounds["fresh"])), 3
    )
    out["what"] = (
        f"{STREAM_PAIRS:,}-pair CheckStream, 2 workers, fresh base vs base + {a.days}-day layer, "
        "the two servers alternated in one run"
    )
    return out


def phase_compaction(layered: Path, a: Any) -> dict[str, Any]:
    log("compaction of the layer into a new base")
    times: list[float] = []
    for r in range(a.compact_runs):
        root = a.scratch / "sync-roots" / f"compact-{r}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(layered, root, copy_function=os.link, symlinks=True)
        builder = StoreBuilder(root)
        times.append(timed(builder.compact))
    return {"seconds": stats(times), "what": f"base + {a.days}-day layer folded into a new base"}


@contextlib.contextmanager
def standin(feed: Path, a: Any) -> Iterator[Any]:
    from div_standin.process import running_standin

    certs = a.scratch / "div-certs"
    if not (certs / "ca.pem").exists():
        subprocess.run(
            [str(BIN / "lez-div"), "certs", "--out", str(certs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    with running_standin(feed, certs) as handle:
        # the DIV is a remote service in production: its stand-in must not take this
        # machine's cores from the server being measured
        os.setpriority(os.PRIO_PROCESS, handle.process.pid, 19)
        yield handle


def sync_command(root: Path, key: Path, handle: Any, through: dt.date) -> list[str]:
    return [
        str(BIN / "lez-loader"), "sync", "--store", str(root), "--key", str(key),
        "--div-url", handle.url, "--div-ca", str(handle.ca), "--div-cert",
        str(handle.client_cert), "--div-key", str(handle.client_key),
        "--through", through.isoformat(), "--no-compact",
    ]  # fmt: skip


def start_sync(root: Path, key: Path, handle: Any, through: dt.date) -> subprocess.Popen[bytes]:
    """`lez-loader sync` through `through` as a background process, its output discarded."""
    return subprocess.Popen(
        sync_command(root, key, handle, through),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_sync(root: Path, key: Path, handle: Any, through: dt.date) -> float:
    cmd = sync_command(root, key, handle, through)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def phase_end_to_end(base: Path, key: Path, handle: Any, days: list[dt.date], a: Any) -> Any:
    log(f"sync of one day end to end over HTTPS, {a.runs} runs")
    times = []
    for r in range(a.runs):
        root = fresh_root(base, a.scratch, f"e2e-{r}")
        times.append(run_sync(root, key, handle, days[0]))
    return {
        "what": "`lez-loader sync` of one day from the stand-in over mutual TLS, process start "
        "to exit (paging, row details, keying, apply, publish)",
        "seconds": stats(times),
    }


def phase_serving(
    base: Path, key: Path, handle: Any, days: list[dt.date], batch: WireBatch, a: Any
) -> dict[str, Any]:
    """Unary p99 and stream time, idle and while syncs publish days to the served root."""
    root = fresh_root(base, a.scratch, "serving")
    out: dict[str, Any] = {}
    with LezServer(
        root, key, a.scratch / "srv-serving", extra_args=("--reload-interval-s", "0.2")
    ) as server:
        requests = unary_requests(batch)
        idle = unary(server.address, requests, ZONE, threads=1, seconds=a.unary_seconds)
        day_iter = iter(days)
        busy: list[dict[str, float]] = []
        sync_s: list[float] = []
        for _ in range(a.serving_runs):
            day = next(day_iter)
            proc = start_sync(root, key, handle, day)
            t0 = time.perf_counter()
            stop = threading.Event()
            busy_calls = _unary_until(server.address, requests, stop)
            proc.wait()
            sync_s.append(time.perf_counter() - t0)
            stop.set()
            busy.append(busy_calls.result())
            if proc.returncode != 0:
                raise RuntimeError(f"sync of {day} failed ({proc.returncode})")
        idle_stream = stream_seconds(server.address, batch, a.runs)
        burner_stream = _beside_a_burner(lambda: stream_seconds(server.address, batch, a.runs))
        busy_stream: list[float] = []
        for _ in range(a.serving_runs):
            day = next(day_iter)
            proc = start_sync(root, key, handle, day)
            while proc.poll() is None:
                busy_stream += stream_seconds(server.address, batch, 1)
            if proc.returncode != 0:
                raise RuntimeError(f"sync of {day} failed ({proc.returncode})")
    out["unary_idle"] = {k: round(v, 3) for k, v in idle.items()}
    out["unary_during_sync"] = {
        "p99_ms": stats([b["p99_ms"] for b in busy]),
        "p50_ms": stats([b["p50_ms"] for b in busy]),
        "calls": int(sum(b["calls"] for b in busy)),
        "failed_calls": int(sum(b["failed"] for b in busy)),
        "sync_seconds": stats(sync_s),
    }
    out["stream_idle"] = stats(idle_stream)
    out["stream_during_sync"] = stats(busy_stream) if busy_stream else None
    if busy_stream:
        out["stream_ratio_during_to_idle"] = round(
            float(np.median(busy_stream)) / float(np.median(idle_stream)), 3
        )
    out["stream_beside_idle_burner"] = stats(burner_stream)
    out["stream_ratio_burner_to_idle"] = round(
        float(np.median(burner_stream)) / float(np.median(idle_stream)), 3
    )
    out["what"] = (
        "one server (2 workers, reload every 0.2 s) on the root `lez-loader sync` (at its default "
        "--nice 10) publishes to, the DIV stand-in at nice 19 as the remote service it stands in "
        "for; "
        "unary Check from one caller for the whole sync, and 500,000-pair streams back to back "
        "while another day syncs; both against the same server idle, and the stream beside a "
        "process that only spins at SCHED_IDLE (the machine's ceiling for work beside the "
        "server)"
    )
    return out


def unary_requests(batch: WireBatch, n: int = 20_000) -> list[tuple[str, str, str]]:
    """(plate, country, ISO day) of the first `n` pairs of a batch, for unary callers."""
    sample = batch.slice(min(len(batch), n))
    countries = np.frombuffer(sample.countries, dtype="S2").astype(str)
    return [
        (
            sample.data[int(sample.offsets[i]) : int(sample.offsets[i + 1])].decode(),
            countries[i],
            from_day(int(sample.days[i])).isoformat(),
        )
        for i in range(len(sample))
    ]


def _beside_a_burner(measure: Callable[[], list[float]]) -> list[float]:
    """`measure` while a process that only spins runs at the lowest priority Linux has
    (SCHED_IDLE): the ceiling this machine puts on any work running beside the server, the
    sync included."""
    burner = subprocess.Popen(["chrt", "--idle", "0", sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        return measure()
    finally:
        burner.kill()
        burner.wait()


class _UnaryLoop:
    def __init__(self, thread: threading.Thread, box: dict[str, float]) -> None:
        self.thread, self.box = thread, box

    def result(self) -> dict[str, float]:
        self.thread.join(timeout=120)
        return self.box


def _unary_until(
    address: str, requests: list[tuple[str, str, str]], stop: threading.Event
) -> _UnaryLoop:
    """Sequential `Check` calls until `stop`; latencies and failed calls."""
    from clients import LezClient

    box: dict[str, float] = {}

    def loop() -> None:
        lat: list[float] = []
        failed = 0
        with LezClient([address]) as client:
            j = 0
            while not stop.is_set():
                plate, country, day = requests[j % len(requests)]
                t0 = time.perf_counter()
                try:
                    client.check(plate, zone=ZONE, day=day, country=country)
                    lat.append(time.perf_counter() - t0)
                except Exception:
                    failed += 1
                j += 1
        arr = np.array(lat) if lat else np.zeros(1)
        box.update(
            calls=float(len(lat)),
            failed=float(failed),
            p50_ms=float(np.percentile(arr, 50) * 1000),
            p99_ms=float(np.percentile(arr, 99) * 1000),
        )

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return _UnaryLoop(thread, box)


# ---- main ----------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> Any:
    p = cli_help.parser("python -m bench.sync_bench", __doc__)
    p.add_argument("--plates", type=int, default=8_000_000)
    p.add_argument("--days", type=int, default=30, help="daily layers before the stream figure")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--compact-runs", type=int, default=3)
    p.add_argument("--serving-runs", type=int, default=2, help="syncs measured while serving")
    p.add_argument("--unary-seconds", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scratch", type=Path, default=ROOT / "var" / "bench")
    p.add_argument("--out", type=Path, default=None, help="write the figures here (JSON)")
    return p.parse_args(argv)


def run(a: Any) -> dict[str, Any]:
    a.results = {}
    a.extract = build_bench.ensure_register(a.plates, a.seed, a.scratch)
    key = build_bench.ensure_key(a.scratch)
    base = ensure_base(a.extract, key, a.scratch)
    feed = ensure_feed(a.extract, max(a.days, 2 * a.serving_runs), a.seed, a.scratch)
    days = feed_days(feed)
    res: dict[str, Any] = a.results
    res["plates"] = a.plates
    res["apply_day"] = phase_apply(base, feed, days, key, a)
    log(f"apply_day {res['apply_day']['seconds']}")
    layered = phase_sequence(base, feed, days, key, a)
    batch = stream_batch(a.extract, a.seed)
    res["stream_layers"] = phase_stream_layers(base, layered, batch, key, a)
    log(f"stream_layers ratio {res['stream_layers']['ratio_layered_to_fresh']}")
    res["compaction"] = phase_compaction(layered, a)
    with standin(feed, a) as handle:
        res["sync_end_to_end"] = phase_end_to_end(base, key, handle, days, a)
        log(f"sync_end_to_end {res['sync_end_to_end']['seconds']}")
        res["serving_during_sync"] = phase_serving(base, key, handle, days, batch, a)
    shutil.rmtree(a.scratch / "sync-roots", ignore_errors=True)
    return res


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    res = run(a)
    text = json.dumps(res, indent=2)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
