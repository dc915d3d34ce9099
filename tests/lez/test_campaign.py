"""lez.campaign against a plain reference: random small registers around the Brussels 2028 step,
each vehicle decided one by one with `lez.rules.decide_one` on the reference day, on the date,
and on every day between (the first day it is no longer allowed, found by walking the days)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from lez import campaign, codes
from lez.days import DAY_OPEN, to_day
from lez.decision import ItemInput, Outcome
from lez.errors import InvalidRequest
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.rules import Revision, decide_one, load_catalog_dir
from lez.store.columns import KeyedRecords, group_by_key, rows_for
from lez.vehicle import empty, version_on

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = to_day(dt.date(2027, 10, 1))
DATE = to_day(dt.date(2028, 2, 15))
NIS = (21004, 21009)
KINDS = (RegistrationKind.DISABLED_PERSON, RegistrationKind.LOCAL_PERMIT,
         RegistrationKind.DAY_PASS, RegistrationKind.EURO_CORRECTION)  # fmt: skip


@pytest.fixture(scope="module")
def revision() -> Revision:
    return load_catalog_dir(ROOT / "rules").get()


def random_register(seed: int, n: int = 150) -> tuple[KeyedRecords, KeyedRecords]:
    """Vehicles (one or two versions, the change near the reference day) and registrations."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    twice = rng.random(n) < 0.3
    rows = np.concatenate([np.arange(n), np.flatnonzero(twice)])
    rec = empty(len(rows))
    change = REFERENCE + rng.integers(-60, 60, n)
    first = np.arange(len(rows)) < n
    rec["valid_from"] = np.where(first, to_day(dt.date(2015, 1, 1)), change[rows])
    rec["valid_to"] = np.where(first & twice[rows], change[rows], DAY_OPEN)
    rec["first_registration"] = to_day(dt.date(2016, 1, 1))
    rec["category"] = rng.choice([codes.CATEGORY.id_of(c) for c in ("M1", "N1", "L3")], len(rows))
    rec["fuel"] = rng.choice([codes.FUEL.id_of(f) for f in ("01", "02", "02", "04")], len(rows))
    rec["euro"] = rng.choice([codes.EURO.id_of(e) for e in ("3", "4", "5", "6", "6D")], len(rows))
    rec["max_mass"] = 1500
    rec["nis"] = rng.choice([*NIS, 44021], len(rows))
    vehicles = group_by_key(keys[rows], rec)
    m = n // 2
    owner = rng.integers(0, n, m)
    regs = np.zeros(m, dtype=REGISTRATION_DTYPE)
    start = REFERENCE + rng.integers(-200, 150, m)
    regs["valid_from"] = start
    regs["valid_to"] = start + rng.integers(1, 300, m)
    regs["zone"] = 0
    regs["region"] = Region.BRUSSELS
    regs["kind"] = rng.choice(KINDS, m)
    regs["euro"] = codes.EURO.id_of("6D")
    return vehicles, group_by_key(keys[owner], regs)


def reference_list(
    revision: Revision, vehicles: KeyedRecords, registrations: KeyedRecords
) -> dict[bytes, tuple[int, int, int]]:
    """key -> (reason on the date, first day lost, euro on the date), one vehicle at a time."""
    zone = revision.zone("Brussels").id
    out = {}
    for i in range(vehicles.size):
        history = vehicles.rows_of(i)
        at = version_on(history, REFERENCE)
        if at is None or int(history[at]["nis"]) not in NIS:
            continue
        key = vehicles.key_bytes(i)
        found = registrations.find_one(key)
        regs = registrations.rows_of(found) if found >= 0 else registrations.records[:0]

        def on(
            day: int, at: int = at, regs: np.ndarray = regs, history: np.ndarray = history
        ) -> tuple[int, int, int]:
            item = ItemInput(record=history[at], known=True, day=day, belgian=True,
                             dutch=False, registrations=regs)  # fmt: skip
            verdict = decide_one(revision, zone, item)
            return verdict.outcome, verdict.reason, verdict.euro

        if on(REFERENCE)[0] != Outcome.ALLOWED:
            continue
        outcome, reason, euro = on(DATE)
        if outcome != Outcome.NOT_ALLOWED:
            continue
        lost = next(d for d in range(REFERENCE + 1, DATE + 1) if on(d)[0] != Outcome.ALLOWED)
        out[key] = (reason, lost, euro)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_equals_the_day_by_day_reference(revision: Revision, seed: int) -> None:
    vehicles, registrations = random_register(seed)
    question = campaign.campaign_question(
        revision, revision.zone("Brussels").id, reference_day=REFERENCE, date=DATE,
        nis=list(NIS), max_nis=10,
    )  # fmt: skip
    got = {}
    for part in (vehicles.part(0, 60), vehicles.part(60, vehicles.size)):  # parts add up
        lost = campaign.losing_in_part(part, lambda k: rows_for(registrations, k), question)
        for i in range(len(lost)):
            key = bytes(lost.keys[i].tobytes())
            got[key] = (int(lost.reason[i]), int(lost.first_day_lost[i]), int(lost.euro[i]))
    expected = reference_list(revision, vehicles, registrations)
    assert expected, "the random register lists someone"
    assert got == expected


def test_the_question_is_checked(revision: Revision) -> None:
    zone = revision.zone("Brussels").id
    ask = {"reference_day": REFERENCE, "date": DATE, "nis": [21004], "max_nis": 2}
    assert campaign.campaign_question(revision, zone, **ask).nis.tolist() == [21004]  # type: ignore[arg-type]
    changes: list[dict[str, object]] = [{"date": REFERENCE}, {"nis": []}, {"nis": [0]},
                                        {"nis": [1, 2, 3]}]  # fmt: skip
    for change in changes:
        with pytest.raises(InvalidRequest):
            campaign.campaign_question(revision, zone, **(ask | change))  # type: ignore[arg-type]


def test_summary_suppresses_small_cells_across_parts() -> None:
    tally = campaign.CampaignTally()
    for n, euro in ((3, 5), (2, 5), (1, 9)):
        tally.add(
            campaign.LosingVehicles(
                keys=np.zeros((n, 16), np.uint8), reason=np.zeros(n, np.uint8),
                first_day_lost=np.zeros(n, np.int32), category=np.ones(n, np.uint8),
                fuel=np.full(n, 2, np.uint8), euro=np.full(n, euro, np.uint8), examined=n,
            )
        )  # fmt: skip
    counted = tally.summary(min_cell_size=4)
    assert [(c.values, c.vehicles) for c in counted.cells] == [((1, 2, 5), 5)]
    assert (counted.suppressed_cells, counted.suppressed_vehicles) == (1, 1)
    assert (tally.examined, tally.listed) == (6, 6)
