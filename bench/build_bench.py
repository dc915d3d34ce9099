"""Loader bench: `lez-loader build` of a synthetic register, timed end to end.

Generates the register once (`lez-loader synth`, reused when present), then runs the real
command line `--runs` times in fresh processes, each into a fresh store, and reports the median,
min and max wall time, the stages of the median run, peak memory (max RSS of each build process,
from `wait4`) and the store size. Results go to stdout and, with --out, to a JSON file.

    .venv/bin/python -m bench.build_bench --plates 8000000 --runs 3 --out bench/results
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import cli_help

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def ensure_register(plates: int, seed: int, scratch: Path) -> Path:
    """The synthetic extract for (plates, seed), generated once."""
    out = scratch / f"register-{plates}-{seed}"
    extract = out / "extract.csv"
    if not extract.exists():
        subprocess.run(
            [
                str(BIN / "lez-loader"),
                "synth",
                "--plates",
                str(plates),
                "--seed",
                str(seed),
                "--out",
                str(out),
            ],
            check=True,
        )
    return extract


def ensure_key(scratch: Path) -> Path:
    key = scratch / "hmac.key"
    if not key.exists():
        subprocess.run(
            [str(BIN / "lez-loader"), "keygen", "--key", str(key)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return key


def build_command(extract: Path, key: Path, store: Path) -> list[str]:
    """`lez-loader build ... --json`: the loader's own report on stdout."""
    return [
        str(BIN / "lez-loader"),
        "build",
        str(extract),
        "--key",
        str(key),
        "--out",
        str(store),
        "--rules",
        str(ROOT / "rules"),
        "--json",
    ]


def run_measured(cmd: list[str]) -> tuple[str, float, int, float, float]:
    """Run `cmd`; (stdout, wall seconds, peak RSS in KiB of that process and its own children,
    user and system CPU seconds).

    The peak comes from `wait4` on this one process, so nothing else this process ran (the
    register's `synth`, earlier builds) is counted, unlike RUSAGE_CHILDREN.
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            out = proc.stdout.read()
        finally:
            proc.stdout.close()
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode:
            err.seek(0)
            raise subprocess.CalledProcessError(proc.returncode, cmd, out, err.read())
    return out.decode(), seconds, usage.ru_maxrss, usage.ru_utime, usage.ru_stime


def build_once(extract: Path, key: Path, store: Path) -> dict[str, Any]:
    """One `lez-loader build --json` into a fresh `store`: wall time, peak RSS and its report."""
    shutil.rmtree(store, ignore_errors=True)
    out, seconds, peak_kib, usage_user, usage_sys = run_measured(build_command(extract, key, store))
    report = json.loads(out)
    stages: dict[str, float] = report["seconds"]
    cpu: dict[str, dict[str, float]] = report.get("cpu_seconds", {})
    in_stages = sum(stages.values())
    return {
        "seconds": round(seconds, 3),
        "stages": stages,
        "stage_shares": {k: round(v / seconds, 3) for k, v in stages.items()},
        # CPU seconds (user + system, every thread) per wall second of the stage: 2.0 is both
        # cores busy; system time is mostly page faults of memory touched for the first time
        "stage_cores_busy": {
            k: round((c["user"] + c["sys"]) / max(stages[k], 1e-3), 2) for k, c in cpu.items()
        },
        "stage_cpu_seconds": cpu,
        "cpu_seconds": {"user": round(usage_user, 3), "sys": round(usage_sys, 3)},
        # what the stages leave out of the process's wall time: interpreter start, imports,
        # reading the key, writing the report (the stages must cover at least 90 %)
        "outside_stages_s": round(seconds - in_stages, 3),
        "stages_cover": round(in_stages / seconds, 3),
        "plates": report["plates"],
        "versions": report["versions"],
        "rows_read": report["rows_read"],
        "store_bytes": report["store_bytes"],
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose time is the median (the lower middle one for an even count)."""
    return sorted(runs, key=lambda r: float(r["seconds"]))[(len(runs) - 1) // 2]


def main(argv: list[str] | None = None) -> int:
    p = cli_help.parser("python -m bench.build_bench", __doc__)
    p.add_argument("--plates", type=int, default=8_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--scratch", type=Path, default=ROOT / "var" / "bench")
    p.add_argument("--out", type=Path, default=None, help="directory for build.json")
    args = p.parse_args(argv)
    args.scratch.mkdir(parents=True, exist_ok=True)
    extract = ensure_register(args.plates, args.seed, args.scratch)
    key = ensure_key(args.scratch)
    store = args.scratch / "build-bench-store"
    runs = [build_once(extract, key, store) for _ in range(args.runs)]
    times = [r["seconds"] for r in runs]
    result = {
        "bench": "loader_build",
        "command": f"lez-loader build <{args.plates}-plate extract> (fresh store each run)",
        "plates": args.plates,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": len(runs),
        "seconds": {"median": statistics.median(times), "min": min(times), "max": max(times)},
        "median_run": median_run(runs),
        "extract_bytes": extract.stat().st_size,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "build.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(store, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
