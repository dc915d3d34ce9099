"""History semantics of the change feed (loader/mutations.py), without a store or a network."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez import codes
from lez.days import DAY_OPEN, DAY_UNKNOWN, parse_day
from lez.errors import TransactionRefused
from lez.store.columns import KeyedRecords, empty_table, group_by_key
from lez.vehicle import VEHICLE_DTYPE, VehicleArray, empty, version_on
from loader import mutations
from loader.mutations import (
    CROSSED_OUT_STATUS,
    NO_OPEN_VERSION,
    PAST_THE_DAY,
    DayOutcome,
    DayTransactions,
    TransactionKind,
    apply_day,
    apply_day_per_transaction,
    apply_one,
    close_version,
    correct_vehicle,
    open_version,
)

D = parse_day("2026-10-21")
K = TransactionKind


def details(*, euro: str = "6D", nis: int = 44021, co2: int = 118) -> np.void:
    rec = empty(1)
    rec["euro"] = codes.EURO.id_of(euro)
    rec["status"] = codes.STATUS.id_of("A")
    rec["nis"] = nis
    rec["co2"] = co2
    rec["category"] = codes.CATEGORY.id_of("M1")
    one: np.void = rec[0]
    return one


def history(*spans: tuple[int, int], euro: str = "4") -> VehicleArray:
    out = empty(len(spans))
    for i, (a, b) in enumerate(spans):
        out["valid_from"][i], out["valid_to"][i] = a, b
    out["euro"] = codes.EURO.id_of(euro)
    out["status"] = codes.STATUS.id_of("A")
    return out


def euro_on(versions: VehicleArray, day: int) -> str | None:
    i = version_on(versions, day)
    return None if i is None else codes.EURO.by_id[int(versions["euro"][i])].code


def test_new_registration_of_an_unknown_plate_opens_a_version() -> None:
    out = open_version(empty(0), D, details())
    assert out[["valid_from", "valid_to"]].tolist() == [(D, DAY_OPEN)]
    assert euro_on(out, D) == "6D"
    assert euro_on(out, D - 1) is None


@pytest.mark.parametrize("kind", [K.TRANSFERRED, K.CHANGED_LICENSE, K.CHANGED_VEHICLE, K.NEW])
def test_opening_kinds_close_the_open_version_on_the_day(kind: TransactionKind) -> None:
    before = history((D - 100, DAY_OPEN))
    out = apply_one(before, D, kind, DAY_UNKNOWN, details())
    assert out[["valid_from", "valid_to"]].tolist() == [(D - 100, D), (D, DAY_OPEN)]
    # decisions before the day are unchanged, from the day on they see the new data
    assert euro_on(out, D - 1) == "4"
    assert euro_on(out, D) == "6D"
    assert euro_on(before, D) == "4"  # the input is not modified


def test_second_change_on_one_day_replaces_the_version_opened_that_day() -> None:
    once = open_version(history((D - 10, DAY_OPEN)), D, details(nis=11002))
    twice = open_version(once, D, details(nis=21004))
    assert twice[["valid_from", "valid_to"]].tolist() == [(D - 10, D), (D, DAY_OPEN)]
    assert int(twice["nis"][-1]) == 21004


@pytest.mark.parametrize("kind", [K.UNREGISTERED, K.DESTROYED, K.CROSSED_OUT])
def test_closing_kinds_close_the_open_version(kind: TransactionKind) -> None:
    out = apply_one(history((D - 50, DAY_OPEN)), D, kind, DAY_UNKNOWN, details())
    assert out[["valid_from", "valid_to"]].tolist() == [(D - 50, D)]
    crossed = int(out["status"][-1]) == CROSSED_OUT_STATUS
    assert crossed == (kind == K.CROSSED_OUT)
    assert euro_on(out, D - 1) == "4"
    assert euro_on(out, D) is None


def test_close_without_an_open_version_is_refused() -> None:
    with pytest.raises(TransactionRefused, match="no open version"):
        close_version(history((D - 50, D - 10)), D, crossed_out=True)
    with pytest.raises(TransactionRefused, match="no open version"):
        close_version(empty(0), D, crossed_out=False)


def test_a_version_opened_and_closed_on_the_same_day_is_dropped() -> None:
    opened = open_version(history((D - 50, DAY_OPEN)), D, details())
    out = close_version(opened, D, crossed_out=True)
    assert out[["valid_from", "valid_to"]].tolist() == [(D - 50, D)]
    assert int(out["status"][0]) == CROSSED_OUT_STATUS
    assert len(close_version(open_version(empty(0), D, details()), D, crossed_out=False)) == 0


def test_re_registration_after_a_gap_starts_a_new_version() -> None:
    out = open_version(history((D - 300, D - 100)), D, details())
    assert out[["valid_from", "valid_to"]].tolist() == [(D - 300, D - 100), (D, DAY_OPEN)]
    assert euro_on(out, D - 50) is None  # the gap stays a gap


def test_history_already_past_the_day_is_refused() -> None:
    with pytest.raises(TransactionRefused, match="past the transaction day"):
        open_version(history((D + 1, DAY_OPEN)), D, details())


def test_correction_changes_decisions_from_corrects_from_on_only() -> None:
    c = D - 30
    before = history((D - 100, D - 60), (D - 60, DAY_OPEN))
    before["nis"] = [11002, 44021]
    out = correct_vehicle(before, D, c, details(euro="6", nis=99999, co2=90))
    spans = out[["valid_from", "valid_to"]].tolist()
    assert spans == [(D - 100, D - 60), (D - 60, c), (c, DAY_OPEN)]
    assert euro_on(out, c - 1) == "4" and euro_on(out, D - 80) == "4"
    assert euro_on(out, c) == "6" and euro_on(out, D) == "6"
    assert int(out["co2"][-1]) == 90
    assert out["nis"].tolist() == [11002, 44021, 44021]  # holder data are not corrected


def test_correction_reaches_every_version_from_corrects_from() -> None:
    before = history((D - 100, D - 60), (D - 60, DAY_OPEN))
    out = apply_one(before, D, K.CHANGED_VEHICLE, D - 200, details(euro="6"))
    assert len(out) == 2
    assert euro_on(out, D - 100) == "6" and euro_on(out, D - 1) == "6"


def test_correction_with_nothing_to_correct_is_refused() -> None:
    with pytest.raises(TransactionRefused, match="no version"):
        correct_vehicle(history((D - 100, D - 60)), D, D - 30, details())
    with pytest.raises(TransactionRefused, match="after the transaction day"):
        correct_vehicle(history((D - 100, DAY_OPEN)), D, D + 1, details())


def _keys(*plates: int) -> np.ndarray:
    out = np.zeros((len(plates), 16), dtype=np.uint8)
    out[:, 0] = plates
    return out


def _day(rows: list[tuple[str, int, TransactionKind, int]]) -> DayTransactions:
    """rows of (id, plate number, kind, sequence)"""
    recs = empty(len(rows))
    recs["euro"] = codes.EURO.id_of("6D")
    return DayTransactions(
        day=D,
        ids=[r[0] for r in rows],
        keys=_keys(*(r[1] for r in rows)),
        kinds=np.array([int(r[2]) for r in rows], dtype=np.uint8),
        sequence=np.array([r[3] for r in rows], dtype=np.int64),
        corrects_from=np.full(len(rows), DAY_UNKNOWN, dtype=np.int32),
        records=recs,
    )


def _current(spans: dict[int, list[tuple[int, int]]]) -> KeyedRecords:
    keys = [_keys(p) for p, s in spans.items() for _ in s]
    rows = [history(*s) for s in spans.values()]
    return group_by_key(np.concatenate(keys), np.concatenate(rows))


def test_apply_day_orders_by_sequence_per_plate_and_reports_refusals() -> None:
    current = _current({1: [(D - 10, DAY_OPEN)], 2: [(D - 10, D - 5)], 3: [(D - 9, DAY_OPEN)]})
    txs = _day(
        [
            ("t3", 1, K.CROSSED_OUT, 3),  # listed first, applied last for plate 1
            ("t1", 1, K.TRANSFERRED, 1),
            ("t2", 2, K.UNREGISTERED, 2),  # plate 2 has no open version
            ("t4", 4, K.NEW, 4),
        ]
    )
    out = apply_day(txs, current)
    assert out.refused == [("t2", "no open version to close")]
    assert dict(out.applied) == {
        "registrationsTransferred": 1,
        "registrationsCrossedOut": 1,
        "registrationsNew": 1,
    }
    assert out.changes.size == 2  # plates 1 and 4; 2 refused, 3 untouched
    plate1 = out.changes.rows_of(int(out.changes.find(_keys(1))[0]))
    assert plate1[["valid_from", "valid_to"]].tolist() == [(D - 10, D)]  # opened and closed on D
    assert int(plate1["status"][0]) == CROSSED_OUT_STATUS


def test_apply_day_removes_a_key_left_without_versions() -> None:
    txs = _day([("t1", 5, K.NEW, 1), ("t2", 5, K.DESTROYED, 2)])
    out = apply_day(txs, empty_table())
    assert out.changes.size == 0  # a plate unknown before and after: nothing changes
    txs = _day([("t1", 6, K.DESTROYED, 1)])
    current = _current({6: [(D, DAY_OPEN)]})
    out = apply_day(txs, current)
    assert out.changes.size == 1 and out.changes.offsets.tolist() == [0, 0]


def test_records_keep_the_vehicle_dtype() -> None:
    out = apply_day(_day([("t1", 7, K.NEW, 1)]), empty_table())
    assert out.changes.records.dtype == VEHICLE_DTYPE


# -- the vectorised path of apply_day equals the per-transaction reference ----------------------


def _random_history(rng: np.random.Generator) -> VehicleArray:
    """0 to 3 versions with boundaries near D: open or closed, opened today, ending today,
    gaps, or reaching past D (which must be refused)."""
    edges = np.unique(rng.integers(D - 6, D + 3, size=int(rng.integers(1, 5))))
    spans = [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    spans = [s for s in spans if rng.random() < 0.8]  # gaps
    if rng.random() < 0.6:
        spans.append((int(edges[-1]), DAY_OPEN))
    out = history(*spans) if spans else empty(0)
    _random_fields(rng, out)
    return out


def _random_fields(rng: np.random.Generator, rows: VehicleArray) -> None:
    """Values from small pools, so a same-day change often repeats the version exactly."""
    rows["euro"] = rng.choice([codes.EURO.id_of("4"), codes.EURO.id_of("6D")], size=len(rows))
    rows["nis"] = rng.choice([11002, 44021], size=len(rows))
    rows["co2"] = rng.choice([90, 118], size=len(rows))
    rows["status"] = codes.STATUS.id_of("A")


def _random_day(seed: int, plates: int) -> tuple[DayTransactions, KeyedRecords]:
    """A day of transactions over `plates` plates (some unknown to the store, some sharing
    the high key half), most of them one transaction a plate, with the current versions."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 256, size=(plates, 16), dtype=np.uint8)
    if plates > 1:
        keys[1, :8] = keys[0, :8]  # a 64-bit prefix collision
    histories = [_random_history(rng) for _ in range(plates)]
    known = [p for p in range(plates) if len(histories[p]) and rng.random() < 0.9]
    current = (
        group_by_key(
            np.concatenate([np.repeat(keys[p : p + 1], len(histories[p]), axis=0) for p in known]),
            np.concatenate([histories[p] for p in known]),
        )
        if known
        else empty_table()
    )
    per_plate = rng.choice([1, 1, 1, 1, 2, 3], size=plates)
    owner = np.repeat(np.arange(plates), per_plate)
    rng.shuffle(owner)
    n = len(owner)
    kinds = rng.integers(1, 8, size=n).astype(np.uint8)
    corrects = (kinds == K.CHANGED_VEHICLE) & (rng.random(n) < 0.4)
    records = empty(n)
    _random_fields(rng, records)
    txs = DayTransactions(
        day=D,
        ids=[f"tx{i:05d}" for i in range(n)],
        keys=keys[owner],
        kinds=kinds,
        sequence=rng.integers(0, 4, size=n).astype(np.int64),  # ties keep the feed's order
        corrects_from=np.where(corrects, rng.integers(D - 7, D + 2, size=n), DAY_UNKNOWN).astype(
            np.int32
        ),
        records=records,
    )
    return txs, current


def _assert_same_outcome(got: DayOutcome, want: DayOutcome) -> None:
    for column in ("key_hi", "key_lo", "offsets"):
        assert getattr(got.changes, column).tolist() == getattr(want.changes, column).tolist()
    assert got.changes.records.dtype == want.changes.records.dtype
    assert got.changes.records.tobytes() == want.changes.records.tobytes()
    assert dict(got.applied) == dict(want.applied)
    assert got.refused == want.refused


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), plates=st.integers(1, 30))
def test_vectorised_apply_day_equals_the_per_transaction_path(seed: int, plates: int) -> None:
    txs, current = _random_day(seed, plates)
    _assert_same_outcome(apply_day(txs, current), apply_day_per_transaction(txs, current))


def test_a_large_random_day_is_the_same_on_both_paths() -> None:
    txs, current = _random_day(20261021, 3000)
    fast, reference = apply_day(txs, current), apply_day_per_transaction(txs, current)
    _assert_same_outcome(fast, reference)
    # the day exercises every outcome: changes, removals, refusals of both kinds
    assert fast.changes.size > 1000 and (fast.changes.counts() == 0).any()
    assert {reason for _, reason in fast.refused} >= {NO_OPEN_VERSION, PAST_THE_DAY}


def test_single_transactions_take_the_vectorised_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_per_transaction_path(*args: object) -> VehicleArray:
        raise AssertionError("apply_one called for a plate with one simple transaction")

    monkeypatch.setattr(mutations, "apply_one", no_per_transaction_path)
    current = _current({1: [(D - 10, DAY_OPEN)], 2: [(D - 10, DAY_OPEN)], 3: [(D, DAY_OPEN)]})
    txs = _day([("t1", 1, K.TRANSFERRED, 1), ("t2", 2, K.CROSSED_OUT, 1), ("t3", 3, K.NEW, 1),
                ("t4", 4, K.NEW, 1), ("t5", 5, K.DESTROYED, 1)])  # fmt: skip
    out = apply_day(txs, current)
    assert out.refused == [("t5", NO_OPEN_VERSION)]
    assert out.changes.size == 4
    plate2 = out.changes.rows_of(int(out.changes.find(_keys(2))[0]))
    assert plate2[["valid_from", "valid_to"]].tolist() == [(D - 10, D)]
    assert int(plate2["status"][0]) == CROSSED_OUT_STATUS


def test_apply_day_reads_current_versions_without_writing_them() -> None:
    txs, current = _random_day(7, 200)
    records = current.records.copy()
    records.flags.writeable = False  # as the store's memory map is
    current = KeyedRecords(current.key_hi, current.key_lo, current.offsets, records)
    before = records.tobytes()
    for apply in (apply_day, apply_day_per_transaction):
        assert apply(txs, current).changes.size
        assert records.tobytes() == before


def test_correction_keeps_the_plate_type_of_each_version() -> None:
    """The oldtimer-plate bit of `flags` is the plate's (holder data), the electric bit the
    vehicle's: a correction rewrites the second and keeps the first."""
    from lez.vehicle import Flag

    before = history((D - 100, D - 60), (D - 60, DAY_OPEN))
    before["flags"] = [int(Flag.OLDTIMER_PLATE), 0]
    fix = details(euro="6")
    fix["flags"] = int(Flag.ELECTRIC_MOTOR)
    out = correct_vehicle(before, D, D - 200, fix)
    assert out["flags"].tolist() == [
        int(Flag.OLDTIMER_PLATE | Flag.ELECTRIC_MOTOR),
        int(Flag.ELECTRIC_MOTOR),
    ]
