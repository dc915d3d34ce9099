"""Property: a CheckStream chunk that mixes rows with and without instants (seconds or
milliseconds) answers every row as a Check of that row alone would: the same Brussels day
(derived from the instant, or the row's day), the same hour, the same outcome, reason,
allowed-until and notes (`server.pipeline.answer_chunk` against `answer_single`).

The store holds an old diesel with day passes in Ghent and Brussels, a foreign plate
registered in Flanders, and an O-plate oldtimer; the reads fall around midnight and 06:00 on
the days next to those registrations, across the DST switches of 2026.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lez import codes
from lez.api.v1 import access_pb2 as pb
from lez.days import (
    DAY_OPEN,
    NO_INSTANT,
    SECOND_UNKNOWN,
    brussels_day_second,
    to_day,
)
from lez.keys import PlateKeyer
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.rules import load_catalog, read_rule_texts
from lez.store import StoreMeta, group_by_key
from lez.store.memory import MemoryReader
from lez.vehicle import FORMAT_VERSION, Flag, empty
from server.pipeline import AnswerContext, SingleCheck, answer_chunk, answer_single

ROOT = Path(__file__).resolve().parents[2]
TEXTS = read_rule_texts(ROOT / "rules")
CATALOG = load_catalog(TEXTS)
KEYER = PlateKeyer.from_secret(b"instants-property-secret-32bytes")
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PLATES = [("1XYZ987", "BE"), ("OABC123", "BE"), ("AB123CD", "FR"), ("9ZZZ999", "BE")]
DAYS = [dt.date(2026, 3, 29), dt.date(2026, 10, 25), dt.date(2020, 1, 31), dt.date(2026, 3, 31)]


def _key(plate: str, country: str) -> np.ndarray:
    return np.frombuffer(KEYER.key(country, plate), dtype=np.uint8).reshape(1, 16)


def _reader() -> MemoryReader:
    rec = empty(2)
    for i, (first, euro, flags) in enumerate(
        ((dt.date(2003, 1, 1), "3", 0), (dt.date(1990, 5, 1), "1", int(Flag.OLDTIMER_PLATE)))
    ):
        rec[i]["valid_from"], rec[i]["valid_to"] = to_day(dt.date(2000, 1, 1)), DAY_OPEN
        rec[i]["first_registration"] = to_day(first)
        rec[i]["category"] = codes.CATEGORY.id_of("M1")
        rec[i]["fuel"] = codes.FUEL.id_of("02")
        rec[i]["euro"] = codes.EURO.id_of(euro)
        rec[i]["flags"] = flags
    keys = np.concatenate([_key(*PLATES[0]), _key(*PLATES[1])])
    regs = []
    reg_keys = []
    for day in DAYS:  # a day pass the day before each read day, in Ghent and in Brussels
        for zone, region in ((2, Region.FLANDERS), (3, Region.BRUSSELS)):
            row = np.zeros(1, dtype=REGISTRATION_DTYPE)
            start = to_day(day) - 1
            row["valid_from"], row["valid_to"] = start, start + 1
            row["zone"], row["region"], row["kind"] = zone, region, RegistrationKind.DAY_PASS
            regs.append(row)
            reg_keys.append(_key(*PLATES[0]))
    foreign = np.zeros(1, dtype=REGISTRATION_DTYPE)
    foreign["valid_from"], foreign["valid_to"] = to_day(dt.date(2026, 3, 30)), DAY_OPEN
    foreign["region"], foreign["kind"] = Region.FLANDERS, RegistrationKind.FOREIGN_VEHICLE
    regs.append(foreign)
    reg_keys.append(_key(*PLATES[2]))
    all_regs = np.concatenate(regs)
    meta = StoreMeta(
        format_version=FORMAT_VERSION, key_id=KEYER.key_id, snapshot_id="prop", snapshot_seq=1,
        source_date="2026-03-01", built_at="2026-03-01T00:00:00+00:00", plates=2, versions=2,
        registrations=len(all_regs),
    )  # fmt: skip
    return MemoryReader(
        meta, group_by_key(keys, rec), group_by_key(np.concatenate(reg_keys), all_regs), TEXTS
    )


READER = _reader()

rows = st.fixed_dictionaries(
    {
        "plate": st.integers(0, len(PLATES) - 1),
        "day": st.sampled_from(DAYS),
        # seconds after the Brussels day's UTC midnight: around local midnight and 06:00
        "offset": st.one_of(
            st.sampled_from([-7200, -3601, -3600, 0, 14_399, 14_400, 17_999, 18_000, 21_600]),
            st.integers(-86_400, 2 * 86_400),
        ),
        "timed": st.booleans(),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(rows, min_size=1, max_size=25),
    zone=st.sampled_from([1, 2, 3]),
    millis=st.booleans(),
    with_days=st.booleans(),
)
def test_a_mixed_chunk_answers_each_row_as_its_own_check(
    batch: list[dict[str, Any]], zone: int, millis: bool, with_days: bool
) -> None:
    if not with_days:  # without a days column every row must carry an instant
        batch = [r | {"timed": True} for r in batch]
    revision = CATALOG.get()
    context = AnswerContext(
        revision=revision, zone_id=zone, keyer=KEYER, store_key_id=KEYER.key_id,
        max_plate_bytes=32, max_chunk_pairs=100,
    )  # fmt: skip
    instants, days, expected_days = [], [], []
    for r in batch:
        midnight = dt.datetime.combine(r["day"], dt.time(), tzinfo=dt.UTC)
        moment = int((midnight - EPOCH).total_seconds()) + r["offset"]
        instants.append(moment if r["timed"] else NO_INSTANT)
        days.append(to_day(r["day"]))
    unit = 1000 if millis else 1
    plates = [PLATES[r["plate"]][0] for r in batch]
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in plates])]).astype("<u4")
    chunk = pb.CheckChunk(
        plates=pb.PlateColumn(data="".join(plates).encode(), offsets=offsets.tobytes()),
        countries="".join(PLATES[r["plate"]][1] for r in batch).encode(),
        instants=np.array(
            [i * unit if i != NO_INSTANT else i for i in instants], dtype="<i8"
        ).tobytes(),
        instant_unit=pb.INSTANT_UNIT_MILLISECONDS if millis else pb.INSTANT_UNIT_SECONDS,
    )
    if with_days:
        chunk.days = np.array(days, dtype="<i4").tobytes()
    with READER.snapshot() as snap:
        got = answer_chunk(snap, context, chunk, technical=True)
        cols = got.columns
        decided_on = np.frombuffer(cols["days"], dtype="<i4").tolist()
        until = np.frombuffer(cols["allowed_until"], dtype="<i4").tolist()
        for i, r in enumerate(batch):
            plate, country = PLATES[r["plate"]]
            if r["timed"]:
                day, second = brussels_day_second(instants[i])
            else:
                day, second = days[i], SECOND_UNKNOWN
            expected_days.append(day)
            one = answer_single(
                snap, context,
                SingleCheck(plate=plate, country=country, day=day, second=second),
            ).verdict  # fmt: skip
            row = (cols["outcome"][i], cols["reason"][i], until[i], cols["notes"][i])
            assert row == (one.outcome, one.reason, one.allowed_until, one.notes), (i, r)
    assert decided_on == expected_days
