"""Golden cases: data files under tests/cases/*.toml, each with its source.

Every case is run through a small in-memory store (`lez.store.group_by_key` +
`lez.store.memory.MemoryReader`) keyed like the real one, so the version valid on day X is the
store's choice; then through the vectorised engine and the one-item path, which must both give
the expected outcome, reason, allowed-until and notes (and euro / derived flags where given);
then through the server's pipeline (`server.pipeline.answer_chunk` with a packed chunk and
`answer_single`), as a stream and a Check would. A case gives `day`, or `instant` (ISO 8601
with an offset: the Brussels day and hour are derived as the server does); a vehicle may give
its `plate_type` (`O` sets the oldtimer-plate flag).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lez import codes
from lez.api.v1 import access_pb2 as pb
from lez.days import (
    DAY_OPEN,
    DAY_UNKNOWN,
    SECOND_UNKNOWN,
    brussels_day_second,
    parse_instant,
    to_day,
)
from lez.decision import BatchInput, Derived, ItemInput, Note, Outcome, Reason
from lez.keys import PlateKeyer
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.rules import decide_one, evaluate, load_catalog, read_rule_texts
from lez.store import StoreMeta, group_by_key
from lez.store.memory import MemoryReader
from lez.vehicle import FORMAT_VERSION, Flag, empty
from server.pipeline import AnswerContext, SingleCheck, answer_chunk, answer_single
from tests.support.reference_rules import reference_verdict

ROOT = Path(__file__).resolve().parents[2]
TEXTS = read_rule_texts(ROOT / "rules")
CATALOG = load_catalog(TEXTS)
KEYER = PlateKeyer.from_secret(b"golden-cases-secret-not-for-use!")
CASE_FILES = sorted((ROOT / "tests" / "cases").glob("*.toml"))
PLATE = "1ABC234"
CASE_FIELDS = {
    "id", "source", "zone", "day", "instant", "revision", "country",
    "claimed_first_registration", "vehicle", "versions", "registrations", "expect",
}  # fmt: skip


def _cases() -> list[Any]:
    out = []
    for path in CASE_FILES:
        for case in tomllib.loads(path.read_text(encoding="utf-8"))["case"]:
            out.append(pytest.param(case, id=f"{path.stem}:{case['id']}"))
    return out


def _day(value: Any) -> int:
    assert isinstance(value, dt.date), value
    return to_day(value)


def _version(spec: dict[str, Any]) -> np.void:
    rec = empty(1)
    rec["valid_from"] = _day(spec.get("valid_from", dt.date(2000, 1, 1)))
    rec["valid_to"] = _day(spec["valid_to"]) if "valid_to" in spec else DAY_OPEN
    lists = {"category": codes.CATEGORY, "kind": codes.KIND, "fuel": codes.FUEL, "euro": codes.EURO}
    for field, value in spec.items():
        if field in ("valid_from", "valid_to"):
            continue
        if field in lists:
            assert lists[field].is_known(value), f"unknown {field} code {value!r}"
            rec[field] = lists[field].id_of(value)
        elif field in ("first_registration", "last_registration"):
            rec[field] = _day(value)
        elif field == "electric":
            rec["flags"] |= np.uint8(Flag.ELECTRIC_MOTOR if value else 0)
        elif field == "plate_type":
            rec["flags"] |= np.uint8(Flag.OLDTIMER_PLATE if value == "O" else 0)
        elif field in ("max_mass", "running_mass", "seats", "co2", "power_kw", "nis"):
            rec[field] = value
        else:
            raise AssertionError(f"unknown vehicle field {field}")
    first: np.void = rec[0]
    return first


def _registration(spec: dict[str, Any], revision_id: str | None) -> np.void:
    row = np.zeros(1, dtype=REGISTRATION_DTYPE)
    row["kind"] = RegistrationKind[spec["kind"]]
    if "zone" in spec:
        zone = CATALOG.get(revision_id).zone(spec["zone"])
        row["zone"], row["region"] = zone.id, zone.region
    else:
        row["region"] = Region[spec["region"].upper()]
    start = _day(spec["valid_from"])
    row["valid_from"] = start
    if "valid_until" in spec:
        row["valid_to"] = _day(spec["valid_until"]) + 1
    else:
        row["valid_to"] = start + 1 if spec["kind"] == "DAY_PASS" else DAY_OPEN
    if "euro" in spec:
        row["euro"] = codes.EURO.id_of(spec["euro"])
    first: np.void = row[0]
    return first


def _expected_until(value: Any) -> int:
    if value == "open":
        return DAY_OPEN
    if value == "none":
        return DAY_UNKNOWN
    return _day(value)


@dataclass(frozen=True)
class Prepared:
    """A case's store, item and expected answer."""

    revision_id: str | None
    zone_id: int
    day: int
    second: int
    instant: int | None
    country: str
    key: np.ndarray
    reader: MemoryReader
    claimed: int | None
    want: tuple[Outcome, Reason, int, int]  # outcome, reason, allowed-until, notes


def _prepare(case: dict[str, Any]) -> Prepared:
    assert set(case) <= CASE_FIELDS, set(case) - CASE_FIELDS
    assert case["source"].strip(), "every case names its source"
    assert ("day" in case) != ("instant" in case), "a case gives a day or an instant"
    revision_id = case.get("revision")
    revision = CATALOG.get(revision_id)
    zone = revision.zone(case["zone"])
    instant: int | None = None
    if "instant" in case:
        instant = parse_instant(case["instant"])
        day, second = brussels_day_second(instant)
    else:
        day, second = _day(case["day"]), SECOND_UNKNOWN
    country = case.get("country", "BE")
    key = np.frombuffer(KEYER.key(country, PLATE), dtype=np.uint8).reshape(1, 16)
    specs = case.get("versions", [case["vehicle"]] if "vehicle" in case else [])
    versions = np.array([_version(v) for v in specs], dtype=empty(0).dtype)
    regs = np.array(
        [_registration(r, revision_id) for r in case.get("registrations", [])],
        dtype=REGISTRATION_DTYPE,
    )
    meta = StoreMeta(
        format_version=FORMAT_VERSION, key_id=KEYER.key_id, snapshot_id="golden", snapshot_seq=1,
        source_date="2025-12-15", built_at="2025-12-15T00:00:00+00:00", plates=1,
        versions=len(versions), registrations=len(regs),
    )  # fmt: skip
    reader = MemoryReader(
        meta,
        group_by_key(np.repeat(key, len(versions), axis=0), versions),
        group_by_key(np.repeat(key, len(regs), axis=0), regs),
        TEXTS,
    )
    claimed = case.get("claimed_first_registration")
    expect = case["expect"]
    notes = 0
    for name in expect.get("notes", []):
        notes |= Note[name]
    want = (
        Outcome[expect["outcome"]],
        Reason[expect["reason"]],
        _expected_until(expect["allowed_until"]),
        notes,
    )
    return Prepared(
        revision_id, zone.id, day, second, instant, country, key, reader,
        _day(claimed) if claimed is not None else None, want,
    )  # fmt: skip


@pytest.mark.parametrize("case", _cases())
def test_golden_case(case: dict[str, Any]) -> None:
    prep = _prepare(case)
    revision = CATALOG.get(prep.revision_id)
    day, country, key, claimed = prep.day, prep.country, prep.key, prep.claimed
    with prep.reader.snapshot() as snap:
        days = np.array([day], dtype=np.int32)
        found = snap.vehicles_on(key, days)
        reg_query, reg_rows = snap.registrations_of(key)
    batch = BatchInput(
        records=found.records,
        found=found.found,
        known=found.known,
        days=days,
        belgian=np.array([country == "BE"]),
        dutch=np.array([country == "NL"]),
        invalid=np.zeros(1, dtype=np.uint8),
        reg_query=reg_query,
        reg_rows=reg_rows,
        claimed_first_registration=(
            np.array([claimed], dtype=np.int32) if claimed is not None else None
        ),
        seconds=np.array([prep.second], dtype=np.int32),
    )
    got = evaluate(revision, prep.zone_id, batch)
    item = ItemInput(
        record=found.records[0] if found.found[0] else None,
        known=bool(found.known[0]),
        day=day,
        belgian=country == "BE",
        dutch=country == "NL",
        registrations=reg_rows,
        claimed_first_registration=claimed,
        second=prep.second,
    )
    one = reference_verdict(revision, prep.zone_id, item)
    assert (
        decide_one(revision, prep.zone_id, item) == one
    )  # the single-check path answers as the rows-based reference
    expect = case["expect"]
    assert (
        Outcome(int(got.outcome[0])),
        Reason(int(got.reason[0])),
        int(got.allowed_until[0]),
        int(got.notes[0]),
    ) == prep.want
    assert (Outcome(one.outcome), Reason(one.reason), one.allowed_until, one.notes) == prep.want
    if "euro" in expect:
        assert int(got.euro[0]) == codes.EURO.id_of(expect["euro"]) == one.euro
    if "category" in expect:
        assert int(got.category[0]) == codes.CATEGORY.id_of(expect["category"]) == one.category
    if "derived" in expect:
        bits = 0
        for name in expect["derived"]:
            bits |= Derived[name]
        assert int(got.derived[0]) == bits == one.derived


@pytest.mark.parametrize("case", _cases())
def test_golden_case_through_the_server_pipeline(case: dict[str, Any]) -> None:
    """The same case as a one-pair CheckStream chunk (days or an instants column) and as a
    Check, through `server.pipeline` on the case's store."""
    prep = _prepare(case)
    revision = CATALOG.get(prep.revision_id)
    context = AnswerContext(
        revision=revision, zone_id=prep.zone_id, keyer=KEYER, store_key_id=KEYER.key_id,
        max_plate_bytes=32, max_chunk_pairs=10,
    )  # fmt: skip
    single = SingleCheck(
        plate=PLATE, country=prep.country, day=prep.day,
        claimed_first_registration=prep.claimed, second=prep.second,
    )  # fmt: skip
    with prep.reader.snapshot() as snap:
        answer = answer_single(snap, context, single)
        verdict = answer.verdict
        got_single = (
            Outcome(verdict.outcome), Reason(verdict.reason), verdict.allowed_until,
            verdict.notes,
        )  # fmt: skip
        assert got_single == prep.want
        if prep.claimed is not None:
            return  # a stream carries no public-checker claims
        chunk = pb.CheckChunk(
            plates=pb.PlateColumn(data=PLATE.encode(), width=len(PLATE)),
            countries=prep.country.encode(),
        )
        if prep.instant is None:
            chunk.days = np.array([prep.day], dtype="<i4").tobytes()
        else:
            chunk.instants = np.array([prep.instant * 1000], dtype="<i8").tobytes()
            chunk.instant_unit = pb.INSTANT_UNIT_MILLISECONDS
        answers = answer_chunk(snap, context, chunk, technical=True)
    cols = answers.columns
    got_chunk = (
        Outcome(cols["outcome"][0]), Reason(cols["reason"][0]),
        int(np.frombuffer(cols["allowed_until"], dtype="<i4")[0]), cols["notes"][0],
    )  # fmt: skip
    assert got_chunk == prep.want
    if prep.instant is not None:
        assert np.frombuffer(cols["days"], dtype="<i4").tolist() == [prep.day]


def test_there_are_enough_golden_cases() -> None:
    assert len(_cases()) >= 60
