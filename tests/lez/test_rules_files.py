"""Rule files: the repository's revisions load; mistakes are refused with file, line and field;
the catalog pins revisions and finds zones."""

from __future__ import annotations

from pathlib import Path

import pytest

from lez.errors import RuleTableError, UnknownRuleset, UnknownZone
from lez.registrations import Region, RegistrationKind
from lez.rules import load_catalog, load_catalog_dir, read_rule_texts

RULES = Path(__file__).resolve().parents[2] / "rules"

MINIMAL = """\
[revision]
id = "2030-01-01"
adopted = 2030-01-01
title = "test revision"

[[zone]]
id = 7
name = "Testzone"
region = "flanders"
nis = 11002
start = 2017-02-01
source = "test"

[[criterion]]
scope = "flanders"
categories = ["M", "N"]
fuels = ["diesel"]
from = 2016-03-01
until = 2019-12-31
min_euro = "4"
source = "test"

[[criterion]]
scope = "flanders"
categories = ["M", "N"]
fuels = ["diesel"]
from = 2020-01-01
min_euro = "5"
source = "test"
"""


def _load(tmp_path: Path, text: str, name: str = "2030-01-01.toml") -> None:
    (tmp_path / name).write_text(text)
    load_catalog_dir(tmp_path)


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(needle)


def test_repository_revisions_load_oldest_to_newest() -> None:
    catalog = load_catalog_dir(RULES)
    assert catalog.revisions == ("2025-03-21", "2025-12-15")
    assert catalog.newest == "2025-12-15"
    assert catalog.get().id == catalog.get(None).id == "2025-12-15"
    assert catalog.get("2025-03-21").id == "2025-03-21"
    names = {z.name: (z.id, z.region) for z in catalog.zones}
    assert names == {
        "Antwerpen": (1, Region.FLANDERS),
        "Gent": (2, Region.FLANDERS),
        "Brussels": (3, Region.BRUSSELS),
    }
    assert catalog.zone("gent").id == catalog.zone(2).id == 2


def test_texts_and_directory_give_the_same_catalog() -> None:
    texts = read_rule_texts(RULES)
    assert load_catalog(texts).revisions == load_catalog_dir(RULES).revisions


def test_unknown_revision_and_zone_are_refused() -> None:
    catalog = load_catalog_dir(RULES)
    with pytest.raises(UnknownRuleset, match="2024-01-01"):
        catalog.get("2024-01-01")
    with pytest.raises(UnknownZone):
        catalog.zone("Leuven")
    with pytest.raises(UnknownZone):
        catalog.zone(99)


def test_minimal_file_loads(tmp_path: Path) -> None:
    _load(tmp_path, MINIMAL)


@pytest.mark.parametrize(
    ("change", "field", "needle", "problem"),
    [
        (("min_euro = \"5\"", "min_euro = \"5\"\ncolour = \"red\""), "colour", "colour",
         "unknown field"),
        (("from = 2020-01-01", "from = 2019-06-01"), "from", "from = 2019-06-01", "overlaps"),
        (("scope = \"flanders\"\ncategories = [\"M\", \"N\"]\nfuels = [\"diesel\"]\nfrom = 2020",
          "scope = \"Leuven\"\ncategories = [\"M\", \"N\"]\nfuels = [\"diesel\"]\nfrom = 2020"),
         "scope", "Leuven", "unknown zone"),
        (("min_euro = \"5\"", "min_euro = \"7\""), "min_euro", "\"7\"", "unknown euro code"),
        (("fuels = [\"diesel\"]\nfrom = 2020", "fuels = [\"kerosene\"]\nfrom = 2020"), "fuels",
         "kerosene", "unknown fuel"),
        (("categories = [\"M\", \"N\"]\nfuels = [\"diesel\"]\nfrom = 2020",
          "categories = [\"M9\"]\nfuels = [\"diesel\"]\nfrom = 2020"), "categories", "M9",
         "unknown category"),
        (("nis = 11002", "nis = \"11002\""), "nis", "nis =", "expected integer"),
        (("region = \"flanders\"", "region = \"wallonia\""), "region", "wallonia",
         "unknown region"),
        (("until = 2019-12-31", "until = 2015-12-31"), "until", "until = 2015", "ends before"),
        (("id = \"2030-01-01\"", "id = \"2031-01-01\""), "id", "2031-01-01", "file stem"),
    ],
)  # fmt: skip
def test_mistakes_name_file_line_and_field(
    tmp_path: Path, change: tuple[str, str], field: str, needle: str, problem: str
) -> None:
    old, new = change
    occurrence = MINIMAL.count(old)
    assert occurrence >= 1
    # change the last occurrence (the second criterion) so earlier rows stay valid
    head, _, tail = MINIMAL.rpartition(old)
    text = head + new + tail
    with pytest.raises(RuleTableError) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert err.value.field == field
    assert err.value.line == _line_of(text, needle, text.count(needle))
    assert message.startswith(f"{tmp_path / '2030-01-01.toml'}:{err.value.line}: field '{field}'")
    assert problem in message


def test_unknown_table_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[exemption]]\nscope = "flanders"\n'
    with pytest.raises(RuleTableError) as err:
        _load(tmp_path, text)
    assert err.value.field == "exemption"
    assert err.value.line == _line_of(text, "[[exemption]]")


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    text = MINIMAL.replace('title = "test revision"', "title = test revision")
    with pytest.raises(RuleTableError) as err:
        _load(tmp_path, text)
    assert err.value.field == "<syntax>"
    assert err.value.line == _line_of(text, "title = test")


def test_missing_source_is_refused(tmp_path: Path) -> None:
    head, _, tail = MINIMAL.rpartition('source = "test"\n')
    with pytest.raises(RuleTableError) as err:
        _load(tmp_path, head + tail)
    assert err.value.field == "source"
    assert err.value.line == _line_of(MINIMAL, "[[criterion]]", 2)


def test_unconfirmed_row_needs_a_note(tmp_path: Path) -> None:
    text = MINIMAL.rstrip() + "\nunconfirmed = true\n"
    with pytest.raises(RuleTableError) as err:
        _load(tmp_path, text)
    assert err.value.field == "note"


def test_two_effects_are_refused(tmp_path: Path) -> None:
    text = MINIMAL.rstrip() + "\nban = true\n"
    with pytest.raises(RuleTableError) as err:
        _load(tmp_path, text)
    assert err.value.field == "ban"
    assert err.value.line == _line_of(text, "ban = true")


def test_zone_row_may_refine_region_row_without_overlap_error(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[criterion]]\nscope = "Testzone"\ncategories = ["M1"]\nfuels = ["diesel"]\n'
        'from = 2020-01-01\nmin_euro = "6"\nsource = "test"\n'
    )
    _load(tmp_path, text)


TIMING = """
[[registration_time]]
kind = "DAY_PASS"
scope = "Testzone"
from = 2017-02-01
valid_until_hour = 6
source = "test"

[[warning]]
scope = "Testzone"
from = 2017-02-01
until = 2017-02-28
step = 2017-02-01
source = "test"

[[oldtimer_plate]]
scope = "flanders"
from = 2017-02-01
min_age_years = 30
source = "test"
"""


def test_timing_warning_and_oldtimer_rows_load(tmp_path: Path) -> None:
    (tmp_path / "2030-01-01.toml").write_text(MINIMAL + TIMING)
    revision = load_catalog_dir(tmp_path).get()
    tables = revision.compiled(7)
    assert int(tables.until_hour[-1, RegistrationKind.DAY_PASS]) == 6
    assert tables.plate_age[-1] == 30 and tables.warn_prev.max() == -1  # the zone's start


@pytest.mark.parametrize(
    ("old", "new", "field", "needle", "problem"),
    [
        ("valid_until_hour = 6", "valid_until_hour = 24", "valid_until_hour", "= 24", "1..23"),
        ("valid_until_hour = 6", "grace_days = 0", "grace_days", "grace_days", "1..31"),
        ("valid_until_hour = 6", "note = \"x\"", "valid_until_hour", "[[registration_time]]",
         "give valid_until_hour"),
        ("valid_until_hour = 6", "undetermined = true", "note", "[[registration_time]]",
         "say in a note"),
        ("kind = \"DAY_PASS\"", "kind = \"EURO_CORRECTION\"", "kind", "EURO_CORRECTION",
         "expected one of"),
        ("step = 2017-02-01", "step = 2017-03-01", "step", "step =", "after its warning window"),
        ("min_age_years = 30", "min_age_years = 0", "min_age_years", "min_age_years", "1..200"),
    ],
)  # fmt: skip
def test_timing_mistakes_name_file_line_and_field(
    tmp_path: Path, old: str, new: str, field: str, needle: str, problem: str
) -> None:
    text = MINIMAL + TIMING.replace(old, new)
    with pytest.raises(RuleTableError) as err:
        _load(tmp_path, text)
    assert err.value.field == field, str(err.value)
    assert err.value.line == _line_of(text, needle)
    assert problem in str(err.value)


def test_overlapping_timing_rows_of_one_kind_and_scope_are_refused(tmp_path: Path) -> None:
    extra = TIMING.split("[[warning]]")[0].replace("valid_until_hour = 6", "grace_days = 1")
    text = MINIMAL + TIMING + extra
    with pytest.raises(RuleTableError, match="overlaps") as err:
        _load(tmp_path, text)
    assert err.value.line == _line_of(text, "from = 2017-02-01", 4)


def test_an_undetermined_warning_window_claims_no_warning(tmp_path: Path) -> None:
    window = TIMING.split("[[warning]]")[1].split("[[oldtimer_plate]]")[0]
    undetermined = window.replace('source = "test"', 'source = "test"\nundetermined = true\n'
                                  'note = "NOT FOUND: the window"')  # fmt: skip
    (tmp_path / "2030-01-01.toml").write_text(MINIMAL + "\n[[warning]]" + undetermined)
    tables = load_catalog_dir(tmp_path).get().compiled(7)
    assert (tables.warn_prev == -2).all()  # NO_WARNING in every period
    without_note = window.replace('source = "test"', 'source = "test"\nundetermined = true')
    (tmp_path / "2030-01-01.toml").write_text(MINIMAL + "\n[[warning]]" + without_note)
    with pytest.raises(RuleTableError, match="say in a note"):
        load_catalog_dir(tmp_path)


def test_zone_texts_callers_used_are_remembered_up_to_a_bound() -> None:
    """A revision remembers the zone texts callers named (a single check names its zone on
    every call), at most NAMED_ZONE_TEXTS of them: texts come from callers, so a caller that
    varies the case of a name cannot grow it without end; every text still resolves."""
    from lez.rules.catalog import NAMED_ZONE_TEXTS

    revision = load_catalog_dir(RULES).get()
    antwerp = revision.zone("Antwerpen")
    spellings = [
        "".join(c.upper() if (i >> k) & 1 else c for k, c in enumerate("antwerpen"))
        for i in range(NAMED_ZONE_TEXTS + 50)
    ]
    assert all(revision.zone(text) == antwerp for text in spellings)
    assert len(revision._named) == NAMED_ZONE_TEXTS
    with pytest.raises(UnknownZone):
        revision.zone("Atlantis")
    assert "Atlantis" not in revision._named
