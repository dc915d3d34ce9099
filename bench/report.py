"""Results of a bench run: timing statistics, machine facts, the JSON file, the README table
and the scaling chart."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], T], runs: int, warmup: int = 1) -> tuple[dict[str, Any], T]:
    """Run `fn` `warmup` times untimed, then `runs` times; median/min/max seconds and the
    last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    assert result is not None
    return stats(times), result


def stats(times: list[float]) -> dict[str, Any]:
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "runs": len(times),
        "all_s": [round(t, 4) for t in times],
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


FLUSH_PROBE_BYTES = 4096
FLUSH_PROBE_ROUNDS = 25


def pressure() -> dict[str, float]:
    """Linux pressure stall information: the share (%) of the last 60 s in which some task
    waited for a CPU, for I/O or for memory (`/proc/pressure`; empty where unavailable)."""
    found: dict[str, float] = {}
    for kind in ("cpu", "io", "memory"):
        try:
            some = Path(f"/proc/pressure/{kind}").read_text().splitlines()[0].split()[1:]
        except (OSError, IndexError):
            continue
        fields = dict(item.split("=", 1) for item in some if "=" in item)
        if "avg60" in fields:
            found[f"{kind}_some_avg60"] = float(fields["avg60"])
    return found


def flush_ms(directory: Path) -> float:
    """Median time (ms) of one 4 KiB overwrite of a written block and its fdatasync in
    `directory`: what each audit flush costs on this disk at this moment (it drifted between
    0.1 and 0.5 ms from run to run on the bench machine, and the unary ceiling moves with it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "flush-probe.bin"
    block = os.urandom(FLUSH_PROBE_BYTES)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwrite(fd, block, 0)
        os.fsync(fd)
        times = []
        for _ in range(FLUSH_PROBE_ROUNDS):
            os.pwrite(fd, block, 0)
            start = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return round(statistics.median(times) * 1000, 3)


MEMORY_PROBE_BYTES = 256 << 20
MEMORY_PROBE_READS = 2_000_000
MEMORY_PROBE_ROUNDS = 3


def memory_speed() -> dict[str, float]:
    """How fast this machine's memory is at this moment: a copy of 256 MiB (GB/s, both ways
    counted) and random 8-byte reads over it (ns a read, many in flight, as the store's lookup
    makes them), best of 3. One day's run took 45% longer in DuckDB and in the loader than the
    run of the day before, with the single-core rules engine as fast, and neither the flush nor
    the pressure stalls showed why: these are recorded so that the next such run shows whether
    the memory's speed moved with it."""
    import numpy as np  # the bench's dependency, not the report's readers'

    words = np.ones(MEMORY_PROBE_BYTES // 8, dtype=np.int64)
    target = np.empty_like(words)
    rows = np.random.default_rng(0).integers(0, len(words), MEMORY_PROBE_READS)
    copy_s, read_s = [], []
    np.copyto(target, words)  # first touch of the target's pages
    for _ in range(MEMORY_PROBE_ROUNDS):
        start = time.perf_counter()
        np.copyto(target, words)
        copy_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        words.take(rows, out=target[: len(rows)])
        read_s.append(time.perf_counter() - start)
    return {
        "copy_gb_s": round(2 * MEMORY_PROBE_BYTES / min(copy_s) / 1e9, 1),
        "random_read_ns": round(min(read_s) / MEMORY_PROBE_READS * 1e9, 1),
    }


def conditions(directory: Path) -> dict[str, Any]:
    """What the machine was doing besides the bench: load, pressure stalls, the disk's flush,
    the memory's speed."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "load_average": [round(x, 2) for x in load],
        "pressure_percent": pressure(),
        "flush_ms": flush_ms(directory),
        "memory": memory_speed(),
    }


def conditions_line(res: dict[str, Any]) -> str | None:
    """One sentence on the run's conditions at its start and end (None when not recorded)."""
    start, end = res.get("conditions_at_start"), res.get("conditions_at_end")
    if not start or not end:
        return None

    def io(c: dict[str, Any]) -> str:
        value = c["pressure_percent"].get("io_some_avg60")
        return "n/a" if value is None else f"{value:.1f}%"

    line = (
        f"Conditions: a 4 KiB fdatasync took {start['flush_ms']} ms at the start and "
        f"{end['flush_ms']} ms at the end; I/O pressure {io(start)} and {io(end)} "
        "(share of the last minute some task waited for I/O)"
    )
    if "memory" in start and "memory" in end:
        first, last = start["memory"], end["memory"]
        line += (
            f"; memory copied {first['copy_gb_s']} and {last['copy_gb_s']} GB/s, a random "
            f"read took {first['random_read_ns']} and {last['random_read_ns']} ns "
            "(`bench.report.memory_speed`: compare runs by these before comparing their times)"
        )
    return line + "."


def commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _fmt_s(s: dict[str, Any]) -> str:
    return f"{s['median_s']:.3f} s ({s['min_s']:.3f}-{s['max_s']:.3f})"


def readme_table(res: dict[str, Any]) -> str:
    """The Markdown table of the 500k-pair comparison (same batch, same run)."""
    cmp = res["comparison_500k"]
    ours = cmp["ours_stream"]["seconds"]
    pairs = cmp["pairs"]
    rows = [
        ("**LEZ service**, `CheckStream` end to end over gRPC on loopback, keying on the "
         f"server, {res['config']['server_workers']} worker processes", ours),
    ]  # fmt: skip
    prekeyed = cmp.get("ours_stream_prekeyed")
    if prekeyed:
        rows.append((
            f"LEZ service, the same batch pre-keyed by the client ({prekeyed['pairs']:,} "
            "keyable plates sent as keys)", prekeyed["seconds"],
        ))  # fmt: skip
    notes = []
    for key, label in (
        ("duckdb_plain", "DuckDB in-process, 2 threads, plates in clear text"),
        ("duckdb_hmac", "DuckDB in-process, 2 threads, same HMAC-SHA256 keys computed in SQL"),
        ("postgres", "PostgreSQL, loopback, batch COPYed in and joined"),
    ):
        peer = cmp.get(key)
        if peer and "seconds" in peer:
            rows.append((label, peer["seconds"]))
        elif peer:
            notes.append(f"{label}: not measured ({peer.get('skipped', 'skipped')})")
    lines = [
        f"{pairs:,} (plate, country, day) pairs, realistic camera mix, zone "
        f"{cmp['zone']}, register of {res['config']['plates']:,} plates "
        f"({res['register']['versions']:,} versions); median of {ours['runs']} runs "
        f"(min-max) after a warm-up, all in one run of `{res['command']}`.",
        "",
        f"| system | {pairs // 1000}k-pair batch | pairs/s | time vs LEZ service |",
        "|---|---:|---:|---:|",
    ]
    for label, s in rows:
        ratio = s["median_s"] / ours["median_s"]
        lines.append(
            f"| {label} | {_fmt_s(s)} | {pairs / s['median_s'] / 1e6:.2f}M | {ratio:.2f}x |"
        )
    simple_ours, simple_duck = cmp.get("ours_stream_simplified"), cmp.get("duckdb_simplified")
    if simple_ours and simple_duck:
        s_ours, s_duck = simple_ours["seconds"], simple_duck["seconds"]
        lines += [
            f"| *simplified rules (bench only: one euro minimum per fuel)*: **LEZ service** "
            f"| {_fmt_s(s_ours)} | {pairs / s_ours['median_s'] / 1e6:.2f}M "
            f"| {s_ours['median_s'] / ours['median_s']:.2f}x |",
            f"| *simplified rules*: DuckDB in-process, 2 threads, plates in clear text "
            f"| {_fmt_s(s_duck)} | {pairs / s_duck['median_s'] / 1e6:.2f}M "
            f"| {s_duck['median_s'] / ours['median_s']:.2f}x "
            f"({s_duck['median_s'] / s_ours['median_s']:.2f}x the service on the same rules) |",
        ]
    best = min(
        (
            cmp[k]
            for k in ("duckdb_plain", "duckdb_hmac", "postgres")
            if "seconds" in cmp.get(k, {})
        ),
        key=lambda peer: peer["seconds"]["median_s"],
        default=None,
    )
    if best is not None:
        lines += [
            "",
            f"Best peer row: {best['seconds']['median_s'] / ours['median_s']:.2f}x the service's "
            "time on the full rules (DuckDB's setup and why it is its best: "
            "bench/README.md#duckdb-at-its-best).",
        ]
    eq = res.get("equality", {})
    lines += [
        "",
        "Every peer's decisions (outcome, reason, allowed-until, effective euro norm) were "
        "checked equal to the service's on the whole batch"
        + (" and on a wide sample (every zone, days 2016-2027)" if eq.get("wide") else "")
        + f": {'all equal' if eq.get('all_equal') else 'DIFFERENCES FOUND, see results.json'}.",
        f"PostgreSQL plan: {cmp.get('postgres', {}).get('plan', 'n/a')}.",
        f"Machine: {res['machine']['cpus']} CPUs ({res['machine']['cpu_model']}), "
        f"{res['machine']['memory_gib']} GiB; commit `{res['commit']['commit'][:10]}`, "
        f"{res['date']}.",
    ]
    if res.get("noisy"):
        lines.append(f"Note: {res['noisy']}")
    measured = conditions_line(res)
    if measured:
        lines.append(measured)
    lines += [f"- {n}" for n in notes]
    mem = res.get("memory_per_worker")
    if mem:
        own = ", ".join(f"{w['own_mib']:.0f}" for w in mem["workers"])
        mapped = max((w["mapped_mib"] for w in mem["workers"]), default=0.0)
        lines += [
            "",
            f"Memory per worker during the {mem['pairs']:,}-pair stream: own (anonymous) memory "
            f"at most {own} MiB (limit {mem['limit_own_mib']:.0f} MiB: "
            f"{'within' if mem['within_limit'] else 'OVER'}), besides up to {mapped:.0f} MiB "
            "mapped from files (the store's map, shared by the workers, and libraries).",
        ]
    lines += breakdown_table(res.get("stream_breakdown"))
    lines += build_table(res.get("loader_build"))
    lines += campaign_table(res.get("campaign", {}))
    lines += unary_table(res.get("unary", {}))
    lines += audit_table(res.get("audit", {}))
    lines += sync_table(res.get("mutations", {}))
    return "\n".join(lines) + "\n"


def _paired(part: dict[str, Any]) -> str:
    """The round-by-round ratios of a stream comparison, when the run recorded them."""
    paired = part.get("paired_ratio")
    if not paired:
        return ""
    return f"; round by round {paired['median']:.2f}x ({paired['min']:.2f}-{paired['max']:.2f})"


def audit_table(audit: dict[str, Any]) -> list[str]:
    """The audit's cost (`bench.audit_bench`) and `audit find` over a year
    (`bench.audit_find_bench`), when measured."""
    if not audit:
        return []
    rows: list[tuple[str, str]] = []
    stream = audit.get("stream")
    if stream:
        on, off = stream["tls_audit"], stream["plain_no_audit"]
        rows.append((
            f"{stream['pairs']:,}-pair stream, mutual TLS + each chunk's record synced before "
            "its answer, vs plain TCP with the audit off",
            f"{stream['ratio']:.2f}x ({on['median_s']:.3f} s vs {off['median_s']:.3f} s; the "
            f"audit alone {stream['ratio_audit_alone']:.2f}x; bar {stream['bar']})"
            + _paired(stream),
        ))  # fmt: skip
        warm = stream.get("warm_client")
        if warm:
            rows.append((
                "the same, one long-lived client per server (no connection setup in the runs)",
                f"{warm['ratio']:.2f}x ({warm['tls_audit']['median_s']:.3f} s vs "
                f"{warm['plain_no_audit']['median_s']:.3f} s; plain TCP with the audit "
                f"{warm['plain_audit']['median_s']:.3f} s)" + _paired(warm),
            ))  # fmt: skip
        tls_floor = (stream.get("warm_client") or stream).get("tls_floor")
        if tls_floor:
            rows.append((
                "mutual TLS alone, on gRPC servers that decide and record nothing "
                "(`bench.stream_floor`), long-lived clients",
                f"{tls_floor['ratio']:.2f}x ({tls_floor['seconds'] * 1000:+.0f} ms a batch); the "
                f"service's ratio if TLS cost it that and the audit nothing: "
                f"{tls_floor['service_ratio_if_only_tls']:.2f}x",
            ))  # fmt: skip
        cpu = (warm or {}).get("processor_time")
        if cpu:
            rows.append((
                "processor time of a batch, servers and client, long-lived clients",
                f"{cpu['cpu_ms']['plain_no_audit']:.0f} ms plain TCP with the audit off "
                f"({cpu['cores_busy_plain']:.2f} of the 2 cores busy); the audit "
                f"{cpu['audit_cpu_ms']:+.0f} ms, mutual TLS {cpu['tls_cpu_ms']:+.0f} ms: "
                f"{cpu['cpu_ratio']:.2f}x",
            ))  # fmt: skip
        for label, part in (("fresh clients", stream), ("long-lived clients", warm)):
            promises = (part or {}).get("promises_floor")
            if promises:
                rows.append((
                    "mutual TLS + each chunk's record durable before its answer, on the "
                    f"servers that decide nothing (`bench.stream_floor --audit`), {label}",
                    f"{promises['ratio']:.2f}x ({promises['seconds'] * 1000:+.0f} ms a batch); "
                    "the service's ratio if the two promises cost it that: "
                    f"{promises['service_ratio_if_only_promises']:.2f}x, against its "
                    f"{part['ratio']:.2f}x",
                ))  # fmt: skip
    unary = audit.get("unary")
    if unary:
        ceiling, seq, conc = (
            unary["ceiling_grpc_plus_flush"],
            unary["sequential"],
            unary["concurrent"],
        )
        by_worker = unary.get("by_worker", {})
        per_core = "; ".join(
            f"{name} {fig['sequential_share_of_ceiling']:.0%} ({fig['sequential_calls_per_s']:,.0f}"
            f" vs {fig['ceiling_calls_per_s']:,.0f})"
            for name, fig in by_worker.items()
        )
        rows.append((
            "unary `Check`, one sequential caller, share of the gRPC-plus-one-flush ceiling "
            "measured in the same run"
            + (" on the same core, mean of the workers" if by_worker else ""),
            f"{unary['sequential_share_of_ceiling']:.0%} ({seq['calls_per_s']:,.0f} vs "
            f"{ceiling['calls_per_s']:,.0f} calls/s; bar {unary['bar']})"
            + (f"; {per_core}" if per_core else ""),
        ))  # fmt: skip
        audited = unary.get("audit_floor")
        if audited:
            rows.append((
                "the same ceiling keeping the audit promise alone (the service's record of each "
                "call durable before its answer, nothing decided: `bench.unary_floor --mode "
                "audit`)",
                f"{audited['share_of_ceiling']:.0%} of the ceiling "
                f"({audited['calls_per_s']:,.0f} calls/s); the service: "
                f"{unary['sequential_share_of_audit_floor']:.0%} of it",
            ))  # fmt: skip
        rows.append((
            f"unary `Check`, {conc['callers']} callers from {conc['client_processes']} client "
            "processes (group commit)",
            f"{conc['calls_per_s']:,.0f} calls/s, p50 {conc['p50_ms']:.2f} ms, p99 "
            f"{conc['p99_ms']:.2f} ms ({unary['concurrent_speedup_over_sequential']:.1f}x the "
            "sequential caller)",
        ))  # fmt: skip
    find = audit.get("find")
    if find:
        rows.append((
            f"`audit find` of one plate over {find['days_written']} days at "
            f"{find['pairs_per_day']:,} pairs a day ({find['files']} rotated files, "
            f"{find['bytes_scanned'] / 1e9:.1f} GB)",
            f"{find['scan_s_median']:.2f} s; a year: {find['year_s']:.1f} s "
            f"({find['year_basis']})",
        ))  # fmt: skip
    return [
        "",
        "The audit's cost (`python -m bench.audit_bench`, `python -m bench.audit_find_bench`):",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| {label} | {value} |" for label, value in rows),
    ]


README_START = "<!-- bench-table:start"
README_END = "<!-- bench-table:end -->"


def splice_readme(readme: Path, table: str) -> None:
    """Put a full run's table between the README's bench-table markers (the figures a reader
    sees are then always those of the last full run, never copied by hand)."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: the bench-table markers are missing; table not written")
    start = text.index("\n", start) + 1
    readme.write_text(text[:start] + table + text[end:], encoding="utf-8")


def campaign_table(c: dict[str, Any]) -> list[str]:
    """The warning-campaign figures (`bench.campaign_bench`), when measured."""
    if not c:
        return []
    lines = ["", f"Warning campaign ({c['what']}; `{c['command']}`):", "",
             "| municipalities | residents examined | vehicles listed | end to end |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for key in ("zone_municipalities", "with_antwerpen_and_gent"):
        f = c[key]
        lines.append(
            f"| {f['nis']} | {f['residents_examined']:,} | {f['vehicles_listed']:,} | "
            f"{_fmt_s(f['seconds'])} |"
        )
    return lines


def sync_table(m: dict[str, Any]) -> list[str]:
    """The daily sync's figures (`bench.sync_bench`), when measured."""
    if "apply_day" not in m:
        return []

    def s(fig: dict[str, Any]) -> str:
        return f"{fig['median']:.3f} s ({fig['min']:.3f}-{fig['max']:.3f})"

    seq, layers, serving = m["days_sequence"], m["stream_layers"], m["serving_during_sync"]
    busy = serving["unary_during_sync"]
    rows = [
        (f"one day ({m['apply_day']['transactions']:,} transactions) applied and published, "
         "no HTTP", s(m["apply_day"]["seconds"])),
        ("one day end to end: `lez-loader sync` from the stand-in over mutual TLS",
         s(m["sync_end_to_end"]["seconds"])),
        (f"{seq['days']} days in a row, per day (last day {seq['last_day_s']:.3f} s; layer "
         f"{seq['layer_keys']:,} keys, {seq['layer_bytes'] / 2**20:.0f} MiB)",
         s(seq["seconds_per_day"])),
        (f"compaction of the {seq['days']}-day layer into a new base",
         s(m["compaction"]["seconds"])),
        (f"500k-pair stream, base + {seq['days']}-day layer vs fresh base",
         f"{layers['ratio_layered_to_fresh']:.2f}x ({layers['layered_us_per_pair']:.3f} vs "
         f"{layers['fresh_us_per_pair']:.3f} us/pair)"),
        ("unary `Check` p99 while a day is synced vs idle",
         f"{busy['p99_ms']['median']:.2f} ms vs {serving['unary_idle']['p99_ms']:.2f} ms "
         f"({busy['failed_calls']} failed of {busy['calls']:,})"),
    ]  # fmt: skip
    if serving.get("stream_during_sync"):
        rows.append(
            (
                "500k-pair stream while a day is synced vs idle",
                f"{serving['stream_ratio_during_to_idle']:.2f}x "
                f"({s(serving['stream_during_sync'])} vs {s(serving['stream_idle'])})",
            )
        )
    if serving.get("stream_beside_idle_burner"):
        rows.append(
            (
                "ceiling: 500k-pair stream beside a process that only spins at SCHED_IDLE",
                f"{serving['stream_ratio_burner_to_idle']:.2f}x "
                f"({s(serving['stream_beside_idle_burner'])})",
            )
        )
    return [
        "",
        f"Daily sync on the {m['plates']:,}-plate register (`{m.get('command', '')}`, "
        "median (min-max)):",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| {label} | {value} |" for label, value in rows),
    ]


UNARY_ROWS = (
    ("ceiling_empty", "gRPC alone: a server with the same options that does no work"),
    ("ceiling_flush", "gRPC plus one audit flush a call (pre-zeroed file, fdatasync), no work"),
    ("sequential", "**LEZ service**, default: each audit record synced before the answer"),
    (
        "sequential_audit_window",
        "LEZ service, `--audit-sync-ms {window}`: synced within {window} ms",
    ),
    ("concurrent", "LEZ service, default, {callers} concurrent callers"),
)


BUILD_STAGES = (
    "read_csv", "validate_and_key", "sort", "group", "rules", "quality", "write", "sync", "verify",
    "publish",
)  # fmt: skip
"""The loader's stages in the order a build runs them (`loader.build.build_store`)."""


def build_table(b: dict[str, Any] | None) -> list[str]:
    """The loader's build: total, peak memory and each stage's share (the median run)."""
    if not b:
        return []
    run = b["median_run"]
    total = b["seconds"]
    lines = [
        "",
        f"Loader: `lez-loader build` of {run['plates']:,} plates ({run['versions']:,} versions): "
        f"{total['median']:.1f} s median ({total['min']:.1f}-{total['max']:.1f}, "
        f"{total['runs']} runs), peak memory {run['peak_rss_mib'] / 1024:.2f} GiB, store "
        f"{run['store_bytes'] / 2**30:.2f} GiB. Stages of the median run "
        f"({run.get('stages_cover', 0):.0%} of its wall time; the rest is start-up):",
        "",
        "| stage | seconds | share |",
        "|---|---:|---:|",
    ]
    shares = run.get("stage_shares", {})
    order = {name: i for i, name in enumerate(BUILD_STAGES)}
    for stage, seconds in sorted(run["stages"].items(), key=lambda kv: order.get(kv[0], 99)):
        lines.append(f"| {stage.replace('_', ' ')} | {seconds:.2f} | {shares.get(stage, 0):.0%} |")
    return lines


def breakdown_table(b: dict[str, Any] | None) -> list[str]:
    """Where a pair's time goes (bench.pair_breakdown), one row per stage."""
    if not b:
        return []
    end = b["end_to_end_s"]
    lines = [
        "",
        f"Where a pair's time goes: the {b['pairs']:,}-pair batch end to end with one worker and "
        f"one connection ({end:.3f} s, median of {b['runs']}), and each stage of the same code "
        "timed alone in one process (`bench/pair_breakdown.py`):",
        "",
        "| stage | us per pair | share |",
        "|---|---:|---:|",
    ]
    for stage, us in b["us_per_pair"].items():
        lines.append(f"| {stage.replace('_', ' ')} | {us:.3f} | {b['share'][stage]:.0%} |")
    return lines


def unary_table(unary: dict[str, Any]) -> list[str]:
    """Markdown rows of the unary `Check` figures, from the ceiling down to the service."""
    if not unary:
        return []
    window = str(unary.get("sequential_audit_window", {}).get("server_option", "")).split()[-1:]
    lines = [
        "",
        "Unary `Check` through the Python client library, one sequential caller unless said; "
        "median (min-max) of the runs:",
        "",
        "| server | calls/s | p50 | p99 |",
        "|---|---:|---:|---:|",
    ]
    for key, label in UNARY_ROWS:
        fig = unary.get(key)
        if not fig:
            continue
        label = label.format(window=window[0] if window else "?", callers=fig.get("callers", "?"))
        cps, p50, p99 = fig["calls_per_s"], fig["p50_ms"], fig["p99_ms"]
        lines.append(
            f"| {label} | {cps['median']:,.0f} ({cps['min']:,.0f}-{cps['max']:,.0f}) "
            f"| {p50['median']:.2f} ms | {p99['median']:.2f} ms |"
        )
    return lines


def chart(res: dict[str, Any], path: Path) -> bool:
    """PNG of per-pair cost against batch size and against store size; False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sc = res["scaling"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    _cost_panel(
        axes[0],
        sc.get("batch_size", []),
        "pairs",
        "pairs per CheckStream call",
        f"batch size ({sc.get('batch_store_plates', 0):,}-plate store)",
    )
    _cost_panel(
        axes[1],
        sc.get("store_size", []),
        "plates",
        "plates in the store",
        f"store size ({sc.get('store_batch_pairs', 0):,}-pair batch)",
        from_zero=True,
    )
    ax = axes[2]
    pts = sc.get("workers", [])
    if pts:
        labels = [str(p["workers"]) for p in pts]
        med = [p["seconds"]["median_s"] for p in pts]
        err = [
            [m - p["seconds"]["min_s"] for m, p in zip(med, pts, strict=True)],
            [p["seconds"]["max_s"] - m for m, p in zip(med, pts, strict=True)],
        ]
        ax.bar(labels, med, yerr=err, capsize=6)
        ax.set_xlabel("server worker processes")
        ax.set_ylabel("seconds")
        ax.set_title(f"{sc.get('workers_batch_pairs', 0):,}-pair stream")
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"LEZ access service, per-pair cost (commit {res['commit']['commit'][:10]})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _cost_panel(
    ax: Any, pts: list[dict[str, Any]], x: str, xlabel: str, title: str, *, from_zero: bool = False
) -> None:
    """Per-pair cost (median line, min-max band) against `x` of the points, log x axis."""
    if not pts:
        return
    xs = [p[x] for p in pts]
    ax.plot(xs, [p["us_per_pair"]["median"] for p in pts], "o-", label="median")
    ax.fill_between(
        xs,
        [p["us_per_pair"]["min"] for p in pts],
        [p["us_per_pair"]["max"] for p in pts],
        alpha=0.2,
        label="min-max",
    )
    ax.set_xscale("log")
    if from_zero:
        ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("µs per pair (end to end)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
