"""`make run`: the whole service on this machine, from nothing, in a few minutes.

    python -m clients.demo --var var --plates 300000

Steps, each skipped when its result is already there: an HMAC key (`lez-loader keygen`), a
synthetic register (`lez-loader synth`, skipped when the extract exists for the same plates and
seed), a store (`lez-loader build`, skipped only when the store there is the one the demo built
from that very extract and left at the snapshot it publishes: `clients.demo_claims.StoreStamp`
against `lez-loader info`), and a realistic week of camera reads drawn from
the extract (`clients.camera_reads`: unknown, foreign, misread and invalid plates, ISO 8601
camera timestamps across the October DST change). Then it starts `lez-server serve` with two
worker processes on a free loopback port, waits for health SERVING, sends the reads with
`lez batch`, runs single `lez check`s that show every answer (plates picked from the demo's own
synthetic extract by asking the server about a sample), prints a summary with timings and
then plays out the DIV's daily change feed (`clients.demo_sync`: the stand-in `lez-div`, a few
days synced into the served store with `lez-loader sync`, picked up by the running server, and a
transferred plate whose answer changes on the transfer day) and stops the server with SIGTERM.

The demo checks its own claims (`clients.demo_claims`): a single check announced as "expecting
X" that answers otherwise fails the run, and the closing list of outcomes is the list of those
seen in the batch's decisions and the checks.

Only console scripts run as subprocesses; nothing from `loader` or `server` is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from clients import demo_sync
from clients.batch_rows import BatchRows
from clients.camera_reads import counts_by_kind, register_plates, sample_reads, write_reads
from clients.demo_claims import OPEN_ENDED, OutcomesSeen, StoreStamp, expect
from clients.errors import LezClientError
from clients.sync import LezClient
from lez.days import DAY_OPEN

DEFAULT_SEED: Final = 7
DEFAULT_PAIRS: Final = 300_000
DEFAULT_ZONE: Final = "Antwerpen"
ENFORCEMENT_FROM: Final = dt.date(2026, 10, 20)
ENFORCEMENT_TO: Final = dt.date(2026, 10, 26)  # includes the DST change of 25 October
CHECK_DAY: Final = dt.date(2026, 10, 21)
SAMPLE_PLATES: Final = 20_000
SERVE_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 30.0
UNKNOWN_CANDIDATES: Final = tuple(f"9-ZZX-{i:03d}" for i in range(50))
INVALID_PLATE: Final = "1-AB#-23"
MISMATCH_FIRST_REGISTRATION: Final = dt.date(1990, 1, 1)
STAMP: Final = "demo-stamp.json"
"""In the store root: which extract the demo built the store from and the snapshot it left."""
PLATE_PLACEHOLDER: Final = "<plate>"
SYNC_ZONES: Final = ("Gent", "Brussels")  # where else a transfer's changed answer is looked for


@dataclass
class Timings:
    steps: list[tuple[str, float, str]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        note: list[str] = []
        print(f"\n== {name}", flush=True)
        t0 = time.perf_counter()
        yield note
        self.steps.append((name, time.perf_counter() - t0, " ".join(note)))


def _script(name: str) -> list[str]:
    """A console script of this environment (next to the interpreter), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return [str(here)]
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"demo: the command {name!r} is missing; run 'make install' first")
    return [found]


def _shown(cmd: Sequence[str], plate: str | None = None) -> str:
    """The command line as printed: the program's name only, `plate` as a placeholder."""
    return " ".join(
        Path(c).name if i == 0 else (PLATE_PLACEHOLDER if c == plate else c)
        for i, c in enumerate(cmd)
    )


def _run(cmd: Sequence[str], *, quiet: bool = False, plate: str | None = None) -> str:
    """Run a command and print its output; SystemExit if it fails, whose message shows the
    command with `plate` (an argument) replaced by a placeholder."""
    print(f"$ {_shown(cmd)}", flush=True)
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"demo: '{_shown(cmd, plate)}' failed with exit status {proc.returncode}")
    if not quiet and proc.stdout.strip():
        print(proc.stdout.rstrip(), flush=True)
    return proc.stdout


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ensure_key(key: Path, timings: Timings) -> None:
    with timings.step("HMAC key") as note:
        if key.exists():
            print(f"using {key}")
            note.append("reused")
            return
        _run([*_script("lez-loader"), "keygen", "--key", str(key)])


def ensure_register(out: Path, plates: int, seed: int, timings: Timings) -> Path:
    extract = out / "extract.csv"
    with timings.step(f"synthetic register ({plates:,} plates)") as note:
        meta = out / "synth.json"
        if extract.exists() and meta.exists():
            try:
                known = json.loads(meta.read_text())
            except (OSError, ValueError):
                known = {}
            if known.get("plates") == plates and known.get("seed") == seed:
                print(f"using {extract} (same plates and seed)")
                note.append("reused")
                return extract
        _run(
            [
                *_script("lez-loader"),
                "synth",
                "--plates",
                str(plates),
                "--seed",
                str(seed),
                "--out",
                str(out),
            ]
        )
    return extract


def published_snapshot(store: Path) -> str | None:
    """The snapshot id the store publishes (`lez-loader info`), None when there is none."""
    info = subprocess.run(
        [*_script("lez-loader"), "info", "--store", str(store)],
        capture_output=True,
        text=True,
        check=False,
    )
    if info.returncode != 0:
        return None
    try:
        return str(json.loads(info.stdout)["snapshot_id"])
    except (ValueError, KeyError, TypeError):
        return None


def record_store(extract: Path, store: Path) -> None:
    """Stamp the store as the demo's at the snapshot it publishes now."""
    snapshot = published_snapshot(store)
    if snapshot is not None:
        StoreStamp.of(extract, snapshot).write(store / STAMP)


def ensure_store(extract: Path, key: Path, store: Path, rules: Path, timings: Timings) -> None:
    """Build the store, unless the one there is the demo's own (`StoreStamp.reusable`)."""
    with timings.step("store") as note:
        stamp = StoreStamp.read(store / STAMP)
        if stamp is not None and stamp.reusable(extract, published_snapshot(store)):
            print(f"using the store the demo built from this extract under {store}")
            note.append("reused")
            return
        cmd = [
            *_script("lez-loader"),
            "build",
            str(extract),
            "--key",
            str(key),
            "--out",
            str(store),
        ]
        if rules.is_dir():
            cmd += ["--rules", str(rules)]
        _run(cmd)
        record_store(extract, store)


@contextlib.contextmanager
def running_server(
    store: Path, key: Path, var: Path, workers: int, timings: Timings
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    log = var / "server.log"
    with timings.step(f"server ({workers} workers)") as note:
        cmd = [
            *_script("lez-server"),
            "serve",
            "--address",
            address,
            "--workers",
            str(workers),
            "--store-root",
            str(store),
            "--key-file",
            str(key),
            "--audit-dir",
            str(var / "audit"),
        ]
        print(f"$ lez-server serve --address {address} --workers {workers} ... (log: {log})")
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEZ_")}
        with open(log, "ab") as log_file:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        try:
            with LezClient([address]) as client:
                client.wait_until_serving(timeout=SERVE_TIMEOUT_S)
        except LezClientError as exc:
            _stop(proc)
            raise SystemExit(f"demo: the server did not start: {exc.message} (see {log})") from None
        print(f"serving on {address} (pid {proc.pid})")
        note.append(address)
    try:
        yield address, proc
    finally:
        with timings.step("stop server (SIGTERM)") as note:
            note.append(f"exit status {_stop(proc)}")


def _stop(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def make_workload(extract: Path, out: Path, pairs: int, seed: int, timings: Timings) -> Path:
    reads = out / f"camera-reads-{pairs}-s{seed}.csv"
    with timings.step(f"enforcement week ({pairs:,} camera reads)") as note:
        if reads.exists():
            print(f"using {reads}")
            note.append("reused")
            return reads
        print(
            f"drawing {pairs:,} camera reads from {extract.name}, "
            f"{ENFORCEMENT_FROM} to {ENFORCEMENT_TO} (Brussels timestamps)"
        )
        sampled = sample_reads(
            register_plates(extract),
            pairs,
            seed,
            first_day=ENFORCEMENT_FROM,
            last_day=ENFORCEMENT_TO,
        )
        write_reads(sampled, reads)
        print(f"{counts_by_kind(sampled)} -> {reads}")
    return reads


def send_batch(
    address: str, reads: Path, out: Path, zone: str, timings: Timings, seen: OutcomesSeen
) -> None:
    decisions = out / "decisions.csv"
    with timings.step(f"lez batch ({zone})") as note:
        _run(
            [
                *_script("lez"),
                "--server",
                address,
                "batch",
                str(reads),
                str(decisions),
                "--zone",
                zone,
                "--no-progress",
            ]
        )
        seen.add_decisions_file("batch", decisions)
        note.append(str(decisions))


@dataclass(frozen=True)
class Example:
    label: str
    plate: str
    zone: str
    first_registration: dt.date | None = None


def _current_sample(extract: Path, seed: int) -> pa.Table:
    """Up to SAMPLE_PLATES current versions of the extract (`plate`, `first_registration`)."""
    table = pacsv.read_csv(
        extract,
        convert_options=pacsv.ConvertOptions(
            include_columns=["plate", "first_registration", "valid_to"],
            column_types={
                "plate": pa.string(),
                "first_registration": pa.string(),
                "valid_to": pa.string(),
            },
            strings_can_be_null=False,
        ),
    )
    current = table.filter(pc.equal(table.column("valid_to"), ""))
    rng = np.random.default_rng(seed)
    take = rng.choice(current.num_rows, size=min(SAMPLE_PLATES, current.num_rows), replace=False)
    return current.take(pa.array(np.sort(take)))


WANTED: Final = ("ALLOWED", "NOT_ALLOWED", "INSUFFICIENT_DATA")


def _answered_examples(
    client: LezClient, plates: list[str], zones: list[str]
) -> dict[str, Example]:
    """A plate of the sample for each WANTED outcome (and an open-ended ALLOWED), zone by zone
    until all are found."""
    found: dict[str, Example] = {}
    for zone in zones:
        result = client.check_batch(
            BatchRows.of(plates, None, [CHECK_DAY] * len(plates)), zone=zone
        )
        for i, name in enumerate(result.outcome_names()):
            if name == "ALLOWED" and int(result.allowed_until[i]) == DAY_OPEN:
                found.setdefault(OPEN_ENDED, Example(OPEN_ENDED, plates[i], zone))
            elif name in WANTED and name not in found:
                found[name] = Example(name, plates[i], zone)
        if all(w in found for w in WANTED):
            break
    return found


def pick_examples(address: str, extract: Path, seed: int) -> list[Example]:
    """Plates of the extract that really give each answer: ask the server about a sample."""
    sample = _current_sample(extract, seed)
    plates = sample.column("plate").to_pylist()
    with LezClient([address]) as client:
        zones = [z.name for z in client.server_info().zones] or [DEFAULT_ZONE]
        found = _answered_examples(client, plates, zones)
        candidates = BatchRows.of(
            list(UNKNOWN_CANDIDATES), None, [CHECK_DAY] * len(UNKNOWN_CANDIDATES)
        )
        unknown = client.check_batch(candidates, zone=zones[0]).outcome_names()
    if "ALLOWED" not in found and OPEN_ENDED in found:
        found["ALLOWED"] = replace(found.pop(OPEN_ENDED), label="ALLOWED")
    labels = ("ALLOWED", OPEN_ENDED, "NOT_ALLOWED", "INSUFFICIENT_DATA")
    examples = [found[label] for label in labels if label in found]
    registered = sample.column("first_registration").to_pylist()
    known = next((i for i, first in enumerate(registered) if first), None)
    if known is not None:
        mismatch = Example(
            "COMBINATION_MISMATCH", plates[known], zones[0], MISMATCH_FIRST_REGISTRATION
        )
        examples.append(mismatch)
    if "UNKNOWN_PLATE" in unknown:
        unknown_plate = UNKNOWN_CANDIDATES[unknown.index("UNKNOWN_PLATE")]
        examples.append(Example("UNKNOWN_PLATE", unknown_plate, zones[0]))
    examples.append(Example("INVALID", INVALID_PLATE, zones[0]))
    return examples


def single_checks(
    address: str, extract: Path, seed: int, timings: Timings, seen: OutcomesSeen
) -> None:
    """Each example checked with `lez check`; the run fails when an answer is not the one
    announced (`clients.demo_claims.expect`)."""
    with timings.step("single checks (lez check)") as note:
        examples = pick_examples(address, extract, seed)
        for n, example in enumerate(examples, start=1):
            cmd = [
                *_script("lez"),
                "--server",
                address,
                "check",
                example.plate,
                "--zone",
                example.zone,
                "--date",
                CHECK_DAY.isoformat(),
            ]
            if example.first_registration is not None:
                cmd += ["--first-registration", example.first_registration.isoformat()]
            print(f"\n-- expecting {example.label}")
            shown = _run(cmd, plate=example.plate)
            got = expect(example.label, shown, f"single check {n} of {len(examples)}")
            seen.add("single checks", got)
        note.append(f"{len(examples)} checks")


def print_timings(timings: Timings, total: float) -> None:
    print("\n== summary")
    print(f"  {'step':<42}{'seconds':>9}  note")
    for name, seconds, note in timings.steps:
        print(f"  {name:<42}{seconds:>9.1f}  {note}")
    print(f"  {'total':<42}{total:>9.1f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clients.demo",
        description="Set up and run the LEZ service locally (what 'make run' does).",
    )
    parser.add_argument("--var", type=Path, default=Path("var"), help="working directory [var]")
    parser.add_argument("--plates", type=int, default=300_000, help="register size [300000]")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed [{DEFAULT_SEED}]")
    parser.add_argument(
        "--pairs", type=int, default=DEFAULT_PAIRS, help=f"camera reads [{DEFAULT_PAIRS}]"
    )
    parser.add_argument("--zone", default=DEFAULT_ZONE, help=f"zone of the batch [{DEFAULT_ZONE}]")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes [2]")
    parser.add_argument("--rules", type=Path, default=Path("rules"), help="rule revisions [rules]")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    var: Path = args.var
    demo = var / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    key = var / "keys" / "hmac.key"
    register = var / f"register-{args.plates}-s{args.seed}"
    store = var / "store"
    timings = Timings()
    seen = OutcomesSeen()
    ensure_key(key, timings)
    extract = ensure_register(register, args.plates, args.seed, timings)
    ensure_store(extract, key, store, args.rules, timings)
    reads = make_workload(extract, register, args.pairs, args.seed, timings)  # tied to the extract
    with running_server(store, key, var, args.workers, timings) as (address, _proc):
        send_batch(address, reads, demo, args.zone, timings, seen)
        single_checks(address, extract, args.seed, timings, seen)
        demo_sync.sync_and_show(
            address=address, extract=extract, store=store, key=key, var=var, seed=args.seed,
            zones=(args.zone, *SYNC_ZONES), step=timings.step, run=_run, seen=seen,
            script={name: _script(name) for name in ("lez", "lez-loader", "lez-div")},
        )  # fmt: skip
        record_store(extract, store)  # the demo's store, now at the synced snapshot
    print_timings(timings, time.perf_counter() - t0)
    print(f"\n{seen.closing_line()}; see {demo} for the files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
