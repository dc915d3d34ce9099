"""The daily sync end to end in-process: a store built from a small extract, a scripted feed
(httpx.MockTransport speaking docs/div-feed.md), days applied, published, purged, reconciled.

Decisions before and after a transfer, a crossing-out and a correction go through the rules
engine over the published snapshot; refused transactions are reported by id and never applied
again; no plate the feed sent appears in the store, the checkpoint or the output.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from lez import plates
from lez.days import parse_day
from lez.decision import BatchInput, Outcome
from lez.errors import SyncBusy
from lez.keys import PlateKeyer, load_key
from lez.rules import evaluate, load_catalog
from lez.store import open_store
from loader import checkpoint as checkpoints
from loader.feed import DETAIL_FIELDS, FeedSettings, no_wait
from loader.reconcile import reconcile
from loader.sync import CHECKPOINT_NAME, LOCK_NAME, SyncSettings, run_sync
from tests.support.extracts import build_test_store, row, write_extract

Handler = Callable[[httpx.Request], httpx.Response]
REPO = Path(__file__).resolve().parents[2]
SOURCE = "2026-10-20"
OLD_DIESEL = {"fuel": "02", "euro": "4", "first_registration": "2008-03-01"}
NEW_PETROL = {"fuel": "01", "euro": "6D", "first_registration": "2026-10-01", "co2": "99"}

# plate -> extract rows of the store at SOURCE
BEFORE: dict[str, list[dict[str, str]]] = {
    "1-AAA-001": [row("1-AAA-001", **OLD_DIESEL)],  # transferred on 10-21
    "1-AAA-002": [row("1-AAA-002", **OLD_DIESEL)],  # crossed out on 10-22
    "1-AAA-003": [row("1-AAA-003", **OLD_DIESEL)],  # euro corrected from 2026-01-01 on 10-23
    "1-AAA-004": [row("1-AAA-004", status="S", valid_to="2026-04-22")],  # purged on 10-22
    "1-AAA-007": [row("1-AAA-007")],  # untouched
}


def details(fields: dict[str, str]) -> dict[str, Any]:
    """Feed details carrying the same values as an extract row."""
    values = row("X", **fields)
    return {name: (values[col] or None) for name, col in DETAIL_FIELDS.items()}


def item(txid: str, day: str, seq: int, kind: str, plate: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "transactionId": txid,
        "transactionType": kind,
        "date": day,
        "sequence": seq,
        "plate": plate,
        "vehicleId": "V0",
        "correctsFrom": None,
        "details": None,
    }
    out.update(extra)
    return out


D21, D22, D23 = "2026-10-21", "2026-10-22", "2026-10-23"
NEW5 = {"valid_from": D21, "last_registration": D21, **NEW_PETROL}
CORRECTED = {**OLD_DIESEL, "euro": "6"}
BAD_MASS = details({"valid_from": D22})
BAD_MASS["maxMass"] = "heavy"
FEED: dict[str, list[dict[str, Any]]] = {
    D21: [
        item("T21-1", D21, 1, "registrationsTransferred", "1-aaa-001", details=details(NEW5)),
        item("T21-2", D21, 2, "registrationsNew", "1AAA005", details=details(NEW5)),
    ],
    D22: [
        item("T22-1", D22, 1, "registrationsCrossedOut", "1-AAA-002"),
        item("T22-2", D22, 2, "registrationsNew", "1-AAA-006", details=details({"fuel": "14"})),
        item("T22-3", D22, 3, "registrationsNew", "1-AAA-008", details=BAD_MASS),  # malformed
        item("T22-4", D22, 4, "registrationsNew", "1-AB$-234", details=details({})),  # bad plate
        item("T22-5", D22, 5, "registrationsUnregistered", "1-AAA-009"),  # nothing open
        item("T22-6", D22, 6, "registrationsStolen", "1-AAA-007"),  # unknown type
    ],
    D23: [
        item(
            "T23-1",
            D23,
            1,
            "registrationsChangedDataVehicle",
            "1-AAA-003",
            correctsFrom="2026-01-01",
            details=details(CORRECTED),
        ),
    ],
}
REFUSED = {"T22-3", "T22-4", "T22-5", "T22-6"}
FEED_PLATES = ["1-aaa-001", "1AAA005", "1-AAA-00", "1AAA00", "1-AB$-234", "AB$"]

# plate -> extract rows after D23 (what a fresh extract made then holds)
AFTER: dict[str, list[dict[str, str]]] = {
    "1-AAA-001": [
        row("1-AAA-001", **OLD_DIESEL, valid_to=D21),
        row("1-AAA-001", **NEW5),
    ],
    "1-AAA-002": [row("1-AAA-002", **OLD_DIESEL, valid_to=D22, status="S")],
    "1-AAA-003": [
        row("1-AAA-003", **OLD_DIESEL, valid_to="2026-01-01"),
        row("1-AAA-003", **CORRECTED, valid_from="2026-01-01"),
    ],
    "1-AAA-005": [row("1-AAA-005", **NEW5)],
    "1-AAA-006": [row("1-AAA-006", fuel="14", valid_from=D22)],
    "1-AAA-007": [row("1-AAA-007")],
}


class ScriptedFeed:
    """The feed of FEED, one item a page, the previous page's last item repeated; later days
    answer DAY_NOT_AVAILABLE."""

    def __init__(self, feed: dict[str, list[dict[str, Any]]]) -> None:
        self.feed = feed
        self.requests: list[tuple[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/transactions"):
            day, page = request.url.params["date"], int(request.url.params["page"])
            self.requests.append(("list", day))
            if day not in self.feed:
                return httpx.Response(404, json={"code": "DAY_NOT_AVAILABLE", "message": "later"})
            items = self.feed[day]
            chunk = items[max(0, page - 1) : page + 1]  # a repeat across pages
            listed = [{"transactionId": i["transactionId"], "transactionType": i["transactionType"],
                       "plate": i["plate"], "vehicleId": "V0"} for i in chunk]  # fmt: skip
            return httpx.Response(200, json={"date": day, "page": page, "totalPages": len(items),
                                             "items": listed})  # fmt: skip
        ids = set(json.loads(request.content)["transactionIds"])
        self.requests.append(("details", ",".join(sorted(ids))))
        every = [i for items in self.feed.values() for i in items]
        return httpx.Response(200, json={"items": [i for i in every if i["transactionId"] in ids]})


def _extract(path: Path, rows_by_plate: dict[str, list[dict[str, str]]]) -> Path:
    return write_extract(path, [r for rows in rows_by_plate.values() for r in rows])


def build_before(tmp_path: Path, key_file: Path) -> Path:
    """The store of BEFORE at SOURCE, under tmp_path/store."""
    extract = _extract(tmp_path / "before.csv", BEFORE)
    return build_test_store(tmp_path / "store", key_file, extract, SOURCE)


@pytest.fixture
def store(tmp_path: Path, key_file: Path) -> Path:
    return build_before(tmp_path, key_file)


def _settings(store: Path, key_file: Path, **kw: Any) -> SyncSettings:
    return SyncSettings(
        store_root=store,
        key_file=key_file,
        feed=FeedSettings(base_url="https://div.test", attempts=3),
        **kw,
    )


def _sync(store: Path, key_file: Path, feed: Handler, **kw: Any) -> Any:
    lines: list[str] = []
    report = run_sync(
        _settings(store, key_file, **kw),
        transport=httpx.MockTransport(feed),
        wait=no_wait,
        log=lines.append,
    )
    return report, lines


def decide(store: Path, keyer: PlateKeyer, plate: str, day: str) -> Outcome:
    """The engine's outcome for a Belgian plate in Antwerpen on a day, on the published store."""
    reader = open_store(store, expected_key_id=keyer.key_id)
    try:
        with reader.snapshot() as snap:
            revision = load_catalog(snap.ruleset_texts()).get()
            zone = revision.zone("Antwerpen")
            norm = plates.normalise(plate)
            key = np.frombuffer(keyer.key("BE", norm.plate), dtype=np.uint8).reshape(1, 16)
            days = np.array([parse_day(day)], dtype=np.int32)
            found = snap.vehicles_on(key, days)
            reg_query, reg_rows = snap.registrations_of(key)
            batch = BatchInput(
                records=found.records,
                found=found.found,
                known=found.known,
                days=days,
                belgian=np.array([True]),
                dutch=np.array([False]),
                invalid=np.zeros(1, dtype=np.uint8),
                reg_query=reg_query,
                reg_rows=reg_rows,
            )
            return Outcome(int(evaluate(revision, zone.id, batch).outcome[0]))
    finally:
        reader.close()


def test_days_apply_in_order_and_match_a_fresh_extract(
    tmp_path: Path, store: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    feed = ScriptedFeed(FEED)
    report, lines = _sync(store, key_file, feed)
    assert [d.day for d in report.days] == [D21, D22, D23]
    assert report.up_to_date_through == D23
    assert report.stopped_because.startswith("DAY_NOT_AVAILABLE")
    day21, day22, day23 = report.days
    assert day21.applied_by_type == {"registrationsNew": 1, "registrationsTransferred": 1}
    assert day21.listed_by_type == {"registrationsNew": 1, "registrationsTransferred": 1}
    assert {txid for txid, _ in day22.refused} == REFUSED
    assert day22.applied_by_type == {"registrationsCrossedOut": 1, "registrationsNew": 1}
    assert day22.unrecognised_codes == {"fuel": 1}
    assert day22.plates_purged == 1 and day21.plates_purged == 0
    assert day23.applied_by_type == {"registrationsChangedDataVehicle": 1}
    assert sorted(line.split()[3] for line in lines if "refused" in line) == sorted(REFUSED)
    # the store now equals what a full extract made after these days holds
    after = _extract(tmp_path / "after.csv", AFTER)
    diff = reconcile(store, after, keyer, retention_days=183)
    assert diff.equal, diff.lines()
    reader = open_store(store)
    try:
        assert reader.meta.mutation_watermark == D23
        assert reader.meta.build_report["transactions"] == 1
        # the server exports the time since this sync (docs/observability.md)
        assert reader.meta.synced_at == reader.meta.built_at != ""
    finally:
        reader.close()
    assert not (store / CHECKPOINT_NAME).exists()


def test_decisions_before_and_after_transfer_crossing_out_and_correction(
    store: Path, key_file: Path, keyer: PlateKeyer
) -> None:
    assert decide(store, keyer, "1-AAA-001", D21) is Outcome.NOT_ALLOWED  # old diesel, euro 4
    _sync(store, key_file, ScriptedFeed(FEED))
    # transfer on D21: the old vehicle before, the new one from the day
    assert decide(store, keyer, "1-AAA-001", "2026-10-20") is Outcome.NOT_ALLOWED
    assert decide(store, keyer, "1-AAA-001", D21) is Outcome.ALLOWED
    # crossed out on D22: known before, unknown from the day
    assert decide(store, keyer, "1-AAA-002", "2026-10-21") is Outcome.NOT_ALLOWED
    assert decide(store, keyer, "1-AAA-002", D22) is Outcome.UNKNOWN_PLATE
    # corrected from 2026-01-01 on D23: decisions from that day change, earlier ones do not
    assert decide(store, keyer, "1-AAA-003", "2025-12-31") is Outcome.NOT_ALLOWED
    assert decide(store, keyer, "1-AAA-003", "2026-01-01") is Outcome.ALLOWED
    assert decide(store, keyer, "1-AAA-003", D23) is Outcome.ALLOWED
    # purged: crossed out more than 183 days before D22
    assert decide(store, keyer, "1-AAA-004", "2026-04-01") is Outcome.UNKNOWN_PLATE


def test_a_second_sync_applies_nothing_again(store: Path, key_file: Path) -> None:
    first = ScriptedFeed(FEED)
    _sync(store, key_file, first)
    again = ScriptedFeed(FEED)
    report, _ = _sync(store, key_file, again)
    assert report.days == [] and report.up_to_date_through == D23
    assert again.requests == [("list", "2026-10-24")]  # no day up to the watermark is re-read


def test_through_stops_early_and_the_next_run_continues(store: Path, key_file: Path) -> None:
    report, _ = _sync(store, key_file, ScriptedFeed(FEED), through=dt.date(2026, 10, 21))
    assert [d.day for d in report.days] == [D21]
    assert report.stopped_because == "reached --through 2026-10-21"
    report, _ = _sync(store, key_file, ScriptedFeed(FEED))
    assert [d.day for d in report.days] == [D22, D23]


def test_a_failing_feed_leaves_the_store_and_keeps_the_fetched_pages(
    store: Path, key_file: Path
) -> None:
    before = open_store(store).path
    good = ScriptedFeed(FEED)

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/transactions") and request.url.params["page"] == "1":
            return httpx.Response(503)
        return good(request)

    with pytest.raises(Exception, match="after 3 attempts"):
        _sync(store, key_file, flaky)
    assert open_store(store).path == before  # nothing published
    saved = checkpoints.load(store / CHECKPOINT_NAME, key_id=load_key(key_file).key_id)
    assert saved is not None
    assert saved.day.isoformat() == D21 and saved.pages_done == 1 and not saved.complete
    report, _ = _sync(store, key_file, ScriptedFeed(FEED))
    assert [d.day for d in report.days] == [D21, D22, D23]


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_no_feed_plate_in_store_checkpoint_or_output(
    tmp_path: Path, store: Path, key_file: Path
) -> None:
    # stop inside D22's fetch to keep a checkpoint holding its transactions
    def stop_late(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if params.get("date") == D22 and params.get("page") == "5":
            return httpx.Response(400, json={"code": "BAD_REQUEST", "message": "1-AB$-234"})
        return ScriptedFeed(FEED)(request)

    with pytest.raises(Exception, match="HTTP 400"):
        _sync(store, key_file, stop_late)
    checkpoint = (store / CHECKPOINT_NAME).read_bytes()
    saved = checkpoints.load(store / CHECKPOINT_NAME, key_id=load_key(key_file).key_id)
    assert saved is not None and saved.pages_done == 5
    report, lines = _sync(store, key_file, ScriptedFeed(FEED))
    text = (json.dumps([d.lines() for d in report.days]) + "\n".join(lines)).encode()
    haystacks = {"checkpoint": checkpoint, "store": _all_bytes(store), "output": text}
    for plate in [*FEED_PLATES, "AAA001", "AAA005", "AAA006"]:
        for name, data in haystacks.items():
            assert plate.encode() not in data, (plate, name)
            assert plate.upper().encode() not in data, (plate, name)


@pytest.mark.parametrize("point", ["page:1", "page:4", "before-publish", "after-publish"])
def test_a_killed_sync_resumes_to_the_same_store(
    tmp_path: Path, store: Path, key_file: Path, point: str
) -> None:
    """The quick kill-and-resume variant: the sync SIGKILLs itself at a named point (the
    LEZ_SYNC_CRASH_AT hook) in a subprocess serving FEED through MockTransport, then resumes."""
    reference = tmp_path / "reference"
    subprocess.run(["cp", "-a", str(store), str(reference)], check=True)
    _sync(reference, key_file, ScriptedFeed(FEED))
    script = (
        "import sys, httpx\n"
        "from tests.loader.test_sync import ScriptedFeed, FEED, _sync\n"
        "from pathlib import Path\n"
        "_sync(Path(sys.argv[1]), Path(sys.argv[2]), ScriptedFeed(FEED))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "LEZ_SYNC_CRASH_AT": point}
    killed = subprocess.run(
        [sys.executable, "-c", script, str(store), str(key_file)], cwd=REPO, env=env
    )
    assert killed.returncode == -9
    _sync(store, key_file, ScriptedFeed(FEED))
    assert _content(store) == _content(reference)


def _content(root: Path) -> tuple[bytes, bytes, bytes, bytes, str]:
    reader = open_store(root)
    try:
        with reader.snapshot() as snap:
            v = snap.vehicles
            present = np.diff(v.offsets.astype(np.int64)) > 0
            return (
                v.key_hi[present].tobytes(),
                v.key_lo[present].tobytes(),
                np.diff(v.offsets.astype(np.int64))[present].tobytes(),
                v.records.tobytes(),
                reader.meta.mutation_watermark,
            )
    finally:
        reader.close()


def test_one_sync_at_a_time(store: Path, key_file: Path) -> None:
    with (store / LOCK_NAME).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SyncBusy, match="another sync is running"):
            _sync(store, key_file, ScriptedFeed(FEED))
    report, _ = _sync(store, key_file, ScriptedFeed(FEED))  # released: it runs
    assert len(report.days) == 3


def test_cli_usage_and_failure_exit_codes(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loader.__main__ import main

    assert main(["sync", "--store", str(tmp_path), "--key", str(key_file)]) == 2
    assert "give --div-url, --div-ca, --div-cert, --div-key" in capsys.readouterr().err
    tls = ["--div-url", "https://127.0.0.1:9", "--div-ca", "ca.pem"]
    tls += ["--div-cert", "c.pem", "--div-key", "c.key"]
    missing = ["sync", "--store", str(tmp_path / "none"), "--key", str(key_file), *tls]
    too_nice = ["sync", "--store", str(tmp_path), "--key", str(key_file), *tls, "--nice", "25"]
    assert main(too_nice) == 2
    assert "--nice must be between 0 and 19" in capsys.readouterr().err
    assert main(missing) == 1
    assert "no store at" in capsys.readouterr().err
