"""Registrations lifecycle: withdraw and end early through the `action` column, idempotently."""

from __future__ import annotations

from pathlib import Path

import pytest

from lez.days import DAY_OPEN, parse_day
from lez.errors import RegistrationFileError
from lez.keys import PlateKeyer
from lez.store import open_store
from lez.store.digest import content_digest
from loader.registrations_import import COLUMNS, import_registrations
from tests.loader.test_registrations import _store

HEADER = ",".join((*COLUMNS, "action"))
PERMIT = "1-ABC-234,BE,Antwerpen,,LOCAL_PERMIT,2026-01-01,2026-12-31,"
DISABLED = "1-ABC-234,BE,,flanders,DISABLED_PERSON,2024-01-01,,"
OTHER = "2-XYZ-987,BE,Gent,,LOCAL_PERMIT,2026-01-01,,"
OTHER_ENDING = "2-XYZ-987,BE,Gent,,LOCAL_PERMIT,2026-01-01,{},,end"


def _write(tmp_path: Path, name: str, lines: list[str], header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(["# a city's registrations", header, *lines]) + "\n")
    return path


def _rows(root: Path, keyer: PlateKeyer, plate: str) -> list[tuple[int, int, int]]:
    """(kind, valid_from, valid_to) of a Belgian plate's registrations."""
    reader = open_store(root)
    try:
        with reader.snapshot() as snap:
            rows = snap.registrations_for(bytes(keyer.key("BE", plate)))
            fields = (rows[f].tolist() for f in ("kind", "valid_from", "valid_to"))
            return sorted(zip(*fields, strict=True))
    finally:
        reader.close()


def _digest(root: Path) -> str:
    reader = open_store(root)
    try:
        return content_digest(reader)
    finally:
        reader.close()


@pytest.fixture
def store(tmp_path: Path, keyer: PlateKeyer) -> Path:
    root = _store(tmp_path / "store", keyer)
    import_registrations(root, _write(tmp_path, "start.csv", [PERMIT, DISABLED, OTHER]), keyer)
    return root


def test_withdraw_removes_the_registration_and_is_idempotent(
    tmp_path: Path, store: Path, keyer: PlateKeyer
) -> None:
    assert len(_rows(store, keyer, "1ABC234")) == 2
    withdraw = _write(tmp_path, "withdraw.csv", [PERMIT + ",withdraw"])
    first = import_registrations(store, withdraw, keyer)
    assert (first.withdrawn, first.not_found, first.rows_new) == (1, 0, 0)
    assert [r[0] for r in _rows(store, keyer, "1ABC234")] == [1]  # DISABLED_PERSON stays
    assert len(_rows(store, keyer, "2XYZ987")) == 1
    digest, snapshot = _digest(store), first.snapshot_id
    again = import_registrations(store, withdraw, keyer)
    assert (again.withdrawn, again.not_found) == (0, 1)
    assert _digest(store) == digest  # same content
    assert again.snapshot_id != snapshot  # the snapshot still advances


def test_end_shortens_the_registration_and_never_lengthens(
    tmp_path: Path, store: Path, keyer: PlateKeyer
) -> None:
    end = _write(tmp_path, "end.csv", [OTHER_ENDING.format("2026-06-30")])
    first = import_registrations(store, end, keyer)
    assert first.ended == 1
    assert _rows(store, keyer, "2XYZ987") == [(6, parse_day("2026-01-01"), parse_day("2026-07-01"))]
    digest = _digest(store)
    again = import_registrations(store, end, keyer)
    assert (again.ended, again.not_found) == (0, 0)
    assert _digest(store) == digest
    later = _write(tmp_path, "later.csv", [OTHER_ENDING.format("2027-06-30")])
    assert import_registrations(store, later, keyer).ended == 0
    assert _rows(store, keyer, "2XYZ987")[0][2] == parse_day("2026-07-01")


def test_add_and_withdraw_in_one_file_leave_it_withdrawn(
    tmp_path: Path, store: Path, keyer: PlateKeyer
) -> None:
    day_pass = "1-DEF-456,BE,Gent,,DAY_PASS,2026-03-01,,"
    both = _write(tmp_path, "both.csv", [day_pass + ",add", day_pass + ",withdraw"])
    report = import_registrations(store, both, keyer)
    assert (report.rows_new, report.withdrawn) == (1, 1)
    assert _rows(store, keyer, "1DEF456") == []


def test_a_file_without_the_action_column_only_adds(
    tmp_path: Path, store: Path, keyer: PlateKeyer
) -> None:
    plain = _write(tmp_path, "plain.csv", ["1-GHI-789,BE,Gent,,LOCAL_PERMIT,2026-01-01,,"],
                   header=",".join(COLUMNS))  # fmt: skip
    assert import_registrations(store, plain, keyer).rows_new == 1
    assert _rows(store, keyer, "1GHI789") == [(6, parse_day("2026-01-01"), DAY_OPEN)]


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (PERMIT + ",cancel", "action"),
        (OTHER + ",end", "valid_until"),
    ],
)
def test_bad_lifecycle_rows_name_line_and_field_never_the_plate(
    tmp_path: Path, store: Path, keyer: PlateKeyer, line: str, field: str
) -> None:
    before = _digest(store)
    bad = _write(tmp_path, "bad.csv", [OTHER + ",add", line])
    with pytest.raises(RegistrationFileError) as err:
        import_registrations(store, bad, keyer)
    assert f"bad.csv:4: field '{field}'" in str(err.value)
    assert "ABC" not in str(err.value) and "XYZ" not in str(err.value)
    assert _digest(store) == before
