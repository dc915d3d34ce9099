"""The registrations import: file format, line-numbered errors, merge, idempotency."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lez import codes
from lez.days import DAY_OPEN, parse_day
from lez.errors import RegistrationFileError
from lez.keys import PlateKeyer
from lez.registrations import REGISTRATION_DTYPE, Region, RegistrationKind
from lez.rules import read_rule_texts
from lez.store import StoreBuilder, StoreMeta, open_store
from lez.store.columns import empty_table
from lez.vehicle import FORMAT_VERSION
from loader.registrations_import import COLUMNS, import_registrations

RULES = Path(__file__).resolve().parents[2] / "rules"
HEADER = ",".join(COLUMNS)


def _store(root: Path, keyer: PlateKeyer) -> Path:
    meta = StoreMeta(
        format_version=FORMAT_VERSION,
        key_id=keyer.key_id,
        snapshot_id="base",
        snapshot_seq=1,
        source_date="2025-01-01",
        built_at="2025-01-01T00:00:00+00:00",
        plates=0,
        versions=0,
        registrations=0,
    )
    StoreBuilder(root).build(
        meta=meta,
        vehicles=empty_table(),
        registrations=empty_table(REGISTRATION_DTYPE),
        rulesets=read_rule_texts(RULES),
    )
    return root


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(["# registrations of a test city", HEADER, *lines]) + "\n")
    return path


GOOD = [
    "1-ABC-234,BE,Antwerpen,,DAY_PASS,2024-05-01,,",
    "1ABC234,BE,,flanders,DISABLED_PERSON,2024-01-01,2028-12-31,",
    "AB-12-CD,NL,Gent,,FOREIGN_VEHICLE,2024-01-01,,",
    "2-XYZ-987,be,3,,EURO_CORRECTION,2023-06-01,,6",
]


def test_import_keys_by_country_and_plate_and_publishes(tmp_path: Path, keyer: PlateKeyer) -> None:
    root = _store(tmp_path / "store", keyer)
    report = import_registrations(root, _write(tmp_path, "r.csv", GOOD), keyer, snapshot_id="s2")
    assert (report.rows_read, report.rows_new, report.registrations_total) == (4, 4, 4)
    assert report.plates_total == 3  # two rows share a plate written two ways
    reader = open_store(root)
    try:
        assert reader.meta.snapshot_id == "s2" and reader.meta.registrations == 4
        with reader.snapshot() as snap:
            keys = np.frombuffer(
                keyer.key("BE", "1ABC234") + keyer.key("NL", "AB12CD") + keyer.key("BE", "2XYZ987"),
                dtype=np.uint8,
            ).reshape(3, 16)
            q, rows = snap.registrations_of(keys)
    finally:
        reader.close()
    assert q.tolist() == [0, 0, 1, 2]
    day_pass = rows[rows["kind"] == RegistrationKind.DAY_PASS][0]
    assert day_pass["zone"] == 1 and day_pass["region"] == Region.FLANDERS
    assert day_pass["valid_to"] - day_pass["valid_from"] == 1
    disabled = rows[rows["kind"] == RegistrationKind.DISABLED_PERSON][0]
    assert disabled["zone"] == 0 and disabled["valid_to"] == parse_day("2029-01-01")
    foreign = rows[rows["kind"] == RegistrationKind.FOREIGN_VEHICLE][0]
    assert foreign["zone"] == 2 and foreign["valid_to"] == DAY_OPEN
    fix = rows[rows["kind"] == RegistrationKind.EURO_CORRECTION][0]
    assert fix["zone"] == 3 and fix["region"] == Region.BRUSSELS
    assert fix["euro"] == codes.EURO.id_of("6")


def test_import_twice_changes_nothing_but_the_snapshot(tmp_path: Path, keyer: PlateKeyer) -> None:
    root = _store(tmp_path / "store", keyer)
    path = _write(tmp_path, "r.csv", GOOD)
    import_registrations(root, path, keyer, snapshot_id="s2")
    reader = open_store(root)
    try:
        with reader.snapshot() as snap:
            first = snap.registrations.records.tobytes(), snap.registrations.key_hi.tobytes()
    finally:
        reader.close()
    report = import_registrations(root, path, keyer, snapshot_id="s3")
    assert (report.rows_new, report.rows_already_present, report.registrations_total) == (0, 4, 4)
    reader = open_store(root)
    try:
        assert reader.meta.snapshot_id == "s3"
        with reader.snapshot() as snap:
            again = snap.registrations.records.tobytes(), snap.registrations.key_hi.tobytes()
    finally:
        reader.close()
    assert again == first


def test_import_merges_with_what_the_store_holds(tmp_path: Path, keyer: PlateKeyer) -> None:
    root = _store(tmp_path / "store", keyer)
    import_registrations(root, _write(tmp_path, "a.csv", GOOD[:2]), keyer, snapshot_id="s2")
    report = import_registrations(root, _write(tmp_path, "b.csv", GOOD[1:]), keyer)
    assert (report.rows_new, report.registrations_total) == (2, 4)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("1-ABC-234,BE,Antwerpen,,DAY_PAS,2024-05-01,,", "kind"),
        ("1-ABC-234,BE,Leuven,,DAY_PASS,2024-05-01,,", "zone"),
        ("1-ABC-234,BE,,,DAY_PASS,2024-05-01,,", "zone"),
        ("1-ABC-234,BE,Antwerpen,,DAY_PASS,2024-13-01,,", "valid_from"),
        ("1-ABC-234,BE,Antwerpen,,LOCAL_PERMIT,2024-05-01,2024-04-01,", "valid_until"),
        ("1-ABC-234,BE,Antwerpen,,DAY_PASS,2024-05-01,2024-05-03,", "valid_until"),
        ("1-ABC-234,BE,Antwerpen,brussels,DAY_PASS,2024-05-01,,", "region"),
        ("1-ABC-234,BE,Antwerpen,,EURO_CORRECTION,2024-05-01,,9Z", "euro"),
        ("1-ABC-234,BE,Antwerpen,,DAY_PASS,2024-05-01,,5", "euro"),
        ("1-ABC-2#4,BE,Antwerpen,,DAY_PASS,2024-05-01,,", "plate"),
        ("1-ABC-234,B3,Antwerpen,,DAY_PASS,2024-05-01,,", "country"),
        ("1-ABC-234,BE,Antwerpen,,DAY_PASS,2024-05-01", "*"),
    ],
)
def test_bad_rows_name_line_and_field_never_the_plate(
    tmp_path: Path, keyer: PlateKeyer, line: str, field: str
) -> None:
    root = _store(tmp_path / "store", keyer)
    path = _write(tmp_path, "bad.csv", [GOOD[0], line])
    with pytest.raises(RegistrationFileError) as err:
        import_registrations(root, path, keyer)
    message = str(err.value)
    assert f"bad.csv:4: field '{field}'" in message
    assert "ABC" not in message and "2#4" not in message
    reader = open_store(root)
    assert reader.meta.snapshot_id == "base"  # nothing published
    reader.close()


def test_wrong_header_is_refused(tmp_path: Path, keyer: PlateKeyer) -> None:
    root = _store(tmp_path / "store", keyer)
    path = tmp_path / "h.csv"
    path.write_text("plate,country,kind\n1ABC234,BE,DAY_PASS\n")
    with pytest.raises(RegistrationFileError, match=r"h\.csv:1: field 'header'"):
        import_registrations(root, path, keyer)


def test_an_existing_snapshot_id_is_refused_and_nothing_changes(
    tmp_path: Path, keyer: PlateKeyer
) -> None:
    root = _store(tmp_path / "store", keyer)
    with pytest.raises(FileExistsError, match="snapshot ids must be unique"):
        import_registrations(root, _write(tmp_path, "r.csv", GOOD), keyer, snapshot_id="base")
    reader = open_store(root)
    try:
        assert reader.meta.snapshot_id == "base" and reader.meta.registrations == 0
    finally:
        reader.close()
    assert sorted(p.name for p in (root / "builds").iterdir()) == ["base"]


def test_amend_copies_the_build_it_is_given(tmp_path: Path, keyer: PlateKeyer) -> None:
    root = _store(tmp_path / "store", keyer)
    base = root / "builds" / "base"
    reader = open_store(root)
    meta = reader.meta
    reader.close()
    # a newer build without rules is published; an amend of `base` still copies `base`
    StoreBuilder(root, keep=3).build(
        meta=replace(meta, snapshot_id="newer", snapshot_seq=2),
        vehicles=empty_table(),
        registrations=empty_table(REGISTRATION_DTYPE),
        rulesets={},
    )
    table = empty_table(REGISTRATION_DTYPE)
    amended = replace(meta, snapshot_id="amended", snapshot_seq=3)
    final = StoreBuilder(root, keep=3).replace_registrations(table, amended, source=base)
    reader = open_store(root)
    try:
        assert reader.path == final and reader.meta.snapshot_id == "amended"
        with reader.snapshot() as snap:
            assert sorted(snap.ruleset_texts()) == sorted(read_rule_texts(RULES))
    finally:
        reader.close()
