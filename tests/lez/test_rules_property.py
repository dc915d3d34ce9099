"""Property: the vectorised engine, the single-check path and the rows-based reference
(`tests.support.reference_rules`) give the same answers.

Random vehicles (with missing fields to exercise enrichment), days across every rule change,
every zone of both revisions, random registrations, foreign and Dutch plates, invalid items and
public-checker claims; items shuffled and duplicated, registration rows in any order. Reads
with and without an hour (second of the Brussels day, -1 unknown) mixed in one chunk, with
registrations placed around the read's day (grace days before the first day, the morning after
the last day), oldtimer plates and first registrations around the 30-year age, so the notes
(hour unknown, warning only, after entry, until an hour) are compared too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lez import codes
from lez.days import DAY_OPEN, DAY_UNKNOWN, parse_day
from lez.decision import BatchInput, ItemInput
from lez.errors import UnknownZone
from lez.registrations import REGISTRATION_DTYPE, RegistrationKind
from lez.rules import decide_one, evaluate, load_catalog_dir
from lez.vehicle import U8_UNKNOWN, U16_UNKNOWN, U32_UNKNOWN, empty
from tests.support.reference_rules import reference_verdict

CATALOG = load_catalog_dir(Path(__file__).resolve().parents[2] / "rules")
DAY_LO, DAY_HI = parse_day("2015-06-01"), parse_day("2036-06-01")
FIRST_LO, FIRST_HI = parse_day("1950-01-01"), parse_day("2024-12-31")
SECONDS = st.one_of(
    st.just(-1), st.integers(0, 86_399), st.sampled_from([0, 21_599, 21_600, 86_399])
)


def _maybe(value: st.SearchStrategy[int], unknown: int) -> st.SearchStrategy[int]:
    return st.one_of(st.just(unknown), value)


vehicles = st.fixed_dictionaries(
    {
        "category": st.integers(0, codes.CATEGORY.size - 1),
        "kind": st.integers(0, codes.KIND.size - 1),
        "fuel": st.sampled_from([0, *sorted(codes.FUEL.by_id)]),
        "euro": st.integers(0, codes.EURO.size - 1),
        "max_mass": _maybe(st.integers(500, 20000), U32_UNKNOWN),
        "running_mass": _maybe(st.integers(500, 4000), U32_UNKNOWN),
        "seats": _maybe(st.integers(1, 60), U8_UNKNOWN),
        "co2": _maybe(st.integers(0, 300), U16_UNKNOWN),
        "power_kw": _maybe(st.integers(10, 300), U16_UNKNOWN),
        "flags": st.integers(0, 3),
        "first_registration": _maybe(st.integers(FIRST_LO, FIRST_HI), DAY_UNKNOWN),
    }
)

# the kinds whose timing the rule tables set (day pass, foreign vehicle, oldtimer) come often
KINDS = [int(k) for k in RegistrationKind] + [7, 7, 7, 8, 8, 2, 2]

registrations = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(KINDS),
        "zone": st.sampled_from([0, 0, 1, 2, 3, 4]),
        "region": st.integers(0, 2),
        "valid_from": st.integers(DAY_LO, DAY_HI),
        "length": st.one_of(st.just(-1), st.just(1), st.integers(1, 4000)),
        "euro": st.integers(0, codes.EURO.size - 1),
        "near": st.one_of(st.none(), st.integers(-3, 2)),  # valid_from = the read's day + near
    }
)

items = st.fixed_dictionaries(
    {
        "vehicle": st.one_of(vehicles, vehicles, vehicles, st.none()),
        "known": st.booleans(),
        "day": st.integers(DAY_LO, DAY_HI),
        "country": st.integers(0, 9).map(lambda v: "NL" if v == 8 else "FR" if v == 9 else "BE"),
        "invalid": st.integers(0, 19).map(lambda v: 24 if v == 19 else 0),
        "claim": st.sampled_from(["none", "none", "same", "other"]),
        "registrations": st.lists(registrations, max_size=3),
        "second": SECONDS,
    }
)


def _batch(
    chosen: list[dict[str, Any]], reg_order: list[int], with_claims: bool
) -> tuple[BatchInput, list[np.void | None], list[np.ndarray]]:
    n = len(chosen)
    records = empty(n)
    found = np.zeros(n, dtype=np.bool_)
    claimed = np.full(n, DAY_UNKNOWN, dtype=np.int32)
    per_item: list[np.ndarray] = []
    reg_query: list[int] = []
    reg_rows: list[np.void] = []
    for i, item in enumerate(chosen):
        vehicle = item["vehicle"]
        if vehicle is not None and item["country"] == "BE":
            for field, value in vehicle.items():
                records[field][i] = value
            found[i] = True
            first = int(records["first_registration"][i])
            if item["claim"] == "same":
                claimed[i] = first
            elif item["claim"] == "other":
                claimed[i] = first + 1 if first != DAY_UNKNOWN else FIRST_LO
        rows = np.zeros(len(item["registrations"]), dtype=REGISTRATION_DTYPE)
        for j, reg in enumerate(item["registrations"]):
            rows[j]["kind"] = reg["kind"]
            rows[j]["zone"] = reg["zone"]
            rows[j]["region"] = reg["region"]
            start = reg["valid_from"] if reg.get("near") is None else item["day"] + reg["near"]
            rows[j]["valid_from"] = start
            rows[j]["valid_to"] = DAY_OPEN if reg["length"] < 0 else start + reg["length"]
            rows[j]["euro"] = reg["euro"] if reg["kind"] == RegistrationKind.EURO_CORRECTION else 0
        per_item.append(rows)
        for row in rows:
            reg_query.append(i)
            reg_rows.append(row)
    order = [reg_order[k % len(reg_order)] for k in range(len(reg_rows))] if reg_order else []
    perm = sorted(range(len(reg_rows)), key=lambda k: (order[k] if order else 0, k))
    regs = np.array([reg_rows[k] for k in perm], dtype=REGISTRATION_DTYPE)
    batch = BatchInput(
        records=records,
        found=found,
        known=np.array([bool(it["known"]) or found[i] for i, it in enumerate(chosen)]),
        days=np.array([it["day"] for it in chosen], dtype=np.int32),
        belgian=np.array([it["country"] == "BE" for it in chosen]),
        dutch=np.array([it["country"] == "NL" for it in chosen]),
        invalid=np.array([it["invalid"] for it in chosen], dtype=np.uint8),
        reg_query=np.array([reg_query[k] for k in perm], dtype=np.int64),
        reg_rows=regs,
        claimed_first_registration=claimed if with_claims else None,
        seconds=np.array([it["second"] for it in chosen], dtype=np.int32),
    )
    vehicles_out = [records[i] if found[i] else None for i in range(n)]
    return batch, vehicles_out, per_item


def _assert_paths_agree(
    rev: Any,
    zone: int,
    batch: BatchInput,
    records: list[Any],
    per_item: list[Any],
    chosen: list[dict[str, Any]],
) -> None:
    """`evaluate` (the chunk), `decide_one` (item by item) and the rows-based reference answer
    alike."""
    got = evaluate(rev, zone, batch)
    claims = batch.claimed_first_registration
    for i, item in enumerate(chosen):
        one = ItemInput(
            record=records[i],
            known=bool(batch.known[i]),
            day=int(batch.days[i]),
            belgian=bool(batch.belgian[i]),
            dutch=bool(batch.dutch[i]),
            invalid=int(batch.invalid[i]),
            registrations=per_item[i],
            claimed_first_registration=int(claims[i]) if claims is not None else None,
            second=int(batch.seconds[i]) if batch.seconds is not None else -1,
        )
        want = reference_verdict(rev, zone, one)
        assert decide_one(rev, zone, one) == want, (i, "decide_one")
        vec = (
            int(got.outcome[i]),
            int(got.reason[i]),
            int(got.allowed_until[i]),
            int(got.euro[i]),
            int(got.category[i]),
            int(got.derived[i]),
            int(got.notes[i]),
        )
        assert vec == tuple(int(x) for x in want), (i, item)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.lists(items, min_size=1, max_size=12),
    picks=st.lists(st.integers(0, 1000), min_size=1, max_size=20),
    reg_order=st.lists(st.integers(0, 1000), max_size=8),
    revision=st.sampled_from(CATALOG.revisions),
    zone=st.sampled_from([z.id for z in CATALOG.zones]),
    with_claims=st.booleans(),
)
def test_vectorised_equals_one_item(
    base: list[dict[str, Any]],
    picks: list[int],
    reg_order: list[int],
    revision: str,
    zone: int,
    with_claims: bool,
) -> None:
    chosen = [base[p % len(base)] for p in picks]  # any order, with duplicates
    rev = CATALOG.get(revision)
    batch, records, per_item = _batch(chosen, reg_order, with_claims)
    _assert_paths_agree(rev, zone, batch, records, per_item, chosen)


REAL_CATEGORIES = [0, *sorted(codes.CATEGORY.by_id)]
REAL_FUELS = [0, *sorted(codes.FUEL.by_id)]
# Days on and next to every change day of every zone, so boundaries are hit often.
CHANGE_DAYS = sorted(
    {
        d + k
        for rid in CATALOG.revisions
        for z in CATALOG.get(rid).zones
        for d in CATALOG.get(rid).compiled(z.id).bounds[1:].tolist()
        for k in (-1, 0)
    }
)


def _random_items(seed: int, n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)

    def pick(values: list[int], unknown_share: float, unknown: int) -> int:
        return unknown if rng.random() < unknown_share else int(rng.choice(values))

    out: list[dict[str, Any]] = []
    for _ in range(n):
        vehicle = {
            "category": pick(REAL_CATEGORIES, 0.15, 0),
            "kind": int(rng.integers(0, codes.KIND.size)),
            "fuel": pick(REAL_FUELS, 0.05, 0),
            "euro": pick(list(range(codes.EURO.size)), 0.2, 0),
            "max_mass": pick(list(range(600, 20000, 100)), 0.1, U32_UNKNOWN),
            "running_mass": pick(list(range(900, 2200, 10)), 0.1, U32_UNKNOWN),
            "seats": pick(list(range(1, 30)), 0.1, U8_UNKNOWN),
            "co2": pick(list(range(120)), 0.1, U16_UNKNOWN),
            "power_kw": pick([60, 129, 130, 131, 200], 0.2, U16_UNKNOWN),
            "flags": int(rng.integers(0, 4)),
            "first_registration": pick(list(range(FIRST_LO, FIRST_HI, 17)), 0.1, DAY_UNKNOWN),
        }
        regs = []
        for _ in range(int(rng.choice([0, 0, 0, 1, 2]))):
            start = int(rng.integers(DAY_LO, DAY_HI))
            regs.append(
                {
                    "kind": int(rng.choice(KINDS)),
                    "zone": int(rng.choice([0, 0, 1, 2, 3])),
                    "region": int(rng.integers(0, 3)),
                    "valid_from": start,
                    "length": int(rng.choice([-1, 1, 1, 400, 4000])),
                    "euro": int(rng.integers(0, codes.EURO.size)),
                    "near": int(rng.integers(-3, 3)) if rng.random() < 0.7 else None,
                }
            )
        day = (
            int(rng.choice(CHANGE_DAYS))
            if rng.random() < 0.5
            else int(rng.integers(DAY_LO, DAY_HI))
        )
        out.append(
            {
                "vehicle": vehicle if rng.random() < 0.9 else None,
                "known": bool(rng.random() < 0.5),
                "day": day,
                "country": str(rng.choice(["BE"] * 8 + ["NL", "FR"])),
                "invalid": 24 if rng.random() < 0.03 else 0,
                "claim": str(rng.choice(["none"] * 6 + ["same", "other"])),
                "registrations": regs,
                "second": int(rng.choice([-1, 0, 21_599, 21_600, int(rng.integers(0, 86_400))])),
            }
        )
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    revision=st.sampled_from(CATALOG.revisions),
    zone=st.sampled_from([z.id for z in CATALOG.zones]),
    with_claims=st.booleans(),
)
def test_vectorised_equals_one_item_on_large_random_chunks(
    seed: int, revision: str, zone: int, with_claims: bool
) -> None:
    base = _random_items(seed, 150)
    rng = np.random.default_rng(seed + 1)
    chosen = [base[int(i)] for i in rng.integers(0, len(base), 250)]  # shuffled, duplicated
    rev = CATALOG.get(revision)
    batch, records, per_item = _batch(chosen, [int(x) for x in rng.permutation(64)], with_claims)
    _assert_paths_agree(rev, zone, batch, records, per_item, chosen)


def test_empty_chunk_and_unknown_zone() -> None:
    batch, _, _ = _batch([], [], with_claims=True)
    got = evaluate(CATALOG.get(), 1, batch)
    assert len(got.outcome) == len(got.allowed_until) == 0
    with pytest.raises(UnknownZone):
        evaluate(CATALOG.get(), 99, batch)


# Reads around the hours and days the timing rows care about: registrations of the timed kinds
# for the zone itself, starting or ending next to the read's day, and reads at the edges of the
# hour (or without one), so grace days, validity until an hour and "hour unknown" are met often.
timed_items = st.fixed_dictionaries(
    {
        "vehicle": st.one_of(vehicles, st.none()),
        "known": st.booleans(),
        "day": st.one_of(st.integers(DAY_LO, DAY_HI), st.sampled_from(CHANGE_DAYS)),
        "country": st.sampled_from(["BE", "BE", "NL", "FR"]),
        "invalid": st.just(0),
        "claim": st.just("none"),
        "registrations": st.lists(
            st.fixed_dictionaries(
                {
                    "kind": st.sampled_from([2, 7, 7, 8, 8, 6]),
                    "zone": st.just(-1),  # the zone under test, or its region
                    "region": st.just(-1),
                    "valid_from": st.just(0),
                    "length": st.sampled_from([1, 1, 2, -1]),
                    "euro": st.just(0),
                    "near": st.integers(-3, 2),
                }
            ),
            min_size=1,
            max_size=2,
        ),
        "second": st.one_of(st.just(-1), st.sampled_from([0, 21_599, 21_600, 43_200, 86_399])),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.lists(timed_items, min_size=1, max_size=10),
    revision=st.sampled_from(CATALOG.revisions),
    zone=st.sampled_from([z.id for z in CATALOG.zones]),
    by_region=st.booleans(),
)
def test_paths_agree_around_hours_and_grace_days(
    base: list[dict[str, Any]], revision: str, zone: int, by_region: bool
) -> None:
    rev = CATALOG.get(revision)
    where = rev.zone(zone)
    chosen = []
    for item in base:
        regs = [
            reg | {"zone": 0 if by_region else zone, "region": int(where.region)}
            for reg in item["registrations"]
        ]
        chosen.append(item | {"registrations": regs})
    batch, records, per_item = _batch(chosen, [], with_claims=False)
    _assert_paths_agree(rev, zone, batch, records, per_item, chosen)
