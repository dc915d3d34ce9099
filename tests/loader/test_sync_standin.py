"""The sync against the real DIV stand-in process over HTTPS with mutual TLS (`lez-div serve`).

A small synthetic register is built into a store; `lez-div generate` continues it for a few days
(with planted bad transactions). Every run must end with the store an uninterrupted sync gives
(same `content_digest`): through the CLI, under every fault the stand-in injects, and after
being SIGKILLed at named points or random moments and resumed. One CLI run (with a few faults
armed) is in the default suite; the rest is marked slow (`make test-slow`).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from div_standin.generator import generate as generate_feed
from div_standin.process import StandinHandle, running_standin
from lez.certs import write_dev_set
from lez.keys import generate_key_file
from lez.store import open_store
from lez.store.digest import content_digest
from loader.build import build_store
from loader.config import LoaderConfig
from loader.feed import FeedSettings, no_wait
from loader.sync import CHECKPOINT_NAME, SyncSettings, run_sync
from loader.synth import generate as synth
from tests.support.quality import feed_unknown_codes, store_versions_counted

REPO = Path(__file__).resolve().parents[2]
SOURCE = dt.date(2026, 11, 1)
DAYS = 3
PAGE_SIZE = 50


@dataclass(frozen=True)
class World:
    base: Path  # the store before any sync (copied per test)
    key: Path
    certs: Path
    feed: Path
    manifest: dict[str, Any]
    reference: str  # content digest after an uninterrupted sync of every day
    plates: list[str]  # every plate the feed sends, as written and normalised


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("standin")
    synth(2000, 11, root / "reg", source_date=SOURCE)
    key = root / "hmac.key"
    generate_key_file(key)
    base = root / "base"
    build_store(
        LoaderConfig(
            store_root=base,
            key_file=key,
            rules_dir=REPO / "rules",
            reports_dir=root / "reports",
            source_date=SOURCE,
            workers=1,
        ),
        root / "reg" / "extract.csv",
    )
    write_dev_set(root / "certs", server_cn="lez-div", clients=("client",))
    feed = root / "feed"
    generate_feed(
        root / "reg" / "extract.csv",
        feed,
        days=DAYS,
        start=SOURCE + dt.timedelta(days=1),
        seed=5,
        per_day=300,
        bad_per_day=3,
    )
    plates: set[str] = set()
    for day_file in sorted((feed / "days").glob("*.jsonl")):
        for line in day_file.read_text().splitlines():
            plate = json.loads(line)["plate"]
            plates.update({plate, plate.replace("-", "").upper()})
    world = World(
        base=base,
        key=key,
        certs=root / "certs",
        feed=feed,
        manifest=json.loads((feed / "manifest.json").read_text()),
        reference="",
        plates=sorted(p for p in plates if len(p) >= 5),
    )
    store = _copy(world, root / "reference")
    with _standin(world) as standin:
        report = run_sync(_settings(world, store, standin), wait=no_wait, log=lambda _: None)
    assert len(report.days) == DAYS
    return World(**{**world.__dict__, "reference": _digest(store)})


def _copy(world: World, to: Path) -> Path:
    shutil.copytree(world.base, to, symlinks=True)
    return to


def _standin(world: World, faults: tuple[str, ...] = ()) -> Any:
    return running_standin(world.feed, world.certs, faults)


def _settings(world: World, store: Path, standin: StandinHandle, **feed: Any) -> SyncSettings:
    feed.setdefault("attempts", 6)
    return SyncSettings(
        store_root=store,
        key_file=world.key,
        feed=FeedSettings(
            base_url=standin.url,
            ca_file=standin.ca,
            cert_file=standin.client_cert,
            key_file=standin.client_key,
            page_size=PAGE_SIZE,
            **feed,
        ),
    )


def _digest(store: Path) -> str:
    reader = open_store(store)
    try:
        return content_digest(reader)
    finally:
        reader.close()


def _cli(world: World, store: Path, standin: StandinHandle) -> list[str]:
    return [
        sys.executable, "-m", "loader", "sync", "--store", str(store), "--key", str(world.key),
        "--div-url", standin.url, "--div-ca", str(standin.ca),
        "--div-cert", str(standin.client_cert), "--div-key", str(standin.client_key),
        "--page-size", str(PAGE_SIZE),
    ]  # fmt: skip


def _planted(world: World, kind: str) -> set[str]:
    return {
        p["transactionId"]
        for d in world.manifest["days"]
        for p in d["planted"]
        if p["kind"] == kind
    }


def _bytes_under(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_cli_sync_reports_days_refusals_and_leaves_no_plate(tmp_path: Path, world: World) -> None:
    store = _copy(world, tmp_path / "store")
    with _standin(world, ("503:2", "truncate:1", "repeat:2", "drop:1")) as standin:
        first = subprocess.run(_cli(world, store, standin), capture_output=True, cwd=REPO)
        again = subprocess.run(_cli(world, store, standin), capture_output=True, cwd=REPO)
    assert first.returncode == 0, first.stderr.decode()
    out, err = first.stdout.decode(), first.stderr.decode()
    days = [d["date"] for d in world.manifest["days"]]
    assert all(any(line.startswith(f"{day}: ") for line in out.splitlines()) for day in days)
    assert f"up to date through {days[-1]}" in out
    refused = {line.split()[1].rstrip(":") for line in out.splitlines() if "  refused " in line}
    assert refused == _planted(world, "malformed_detail") | _planted(world, "bad_plate")
    assert refused.isdisjoint(_planted(world, "unknown_code"))  # loaded as UNKNOWN, counted
    assert "unrecognised codes loaded as UNKNOWN: {'fuel': 1}" in out
    assert f"data quality (sync {days[-1]}): " in out
    for txid in refused:
        assert f"transaction {txid} refused" in err
    assert _digest(store) == world.reference
    # the next sync finds the days done and applies nothing again
    assert again.returncode == 0
    assert again.stdout.decode().strip() == (
        f"up to date through {days[-1]} (DAY_NOT_AVAILABLE for "
        f"{dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)})"
    )
    assert _digest(store) == world.reference
    texts = first.stdout + first.stderr + again.stdout + again.stderr
    everything = texts + _bytes_under(store)
    leaked = [p for p in world.plates if p.encode() in everything]
    assert leaked == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    ["500", "502", "503", "504", "drop", "truncate", "cutjson", "repeat", "delay"],
)
def test_every_fault_kind_ends_with_the_same_store(
    tmp_path: Path, world: World, fault: str
) -> None:
    store = _copy(world, tmp_path / "store")
    with _standin(world) as standin:
        if fault == "delay":  # longer than the client's read timeout: a retried timeout
            standin.arm_faults([{"kind": "delay", "seconds": 1.0, "count": 2}])
            settings = _settings(world, store, standin, timeout=0.3)
        else:
            standin.arm_faults([{"kind": fault, "count": 3}])
            settings = _settings(world, store, standin)
        retries: list[str] = []
        report = run_sync(settings, wait=no_wait, log=retries.append)
    assert len(report.days) == DAYS
    assert _digest(store) == world.reference
    if fault != "repeat":
        assert len([r for r in retries if "retry" in r]) >= 2


@pytest.mark.slow
def test_a_day_not_available_stops_cleanly_and_the_next_run_goes_on(
    tmp_path: Path, world: World
) -> None:
    store = _copy(world, tmp_path / "store")
    second = world.manifest["days"][1]["date"]
    with _standin(world) as standin:
        standin.arm_faults([{"kind": "unavailable", "date": second, "count": 1}])
        report = run_sync(_settings(world, store, standin), wait=no_wait, log=lambda _: None)
        assert [d.day for d in report.days] == [world.manifest["days"][0]["date"]]
        assert report.stopped_because == f"DAY_NOT_AVAILABLE for {second}"
        report = run_sync(_settings(world, store, standin), wait=no_wait, log=lambda _: None)
    assert len(report.days) == DAYS - 1
    assert _digest(store) == world.reference


@pytest.mark.slow
@pytest.mark.parametrize("point", ["page:3", "before-publish", "after-publish", "before-compact"])
def test_a_cli_sync_killed_at_a_point_resumes_to_the_same_store(
    tmp_path: Path, world: World, point: str
) -> None:
    store = _copy(world, tmp_path / "store")
    with _standin(world) as standin:
        env = {"PATH": "/usr/bin:/bin", "LEZ_SYNC_CRASH_AT": point}
        killed = subprocess.run(_cli(world, store, standin), env=env, cwd=REPO, capture_output=True)
        assert killed.returncode == -9, killed.stderr.decode()
        done = subprocess.run(_cli(world, store, standin), cwd=REPO, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert _digest(store) == world.reference
    assert not (store / CHECKPOINT_NAME).exists()


def _kill_after(command: list[str], delay: float) -> int:
    """Run `command`, SIGKILL it after `delay` s unless it ended; its return code."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        return process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_sync_sigkilled_at_random_moments_resumes_to_the_same_store(
    tmp_path: Path, world: World, seed: int
) -> None:
    store = _copy(world, tmp_path / "store")
    rng = random.Random(seed)
    kills, scale = 0, 1.0
    with _standin(world) as standin:
        command = _cli(world, store, standin)
        while kills < 12:
            code = _kill_after(command, rng.uniform(0.3, 2.5) * scale)
            if code == 0 and kills == 0:  # finished before the first kill: start again sooner
                shutil.rmtree(store)
                _copy(world, store)
                scale /= 2
                continue
            if code == 0:
                break
            assert code == -9
            kills += 1
        else:
            code = subprocess.run(command, cwd=REPO, capture_output=True).returncode
    assert code == 0
    assert kills >= 1
    assert _digest(store) == world.reference


def test_data_quality_after_a_sync_equals_a_direct_count(tmp_path: Path, world: World) -> None:
    store = _copy(world, tmp_path / "store")
    before = _meta(store).data_quality
    assert before is not None and before["source"] == "build"
    with _standin(world) as standin:
        # a shorter retention than the build's: the first day purges plates untouched that day
        settings = replace(_settings(world, store, standin), retention_days=60)
        report = run_sync(settings, wait=no_wait, log=lambda _: None)
    assert report.days[0].plates_purged > 0
    got = _meta(store).data_quality
    assert got is not None
    expected = store_versions_counted(store)
    assert {k: got[k] for k in expected} == expected
    assert got["source"] == f"sync {report.days[-1].day}"
    refused = sum(len(d.refused) for d in report.days)
    assert refused == len(_planted(world, "malformed_detail") | _planted(world, "bad_plate")) > 0
    assert got["rejected"] == before["rejected"] + refused
    build_codes, feed_codes = before["unknown_codes"], feed_unknown_codes(world.feed / "days")
    assert sum(feed_codes.values()) >= len(_planted(world, "unknown_code")) > 0
    assert got["unknown_codes"] == {k: build_codes[k] + feed_codes[k] for k in build_codes}


def _meta(store: Path) -> Any:
    reader = open_store(store)
    try:
        return reader.meta
    finally:
        reader.close()
