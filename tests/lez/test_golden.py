"""Golden cases: data files under tests/cases/*.toml, each with its source.

Every case is run through a small in-memory store (`lez.store.group_by_key` +
`lez.store.memory.MemoryReader`) keyed like the real one, so the version valid on day X is the
store's choice; then through the vectorised engine and the one-item path, which must both give
the expected outcome, reason and allowed-until (and euro / derived flags where given).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lez import codes
from lez.days import DAY_OPEN, DAY_UNKNOWN, to_day
from lez.decision import BatchInput, Derived, ItemInput, Outcome, Reason
from lez.keys import PlateKeyer
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.rules import decide_one, evaluate, load_catalog, read_rule_texts
from lez.store import StoreMeta, group_by_key
from lez.store.memory import MemoryReader
from lez.vehicle import FORMAT_VERSION, Flag, empty
from tests.support.reference_rules import reference_verdict

ROOT = Path(__file__).resolve().parents[2]
TEXTS = read_rule_texts(ROOT / "rules")
CATALOG = load_catalog(TEXTS)
KEYER = PlateKeyer.from_secret(b"golden-cases-secret-not-for-use!")
CASE_FILES = sorted((ROOT / "tests" / "cases").glob("*.toml"))
PLATE = "1ABC234"
CASE_FIELDS = {
    "id", "source", "zone", "day", "revision", "country", "claimed_first_registration",
    "vehicle", "versions", "registrations", "expect",
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
            rec["flags"] = Flag.ELECTRIC_MOTOR if value else 0
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


@pytest.mark.parametrize("case", _cases())
def test_golden_case(case: dict[str, Any]) -> None:
    assert set(case) <= CASE_FIELDS, set(case) - CASE_FIELDS
    assert case["source"].strip(), "every case names its source"
    revision_id = case.get("revision")
    revision = CATALOG.get(revision_id)
    zone = revision.zone(case["zone"])
    day = _day(case["day"])
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
    with reader.snapshot() as snap:
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
            np.array([_day(claimed)], dtype=np.int32) if claimed is not None else None
        ),
    )
    got = evaluate(revision, zone.id, batch)
    item = ItemInput(
        record=found.records[0] if found.found[0] else None,
        known=bool(found.known[0]),
        day=day,
        belgian=country == "BE",
        dutch=country == "NL",
        registrations=reg_rows,
        claimed_first_registration=_day(claimed) if claimed is not None else None,
    )
    one = reference_verdict(revision, zone.id, item)
    assert (
        decide_one(revision, zone.id, item) == one
    )  # the single-check path answers as the rows-based reference
    expect = case["expect"]
    want = (
        Outcome[expect["outcome"]],
        Reason[expect["reason"]],
        _expected_until(expect["allowed_until"]),
    )
    assert (
        Outcome(int(got.outcome[0])),
        Reason(int(got.reason[0])),
        int(got.allowed_until[0]),
    ) == want
    assert (Outcome(one.outcome), Reason(one.reason), one.allowed_until) == want
    if "euro" in expect:
        assert int(got.euro[0]) == codes.EURO.id_of(expect["euro"]) == one.euro
    if "category" in expect:
        assert int(got.category[0]) == codes.CATEGORY.id_of(expect["category"]) == one.category
    if "derived" in expect:
        bits = 0
        for name in expect["derived"]:
            bits |= Derived[name]
        assert int(got.derived[0]) == bits == one.derived


def test_there_are_enough_golden_cases() -> None:
    assert len(_cases()) >= 60
