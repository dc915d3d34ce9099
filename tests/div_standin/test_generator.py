"""The mutation generator: deterministic, the declared mix, a consistent register over days."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pytest

from div_standin import feed
from div_standin.generator import (
    MIX,
    PLANTED_KINDS,
    GenerationResult,
    default_per_day,
    generate,
    split_volume,
)
from lez.errors import StandinError
from lez.plates import normalise
from tests.div_standin.conftest import BAD_PER_DAY, DAYS, PER_DAY, SEED


def _files(feed_dir: Path) -> dict[str, bytes]:
    return {
        p.relative_to(feed_dir).as_posix(): p.read_bytes()
        for p in sorted(feed_dir.rglob("*"))
        if p.is_file()
    }


def _days(result: GenerationResult) -> list[list[feed.Item]]:
    return [feed.read_day(result.feed_dir, entry.date) for entry in result.days]


def _planted(result: GenerationResult) -> dict[str, str]:
    return {p["transactionId"]: p["kind"] for d in result.days for p in d.planted}


def test_same_inputs_give_identical_files(
    extract: Path, generated: GenerationResult, tmp_path: Path
) -> None:
    again = generate(
        extract, tmp_path / "again", days=DAYS, seed=SEED, per_day=PER_DAY, bad_per_day=BAD_PER_DAY
    )
    assert _files(again.feed_dir) == _files(generated.feed_dir)
    other = generate(extract, tmp_path / "other", days=DAYS, seed=SEED + 1, per_day=PER_DAY)
    first = feed.day_file(generated.feed_dir, generated.days[0].date).read_bytes()
    assert feed.day_file(other.feed_dir, other.days[0].date).read_bytes() != first


def test_volume_and_mix_per_day(generated: GenerationResult) -> None:
    expected = split_volume(PER_DAY)
    for entry, items in zip(generated.days, _days(generated), strict=True):
        assert entry.transactions == len(items) == PER_DAY + BAD_PER_DAY
        planted = Counter(p["kind"] for p in entry.planted)
        assert planted == Counter(PLANTED_KINDS[i % 3] for i in range(BAD_PER_DAY))
        counts = Counter(item["transactionType"] for item in items)
        counts[feed.NEW] -= planted["bad_plate"]
        counts[feed.VEHICLE] -= planted["malformed_detail"] + planted["unknown_code"]
        assert dict(counts) == {t: n for t, n in expected.items() if n}
    for kind, share in MIX:
        assert abs(expected[kind] / PER_DAY - share) < 0.01, kind
    assert default_per_day(8_000_000) == 50_000
    assert default_per_day(2_000) >= 40


def test_sequence_and_ids(generated: GenerationResult) -> None:
    for entry, items in zip(generated.days, _days(generated), strict=True):
        assert [i["sequence"] for i in items] == list(range(1, len(items) + 1))
        assert [i["transactionId"] for i in items] == [
            feed.transaction_id(entry.date, i["sequence"]) for i in items
        ]
        assert {i["date"] for i in items} == {entry.date.isoformat()}


def _initial_state(extract: Path) -> dict[str, bool]:
    """Normalised plate -> whether its latest version is open, read independently with csv."""
    latest: dict[str, tuple[str, str]] = {}
    with extract.open(newline="") as fh:
        for row in csv.DictReader(fh):
            plate = str(normalise(row["plate"]).plate)
            if plate not in latest or row["valid_from"] > latest[plate][0]:
                latest[plate] = (row["valid_from"], row["valid_to"])
    return {plate: valid_to == "" for plate, (_, valid_to) in latest.items()}


def test_replayed_feed_is_consistent(extract: Path, generated: GenerationResult) -> None:
    """Replaying the days on the extract: only registered plates change or close, a new
    registration is on an unknown or closed plate, no plate twice a day, details as declared."""
    is_open = _initial_state(extract)
    planted = _planted(generated)
    seen_types: Counter[str] = Counter()
    for items in _days(generated):
        today: set[str] = set()
        for item in items:
            kind = item["transactionType"]
            if planted.get(item["transactionId"]) == "bad_plate":
                assert item["plate"] == "!!"
                continue
            plate = str(normalise(item["plate"]).plate)
            assert plate not in today, "a plate touched twice on one day"
            today.add(plate)
            seen_types[kind] += 1
            if kind == feed.NEW:
                assert not is_open.get(plate, False), "new registration of a registered plate"
            else:
                assert is_open.get(plate, False), f"{kind} on a plate that is not registered"
            if kind in feed.CLOSING_TYPES:
                assert item["details"] is None
            else:
                assert set(item["details"]) >= {"category", "fuel", "euro", "nis", "maxMass"}
            if item["correctsFrom"] is not None:
                assert kind == feed.VEHICLE
                assert dt.date.fromisoformat(item["correctsFrom"]) < dt.date.fromisoformat(
                    item["date"]
                )
            if planted.get(item["transactionId"]) == "malformed_detail":
                continue  # refused by the sync: the register does not change
            is_open[plate] = kind not in feed.CLOSING_TYPES
    assert set(seen_types) == set(feed.TRANSACTION_TYPES)


def test_transfers_and_new_registrations_carry_new_vehicles(generated: GenerationResult) -> None:
    items = [i for day in _days(generated) for i in day]
    planted = _planted(generated)
    for item in items:
        if item["transactionType"] in (feed.NEW, feed.TRANSFERRED):
            assert item["details"]["lastRegistration"] == item["date"]
            assert item["details"]["status"] == "A"
    corrections = [i for i in items if i["correctsFrom"] is not None]
    assert corrections, "no correction generated"
    ids = [i["vehicleId"] for i in items if i["transactionType"] in (feed.NEW, feed.TRANSFERRED)]
    assert len(ids) == len(set(ids)), "a new vehicle id used twice"
    assert all(tid in {i["transactionId"] for i in items} for tid in planted)


def test_planted_transactions(generated: GenerationResult) -> None:
    by_id = {i["transactionId"]: i for day in _days(generated) for i in day}
    for tid, kind in _planted(generated).items():
        item = by_id[tid]
        if kind == "malformed_detail":
            assert item["details"]["maxMass"] == "heavy"
        elif kind == "unknown_code":
            assert item["details"]["fuel"] == "99"
        else:
            assert item["plate"] == "!!"


def test_manifest_lists_days_and_hashes(generated: GenerationResult) -> None:
    manifest = feed.read_manifest(generated.feed_dir)
    assert feed.manifest_days(manifest) == [d.date for d in generated.days]
    assert manifest["perDay"] == PER_DAY and manifest["seed"] == SEED
    day0 = manifest["days"][0]
    assert (generated.feed_dir / day0["file"]).is_file()
    assert json.dumps(manifest).count("seconds") == 0  # timings would break byte-identity
    plates = {i["plate"] for day in _days(generated) for i in day}
    text = (generated.feed_dir / feed.MANIFEST).read_text()
    assert not [p for p in plates if f'"{p}"' in text], "a plate in the manifest"


def test_default_start_is_the_first_day_a_sync_asks_for(extract: Path, tmp_path: Path) -> None:
    # `lez-loader build` without --source-date dates the store by the extract's newest
    # valid_from, and `lez-loader sync` asks for the day after: the feed must start there.
    from lez.days import from_day
    from loader.build import latest_day
    from loader.extract import load_extract

    # a plate crossed out the day after the newest valid_from: the register holds a closing
    # later than any opening, which must not move the feed's first day
    with extract.open(encoding="utf-8") as source:
        rows = list(csv.DictReader(source))
    newest = max(r["valid_from"] for r in rows if r["valid_from"])
    closed = dict(rows[0], plate="1-ZZQ-987", valid_from="2020-01-01", status="S")
    closed["valid_to"] = (dt.date.fromisoformat(newest) + dt.timedelta(days=1)).isoformat()
    longer = tmp_path / "extract.csv"
    with longer.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows([*rows, closed])
    generated = generate(longer, tmp_path / "f", days=1, seed=SEED, per_day=PER_DAY)
    store_date = from_day(latest_day(load_extract(longer)))
    assert generated.days[0].date == store_date + dt.timedelta(days=1)


def test_start_must_follow_the_extract(extract: Path, tmp_path: Path) -> None:
    with pytest.raises(StandinError, match="not after the extract's date"):
        generate(extract, tmp_path / "f", days=1, start=dt.date(2020, 1, 1))
    with pytest.raises(StandinError, match="--days"):
        generate(extract, tmp_path / "f", days=0)


def test_volume_larger_than_the_register_is_refused(extract: Path, tmp_path: Path) -> None:
    with pytest.raises(StandinError, match="lower --per-day"):
        generate(extract, tmp_path / "f", days=1, per_day=100_000)
