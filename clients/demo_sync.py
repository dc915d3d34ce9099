"""`make run`'s daily-sync part: the DIV stand-in, a few days synced, an answer that changes.

The demo's register is a synthetic full extract; the DIV would then send its daily changes. This
step plays that out on this machine with the project's own commands, as subprocesses (nothing
from `loader` or `div_standin` is imported: the demo is a client):

1. `lez-div certs` (the stand-in's development CA, its server pair and our client pair) and
   `lez-div generate` (a few days of mutations continuing the extract), both kept under
   `VAR/div/` and reused while the extract is the same;
2. `lez-div serve` on a free loopback port (real HTTPS, mutual TLS);
3. `lez-loader sync` of those days into the store the running server serves: each day becomes a
   small layer, and the server picks the new snapshot up by itself (hot reload);
4. a plate transferred to another vehicle on one of those days whose answer differs before and
   after the transfer day, shown with `lez check` on both days.

The feed files hold plates in clear, as the DIV sends them; they stay in the git-ignored `VAR`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from clients.demo_claims import OutcomesSeen, expect
from clients.errors import LezClientError
from clients.sync import LezClient

SYNC_DAYS: Final = 3
TRANSFER_TYPE: Final = "registrationsTransferred"
CANDIDATES: Final = 400
START_TIMEOUT_S: Final = 60.0
RELOAD_TIMEOUT_S: Final = 30.0


class Step(Protocol):
    """The demo's timed step (clients.demo.Timings.step)."""

    def __call__(self, name: str) -> contextlib.AbstractContextManager[list[str]]: ...


class Runner(Protocol):
    """The demo's command runner (clients.demo._run)."""

    def __call__(
        self, cmd: Sequence[str], *, quiet: bool = False, plate: str | None = None
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transferred plate whose answer in `zone` differs before and after `day`."""

    plate: str
    day: dt.date
    zone: str
    before: str
    after: str


def prepare_feed(
    lez_div: list[str], extract: Path, div: Path, seed: int, run: Runner
) -> tuple[Path, Path]:
    """(certificates, feed) directories, made once per extract."""
    certs, feed = div / "certs", div / "feed"
    if not (certs / "ca.pem").exists():
        run([*lez_div, "certs", "--out", str(certs)])
    stamp = div / "feed-stamp.json"
    want = {"extract": str(extract.resolve()), "mtime_ns": extract.stat().st_mtime_ns}
    current = json.loads(stamp.read_text()) if stamp.exists() else None
    if current != want or not (feed / "manifest.json").exists():
        run(
            [*lez_div, "generate", "--extract", str(extract), "--out", str(feed),
             "--days", str(SYNC_DAYS), "--seed", str(seed)]
        )  # fmt: skip
        stamp.write_text(json.dumps(want))
    return certs, feed


@contextlib.contextmanager
def running_standin(lez_div: list[str], certs: Path, feed: Path, div: Path) -> Iterator[str]:
    """`lez-div serve` on a free port; its https URL while the block runs."""
    port_file = div / "port"
    port_file.unlink(missing_ok=True)
    log = div / "standin.log"
    print(f"$ lez-div serve --feed {feed} --certs {certs} --port-file {port_file} (log: {log})")
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*lez_div, "serve", "--feed", str(feed), "--certs", str(certs),
             "--port-file", str(port_file)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"demo: the DIV stand-in did not start (see {log})")
            time.sleep(0.1)
        yield f"https://127.0.0.1:{int(port_file.read_text())}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sync(lez_loader: list[str], url: str, certs: Path, store: Path, key: Path, run: Runner) -> None:
    run(
        [*lez_loader, "sync", "--store", str(store), "--key", str(key), "--div-url", url,
         "--div-ca", str(certs / "ca.pem"), "--div-cert", str(certs / "client.pem"),
         "--div-key", str(certs / "client.key")]
    )  # fmt: skip


def store_snapshot(lez_loader: list[str], store: Path) -> str:
    """The snapshot id the store publishes now (`lez-loader info` prints the meta as JSON)."""
    out = subprocess.run(
        [*lez_loader, "info", "--store", str(store)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return str(json.loads(out)["snapshot_id"])


def wait_for_snapshot(address: str, snapshot_id: str) -> float:
    """Seconds until the server answers from `snapshot_id` (its hot reload)."""
    t0 = time.monotonic()
    with LezClient([address]) as client:
        while client.server_info().snapshot_id != snapshot_id:
            if time.monotonic() - t0 > RELOAD_TIMEOUT_S:
                raise SystemExit(f"demo: the server did not switch to snapshot {snapshot_id}")
            time.sleep(0.2)
    return time.monotonic() - t0


def transfers(feed: Path) -> Iterator[tuple[str, dt.date]]:
    """(plate, day) of the feed's transfers, day by day."""
    for path in sorted((feed / "days").glob("*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                item = json.loads(line)
                if item.get("transactionType") == TRANSFER_TYPE:
                    yield str(item["plate"]), dt.date.fromisoformat(item["date"])


def find_changed_answer(address: str, feed: Path, zones: Sequence[str]) -> Transfer | None:
    """The first transfer (of the first `CANDIDATES`) whose answer changes on its day."""
    with LezClient([address]) as client:
        for n, (plate, day) in enumerate(transfers(feed)):
            if n >= CANDIDATES:
                return None
            for zone in zones:
                try:
                    before = client.check(plate, zone=zone, day=day - dt.timedelta(days=1))
                    after = client.check(plate, zone=zone, day=day)
                except LezClientError:
                    continue
                if before.outcome != after.outcome:
                    return Transfer(plate, day, zone, before.outcome, after.outcome)
    return None


def sync_and_show(
    *,
    address: str,
    extract: Path,
    store: Path,
    key: Path,
    var: Path,
    seed: int,
    zones: Sequence[str],
    step: Step,
    run: Runner,
    seen: OutcomesSeen,
    script: dict[str, list[str]],
) -> None:
    """The whole step: stand-in, sync of a few days while serving, a changed answer."""
    div = var / "div"
    div.mkdir(parents=True, exist_ok=True)
    with step(f"DIV stand-in: {SYNC_DAYS} days of mutations") as note:
        certs, feed = prepare_feed(script["lez-div"], extract, div, seed, run)
        note.append(str(feed))
    with (
        running_standin(script["lez-div"], certs, feed, div) as url,
        step("daily sync over HTTPS (lez-loader sync)") as note,
    ):
        sync(script["lez-loader"], url, certs, store, key, run)
        snapshot = store_snapshot(script["lez-loader"], store)
        waited = wait_for_snapshot(address, snapshot)
        print(f"the running server answers from snapshot {snapshot} ({waited:.1f} s later)")
        note.append(f"snapshot {snapshot}")
    with step("an answer that changes with a transfer") as note:
        found = find_changed_answer(address, feed, zones)
        if found is None:
            print(f"no transfer among the first {CANDIDATES} changes an answer in {zones}")
            note.append("none found")
            return
        print(
            f"this plate was transferred to another vehicle on {found.day}: "
            f"{found.before} the day before, {found.after} from that day, in {found.zone}"
        )
        days = ((found.day - dt.timedelta(days=1), found.before), (found.day, found.after))
        for day, expected in days:
            shown = run(
                [*script["lez"], "--server", address, "check", found.plate,
                 "--zone", found.zone, "--date", day.isoformat()],
                plate=found.plate,
            )  # fmt: skip
            seen.add("transfer", expect(expected, shown, f"the transferred plate on {day}"))
        note.append(f"{found.before} -> {found.after}")
